"""Tune: search hyperparameters with Katib's semantics, locally or as a Katib Experiment on a cluster.

The search space, algorithm names, objective, early stopping and trial counts are Katib's (kubeflow.org/v1beta1
Experiment). Locally each trial runs in a worker process (the data is loaded once and shared with the workers)
and prints `name=value` lines, parsed with the regular expression of Katib's StdOut metrics collector; an Optuna
sampler stands in for Katib's suggestion service:

| Katib algorithm | local sampler |
|---|---|
| random | RandomSampler |
| grid | GridSampler (int, discrete, categorical and stepped doubles; every point exactly once) |
| tpe / multivariate-tpe | TPESampler(constant_liar=True) / the same with multivariate=True |
| cmaes | CmaEsSampler (needs two or more double/int parameters, as Katib's validation does) |
| sobol | QMCSampler(qmc_type="sobol") |
| bayesianoptimization | GPSampler (Gaussian-process Bayesian optimization; TPE where the installed Optuna lacks it) |

Katib's hyperband, enas, darts and pbt have no local equivalent: they are refused before any trial runs.
Early stopping `medianstop` becomes Optuna's MedianPruner (n_startup_trials = min_trials_required, pruning from the
start_step-th reported objective value on), fed each value of the objective metric a trial prints.

The run ends as a Katib Experiment does: when max_trial_count trials have completed (succeeded, failed or early
stopped), when the best objective value reaches the goal, or when more than max_failed_trial_count trials have
failed. A trial fails when it raises, its worker dies, or it never prints the objective metric (Katib's
"metrics unavailable"). Running trials are killed when the run stops early.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Optional

from kfp_ct.components._common.results import Result
from kfp_ct.components.tune.results import EARLY_STOPPED, FAILED, SUCCEEDED, SearchResult, check_result, report_markdown
from kfp_ct.components.tune.settings import check_settings
from kfp_ct.components.tune.space import parse_search_space


@dataclass
class TuneResult(Result):
    """What `tune` found: the best hyperparameters (fixed ones included: a trainer's `hyperparameters` input), the
    search (every trial) and its Markdown report. `metrics`: the best objective value (best_<metric>) and the trial
    counts; `metadata` (onto the report): the trainer, algorithm, backend and why the search stopped."""

    hyperparameters: dict
    search: SearchResult
    report: str


def tune(
    *,
    train_path: str,
    featurizer_path: str,
    target_column: Optional[str],
    task: Optional[str],
    trainer: str = "sklearn",
    search_space=None,
    algorithm: str = "tpe",
    objective_metric_name: Optional[str] = None,
    objective_type: Optional[str] = None,
    objective_goal: Optional[float] = None,
    max_trial_count: int = 12,
    parallel_trial_count: int = 2,
    max_failed_trial_count: int = 3,
    early_stopping: Optional[dict] = None,
    backend: str = "local",
    namespace: str = "kubeflow-user-example-com",
    seed: int = 0,
    options: Optional[dict] = None,
    hyperparameters: Optional[dict] = None,
    train_uri: Optional[str] = None,
    featurizer_uri: Optional[str] = None,
    katib_api=None,
    katib_timeout: float = 6 * 3600,
    katib_poll_seconds: float = 15,
    log: Callable[[str], None] = print,
) -> TuneResult:
    """Searches the trainer's hyperparameters on the train split (fit/validation rows as the trainer splits them).

    Everything is checked before any trial runs: the trainer, its options and hyperparameter names (the trainer's
    core says which it accepts), the search space, the algorithm for the backend, the objective and the counts.
    `backend="katib"` submits an Experiment whose trials read `train_uri`/`featurizer_uri` (gs://, s3:// or minio://
    URIs the trial pods can reach; default the paths).
    """
    from kfp_ct.components.tune import defaults, trial

    if backend not in ("local", "katib"):
        raise ValueError(f"backend must be 'local' or 'katib', got {backend!r}")
    chosen = trial.check_trainer(trainer, options)
    options = chosen.options
    if task not in (None, "classification", "regression"):
        raise ValueError(f"task must be classification or regression, got {task!r}")
    parameters = parse_search_space(search_space if search_space else defaults.default_search_space(trainer, options))
    fixed = dict(hyperparameters or {})
    chosen.check_names([p.name for p in parameters] + list(fixed))
    both = sorted(set(fixed) & {p.name for p in parameters})
    if both:
        raise ValueError(
            f"hyperparameter(s) {', '.join(both)} are both fixed (hyperparameters) and searched "
            "(search_space): keep each in one of them"
        )
    if backend == "local" and not os.path.isfile(train_path):
        raise FileNotFoundError(f"train dataset file not found: {train_path}")
    task_for_metrics = task or _featurizer_task(featurizer_path)
    objective_metric_name, objective_type = defaults.objective(
        trainer, task_for_metrics, objective_metric_name, objective_type
    )
    settings = check_settings(
        parameters=parameters,
        objective_metric_name=objective_metric_name,
        objective_type=objective_type,
        algorithm=algorithm,
        objective_goal=objective_goal,
        max_trial_count=max_trial_count,
        parallel_trial_count=parallel_trial_count,
        max_failed_trial_count=max_failed_trial_count,
        early_stopping=early_stopping,
        seed=seed,
        local=backend == "local",
    )

    if backend == "local":
        from kfp_ct.components.tune.search import run_search

        with tempfile.TemporaryDirectory(prefix="kfp-ct-tune-") as shared:
            result = run_search(
                trial.run_trial,
                settings,
                setup=trial.prepare,
                setup_args=(trainer, train_path, featurizer_path, target_column, task, options, fixed, seed, shared),
                log=log,
                preload=trial.preload_modules(trainer),
            )
    else:
        from kfp_ct.components.tune import katib

        experiment = katib.build_experiment(
            name=katib.experiment_name(trainer),
            trainer=trainer,
            settings=settings,
            train_uri=train_uri or train_path,
            featurizer_uri=featurizer_uri or featurizer_path,
            target_column=target_column,
            task=task,
            additional_metric_names=defaults.additional_metric_names(trainer, task_for_metrics, objective_metric_name),
            namespace=namespace,
            options=options,
            hyperparameters=fixed,
        )
        result = katib.run_experiment(experiment, list(parameters), katib_api, katib_timeout, katib_poll_seconds, log)
    best = check_result(result)
    found = {**fixed, **best.params}
    metrics = {
        "best_" + objective_metric_name: best.value,
        "trials": len(result.trials),
        "trials_succeeded": result.count(SUCCEEDED),
        "trials_failed": result.count(FAILED),
        "trials_early_stopped": result.count(EARLY_STOPPED),
    }
    trainer_name = f"{trainer} {' '.join(map(str, options.values()))}".strip()
    report = report_markdown(result, algorithm, backend, trainer_name, max_failed_trial_count)
    return TuneResult(
        metrics=metrics,
        metadata={
            "trainer": trainer,
            **options,
            "algorithm": algorithm,
            "backend": backend,
            "stopped_by": result.reason,
        },
        hyperparameters=found,
        search=result,
        report=report,
    )


def _featurizer_task(featurizer_path: str) -> str:
    """The task the featurizer was fitted for (its featurizer.json), without loading the transformer."""
    import json

    spec = os.path.join(featurizer_path, "featurizer.json")
    try:
        with open(spec) as f:
            return json.load(f)["task"]
    except FileNotFoundError:
        raise FileNotFoundError(f"not a featurizer directory: {spec} is missing") from None
