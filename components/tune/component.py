from typing import Optional

from kfp import dsl

from kfp_ct.components._image import component


@component
def tune(
    train: dsl.Input[dsl.Dataset],
    featurizer: dsl.Input[dsl.Model],
    target_column: str,
    task: str,
    metrics: dsl.Output[dsl.Metrics],
    report: dsl.Output[dsl.Markdown],
    trainer: str = "sklearn",
    search_space: Optional[dict] = None,
    algorithm: str = "tpe",
    objective_metric_name: str = "validation-roc_auc",
    objective_type: str = "maximize",
    objective_goal: Optional[float] = None,
    max_trial_count: int = 12,
    parallel_trial_count: int = 2,
    max_failed_trial_count: int = 3,
    early_stopping: Optional[dict] = None,
    backend: str = "local",
    namespace: str = "kubeflow-user-example-com",
    seed: int = 0,
    estimator: str = "hist_gradient_boosting",
    hyperparameters: Optional[dict] = None,
) -> dict:
    """Tunes a catalog trainer's hyperparameters with Katib's search semantics, on a cluster or locally.

    Each trial fits the trainer's core on the train split's fit rows and is scored on its validation rows, split as
    the trainer splits them; it prints `validation-<metric>=<value>` lines, read with Katib's StdOut metrics regex.
    backend="katib" submits a Katib Experiment (trials are Jobs running the catalog image) and waits for it;
    backend="local" runs the same trial code in worker processes, with Katib's algorithm names mapped to Optuna
    samplers (random, grid, tpe, multivariate-tpe, cmaes, sobol, bayesianoptimization) and medianstop to Optuna's
    MedianPruner. The search stops at max_trial_count, at the objective goal, or when more than
    max_failed_trial_count trials failed (as Katib does); it fails if no trial succeeded. Bad settings (unknown
    hyperparameter, min above max, an algorithm the backend cannot run, ...) fail before any trial runs.

    Args:
        train: The train split (Parquet), as featurize wrote it.
        featurizer: The fitted featurizer directory from featurize.
        target_column: The target column (must match the featurizer's).
        task: classification or regression (must match the featurizer's).
        trainer: Whose hyperparameters to tune: sklearn, torch or keras.
        search_space: Katib parameters, as {"parameters": [{"name", "parameterType": double|int|categorical|discrete,
            "feasibleSpace": {"min", "max", "step", "list", "distribution"}}]} or {name: {"parameterType", ...}};
            default: a sensible space for the trainer (and estimator).
        algorithm: Katib algorithm: random, grid, tpe, multivariate-tpe, cmaes, sobol or bayesianoptimization.
        objective_metric_name: The metric to optimize, e.g. validation-roc_auc or validation-accuracy
            (classification), validation-rmse (regression).
        objective_type: maximize or minimize.
        objective_goal: Stop once the best trial reaches this value.
        max_trial_count: Trials to run in all.
        parallel_trial_count: Trials running at once.
        max_failed_trial_count: The search stops when more trials than this have failed.
        early_stopping: Katib early stopping, e.g. {"algorithmName": "medianstop", "algorithmSettings":
            [{"name": "min_trials_required", "value": "3"}, {"name": "start_step", "value": "4"}]}.
        backend: local (worker processes in this step) or katib (an Experiment on the cluster).
        namespace: Kubernetes namespace of the Katib Experiment (backend katib).
        seed: Seeds the search algorithm and every trial's training.
        estimator: The scikit-learn estimator whose hyperparameters are tuned (trainer sklearn only).
        hyperparameters: Hyperparameters held fixed in every trial (not searched).

    Returns:
        metrics: The best objective value (best_<metric>) and the trial counts (trials, trials_succeeded,
            trials_failed, trials_early_stopped).
        report: Markdown: the objective, why the search stopped, the best hyperparameters and every trial;
            metadata: trainer (and estimator), algorithm, backend, stopped_by.
        Output: The best hyperparameters, fixed ones included: pass it as the trainer's `hyperparameters` input.
    """
    from kfp_ct.components._common.datasets import write_text
    from kfp_ct.components.tune.core import tune as tune_core

    result = tune_core(
        train_path=train.path,
        featurizer_path=featurizer.path,
        target_column=target_column,
        task=task,
        trainer=trainer,
        search_space=search_space,
        algorithm=algorithm,
        objective_metric_name=objective_metric_name,
        objective_type=objective_type,
        objective_goal=objective_goal,
        max_trial_count=max_trial_count,
        parallel_trial_count=parallel_trial_count,
        max_failed_trial_count=max_failed_trial_count,
        early_stopping=early_stopping,
        backend=backend,
        namespace=namespace,
        seed=seed,
        options={"estimator": estimator} if trainer == "sklearn" else {},
        hyperparameters=hyperparameters,
        train_uri=train.uri,
        featurizer_uri=featurizer.uri,
    )
    result.log_metrics(metrics)
    write_text(report.path, result.report)
    report.metadata.update(result.metadata)
    return result.hyperparameters
