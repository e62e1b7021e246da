"""What every trainer shares, so no trainer repeats it: hyperparameter checks, the validation split, validation
metrics, the Katib metric lines, saving, tracking and registering the model.

A framework contributes two things, both in `components/train_<framework>/core.py`:

1. `fit(x_train, y_train, x_val, y_val, task, n_classes, hyperparameters, seed, **options) -> FitResult`

   - `x_*`: float32 feature matrices (the featurizer's output); `y_*`: class indices 0..n_classes-1 (int64) for
     classification, float64 values for regression; `task`: "classification" or "regression"; `n_classes`: the
     number of classes (None for regression); `hyperparameters`: already checked and completed with the
     framework's defaults (see `check_hyperparameters`); `seed`: seeds every random generator the framework uses
     (same data and seed -> same metrics).
   - It prints per-epoch `name=value` lines itself, if it has epochs (Katib's StdOut collector reads them), e.g.
     `epoch=3 validation-loss=0.41`.
   - It returns `FitResult(estimator, metrics, history)`, with `metrics = validation_metrics(task, y_val, scores)`
     where `scores` are the validation probabilities (n, n_classes) or predicted values (n,).
   - Katib tuning calls `fit` directly for each trial and reads `FitResult.metrics` (or the printed lines); it gets
     the same fit and validation rows as `train` with `load_train_data(train_path, featurizer_path, seed)`.

2. An adapter class (see kfp_ct.components._common.model) that saves and loads the fitted estimator.

`train(fit, adapter, ...)` then does the rest: loads the featurizer and the train split, holds out a validation
part (the latest rows when the featurizer has a time column, else stratified for classification), calls `fit`,
prints one `validation-<name>=<value>` line per validation metric (the names Katib objectives use, e.g.
validation-roc_auc), saves the model (input example, signature, metadata with the train data's sha256 and source
URI), logs params, metrics and the model to an MLflow run and registers it as a new version of `model_name`. Bad
input fails before anything is logged or registered.

Threads: trainers run their numeric libraries with `cpu_threads()` threads (KFP_CT_THREADS, else the container's
CPU quota): torch.set_num_threads(cpu_threads()), threadpoolctl.threadpool_limits(cpu_threads()); tune's worker
processes share them.

What only the neural trainers (torch, Keras) share is in `neural.py`.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from kfp_ct.components._common.featurizer import check_split, load_featurizer
from kfp_ct.components._common.metrics import task_metrics
from kfp_ct.components._common.results import Result
from kfp_ct.components._common.schema import CLASSIFICATION, MAX_CLASSES
from kfp_ct.components._common.tracking import without_credentials

VALIDATION_FRACTION = 0.2
METRIC_PREFIX = "validation-"  # printed metric lines read validation-roc_auc=0.93 (Katib objective names)


@dataclass
class FitResult:
    """What a framework's `fit` returns."""

    estimator: Any
    metrics: dict[str, float]  # validation metrics, from validation_metrics()
    history: list[dict] = field(default_factory=list)  # per epoch (or per iteration) records, if any


@dataclass
class TrainingResult(Result):
    """What `train` did, the trainers' shared result: `metrics` are the validation metrics, `metadata` what goes
    onto the model artifact (model_name, version, run_id, model_uri, framework, estimator, and the validation
    metrics: what evaluate, push and the UI read); the MLflow run, the registered version and where the model is."""

    run_id: str
    version: str
    model_path: str
    model_uri: str
    hyperparameters: dict


def check_hyperparameters(given: Mapping[str, Any] | None, allowed: Mapping[str, Any], what: str) -> dict:
    """`given` completed with the defaults in `allowed`; unknown names raise ValueError naming them and the allowed
    ones. `what` names the estimator in the message (e.g. "hist_gradient_boosting")."""
    given = dict(given or {})
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise ValueError(
            f"unknown hyperparameter(s) for {what}: {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
        )
    return {**allowed, **{name: coerce(name, value, allowed[name], what) for name, value in given.items()}}


def coerce(name: str, value: Any, default: Any, what: str = "the estimator") -> Any:
    """`value` in the type of `default`: a KFP dict parameter turns 40 into 40.0, and Katib passes text.

    Integral floats become ints where the default is an int or None (e.g. max_depth); text becomes a bool, int or
    float where the default is one; anything else is kept as given.
    """
    if isinstance(default, bool):
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
            return value.lower() in ("true", "1")
        return value
    try:
        if isinstance(default, int) or default is None:
            if isinstance(value, float) and value.is_integer():
                return int(value)
            if isinstance(value, str) and isinstance(default, int):
                return int(float(value)) if float(value).is_integer() else float(value)
        if isinstance(default, float) and isinstance(value, (int, str)) and not isinstance(value, bool):
            return float(value)
    except ValueError:
        raise ValueError(f"hyperparameter '{name}' of {what} must be a number, got {value!r}") from None
    if default is None and isinstance(value, str) and value.lower() in ("none", "null"):
        return None
    return value


def cpu_threads() -> int:
    """Threads a trainer may use: KFP_CT_THREADS when set, else the container's CPU quota (cgroup v2 cpu.max, which a
    KFP pod's CPU limit sets), else the CPUs this process may run on. OpenMP (HistGradientBoosting) and BLAS default
    to the host's core count, and oversubscribed they slow down by an order of magnitude."""
    if os.environ.get("KFP_CT_THREADS"):
        return max(1, int(os.environ["KFP_CT_THREADS"]))
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            available = min(available, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, available)


def seed_everything(seed: int) -> None:
    """Seeds Python's and numpy's generators (frameworks seed their own in `fit`)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    os.environ["PYTHONHASHSEED"] = str(seed)


def validation_metrics(task: str, y_true: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """The validation metrics every trainer reports, from the validation scores (probabilities (n, n_classes), or
    predicted values): the same metrics, computed the same way, as evaluate's test metrics (_common/metrics.py)."""
    return task_metrics(task, y_true, scores)


def format_metrics(metrics: Mapping[str, float], prefix: str = "") -> list[str]:
    """`name=value` lines in the form the default filter of Katib's StdOut metrics collector parses: whole numbers
    as integers, others with 8 significant digits. A value that is not finite is left out: the filter cannot read
    it."""
    lines = []
    for name, value in metrics.items():
        value = float(value)
        if math.isfinite(value):
            text = str(int(value)) if value.is_integer() and abs(value) < 1e15 else format(value, ".8g")
            lines.append(f"{prefix}{name}={text}")
    return lines


def print_line(line: str) -> None:
    """Prints one line at once (Katib and the tune workers read a trial's output as it comes)."""
    print(line, flush=True)


def print_metrics(metrics: Mapping[str, float], prefix: str = "", log: Callable[[str], None] = print_line) -> None:
    """Passes each of `format_metrics`' lines to `log` (default: printed)."""
    for line in format_metrics(metrics, prefix):
        log(line)


def validation_split(
    n_rows: int,
    y: np.ndarray,
    task: str,
    seed: int,
    fraction: float = VALIDATION_FRACTION,
    times: pd.Series | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(fit indices, validation indices): the latest rows by `times` when given, else a seeded split, stratified for
    classification when every class has at least two rows."""
    if n_rows < 2:
        raise ValueError(f"the train split has {n_rows} row(s): at least 2 are needed to hold out validation rows")
    n_val = max(1, int(round(fraction * n_rows)))
    if times is not None:
        order = np.argsort(np.asarray(times), kind="stable")
        return np.sort(order[: n_rows - n_val]), np.sort(order[n_rows - n_val :])
    from sklearn.model_selection import train_test_split

    indices = np.arange(n_rows)
    stratify = None
    if task == CLASSIFICATION:
        counts = np.bincount(y)
        counts = counts[counts > 0]
        if counts.min() >= 2 and n_val >= len(counts) and n_rows - n_val >= len(counts):
            stratify = y
    fit_idx, val_idx = train_test_split(indices, test_size=n_val, random_state=seed, stratify=stratify)
    return np.sort(fit_idx), np.sort(val_idx)


@dataclass
class TrainData:
    """The train split, featurized and split into fit and validation parts."""

    featurizer: Any
    x_raw: pd.DataFrame
    x_fit: np.ndarray
    y_fit: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray


def load_train_data(
    train_path: str,
    featurizer_path: str,
    seed: int = 0,
    target_column: str | None = None,
    task: str | None = None,
    validation_fraction: float = VALIDATION_FRACTION,
    max_classes: int = MAX_CLASSES,
) -> TrainData:
    """Reads and checks the train split, and featurizes its fit and validation parts (what Katib trials use too).

    A classification featurizer with more than `max_classes` classes is refused before the data is read."""
    from kfp_ct.components._common import datasets

    featurizer = load_featurizer(featurizer_path)
    check_class_count(featurizer, max_classes)
    check_split(featurizer, "train", train_path)
    if target_column and target_column != featurizer.target_column:
        raise ValueError(
            f"target_column '{target_column}' differs from the featurizer's target column '{featurizer.target_column}'"
        )
    if task and task != featurizer.task:
        raise ValueError(f"task '{task}' differs from the featurizer's task '{featurizer.task}'")
    frame = datasets.read_frame(train_path)
    if frame.empty:
        raise ValueError(f"the train split {train_path} has no rows")
    x_raw, y = featurizer.split_xy(frame)
    if featurizer.task == CLASSIFICATION:
        present = np.unique(y)
        if len(present) < 2:
            raise ValueError(
                f"target column '{featurizer.target_column}' has a single class "
                f"({featurizer.classes[int(present[0])]!r}) in the train split: a classifier needs at "
                "least two"
            )
    times = None
    if featurizer.time_column and featurizer.time_column in frame.columns:
        times = frame[featurizer.time_column]
        if pd.api.types.is_object_dtype(times) or pd.api.types.is_datetime64_any_dtype(times):
            times = pd.to_datetime(times, errors="coerce")
        times = times.to_numpy()
    fit_idx, val_idx = validation_split(len(frame), y, featurizer.task, seed, validation_fraction, times)
    x = featurizer.transform(x_raw)
    return TrainData(
        featurizer=featurizer, x_raw=x_raw, x_fit=x[fit_idx], y_fit=y[fit_idx], x_val=x[val_idx], y_val=y[val_idx]
    )


def check_class_count(featurizer, max_classes: int) -> None:
    """Raises ValueError, naming the target column and its class count, above `max_classes` classes."""
    if max_classes < 2:
        raise ValueError(f"max_classes must be at least 2, found {max_classes}")
    n = featurizer.n_classes
    if n is not None and n > max_classes:
        raise ValueError(
            f"target column '{featurizer.target_column}' has {n} classes, more than max_classes={int(max_classes)}: "
            "fitting and saving a model for that many classes takes minutes to hours. Group rare classes, or raise "
            "max_classes to train anyway"
        )


def _params(hyperparameters: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, str]:
    params = {**{f"hp.{k}": v for k, v in hyperparameters.items()}, **extra}
    return {name: str(value)[:6000] for name, value in params.items()}


def train(
    fit: Callable[..., FitResult],
    adapter,
    *,
    train_path: str,
    featurizer_path: str,
    model_path: str,
    model_name: str,
    hyperparameters: Mapping[str, Any] | None,
    allowed_hyperparameters: Mapping[str, Any],
    estimator_name: str,
    seed: int = 0,
    tracking_uri: str | None = None,
    train_metadata: dict | None = None,
    target_column: str | None = None,
    task: str | None = None,
    fit_options: dict | None = None,
    validation_fraction: float = VALIDATION_FRACTION,
    max_classes: int = MAX_CLASSES,
    result_type: type[TrainingResult] = TrainingResult,
) -> TrainingResult:
    """Trains with a framework's `fit`, then saves, logs and registers the model (see the module docstring).

    `allowed_hyperparameters` maps each hyperparameter `fit` accepts to its default; `train_metadata` is the train
    dataset artifact's metadata (sha256, source_uri, rows) and its uri. The model is written at `model_path` only if
    it was also logged and registered. A target with more than `max_classes` classes is refused before any fitting.
    Returns a `result_type` (the trainer's `<Component>Result`).
    """
    from kfp_ct.components._common import datasets, tracking
    from kfp_ct.components._common import model as model_format
    from kfp_ct.components._common.checks import check_registry_name

    check_registry_name(model_name)
    hp = check_hyperparameters(hyperparameters, allowed_hyperparameters, estimator_name)
    tracking.resolve_uri(tracking_uri)  # a registry the next step can reach (not a pod's own file), before fitting
    data = load_train_data(train_path, featurizer_path, seed, target_column, task, validation_fraction, max_classes)
    featurizer = data.featurizer
    seed_everything(seed)
    result = fit(
        data.x_fit,
        data.y_fit,
        data.x_val,
        data.y_val,
        task=featurizer.task,
        n_classes=featurizer.n_classes,
        hyperparameters=hp,
        seed=seed,
        **(fit_options or {}),
    )
    metrics = {name: float(value) for name, value in result.metrics.items()}
    print_metrics(metrics, METRIC_PREFIX)

    from kfp_ct.components._common.datasets import sha256_file

    train_metadata = dict(train_metadata or {})
    data_info = {
        "sha256": train_metadata.get("sha256") or sha256_file(train_path),
        "source_uri": train_metadata.get("source_uri", ""),
        "uri": train_metadata.get("uri") or os.path.abspath(train_path),  # the reference for drift monitoring
        "rows": len(data.x_raw),
        "fit_rows": len(data.y_fit),
        "validation_rows": len(data.y_val),
        "window": train_metadata.get("window"),  # the time window the data was read for (reference_data reads it)
    }
    with tracking.sigterm_raises():  # a stopped pod ends the run FAILED, as an exception does
        mlflow_client = tracking.client(tracking_uri)
        run = mlflow_client.create_run(
            tracking.experiment_id(mlflow_client, model_name),
            run_name=f"{model_name}-{adapter.framework}-{estimator_name}",
            tags={
                "kfp_ct.framework": adapter.framework,
                "kfp_ct.estimator": estimator_name,
                "kfp_ct.data_sha256": data_info["sha256"],
            },
        )
        run_id = run.info.run_id
        status = "FAILED"
        try:
            from mlflow.entities import Metric, Param

            params = _params(
                hp,
                {
                    "estimator": estimator_name,
                    "framework": adapter.framework,
                    "seed": seed,
                    "task": featurizer.task,
                    "target_column": featurizer.target_column,
                    "train_sha256": data_info["sha256"],
                    "train_source_uri": data_info["source_uri"],
                    "train_rows": data_info["rows"],
                },
            )
            mlflow_client.log_batch(
                run_id,
                params=[Param(k, v) for k, v in params.items()],
                metrics=[Metric(k, v, 0, 0) for k, v in metrics.items() if math.isfinite(v)],
            )
            for step, record in enumerate(result.history):
                numeric = {k: float(v) for k, v in record.items() if isinstance(v, (int, float)) and k != "epoch"}
                if numeric:
                    mlflow_client.log_batch(
                        run_id,
                        metrics=[
                            Metric(f"history.{k}", v, 0, int(record.get("epoch", step)))
                            for k, v in numeric.items()
                            if math.isfinite(v)
                        ],
                    )
            metadata = {
                "estimator": estimator_name,
                "hyperparameters": hp,
                "seed": seed,
                "train_data": data_info,
                "validation_metrics": metrics,
                "model_name": model_name,
                "mlflow_run_id": run_id,
                "tracking_uri": without_credentials(tracking.resolve_uri(tracking_uri)),
            }
            # staged, and renamed to model_path only once logged and registered: a killed trainer leaves no model
            with datasets.atomic_dir(model_path) as staged:
                model_format.save_model(
                    staged, result.estimator, featurizer, adapter, input_example=data.x_raw, metadata=metadata
                )
                mlflow_client.log_artifacts(run_id, staged, "model")
                model_uri = f"{run.info.artifact_uri.rstrip('/')}/model"
                version = tracking.register_version(
                    model_name,
                    model_uri,
                    run_id,
                    tracking_uri,
                    tags={
                        "framework": adapter.framework,
                        "estimator": estimator_name,
                        "data_sha256": data_info["sha256"],
                    },
                )
            status = "FINISHED"
        finally:
            mlflow_client.set_terminated(run_id, status)
    return result_type(
        metrics=metrics,
        metadata={
            "model_name": model_name,
            "version": version,
            "run_id": run_id,
            "model_uri": model_uri,
            "framework": adapter.framework,
            "estimator": estimator_name,
            **metrics,
        },
        run_id=run_id,
        version=version,
        model_path=model_path,
        model_uri=model_uri,
        hyperparameters=hp,
    )
