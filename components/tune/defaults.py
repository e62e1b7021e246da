"""Default search spaces (Katib's shape) for the catalog's trainers, and the metrics each trainer reports."""

from __future__ import annotations

from typing import Optional

from kfp_ct.components._common.checks import LOWER_IS_BETTER


def _double(name: str, low: str, high: str, distribution: str = "uniform") -> dict:
    space = {"min": low, "max": high}
    if distribution != "uniform":
        space["distribution"] = distribution
    return {"name": name, "parameterType": "double", "feasibleSpace": space}


def _int(name: str, low: str, high: str, distribution: str = "uniform") -> dict:
    space = {"min": low, "max": high}
    if distribution != "uniform":
        space["distribution"] = distribution
    return {"name": name, "parameterType": "int", "feasibleSpace": space}


def _categorical(name: str, values: list[str]) -> dict:
    return {"name": name, "parameterType": "categorical", "feasibleSpace": {"list": values}}


SKLEARN = {
    "hist_gradient_boosting": [
        _double("learning_rate", "0.01", "0.3", "logUniform"),
        _int("max_leaf_nodes", "8", "128", "logUniform"),
        _int("min_samples_leaf", "5", "100", "logUniform"),
        _double("l2_regularization", "0.0", "1.0"),
    ],
    "random_forest": [
        _int("n_estimators", "50", "300"),
        _int("min_samples_leaf", "1", "20", "logUniform"),
        _categorical("max_features", ["sqrt", "log2", "0.5"]),
    ],
    "logistic_regression": [_double("C", "0.001", "100", "logUniform")],
    "linear_regression": [_double("alpha", "0.000001", "10", "logUniform")],
}
NEURAL = [
    _double("lr", "0.0001", "0.01", "logUniform"),
    _double("dropout", "0.0", "0.5"),
    _double("weight_decay", "0.000001", "0.01", "logUniform"),
    _categorical("hidden_sizes", ["64,64", "128,128", "256,256", "256,128,64"]),
]

VALIDATION_METRICS = {"classification": ("roc_auc", "accuracy", "f1", "log_loss"), "regression": ("rmse", "mae", "r2")}


def default_options(trainer: str) -> dict:
    from kfp_ct.components.tune.trial import trainer_options

    return trainer_options(trainer)


def default_search_space(trainer: str, options: Optional[dict] = None) -> list[dict]:
    """A sensible search space for the trainer (for sklearn, for its estimator)."""
    from kfp_ct.components.tune.trial import trainer_options

    options = trainer_options(trainer, options)
    if trainer == "sklearn":
        if options["estimator"] not in SKLEARN:
            raise ValueError(f"no default search space for estimator '{options['estimator']}': pass search_space")
        return [dict(p) for p in SKLEARN[options["estimator"]]]
    return [dict(p) for p in NEURAL]


def reported_metrics(trainer: str, task: str) -> list[str]:
    """The metric names a trial of `trainer` prints for `task` (the final validation metrics; neural trainers also
    print per-epoch validation-loss)."""
    names = [f"validation-{m}" for m in VALIDATION_METRICS[task]]
    if trainer != "sklearn":
        names.append("validation-loss")
    return names


def additional_metric_names(trainer: str, task: str, objective_metric_name: str) -> list[str]:
    return [n for n in reported_metrics(trainer, task) if n != objective_metric_name]


def objective(
    trainer: str, task: str, objective_metric_name: Optional[str] = None, objective_type: Optional[str] = None
) -> tuple[str, str]:
    """The search's objective (metric name, maximize or minimize): validation-roc_auc for classification and
    validation-rmse for regression where no metric is given, and a given metric's direction from the metric table.
    Refuses an objective the trainer never prints for this task, or one optimized the wrong way."""
    name = objective_metric_name or ("validation-roc_auc" if task == "classification" else "validation-rmse")
    lower = name.removeprefix("validation-") in LOWER_IS_BETTER
    direction = objective_type or ("minimize" if lower else "maximize")
    names = reported_metrics(trainer, task)
    if name not in names:
        raise ValueError(
            f"objective_metric_name '{name}' is not a metric the {trainer} trainer "
            f"reports for {task}: expected one of {', '.join(names)}"
        )
    if direction == ("maximize" if lower else "minimize"):
        raise ValueError(
            f"objective '{name}' is {'lower' if lower else 'higher'} for better models: "
            f"objective_type should be {'minimize' if lower else 'maximize'}, got {direction}"
        )
    return name, direction
