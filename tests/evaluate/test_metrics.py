"""_common/metrics.py: the one computation of model metrics equals scikit-learn's, for one group and per group."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as sk

from kfp_ct.components._common import metrics


def reference(task, y, scores):
    if task == "regression":
        return {
            "rmse": np.sqrt(sk.mean_squared_error(y, scores)),
            "mae": sk.mean_absolute_error(y, scores),
            "r2": sk.r2_score(y, scores),
            "mape": sk.mean_absolute_percentage_error(y, scores),
        }
    predicted = scores.argmax(axis=1)
    clipped = np.clip(scores, 1e-15, 1.0)
    out = {
        "accuracy": sk.accuracy_score(y, predicted),
        "precision": sk.precision_score(y, predicted, average="macro", zero_division=0),
        "recall": sk.recall_score(y, predicted, average="macro", zero_division=0),
        "f1": sk.f1_score(y, predicted, average="macro", zero_division=0),
        "log_loss": sk.log_loss(y, clipped / clipped.sum(axis=1, keepdims=True), labels=range(scores.shape[1])),
    }
    if len(np.unique(y)) == scores.shape[1]:
        out["roc_auc"] = (
            sk.roc_auc_score(y, scores[:, 1])
            if scores.shape[1] == 2
            else sk.roc_auc_score(y, scores, multi_class="ovr", average="weighted")
        )
    return out


def data(task, n, k, rng):
    if task == "regression":
        y = rng.normal(10, 5, n)
        return y, y + rng.normal(0, 2, n)
    y = rng.integers(0, k, n)
    scores = rng.random((n, k)) + np.eye(k)[y] * 0.4
    scores = np.round(scores / scores.sum(axis=1, keepdims=True), 2)  # rounded: many tied scores
    return y, scores / scores.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("task, k", [("classification", 2), ("classification", 4), ("regression", None)])
def test_equal_to_scikit_learn_whole_and_per_group(task, k):
    rng = np.random.default_rng(0)
    y, scores = data(task, 5000, k, rng)
    whole = metrics.task_metrics(task, y, scores)
    assert set(whole) == set(metrics.METRICS[task])
    assert whole == pytest.approx(reference(task, y, scores), abs=1e-12)
    codes = rng.integers(-1, 5, len(y))  # -1: in no group
    codes[codes == 3] = 2  # group 3 is empty
    grouped = metrics.grouped_metrics(task, y, scores, codes, 5)
    assert grouped[3] == {}
    for g in (0, 1, 2, 4):
        rows = codes == g
        assert grouped[g] == pytest.approx(reference(task, y[rows], scores[rows]), abs=1e-12)


def test_a_group_missing_a_class_has_no_roc_auc_and_macro_averages_the_classes_present():
    y = np.array([0, 0, 1, 1, 2, 2])
    scores = np.eye(3)[[0, 0, 1, 2, 2, 2]] * 0.8 + 0.2 / 3
    grouped = metrics.grouped_metrics("classification", y, scores, np.array([0, 0, 0, 0, 1, 1]), 2)
    assert "roc_auc" in metrics.task_metrics("classification", y, scores)
    assert "roc_auc" not in grouped[0] and "roc_auc" not in grouped[1]
    # group 1: class 2 only, all right; classes 0 and 1 appear in neither truth nor prediction: not averaged in
    assert grouped[1]["f1"] == grouped[1]["precision"] == grouped[1]["recall"] == 1.0
    assert grouped[0]["f1"] == pytest.approx(sk.f1_score(y[:4], [0, 0, 1, 2], average="macro"))


def test_r2_of_constant_truth_is_undefined_and_the_primary_metric_falls_back():
    assert np.isnan(metrics.task_metrics("regression", np.ones(3), np.array([1.0, 2.0, 3.0]))["r2"])
    assert metrics.primary_metric("classification", {"accuracy": 0.9}) == "accuracy"
    assert metrics.primary_metric("classification", {"accuracy": 0.9, "roc_auc": 0.8}) == "roc_auc"
