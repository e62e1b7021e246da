"""Evaluate: score a candidate model and the registry's champion on the same test set, and decide whether the
candidate is blessed.

Thresholds map a metric to its checks:

    {"roc_auc": {"min": 0.8, "max_drop": 0.01}, "rmse": {"max": 90.0, "max_increase": 2.5}}

- `min` / `max`: absolute bounds on the candidate's metric;
- `max_drop` (higher-is-better metrics): the candidate may be at most this much below the champion;
- `max_increase` (lower-is-better metrics): the candidate may be at most this much above the champion.

The candidate is blessed when every check passes. Without a champion only the absolute checks apply. Without any
thresholds the candidate is blessed when it is no worse than the champion on the primary metric (roc_auc for
classification, rmse for regression), and always when there is no champion.

"No champion" means the registry has no `champion` alias at all (the model is not registered, or never had one); a
champion alias that cannot be resolved (its version was deleted), downloaded or loaded is an error naming the alias
and the version, and nothing is blessed (tracking.resolve_alias, model.load_champion).
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from kfp_ct.components._common.checks import (  # noqa: F401 (monitor_drift reads these from here)
    CLASSIFICATION,
    FALLBACK_PRIMARY,
    LOWER_IS_BETTER,
    METRICS,
    PRIMARY,
    REGRESSION,
    check_thresholds,
)

ROC_POINTS = 101
TOLERANCE = 1e-12


@dataclass
class Evaluation:
    """A model's metrics on a test set, and for classification its confusion matrix and a bounded ROC curve."""

    metrics: dict[str, float]
    rows: int
    classes: list | None = None
    confusion_matrix: list[list[int]] | None = None
    roc_curve: dict[str, list[float]] | None = None  # fpr, tpr, threshold (binary classification only)


@dataclass
class Verdict:
    blessed: bool
    reasons: list[str] = field(default_factory=list)
    rule: str = ""


def evaluate_frame(model, frame: pd.DataFrame, target_column: str) -> Evaluation:
    """Scores `model` (a TabularModel) on the rows of `frame`, whose `target_column` holds the true labels/values."""
    from sklearn import metrics

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
    if model.task == REGRESSION:
        predicted = model.predict(frame)
        out = {
            "rmse": math.sqrt(metrics.mean_squared_error(y, predicted)),
            "mae": metrics.mean_absolute_error(y, predicted),
            "r2": metrics.r2_score(y, predicted) if len(y) > 1 else float("nan"),
            "mape": metrics.mean_absolute_percentage_error(y, predicted),
        }
        return Evaluation(metrics={k: float(v) for k, v in out.items()}, rows=len(y))
    proba = model.predict_proba(frame)
    n_classes = proba.shape[1]
    labels = list(range(n_classes))
    predicted = np.argmax(proba, axis=1)
    average = "binary" if n_classes == 2 else "macro"
    out = {
        "accuracy": metrics.accuracy_score(y, predicted),
        "precision": metrics.precision_score(y, predicted, labels=labels, average=average, zero_division=0),
        "recall": metrics.recall_score(y, predicted, labels=labels, average=average, zero_division=0),
        "f1": metrics.f1_score(y, predicted, labels=labels, average=average, zero_division=0),
        "log_loss": metrics.log_loss(y, np.clip(proba, 1e-15, 1.0), labels=labels),
    }
    roc = None
    if len(np.unique(y)) == n_classes:
        if n_classes == 2:
            out["roc_auc"] = metrics.roc_auc_score(y, proba[:, 1])
            roc = bounded_roc_curve(y, proba[:, 1])
        else:
            out["roc_auc"] = metrics.roc_auc_score(y, proba, multi_class="ovr", average="weighted", labels=labels)
    matrix = metrics.confusion_matrix(y, predicted, labels=labels).tolist()
    return Evaluation(
        metrics={k: float(v) for k, v in out.items()},
        rows=len(y),
        classes=list(model.classes),
        confusion_matrix=matrix,
        roc_curve=roc,
    )


def bounded_roc_curve(y: np.ndarray, positive_scores: np.ndarray, points: int = ROC_POINTS) -> dict[str, list]:
    """The ROC curve thinned to at most `points` points (first and last kept), thresholds clipped to [0, 1]."""
    from sklearn.metrics import roc_curve

    fpr, tpr, thresholds = roc_curve(y, positive_scores)
    keep = np.unique(np.round(np.linspace(0, len(fpr) - 1, min(points, len(fpr)))).astype(int))
    return {
        "fpr": [float(v) for v in fpr[keep]],
        "tpr": [float(v) for v in tpr[keep]],
        "threshold": [float(v) for v in np.clip(thresholds[keep], 0.0, 1.0)],
    }


def score(model, frame: pd.DataFrame, target_column: str) -> dict[str, float]:
    """The test metrics of `model` on `frame`: accuracy, precision, recall, f1, roc_auc, log_loss (classification;
    roc_auc only when every class is present) or rmse, mae, r2, mape (regression)."""
    return evaluate_frame(model, frame, target_column).metrics


def decide(
    candidate_metrics: dict[str, float], champion_metrics: dict[str, float] | None, thresholds: dict | None, task: str
) -> Verdict:
    """Whether the candidate is blessed, with one reason per check (see the module docstring)."""
    checked = check_thresholds(thresholds, task)
    reasons: list[str] = []
    passed = True

    def value_of(metrics: dict, metric: str) -> float | None:
        value = metrics.get(metric)
        return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)

    if not checked:
        primary = PRIMARY[task] if value_of(candidate_metrics, PRIMARY[task]) is not None else FALLBACK_PRIMARY[task]
        if champion_metrics is None:
            return Verdict(
                True,
                ["no champion to compare with and no thresholds: the first model is blessed"],
                rule="no thresholds, no champion: blessed",
            )
        rule = f"no thresholds: blessed only if no worse than the champion on the primary metric ({primary})"
        mine, theirs = value_of(candidate_metrics, primary), value_of(champion_metrics, primary)
        if theirs is None:
            return Verdict(True, [f"the champion has no {primary} on this test set: nothing to compare"], rule=rule)
        if mine is None:
            return Verdict(False, [f"FAIL {primary}: the candidate's could not be computed"], rule=rule)
        better = mine <= theirs + TOLERANCE if primary in LOWER_IS_BETTER else mine >= theirs - TOLERANCE
        word = "PASS" if better else "FAIL"
        return Verdict(better, [f"{word} {primary}: candidate {mine:.6g} vs champion {theirs:.6g}"], rule=rule)

    for metric, checks in checked.items():
        mine = value_of(candidate_metrics, metric)
        if mine is None:
            reasons.append(f"FAIL {metric}: the candidate's could not be computed on this test set")
            passed = False
            continue
        if "min" in checks:
            ok = mine >= checks["min"] - TOLERANCE
            reasons.append(f"{'PASS' if ok else 'FAIL'} {metric} = {mine:.6g} >= min {checks['min']:.6g}")
            passed &= ok
        if "max" in checks:
            ok = mine <= checks["max"] + TOLERANCE
            reasons.append(f"{'PASS' if ok else 'FAIL'} {metric} = {mine:.6g} <= max {checks['max']:.6g}")
            passed &= ok
        for check in ("max_drop", "max_increase"):
            if check not in checks:
                continue
            theirs = value_of(champion_metrics or {}, metric)
            if champion_metrics is None:
                reasons.append(f"SKIP {metric} {check}: no champion to compare with")
                continue
            if theirs is None:
                reasons.append(f"SKIP {metric} {check}: the champion's could not be computed on this test set")
                continue
            change = theirs - mine if check == "max_drop" else mine - theirs
            ok = change <= checks[check] + TOLERANCE
            word = "drop" if check == "max_drop" else "increase"
            reasons.append(
                f"{'PASS' if ok else 'FAIL'} {metric} {word} vs champion = {change:.6g} "
                f"(candidate {mine:.6g}, champion {theirs:.6g}) <= {check} {checks[check]:.6g}"
            )
            passed &= ok
    rule = "every threshold passes" + (
        " (absolute and relative to the champion)" if champion_metrics is not None else " (absolute only: no champion)"
    )
    return Verdict(bool(passed), reasons, rule=rule)


@dataclass
class EvaluateOutcome:
    blessed: bool
    verdict: Verdict
    candidate: Evaluation
    champion: Evaluation | None
    candidate_version: str | None
    champion_version: str | None
    card: str


def candidate_version(model_name: str, model_metadata: dict, tracking_uri: str | None) -> str | None:
    """The registered version of the candidate: from the model artifact's metadata, else from its MLflow run."""
    from kfp_ct.components._common import tracking

    if model_metadata.get("version") and model_metadata.get("model_name", model_name) == model_name:
        return str(model_metadata["version"])
    run_id = model_metadata.get("run_id") or model_metadata.get("mlflow_run_id")
    return tracking.version_for_run(model_name, run_id, tracking_uri) if run_id else None


def evaluate(
    model_path: str,
    test_path: str,
    target_column: str,
    model_name: str,
    thresholds: dict | None = None,
    tracking_uri: str | None = None,
    model_metadata: dict | None = None,
    test_metadata: dict | None = None,
) -> EvaluateOutcome:
    """Scores the candidate and the champion of `model_name` on the test split, decides, records the verdict on the
    candidate's registered version (tracking.record_evaluation: read by `kfp-ct status` and `promote`), and when
    blessed points the `challenger` alias at it."""
    from kfp_ct.components._common import datasets, tracking
    from kfp_ct.components._common.model import load_champion, load_model, read_metadata

    candidate_model = load_model(model_path)
    check_thresholds(thresholds, candidate_model.task)  # fail on bad thresholds before any scoring
    frame = datasets.read_frame(test_path)
    candidate = evaluate_frame(candidate_model, frame, target_column)
    meta = {**read_metadata(model_path), **(model_metadata or {})}
    version = candidate_version(model_name, meta, tracking_uri)

    champion_eval, champion_version, champion_meta = None, None, {}
    with tempfile.TemporaryDirectory(prefix="kfp-ct-champion-") as tmp:
        found = load_champion(model_name, tracking_uri, dst=tmp)  # fails closed: see tracking.resolve_alias
        if found is not None:
            champion_version, champion_model = found
            if champion_model.task != candidate_model.task:
                raise ValueError(
                    f"the champion (version {champion_version} of '{model_name}') is a "
                    f"{champion_model.task} model; the candidate is a {candidate_model.task} model"
                )
            try:
                champion_eval = evaluate_frame(champion_model, frame, target_column)
            except ValueError as err:
                raise ValueError(
                    f"cannot score the champion (version {champion_version} of '{model_name}') on this test set: {err}"
                ) from None
            champion_meta = champion_model.metadata
    verdict = decide(
        candidate.metrics, champion_eval.metrics if champion_eval else None, thresholds, candidate_model.task
    )
    if verdict.blessed and version is None:
        raise LookupError(
            f"the candidate is blessed but has no registered version of '{model_name}' (no version "
            "in its metadata, and none registered from its MLflow run): train it with a catalog "
            "trainer against the same tracking URI"
        )
    if version is not None:
        tracking.record_evaluation(
            model_name,
            version,
            blessed=verdict.blessed,
            rule=verdict.rule,
            metrics=candidate.metrics,
            checks=verdict.reasons,
            champion_version=champion_version,
            tracking_uri=tracking_uri,
        )
    if verdict.blessed:
        tracking.set_alias(model_name, tracking.CHALLENGER, version, tracking_uri)
    card = model_card(
        model_name,
        candidate_model,
        meta,
        candidate,
        version,
        champion_eval,
        champion_version,
        champion_meta,
        verdict,
        test_path,
        test_metadata or {},
    )
    return EvaluateOutcome(verdict.blessed, verdict, candidate, champion_eval, version, champion_version, card)


def _fmt(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def model_card(
    model_name,
    model,
    meta,
    candidate: Evaluation,
    version,
    champion: Evaluation | None,
    champion_version,
    champion_meta,
    verdict: Verdict,
    test_path,
    test_metadata,
) -> str:
    """The model card, in Markdown: verdict and rule, data, parameters, metrics side by side with the champion."""
    train = meta.get("train_data", {})
    lines = [
        f"# Model card: {model_name} version {version or '(unregistered)'}",
        "",
        f"**Verdict: {'BLESSED' if verdict.blessed else 'NOT BLESSED'}** "
        f"{'(alias `challenger` set)' if verdict.blessed else ''}",
        "",
        f"Rule: {verdict.rule}",
        "",
        *[f"- {reason}" for reason in verdict.reasons],
        "",
        "## Model",
        "",
        "| | |",
        "|---|---|",
        f"| framework | {meta.get('framework', 'n/a')} |",
        f"| estimator | {meta.get('estimator', 'n/a')} |",
        f"| task | {model.task} |",
        f"| target | `{model.featurizer.target_column}` |",
        f"| classes | {', '.join(map(str, model.classes)) if model.classes else 'n/a'} |",
        f"| features | {', '.join(f'`{name}`' for name in model.featurizer.feature_names)} |",
        f"| hyperparameters | `{meta.get('hyperparameters', {})}` |",
        f"| seed | {meta.get('seed', 'n/a')} |",
        f"| MLflow run | {meta.get('mlflow_run_id') or meta.get('run_id') or 'n/a'} |",
        f"| libraries | {', '.join(f'{k} {v}' for k, v in meta.get('libraries', {}).items())} |",
        "",
        "## Data",
        "",
        "| split | rows | sha256 | source |",
        "|---|---|---|---|",
        f"| train | {train.get('rows', 'n/a')} | `{train.get('sha256', 'n/a')}` | {train.get('source_uri') or 'n/a'} |",
        f"| test | {candidate.rows} | `{test_metadata.get('sha256', 'n/a')}` | "
        f"{test_metadata.get('source_uri') or test_path} |",
        "",
        "## Metrics on the test split",
        "",
    ]
    if champion is None:
        lines += ["No champion: no comparison.", "", "| metric | candidate |", "|---|---|"]
        lines += [f"| {name} | {_fmt(value)} |" for name, value in candidate.metrics.items()]
    else:
        lines += [
            f"Champion: version {champion_version} ({champion_meta.get('framework', '?')} "
            f"{champion_meta.get('estimator', '')}, trained on data "
            f"`{champion_meta.get('train_data', {}).get('sha256', 'n/a')[:12]}`)",
            "",
            "| metric | candidate | champion | change |",
            "|---|---|---|---|",
        ]
        for name, value in candidate.metrics.items():
            other = champion.metrics.get(name)
            change = value - other if other is not None else None
            lines.append(
                f"| {name} | {_fmt(value)} | {_fmt(other)} | {'n/a' if change is None else f'{change:+.4f}'} |"
            )
    if candidate.confusion_matrix is not None:
        classes = [str(c) for c in candidate.classes]
        lines += [
            "",
            "## Confusion matrix (rows: true, columns: predicted)",
            "",
            "| | " + " | ".join(classes) + " |",
            "|---|" + "---|" * len(classes),
        ]
        lines += [
            f"| {label} | " + " | ".join(map(str, row)) + " |"
            for label, row in zip(classes, candidate.confusion_matrix)
        ]
    return "\n".join(lines) + "\n"


def write_text_atomically(path: str, text: str) -> None:
    from kfp_ct.components._common.datasets import atomic_path

    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)
    os.chmod(path, 0o644)
