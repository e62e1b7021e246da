"""Runs on a Kubeflow Pipelines cluster through the kfp SDK: one run, or a recurring run on a schedule.

Where the client connects, and with which credential (never a pipeline parameter):
- no host, inside the cluster (a Kubeflow notebook, any pod): `kfp.Client()` reaches the API server at
  `ml-pipeline.kubeflow.svc.cluster.local:8888` with the pod's projected service-account token, read from
  `KF_PIPELINES_SA_TOKEN_PATH` or `/var/run/secrets/kubeflow/pipelines/token` (Kubeflow's "Allow access to Kubeflow
  Pipelines" notebook configuration mounts it); in multi-user mode the user namespace is the pod's own.
- a host (e.g. a port-forward): the bearer token `KFP_TOKEN`, or else the token in the file that
  `KF_PIPELINES_SA_TOKEN_PATH` names (read again on every request, so a rotated token is picked up).
The steps' own secrets come from a Kubernetes Secret (see `kfp_ct.pipelines.credentials`).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

TOKEN_ENV = "KFP_TOKEN"
TOKEN_PATH_ENV = "KF_PIPELINES_SA_TOKEN_PATH"  # kfp.client.KF_PIPELINES_SA_TOKEN_ENV


def client(host: str | None = None):
    """A kfp.Client for `host`, or for the API server of the cluster this pod runs in when `host` is empty."""
    import kfp

    if not host:
        if not os.environ.get("KUBERNETES_SERVICE_HOST"):
            raise ValueError(
                "no KFP host: outside a cluster give one (--host, or KFP_HOST in the notebook), e.g. "
                "http://localhost:8080 after `kubectl port-forward -n kubeflow svc/ml-pipeline-ui 8080:80`"
            )
        return kfp.Client()
    token = os.environ.get(TOKEN_ENV)
    credentials = None
    if not token and os.environ.get(TOKEN_PATH_ENV):
        from kfp.client.set_volume_credentials import ServiceAccountTokenVolumeCredentials

        path = os.environ[TOKEN_PATH_ENV]
        try:
            readable = Path(path).read_text().strip()
        except OSError as err:
            raise ValueError(f"{TOKEN_PATH_ENV}={path}: cannot read the token file ({err.strerror})") from None
        if not readable:
            raise ValueError(f"{TOKEN_PATH_ENV}={path}: the token file is empty")
        credentials = ServiceAccountTokenVolumeCredentials(path)
    return kfp.Client(host=host, existing_token=token, credentials=credentials)


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
    namespace: str | None = None,
) -> str:
    """Starts one run of `pipeline` (in the user namespace `namespace` of a multi-user KFP, by default the
    client's); returns the run id."""
    with tempfile.TemporaryDirectory() as tmp:
        result = kfp_client.create_run_from_pipeline_package(
            _package(pipeline, tmp),
            arguments=arguments,
            run_name=run_name,
            experiment_name=experiment,
            namespace=namespace,
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
    namespace: str | None = None,
) -> str:
    """Creates a recurring run of `pipeline`: one run at a time (max_concurrency=1) and no catch-up of missed
    times (a drift monitor needs the newest window, not a backlog), in the experiment `experiment` of the user
    namespace `namespace` (by default the client's). Returns the recurring run's id."""
    check_cron(cron)
    experiment_id = kfp_client.create_experiment(experiment, namespace=namespace).experiment_id
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
