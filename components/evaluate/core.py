"""Evaluate: score a candidate model and the registry's champion on the same test set, and decide whether the
candidate is blessed.

Thresholds map a metric to its checks:

    {"roc_auc": {"min": 0.8, "max_drop": 0.01}, "rmse": {"max": 90.0, "max_increase": 2.5}}

- `min` / `max`: absolute bounds on the candidate's metric;
- `max_drop` (higher-is-better metrics): the candidate may be at most this much below the champion;
- `max_increase` (lower-is-better metrics): the candidate may be at most this much above the champion.

A check can also apply to every slice of the test split (`"per_slice": true`, see slices.py for what a slice is):

    {"roc_auc": {"min": 0.8, "max_drop": 0.02, "per_slice": true}}

the candidate's metric on each slice with at least `min_slice_rows` rows is checked against the bounds and against
the champion's metric on the same slice; smaller slices are skipped, and the verdict says so. With
`sensitive_columns` (binary classification) the thresholds may also bound fairlearn's
`demographic_parity_difference` and `equalized_odds_difference` (0: every group alike), the largest over the
sensitive columns: `{"equalized_odds_difference": {"max": 0.1}}`.

The candidate is blessed when every check passes, on the whole test split and on every judged slice; the verdict
names the slices that failed. Slices without per-slice thresholds are reported, not judged. Without a champion only
the absolute checks apply. Without any thresholds the candidate is blessed when it is no worse than the champion on
the primary metric (roc_auc for classification, rmse for regression), and always when there is no champion.

The metrics are those of kfp_ct.components._common.metrics, computed as the trainers compute their validation
metrics; precision, recall and f1 are macro averages over the classes (each class counts once, binary included).

"No champion" means the registry has no `champion` alias at all (the model is not registered, or never had one); a
champion alias that cannot be resolved (its version was deleted), downloaded or loaded is an error naming the alias
and the version, and nothing is blessed (tracking.resolve_alias, model.load_champion).
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from kfp_ct.components._common.checks import PER_SLICE, check_thresholds
from kfp_ct.components._common.metrics import (
    CLASSIFICATION,
    FAIRNESS,
    LOWER_IS_BETTER,
    REGRESSION,
    model_scores,
    primary_metric,
    task_metrics,
)
from kfp_ct.components._common.results import Result
from kfp_ct.components.evaluate.slices import (
    MAX_VALUES,
    QUANTILE_BINS,
    Slice,
    fairness,
    group,
    metric_name,
    parse_specs,
    slice_metrics,
)

ROC_POINTS = 101
TOLERANCE = 1e-12
MIN_SLICE_ROWS = 100


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
    failed_slices: list[str] = field(default_factory=list)  # names (column=value) of the slices that failed
    slices: dict[str, str] = field(default_factory=dict)  # each judged slice's verdict: PASS, FAIL (metrics), skipped


def evaluate_frame(model, frame: pd.DataFrame, target_column: str) -> Evaluation:
    """Scores `model` (a TabularModel) on the rows of `frame`, whose `target_column` holds the true labels/values:
    the metrics of _common/metrics.py, and for classification the confusion matrix and the ROC curve."""
    y, scores = model_scores(model, frame, target_column)
    return evaluation(model, y, scores)


def evaluation(model, y: np.ndarray, scores: np.ndarray) -> Evaluation:
    """The Evaluation of `model` from its scores on rows whose true values are `y` (see metrics.model_scores)."""
    metrics = task_metrics(model.task, y, scores)
    if model.task == REGRESSION:
        return Evaluation(metrics=metrics, rows=len(y))
    n_classes = scores.shape[1]
    predicted = np.argmax(scores, axis=1)
    matrix = np.bincount(y * n_classes + predicted, minlength=n_classes * n_classes).reshape(n_classes, n_classes)
    roc = bounded_roc_curve(y, scores[:, 1]) if n_classes == 2 and "roc_auc" in metrics else None
    return Evaluation(
        metrics=metrics, rows=len(y), classes=list(model.classes), confusion_matrix=matrix.tolist(), roc_curve=roc
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


def _value(metrics: dict | None, metric: str) -> float | None:
    value = (metrics or {}).get(metric)
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def _check(metric: str, checks: dict, mine: float, theirs: float | None, champion: bool, where: str):
    """The checks of one metric on one set of rows (`where`: "" for the whole split, " on slice x=y"): (passed,
    reasons)."""
    reasons, passed = [], True
    if "min" in checks:
        ok = mine >= checks["min"] - TOLERANCE
        reasons.append(f"{'PASS' if ok else 'FAIL'} {metric}{where} = {mine:.6g} >= min {checks['min']:.6g}")
        passed &= ok
    if "max" in checks:
        ok = mine <= checks["max"] + TOLERANCE
        reasons.append(f"{'PASS' if ok else 'FAIL'} {metric}{where} = {mine:.6g} <= max {checks['max']:.6g}")
        passed &= ok
    for check in ("max_drop", "max_increase"):
        if check not in checks:
            continue
        if not champion:
            reasons.append(f"SKIP {metric}{where} {check}: no champion to compare with")
            continue
        if theirs is None:
            reasons.append(f"SKIP {metric}{where} {check}: the champion's could not be computed on these rows")
            continue
        change = theirs - mine if check == "max_drop" else mine - theirs
        ok = change <= checks[check] + TOLERANCE
        word = "drop" if check == "max_drop" else "increase"
        reasons.append(
            f"{'PASS' if ok else 'FAIL'} {metric}{where} {word} vs champion = {change:.6g} "
            f"(candidate {mine:.6g}, champion {theirs:.6g}) <= {check} {checks[check]:.6g}"
        )
        passed &= ok
    return passed, reasons


def decide(
    candidate_metrics: dict[str, float],
    champion_metrics: dict[str, float] | None,
    thresholds: dict | None,
    task: str,
    slice_results: list[Slice] = (),
    min_slice_rows: int = MIN_SLICE_ROWS,
) -> Verdict:
    """Whether the candidate is blessed, with one reason per check (see the module docstring)."""
    checked = check_thresholds(thresholds, task)
    reasons: list[str] = []
    passed = True

    if not checked:
        primary = primary_metric(task, candidate_metrics)
        if champion_metrics is None:
            return Verdict(
                True,
                ["no champion to compare with and no thresholds: the first model is blessed"],
                rule="no thresholds, no champion: blessed",
            )
        rule = f"no thresholds: blessed only if no worse than the champion on the primary metric ({primary})"
        mine, theirs = _value(candidate_metrics, primary), _value(champion_metrics, primary)
        if theirs is None:
            return Verdict(True, [f"the champion has no {primary} on this test set: nothing to compare"], rule=rule)
        if mine is None:
            return Verdict(False, [f"FAIL {primary}: the candidate's could not be computed"], rule=rule)
        better = mine <= theirs + TOLERANCE if primary in LOWER_IS_BETTER else mine >= theirs - TOLERANCE
        word = "PASS" if better else "FAIL"
        return Verdict(better, [f"{word} {primary}: candidate {mine:.6g} vs champion {theirs:.6g}"], rule=rule)

    for metric, checks in checked.items():
        mine = _value(candidate_metrics, metric)
        if mine is None:
            reasons.append(f"FAIL {metric}: the candidate's could not be computed on this test set")
            passed = False
            continue
        ok, lines = _check(metric, checks, mine, _value(champion_metrics, metric), champion_metrics is not None, "")
        reasons += lines
        passed &= ok
    rule = "every threshold passes" + (
        " (absolute and relative to the champion)" if champion_metrics is not None else " (absolute only: no champion)"
    )
    per_slice = {metric: checks for metric, checks in checked.items() if checks.get(PER_SLICE)}
    slice_verdicts: dict[str, str] = {}
    failed: list[str] = []
    for piece in slice_results if per_slice else ():
        if piece.name in slice_verdicts:  # the same rows through two specs ("day" and "day=3"): judged once
            continue
        if piece.rows < min_slice_rows:
            slice_verdicts[piece.name] = f"skipped: {piece.rows} rows < min_slice_rows {min_slice_rows}"
            reasons.append(f"SKIP slice {piece.name}: {slice_verdicts[piece.name]}")
            continue
        broken, judged = [], []
        for metric, checks in per_slice.items():
            mine = _value(piece.candidate, metric)
            if mine is None:
                reasons.append(
                    f"SKIP {metric} on slice {piece.name}: it cannot be computed on its {piece.rows} rows "
                    "(a class is absent)"
                )
                continue
            judged.append(metric)
            where = f" on slice {piece.name}"
            theirs = _value(piece.champion, metric)
            ok, lines = _check(metric, checks, mine, theirs, piece.champion is not None, where)
            reasons += lines
            if not ok:
                broken.append(metric)
        slice_verdicts[piece.name] = (
            f"FAIL ({', '.join(broken)})" if broken else "PASS" if judged else "skipped: no metric can be computed"
        )
        if broken:
            failed.append(piece.name)
    if per_slice:
        rule += f"; {', '.join(per_slice)} on every slice of at least {min_slice_rows} rows too"
    if failed:
        reasons.insert(0, f"FAIL on {len(failed)} slice(s): {', '.join(failed)}")
    return Verdict(bool(passed) and not failed, reasons, rule=rule, failed_slices=failed, slices=slice_verdicts)


@dataclass
class EvaluateResult(Result):
    """What evaluate decided: `metrics` as kfp_metrics says; `metadata` (for the model card artifact) blessed,
    version, champion_version, rule and failed_slices."""

    blessed: bool
    verdict: Verdict
    candidate: Evaluation
    champion: Evaluation | None
    candidate_version: str | None
    champion_version: str | None
    thresholds: dict | None = None
    slices: list[Slice] = field(default_factory=list)
    fairness: dict = field(default_factory=dict)  # {sensitive column: {groups, candidate: {...}, champion: {...}}}
    card: str = ""


def candidate_version(model_name: str, model_metadata: dict, tracking_uri: str | None) -> str | None:
    """The registered version of the candidate: from the model artifact's metadata, else from its MLflow run."""
    from kfp_ct.components._common import tracking

    if model_metadata.get("version") and model_metadata.get("model_name", model_name) == model_name:
        return str(model_metadata["version"])
    run_id = model_metadata.get("run_id") or model_metadata.get("mlflow_run_id")
    return tracking.version_for_run(model_name, run_id, tracking_uri) if run_id else None


def check_gate(
    task: str, n_classes: int | None, checked: dict, slice_specs: list, sensitive_specs: list, min_slice_rows: int
) -> None:
    """Checks that the thresholds, slices and sensitive columns fit together and the model, naming what does not."""
    if isinstance(min_slice_rows, bool) or not isinstance(min_slice_rows, int) or min_slice_rows < 1:
        raise ValueError(f"min_slice_rows must be a whole number >= 1, got {min_slice_rows!r}")
    per_slice = [metric for metric, checks in checked.items() if checks.get(PER_SLICE)]
    if per_slice and not slice_specs:
        raise ValueError(f"thresholds on {', '.join(per_slice)} are per_slice, but no slices are given")
    fairness_thresholds = [metric for metric in checked if metric in FAIRNESS]
    if fairness_thresholds and not sensitive_specs:
        raise ValueError(
            f"thresholds on {', '.join(fairness_thresholds)} need sensitive_columns: the columns whose groups are "
            "compared"
        )
    if sensitive_specs and (task != CLASSIFICATION or n_classes != 2):
        raise ValueError(
            f"sensitive_columns: the fairness metrics ({', '.join(FAIRNESS)}) need a binary classification model; "
            f"this one is a {task} model" + (f" with {n_classes} classes" if task == CLASSIFICATION else "")
        )
    filters = [str(spec) for spec in sensitive_specs if spec.value is not None]
    if filters:
        raise ValueError(f"sensitive_columns name columns, not filters: {', '.join(filters)}")


def evaluate(
    *,
    model_path: str,
    test_path: str,
    target_column: str,
    model_name: str,
    thresholds: dict | None = None,
    tracking_uri: str | None = None,
    slices: list | None = None,
    sensitive_columns: list | None = None,
    min_slice_rows: int = MIN_SLICE_ROWS,
    model_metadata: dict | None = None,
    test_metadata: dict | None = None,
) -> EvaluateResult:
    """Scores the candidate and the champion of `model_name` on the test split (whole, per slice, and per group of
    each sensitive column), decides, records the verdict on the candidate's registered version
    (tracking.record_evaluation: read by `kfp-ct status` and `promote`), and when blessed points the `challenger`
    alias at it."""
    from kfp_ct.components._common import datasets, tracking
    from kfp_ct.components._common.model import load_champion, load_model, read_metadata

    candidate_model = load_model(model_path)
    task = candidate_model.task
    checked = check_thresholds(thresholds, task)  # fail on bad parameters before any scoring
    columns = datasets.open_dataset(test_path).schema_arrow.names
    slice_specs = parse_specs(slices, columns, "slices")
    sensitive_specs = parse_specs(sensitive_columns, columns, "sensitive_columns")
    n_classes = len(candidate_model.classes) if task == CLASSIFICATION else None
    check_gate(task, n_classes, checked, slice_specs, sensitive_specs, min_slice_rows)

    frame = datasets.read_frame(test_path)
    y, candidate_scores = model_scores(candidate_model, frame, target_column)
    groupings = [group(frame[spec.column], spec) for spec in slice_specs]  # bad filters fail before the champion
    sensitive = [group(frame[spec.column], spec) for spec in sensitive_specs]
    meta = {**read_metadata(model_path), **(model_metadata or {})}
    version = candidate_version(model_name, meta, tracking_uri)

    champion, champion_scored, champion_version, champion_meta = None, None, None, {}
    with tempfile.TemporaryDirectory(prefix="kfp-ct-champion-") as tmp:
        found = load_champion(model_name, tracking_uri, dst=tmp)  # fails closed: see tracking.resolve_alias
        if found is not None:
            champion_version, champion_model = found
            if champion_model.task != task:
                raise ValueError(
                    f"the champion (version {champion_version} of '{model_name}') is a "
                    f"{champion_model.task} model; the candidate is a {task} model"
                )
            try:
                champion_scored = model_scores(champion_model, frame, target_column)
            except ValueError as err:
                raise ValueError(
                    f"cannot score the champion (version {champion_version} of '{model_name}') on this test set: {err}"
                ) from None
            champion = evaluation(champion_model, *champion_scored)
            champion_meta = champion_model.metadata
    del frame
    candidate = evaluation(candidate_model, y, candidate_scores)
    fair = {
        grouping.spec.column: {
            "groups": len(grouping.labels),
            "candidate": fairness(y, candidate_scores, grouping),
            # a champion with other classes than the candidate's has no comparable figure
            "champion": fairness(*champion_scored, grouping) if champion and len(champion.classes) == 2 else None,
        }
        for grouping in sensitive
    }
    for metric in FAIRNESS if fair else ():  # the gate's figure: the largest difference over the sensitive columns
        candidate.metrics[metric] = max(figures["candidate"][metric] for figures in fair.values())
        if all(figures["champion"] for figures in fair.values()):
            champion.metrics[metric] = max(figures["champion"][metric] for figures in fair.values())
    pieces = slice_metrics(task, groupings, (y, candidate_scores), champion_scored)
    verdict = decide(
        candidate.metrics, champion.metrics if champion else None, thresholds, task, pieces, min_slice_rows
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
    result = EvaluateResult(
        blessed=verdict.blessed,
        verdict=verdict,
        candidate=candidate,
        champion=champion,
        candidate_version=version,
        champion_version=champion_version,
        thresholds=thresholds,
        slices=pieces,
        fairness=fair,
        metrics=kfp_metrics(candidate, champion, pieces, fair, verdict),
        metadata={
            "blessed": verdict.blessed,
            "version": version or "",
            "champion_version": champion_version or "",
            "rule": verdict.rule,
            "failed_slices": verdict.failed_slices,
        },
    )
    result.card = model_card(
        result, model_name, candidate_model, meta, champion_meta, test_path, test_metadata or {}, min_slice_rows
    )
    return result


def kfp_metrics(candidate, champion, pieces: list[Slice], fair: dict, verdict: Verdict) -> dict[str, float]:
    """The scalars the KFP UI shows: the candidate's metrics, the champion's as champion_<name>, each slice's rows and
    metrics as slice_<column>_<value>_<name>, each sensitive column's figures as fairness_<column>_<name>, blessed
    and the number of failed slices."""
    out = {
        **candidate.metrics,
        **{f"champion_{name}": value for name, value in (champion.metrics if champion else {}).items()},
    }
    for piece in pieces:
        out[metric_name("slice", piece.column, piece.value, "rows")] = float(piece.rows)
        out.update({metric_name("slice", piece.column, piece.value, name): v for name, v in piece.candidate.items()})
    for column, figures in fair.items():
        out.update({metric_name("fairness", column, name): value for name, value in figures["candidate"].items()})
    if pieces:
        out["failed_slices"] = float(len(verdict.failed_slices))
    out["blessed"] = 1.0 if verdict.blessed else 0.0
    return out


def _fmt(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def model_card(
    result: EvaluateResult,
    model_name: str,
    model,
    meta: dict,
    champion_meta: dict,
    test_path: str,
    test_metadata: dict,
    min_slice_rows: int,
) -> str:
    """The model card, in Markdown: verdict and rule, data, parameters, metrics side by side with the champion, each
    slice's figures and verdict, the fairness figures."""
    candidate, champion, verdict = result.candidate, result.champion, result.verdict
    version, champion_version = result.candidate_version, result.champion_version
    train = meta.get("train_data", {})
    lines = [
        f"# Model card: {model_name} version {version or '(unregistered)'}",
        "",
        f"**Verdict: {'BLESSED' if verdict.blessed else 'NOT BLESSED'}**"
        + (" (alias `challenger` set)" if verdict.blessed else "")
        + (f"; failed slices: {', '.join(f'`{n}`' for n in verdict.failed_slices)}" if verdict.failed_slices else ""),
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
    if model.task != REGRESSION:
        lines += ["precision, recall and f1: macro averages over the classes (each class counts once).", ""]
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
    lines += _slice_section(result, model.task, min_slice_rows) + _fairness_section(result, model)
    return "\n".join(lines) + "\n"


def _slice_section(result: EvaluateResult, task: str, min_slice_rows: int) -> list[str]:
    """One table per slice spec: each slice's rows, its gated metrics (the primary metric when none is gated),
    candidate's and champion's, and its verdict."""
    if not result.slices:
        return []
    gated = [name for name, checks in check_thresholds(result.thresholds, task).items() if checks.get(PER_SLICE)]
    shown = gated or [primary_metric(task, result.candidate.metrics)]
    lines = [
        "",
        "## Slices",
        "",
        f"Numeric columns with more than {MAX_VALUES} distinct values are cut into {QUANTILE_BINS} quantile bins. "
        + (
            f"Per-slice thresholds on {', '.join(shown)}; slices with fewer than {min_slice_rows} rows are not judged."
            if gated
            else "No per-slice thresholds: the slices are shown, not judged."
        ),
    ]
    for spec in dict.fromkeys(piece.spec for piece in result.slices):
        header = " | ".join(f"{name} | champion's {name}" for name in shown)
        lines += [
            "",
            f"### `{spec}`",
            "",
            f"| slice | rows | {header} | verdict |",
            "|---|---|" + "---|---|" * len(shown) + "---|",
        ]
        for piece in (piece for piece in result.slices if piece.spec == spec):
            figures = " | ".join(
                f"{_fmt(piece.candidate.get(name))} | {_fmt((piece.champion or {}).get(name))}" for name in shown
            )
            verdict = result.verdict.slices.get(piece.name, "not judged")
            lines.append(f"| {piece.value} | {piece.rows} | {figures} | {verdict} |")
    return lines


def _fairness_section(result: EvaluateResult, model) -> list[str]:
    if not result.fairness:
        return []
    header = " | ".join(f"{name} | champion's" for name in FAIRNESS)
    lines = [
        "",
        "## Fairness",
        "",
        f"Differences between the groups of each sensitive column (fairlearn; 0: every group alike), positive class "
        f"`{model.classes[1]}`: demographic parity compares the share of rows predicted positive, equalized odds the "
        "true and false positive rates (the larger gap). The gate's figure is the largest over the columns.",
        "",
        f"| sensitive column | groups | {header} |",
        "|---|---|" + "---|---|" * len(FAIRNESS),
    ]
    for column, figures in result.fairness.items():
        cells = " | ".join(
            f"{_fmt(figures['candidate'][name])} | {_fmt((figures['champion'] or {}).get(name))}" for name in FAIRNESS
        )
        lines.append(f"| `{column}` | {figures['groups']} | {cells} |")
    return lines
