"""The one metric table and the one computation of model metrics: the trainers' validation metrics, evaluate's test
metrics (whole test split and each slice) and monitor_drift's performance trigger all come from here.

What is computed, from the true values and the model's scores:

- classification (scores: probabilities, shape (n, n_classes), columns in the model's class order; true values:
  class indices 0..n_classes-1):
  - accuracy;
  - precision, recall, f1: **macro** averages over the classes present in the rows (in the true labels or in the
    predictions), each class counting once, binary classification included. Not the "binary" average of the
    positive class: the figure then does not depend on which class is called positive and means the same for 2
    classes and for 10. A class with no predicted (or no true) row counts 0 for its precision (recall);
  - roc_auc: binary, the area under the ROC curve of the second class's probability; multiclass, one-vs-rest
    averaged with each class weighted by its share of the rows. Only when every class is present in the rows
    (else absent);
  - log_loss: the mean negative log of the true class's probability, probabilities clipped to [1e-15, 1] and
    renormalised per row.
- regression (scores: predicted values): rmse, mae, r2 (NaN when the true values are constant: it is undefined) and
  mape (absolute error over |true value|, the denominator at least float64's epsilon, as scikit-learn).

The predicted class is the argmax of the probabilities. `grouped_metrics` computes the same figures for many groups
of rows at once (evaluate's slices) from one pass over the predictions; `task_metrics` is the one-group case. The
results equal scikit-learn's (tests/evaluate/test_metrics.py checks them against it).
"""

from __future__ import annotations

import math

import numpy as np

CLASSIFICATION, REGRESSION = "classification", "regression"

METRICS = {
    CLASSIFICATION: ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss"),
    REGRESSION: ("rmse", "mae", "r2", "mape"),
}
# fairness metrics (classification, on named sensitive columns: evaluate), from fairlearn: 0 means every group alike
FAIRNESS = ("demographic_parity_difference", "equalized_odds_difference")
LOWER_IS_BETTER = {"log_loss", "rmse", "mae", "mape", "loss", *FAIRNESS}  # loss: what the neural trainers minimise
PRIMARY = {CLASSIFICATION: "roc_auc", REGRESSION: "rmse"}
FALLBACK_PRIMARY = {CLASSIFICATION: "accuracy", REGRESSION: "rmse"}  # when roc_auc cannot be computed
PROBABILITY_FLOOR = 1e-15


def primary_metric(task: str, metrics: dict[str, float]) -> str:
    """The metric that compares two models when nothing else is said: roc_auc (accuracy when roc_auc could not be
    computed) for classification, rmse for regression."""
    value = metrics.get(PRIMARY[task])
    return PRIMARY[task] if value is not None and not math.isnan(value) else FALLBACK_PRIMARY[task]


def model_scores(model, frame, target_column: str) -> tuple[np.ndarray, np.ndarray]:
    """The true values of `frame`'s `target_column` (class indices for classification) and `model`'s scores on its
    rows (class probabilities, or predicted values): `model` is a TabularModel (kfp_ct.components._common.model)."""
    if target_column not in frame.columns:
        raise ValueError(
            f"target column '{target_column}' is not in the test data; its columns are: "
            f"{', '.join(map(str, frame.columns))}"
        )
    if target_column != model.featurizer.target_column:
        raise ValueError(
            f"target column '{target_column}' differs from the model's target column '{model.featurizer.target_column}'"
        )
    if frame.empty:
        raise ValueError("the test data has no rows")
    y = model.featurizer.encode_target(frame[target_column])
    return y, (model.predict(frame) if model.task == REGRESSION else model.predict_proba(frame))


def score(model, frame, target_column: str) -> dict[str, float]:
    """The metrics of `model` on the rows of `frame` (see model_scores)."""
    return task_metrics(model.task, *model_scores(model, frame, target_column))


def task_metrics(task: str, y_true, scores) -> dict[str, float]:
    """The metrics of one set of rows (see the module docstring)."""
    y_true = np.asarray(y_true)
    return grouped_metrics(task, y_true, scores, np.zeros(len(y_true), dtype=np.int64), 1)[0]


def score_order(task: str, scores) -> np.ndarray | None:
    """For binary classification, the rows in the order of their positive-class score: computed once, it spares
    grouped_metrics a full sort for every grouping of the same scores (their roc_auc). None otherwise."""
    scores = np.asarray(scores)
    if task != CLASSIFICATION or scores.shape[1] != 2:
        return None
    return np.argsort(scores[:, 1], kind="stable")


def grouped_metrics(task: str, y_true, scores, codes, n_groups: int, order=None) -> list[dict[str, float]]:
    """The metrics of each group of rows: group g holds the rows whose code is g (rows with a code outside
    0..n_groups-1 belong to none). Returns one dict per group; an empty group's dict is empty. `order`: the
    score_order of `scores`, when the caller has it."""
    codes = np.asarray(codes, dtype=np.int64)
    codes = np.where((codes >= 0) & (codes < n_groups), codes, n_groups)  # the rows in no group: one more group
    rows = np.bincount(codes, minlength=n_groups + 1)
    if task == CLASSIFICATION:
        y, proba = np.asarray(y_true, dtype=np.int64), np.asarray(scores, dtype=np.float64)
        out = _classification(y, proba, codes, rows, order)
    elif task == REGRESSION:
        out = _regression(np.asarray(y_true, dtype=np.float64), np.asarray(scores, dtype=np.float64), codes, rows)
    else:
        raise ValueError(f"unknown task '{task}': expected {CLASSIFICATION} or {REGRESSION}")
    return [_group(task, out, g) if rows[g] else {} for g in range(n_groups)]


def _group(task: str, out: dict[str, np.ndarray], g: int) -> dict[str, float]:
    values = {name: float(out[name][g]) for name in METRICS[task]}
    return {name: value for name, value in values.items() if not (name == "roc_auc" and math.isnan(value))}


def _classification(y: np.ndarray, proba: np.ndarray, codes: np.ndarray, rows: np.ndarray, order) -> dict:
    n_groups, k = len(rows), proba.shape[1]
    predicted = np.argmax(proba, axis=1)
    # one confusion matrix per group: (group, true, predicted)
    confusion = np.bincount((codes * k + y) * k + predicted, minlength=n_groups * k * k).reshape(n_groups, k, k)
    tp = np.diagonal(confusion, axis1=1, axis2=2).astype(np.float64)
    true_count, predicted_count = confusion.sum(axis=2), confusion.sum(axis=1)
    present = (true_count + predicted_count) > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted_count > 0, tp / predicted_count, 0.0)
        recall = np.where(true_count > 0, tp / true_count, 0.0)
        f1 = np.where(present, 2 * tp / (true_count + predicted_count), 0.0)
        n_present = present.sum(axis=1)
        out = {
            "accuracy": tp.sum(axis=1) / rows,
            "precision": precision.sum(axis=1) / n_present,
            "recall": recall.sum(axis=1) / n_present,
            "f1": f1.sum(axis=1) / n_present,
        }
        clipped = np.clip(proba, PROBABILITY_FLOOR, 1.0)
        true_proba = clipped[np.arange(len(y)), y] / clipped.sum(axis=1)
        out["log_loss"] = np.bincount(codes, weights=-np.log(true_proba), minlength=n_groups) / rows
    every_class = (true_count > 0).all(axis=1)
    if k == 2:
        auc = _grouped_auc(y == 1, proba[:, 1], codes, true_count[:, 1], true_count[:, 0], order)
    else:
        auc = sum(
            _grouped_auc(y == c, proba[:, c], codes, true_count[:, c], rows - true_count[:, c]) * true_count[:, c]
            for c in range(k)
        ) / np.maximum(rows, 1)
    out["roc_auc"] = np.where(every_class, auc, np.nan)
    return out


def _grouped_auc(positive: np.ndarray, score: np.ndarray, codes, n_pos, n_neg, order=None) -> np.ndarray:
    """The area under the ROC curve of each group (Mann-Whitney U over the ranks within the group, ties averaged),
    from the rows sorted by (group, score): the rows in score order (`order`, else sorted here), then stably by
    group (a radix sort of small integers)."""
    n_groups = len(n_pos)
    if order is None:
        order = np.argsort(score, kind="stable")
    small = np.int16 if n_groups < np.iinfo(np.int16).max else np.int64
    order = order[np.argsort(codes[order].astype(small), kind="stable")]
    score, codes, positive = score[order], codes[order], positive[order]
    n = len(score)
    starts = np.flatnonzero(np.r_[True, (score[1:] != score[:-1]) | (codes[1:] != codes[:-1])])
    ends = np.r_[starts[1:], n]
    tied_position = np.repeat((starts + ends - 1) / 2.0, ends - starts)  # mean 0-based position of each tie run
    group_start = np.searchsorted(codes, np.arange(n_groups))
    rank = tied_position - group_start[codes] + 1.0
    rank_sum = np.bincount(codes, weights=rank * positive, minlength=n_groups)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def _regression(y: np.ndarray, predicted: np.ndarray, codes: np.ndarray, rows: np.ndarray) -> dict[str, np.ndarray]:
    n_groups = len(rows)
    error = predicted.reshape(-1) - y

    def per_group(values):
        return np.bincount(codes, weights=values, minlength=n_groups)

    with np.errstate(divide="ignore", invalid="ignore"):
        squared = per_group(error**2)
        mean = per_group(y) / rows
        total = per_group((y - mean[codes]) ** 2)
        return {
            "rmse": np.sqrt(squared / rows),
            "mae": per_group(np.abs(error)) / rows,
            "r2": np.where(total > 0, 1.0 - squared / total, np.nan),
            "mape": per_group(np.abs(error) / np.maximum(np.abs(y), np.finfo(np.float64).eps)) / rows,
        }
