"""Runs on a Kubeflow Pipelines cluster through the kfp SDK: one run, or a recurring run on a schedule.

Credentials come from the environment (`KFP_TOKEN`, or what kfp.Client reads itself: KF_PIPELINES_SA_TOKEN_PATH,
IAP/OAuth settings), never from a pipeline parameter; the steps' own secrets come from a Kubernetes Secret
(see `kfp_ct.pipelines.credentials`).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def client(host: str, namespace: str | None = None):
    import kfp

    return kfp.Client(host=host, namespace=namespace, existing_token=os.environ.get("KFP_TOKEN"))


def check_cron(cron: str) -> str:
    """KFP's cron has six fields, seconds first: '0 0 2 * * *' is 02:00 every day."""
    fields = cron.split()
    if len(fields) != 6:
        hint = f"; for '{cron}' write '0 {cron}'" if len(fields) == 5 else ""
        raise ValueError(
            f"cron '{cron}' has {len(fields)} fields: KFP takes six (seconds minutes hours day-of-month "
            f"month day-of-week){hint}"
        )
    return cron


def _package(pipeline, directory: str) -> str:
    from kfp import compiler

    path = str(Path(directory) / f"{pipeline.name}.yaml")
    compiler.Compiler().compile(pipeline, path)
    return path


def submit(
    kfp_client,
    pipeline,
    arguments: dict,
    experiment: str = "kfp-ct",
    run_name: str | None = None,
    enable_caching: bool | None = None,
) -> str:
    """Starts one run of `pipeline`; returns the run id."""
    with tempfile.TemporaryDirectory() as tmp:
        result = kfp_client.create_run_from_pipeline_package(
            _package(pipeline, tmp),
            arguments=arguments,
            run_name=run_name,
            experiment_name=experiment,
            enable_caching=enable_caching,
        )
    return result.run_id


def schedule(
    kfp_client,
    pipeline,
    arguments: dict,
    cron: str,
    job_name: str,
    experiment: str = "kfp-ct",
    enable_caching: bool | None = None,
) -> str:
    """Creates a recurring run of `pipeline`: one run at a time (max_concurrency=1) and no catch-up of missed
    times (a drift monitor needs the newest window, not a backlog). Returns the recurring run's id."""
    check_cron(cron)
    experiment_id = kfp_client.create_experiment(experiment).experiment_id
    with tempfile.TemporaryDirectory() as tmp:
        recurring = kfp_client.create_recurring_run(
            experiment_id=experiment_id,
            job_name=job_name,
            cron_expression=cron,
            max_concurrency=1,
            no_catchup=True,
            params=arguments,
            pipeline_package_path=_package(pipeline, tmp),
            enabled=True,
            enable_caching=enable_caching,
        )
    return recurring.recurring_run_id
