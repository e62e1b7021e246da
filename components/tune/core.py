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

from kfp_ct.components._common.checks import LOWER_IS_BETTER
from kfp_ct.components.tune.results import EARLY_STOPPED, FAILED, KILLED, SUCCEEDED, SearchResult, check_result
from kfp_ct.components.tune.settings import check_settings
from kfp_ct.components.tune.space import parse_search_space


def report_markdown(result: SearchResult, algorithm: str, backend: str, trainer: str) -> str:
    """A Markdown summary: the outcome, the best hyperparameters and every trial."""
    best = result.best
    lines = [
        f"# Tuning: {trainer}, {algorithm} ({backend})",
        "",
        f"Objective: {result.objective_type} `{result.objective_metric_name}`. Stopped by: {result.reason}.",
        f"Trials: {len(result.trials)} ({result.count(SUCCEEDED)} succeeded, {result.count(FAILED)} failed, "
        f"{result.count(EARLY_STOPPED)} early stopped, {result.count(KILLED)} killed).",
        "",
    ]
    if best is not None:
        lines += [
            f"Best: trial {best.number}, {result.objective_metric_name} = {best.value:.6g}",
            "",
            "| hyperparameter | value |",
            "|---|---|",
        ]
        lines += [f"| {name} | `{value!r}` |" for name, value in best.params.items()]
        lines.append("")
    if result.trials:
        names = list(result.trials[0].params)
        lines += [
            "| trial | state | " + " | ".join(names) + f" | {result.objective_metric_name} | seconds |",
            "|---" * (len(names) + 4) + "|",
        ]
        for t in result.trials:
            value = f"{t.value:.6g}" if t.value is not None else "-"
            lines.append(
                f"| {t.number} | {t.state} | "
                + " | ".join(f"{t.params[n]!r}" for n in names)
                + f" | {value} | {t.seconds:.1f} |"
            )
    return "\n".join(lines) + "\n"


# --- the component's work ----------------------------------------------------------------------------------------


@dataclass
class TuneOutcome:
    """What `tune` found: the best hyperparameters (fixed ones included: a trainer's `hyperparameters` input), the
    search result and the Markdown report."""

    hyperparameters: dict
    result: SearchResult
    report: str
    metrics: dict


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
) -> TuneOutcome:
    """Searches the trainer's hyperparameters on the train split (fit/validation rows as the trainer splits them).

    Everything is checked before any trial runs: the trainer, its options and hyperparameter names (the trainer's
    core says which it accepts), the search space, the algorithm for the backend, the objective and the counts.
    `backend="katib"` submits an Experiment whose trials read `train_uri`/`featurizer_uri` (gs://, s3:// or minio://
    URIs the trial pods can reach; default the paths).
    """
    from kfp_ct.components.tune import defaults, trial

    if backend not in ("local", "katib"):
        raise ValueError(f"backend must be 'local' or 'katib', got {backend!r}")
    options = trial.trainer_options(trainer, options)
    trial.allowed_hyperparameters(trainer, options)  # the trainer's core refuses an unknown estimator by name
    if task not in (None, "classification", "regression"):
        raise ValueError(f"task must be classification or regression, got {task!r}")
    parameters = parse_search_space(search_space if search_space else defaults.default_search_space(trainer, options))
    fixed = dict(hyperparameters or {})
    trial.check_hyperparameter_names(trainer, [p.name for p in parameters] + list(fixed), options)
    both = sorted(set(fixed) & {p.name for p in parameters})
    if both:
        raise ValueError(
            f"hyperparameter(s) {', '.join(both)} are both fixed (hyperparameters) and searched "
            "(search_space): keep each in one of them"
        )
    if backend == "local" and not os.path.isfile(train_path):
        raise FileNotFoundError(f"train dataset file not found: {train_path}")
    task_for_metrics = task or _featurizer_task(featurizer_path)
    default_metric, default_type = defaults.default_objective(task_for_metrics)
    objective_metric_name = objective_metric_name or default_metric
    objective_type = objective_type or (
        default_type
        if objective_metric_name == default_metric
        else ("minimize" if objective_metric_name.removeprefix("validation-") in LOWER_IS_BETTER else "maximize")
    )
    defaults.check_objective(trainer, task_for_metrics, objective_metric_name, objective_type)
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
    report = report_markdown(result, algorithm, backend, f"{trainer} {' '.join(map(str, options.values()))}".strip())
    if result.reason == "max_failed_trial_count":
        report += (
            f"\n**Warning:** more than {max_failed_trial_count} trials failed, so the search stopped early; "
            "the best of the trials that succeeded is returned.\n"
        )
    return TuneOutcome(found, result, report, metrics)


def _featurizer_task(featurizer_path: str) -> str:
    """The task the featurizer was fitted for (its featurizer.json), without loading the transformer."""
    import json

    spec = os.path.join(featurizer_path, "featurizer.json")
    try:
        with open(spec) as f:
            return json.load(f)["task"]
    except FileNotFoundError:
        raise FileNotFoundError(f"not a featurizer directory: {spec} is missing") from None
