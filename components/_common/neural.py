"""What the neural trainers (train_torch, train_keras) share, so that Katib tunes either the same way: their
hyperparameters and how they are checked, the checks of the featurized inputs, class weights, the regression
target's scaling, the batch size, and how a fitted network's outputs become scores.

The frameworks differ only in the network itself: each trainer's core builds, fits and saves it, and reports
`FittedNetwork.scores` through its `network_outputs`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any

import numpy as np

TASKS = ("classification", "regression")
ESTIMATOR = "mlp"

# Both trainers' hyperparameters and their defaults (`compile`: torch.compile for torch, XLA for Keras).
DEFAULTS: dict[str, Any] = {
    "hidden_sizes": (256, 256),
    "dropout": 0.1,
    "lr": 1e-3,
    "weight_decay": 1e-4,
    "batch_size": None,  # None: chosen from the row count and the device (see auto_batch_size)
    "epochs": 100,
    "patience": 10,
    "class_weight": "balanced",
    "compile": False,
}
MAX_BATCH = {"cuda": 8192, "cpu": 1024}
EVAL_BATCH = 65536  # rows scored at once


# ----------------------------------------------------------------------------------------------------------------
# Hyperparameters


def as_bool(name: str, value: Any) -> bool:
    """`value` as a bool (Katib passes text); ValueError naming the hyperparameter otherwise."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "false", "0", "no"):
        return value.strip().lower() in ("true", "1", "yes")
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    raise ValueError(f"hyperparameter '{name}' must be true or false, got {value!r}")


def as_number(name: str, value: Any, kind: type, low: float, high: float = math.inf, low_open: bool = False):
    """`value` as a `kind` (int or float) within [low, high] ((low, high] when `low_open`); ValueError naming the
    hyperparameter, the bounds and the value otherwise."""
    try:
        number = kind(float(value)) if kind is int and not isinstance(value, bool) else kind(value)
        if kind is int and float(value) != number:
            raise ValueError
    except (TypeError, ValueError):
        raise ValueError(
            f"hyperparameter '{name}' must be {'an integer' if kind is int else 'a number'}, got {value!r}"
        ) from None
    if not (low < number if low_open else low <= number) or number > high or not math.isfinite(number):
        bounds = f"{'(' if low_open else '['}{low}, {high}]"
        raise ValueError(f"hyperparameter '{name}' must lie in {bounds}, got {value!r}")
    return number


def as_sizes(name: str, value: Any) -> list[int]:
    """Layer widths from a list, one number, or text such as '256,256' or '[256, 256]'."""
    if isinstance(value, str):
        parts = [p for p in value.replace("[", "").replace("]", "").replace(" ", "").split(",") if p]
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        parts = [value]
    elif isinstance(value, (list, tuple)):
        parts = list(value)
    else:
        parts = None
    if not parts:
        raise ValueError(
            f"hyperparameter '{name}' must be a non-empty list of layer widths such as [256, 256] or "
            f"'256,256', got {value!r}"
        )
    return [as_number(name, p, int, 1) for p in parts]


def resolve_hyperparameters(given: dict | None) -> dict[str, Any]:
    """DEFAULTS updated with `given`, each value checked and converted (Katib passes numbers as text).

    Raises:
        ValueError: a name that is not a hyperparameter of the neural trainers (the message lists the allowed
            ones), or a value of the wrong type or range.
    """
    from kfp_ct.components._common.training import check_hyperparameters

    hp = check_hyperparameters(given, DEFAULTS, ESTIMATOR)
    checked = {
        "hidden_sizes": as_sizes("hidden_sizes", hp["hidden_sizes"]),
        "dropout": as_number("dropout", hp["dropout"], float, 0.0, 0.95),
        "lr": as_number("lr", hp["lr"], float, 0.0, 10.0, low_open=True),
        "weight_decay": as_number("weight_decay", hp["weight_decay"], float, 0.0, 10.0),
        "batch_size": None
        if hp["batch_size"] in (None, "", "auto")
        else as_number("batch_size", hp["batch_size"], int, 1),
        "epochs": as_number("epochs", hp["epochs"], int, 1),
        "patience": as_number("patience", hp["patience"], int, 1),
        "class_weight": str(hp["class_weight"] if hp["class_weight"] is not None else "none").lower(),
        "compile": as_bool("compile", hp["compile"]),
    }
    if checked["class_weight"] not in ("balanced", "none"):
        raise ValueError(f"hyperparameter 'class_weight' must be 'balanced' or 'none', got {hp['class_weight']!r}")
    return checked


def auto_batch_size(n_rows: int, device_type: str) -> int:
    """A power of two near an eighth of the rows (at least 8 steps an epoch), between 64 and 8192 on CUDA (1024 on
    CPU): large batches keep a GPU busy, and small data still gets enough steps."""
    cap = MAX_BATCH.get(device_type, MAX_BATCH["cpu"])
    return int(min(cap, max(64, 2 ** math.floor(math.log2(max(n_rows, 8) / 8)))))


# ----------------------------------------------------------------------------------------------------------------
# Inputs


def as_matrix(X, what: str = "features") -> np.ndarray:
    """A dense float32 matrix of `X` (an array, a DataFrame or a scipy sparse matrix), with an error naming the
    problem when it is not numeric or holds NaN or infinity."""
    if hasattr(X, "toarray"):
        X = X.toarray()
    try:
        matrix = np.asarray(X, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise ValueError(f"the {what} must be numeric (the featurizer's output), got {err}") from None
    if matrix.ndim != 2:
        raise ValueError(f"the {what} must be a 2-D matrix (rows x features), got shape {matrix.shape}")
    if matrix.shape[0] == 0:
        raise ValueError(f"the {what} have no rows")
    finite = np.isfinite(matrix)
    if not finite.all():
        columns = np.flatnonzero(~finite.all(axis=0))
        raise ValueError(
            f"the {what} hold NaN or infinity in column(s) {', '.join(map(str, columns[:10]))} of "
            f"{matrix.shape[1]}: impute them in the featurizer"
        )
    return matrix


def check_inputs(x_train, y_train, x_val, y_val, task: str, n_classes: int | None):
    """(x_train, y_train, x_val, y_val) as float32 matrices and int64 class indices (classification) or float32
    values (regression), checked against each other."""
    if task not in TASKS:
        raise ValueError(f"unknown task '{task}': expected one of {', '.join(TASKS)}")
    x_train, x_val = as_matrix(x_train, "training features"), as_matrix(x_val, "validation features")
    if x_val.shape[1] != x_train.shape[1]:
        raise ValueError(f"validation features have {x_val.shape[1]} columns, training features {x_train.shape[1]}")
    targets = []
    for what, x, y in (("training", x_train, y_train), ("validation", x_val, y_val)):
        y = np.asarray(y).reshape(-1)
        if len(y) != len(x):
            raise ValueError(f"the {what} features have {len(x)} rows but the {what} target has {len(y)}")
        if task == "classification":
            if n_classes is None or n_classes < 2:
                raise ValueError(f"classification needs n_classes >= 2, got {n_classes}")
            if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= n_classes:
                raise ValueError(
                    f"the {what} target must hold class indices 0..{n_classes - 1} (the featurizer's "
                    f"encoding), got values such as {np.unique(y)[:5].tolist()}"
                )
            targets.append(y.astype(np.int64))
        else:
            try:
                values = y.astype(np.float32)
            except (TypeError, ValueError):
                raise ValueError(f"the {what} target of a regression must be numeric") from None
            if not np.isfinite(values).all():
                raise ValueError(f"the {what} target holds NaN or infinity")
            targets.append(values)
    return x_train, targets[0], x_val, targets[1]


def class_weights(codes: np.ndarray, n_classes: int, mode: str) -> np.ndarray | None:
    """'balanced': n_rows / (n_classes * rows of the class) (1 for a class absent from training); 'none': None."""
    if mode == "none":
        return None
    counts = np.bincount(codes, minlength=n_classes).astype(np.float64)
    weights = np.where(counts > 0, len(codes) / (n_classes * np.maximum(counts, 1)), 1.0)
    return weights.astype(np.float32)


def target_scaling(y: np.ndarray) -> tuple[float, float]:
    """(mean, std) that standardise a regression target (std 1 for a constant target)."""
    std = float(np.std(y, dtype=np.float64))
    return float(np.mean(y, dtype=np.float64)), std if std > 0 else 1.0


def diverged(lr: float) -> ValueError:
    """The error of a fit whose validation loss was never finite."""
    return ValueError(f"training diverged: the validation loss was never finite (lr={lr}; try a lower one)")


# ----------------------------------------------------------------------------------------------------------------
# The fitted network


def outputs_to_scores(outputs: np.ndarray, task: str) -> np.ndarray:
    """Logits -> probabilities (classification); the single output column -> values (regression)."""
    outputs = np.asarray(outputs, dtype=np.float64)
    if task == "regression":
        return outputs[:, 0]
    shifted = np.exp(outputs - outputs.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


class FittedNetwork(ABC):
    """A fitted network whose output is the logits (classification) or the target in its own units (regression).
    A trainer's subclass says how the network computes its outputs (`network_outputs`)."""

    def __init__(self, task: str, n_features: int, best_epoch: int = 0, device: str = "cpu"):
        self.task = task
        self.n_features_in_ = n_features
        self.best_epoch = best_epoch  # the epoch whose weights early stopping kept
        self.device = device  # where it was trained

    @abstractmethod
    def network_outputs(self, matrix: np.ndarray) -> np.ndarray:
        """The network's float32 outputs (n, n_outputs) for a checked float32 matrix."""

    def scores(self, x) -> np.ndarray:
        """Class probabilities (n, n_classes) for classification, values (n,) for regression."""
        matrix = as_matrix(x)
        if matrix.shape[1] != self.n_features_in_:
            raise ValueError(f"expected {self.n_features_in_} features, got {matrix.shape[1]}")
        return outputs_to_scores(self.network_outputs(matrix), self.task)
