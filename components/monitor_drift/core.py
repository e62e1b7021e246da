"""Monitor drift: per-column drift tests with Evidently's `DataDriftPreset` semantics, computed fast and in bounded
memory, plus the triggers (data drift, performance decay, new-data volume) that start a retraining.

The statistics follow evidently 0.7.23 (`evidently.legacy.calculations`) column by column:

- Column types come from the *current* data, as `Dataset.from_pandas` infers them: float columns are numerical;
  integer columns are categorical with at most 10 distinct values, numerical otherwise (an integer column with
  missing values is float in pandas, hence numerical); strings are categorical unless more than half of their
  non-missing values are distinct (Evidently calls those text and trains a text classifier on them; here they are
  tested as categorical, with a note in the result); dictionary-encoded and boolean columns are categorical; dates
  and times are not tested.
- Missing values and +-inf are dropped per column before anything else; a column left empty is an error.
- Captured traffic (`_common.capture`'s layout) as the current data: the model's input columns it recorded are
  compared (not the request ids, times, versions and answers; the reference's other columns are not model inputs).
- The test per column, unless `column_tests` overrides it: with at most 1000 reference values, K-S (p <= 0.05)
  for numerical columns with more than 5 distinct values (over both windows), chi-squared (p < 0.05) for
  categorical columns, or for numerical ones with 3 to 5 values, and the Z-test for proportions (p < 0.05) with 1
  or 2 values; with more than 1000 reference values, the normed Wasserstein distance (>= 0.1; the distance divided
  by max(std(reference), 0.001), the population std) for numerical columns with more than 5 distinct values, and
  the Jensen-Shannon distance (>= 0.1, natural log, over per-value shares) otherwise.
- Jensen-Shannon, PSI and Kullback-Leibler bin a numerical column with more than 20 distinct reference values into
  numpy's 'sturges' bins over both windows together, and use per-value shares otherwise; PSI and K-L replace
  empty bins as Evidently does.
- A column test needs enough values in each window (`StatTest.min_values`, non-missing and finite): 20 for K-S,
  30 for chi-squared, the Z-test, Wasserstein, Jensen-Shannon, PSI and Kullback-Leibler. With fewer, the column is
  not judged: its verdict is "not enough rows" (Evidently would still give one). A column with no value at all is
  an error.
- The dataset drifts when the share of drifted columns among the judged ones is >= `drift_share`; with no judged
  column it does not drift, and the result says how many columns were not judged.

How it stays fast (see `stats`): each window is streamed once in bounded Arrow batches, the columns of a batch
worked on by a few threads. Per column it keeps the count, min, max, mean and second moment, the value counts while
there are few distinct values (always for categorical columns), and for numerical columns a 65,536-bin histogram
over the range both windows share (from the Parquet statistics). The normed Wasserstein distance comes from exact
value counts when there are at most 1000 distinct values, else from the histograms, which bound it from both
sides: when the bounds straddle the threshold, the column is read once more and computed exactly, so a verdict
never depends on the approximation. K-S with a small reference is exact, from counts of the current values between
the reference values. Small inputs (at most `EXACT_MAX_ROWS` rows in the two windows together) keep their values and
use SciPy on them. A second pass is needed only for what the first cannot answer (sturges bins of an overridden
binned test, a column without Parquet statistics).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Optional

import numpy as np
import pyarrow as pa

from kfp_ct.components._common import capture, datasets, schema
from kfp_ct.components._common.results import Result
from kfp_ct.components.monitor_drift import stats
from kfp_ct.components.monitor_drift.report import render_no_new_data, render_report
from kfp_ct.components.monitor_drift.stats import STAT_TESTS, ColumnStats

SMALL_REFERENCE = 1000  # Evidently switches from statistical tests to distances above this many reference values
INTEGER_CARDINALITY_LIMIT = 10  # evidently.core.datasets.INTEGER_CARDINALITY_LIMIT
EXACT_MAX_ROWS = 60_000  # reference + current rows up to which numerical values are kept and SciPy runs on them


@dataclass
class ColumnDrift:
    """One column's drift test: `score` is a p-value or a distance, as `score_kind` says."""

    column: str
    column_type: str  # 'num' or 'cat'
    test: str
    test_display_name: str
    score: float
    score_kind: str
    threshold: float
    drifted: bool
    reference_values: int  # non-missing, finite values
    current_values: int
    exact: bool = True  # False when the score is the histogram estimate (the verdict is still exact)
    note: Optional[str] = None
    judged: bool = True  # False: too few values for the test ("not enough rows" in `note`; score NaN, not drifted)


@dataclass
class DriftResult:
    columns: list[ColumnDrift]
    number_of_drifted_columns: int
    share_of_drifted_columns: float
    dataset_drift: bool
    drift_share: float
    reference_rows: int
    current_rows: int
    skipped: dict[str, str] = field(default_factory=dict)  # column -> why it was not tested

    def column(self, name: str) -> ColumnDrift:
        for c in self.columns:
            if c.column == name:
                return c
        raise KeyError(f"column '{name}' was not tested; tested: {', '.join(c.column for c in self.columns)}")

    @property
    def drifted_columns(self) -> list[str]:
        return [c.column for c in self.columns if c.drifted]

    @property
    def not_judged(self) -> dict[str, str]:
        """Columns with too few values for their test -> why."""
        return {c.column: c.note for c in self.columns if not c.judged}

    def to_dict(self) -> dict:
        return {
            "dataset_drift": self.dataset_drift,
            "share_of_drifted_columns": self.share_of_drifted_columns,
            "number_of_drifted_columns": self.number_of_drifted_columns,
            "number_of_columns": len(self.columns),
            "number_of_judged_columns": len(self.columns) - len(self.not_judged),
            "not_judged": self.not_judged,
            "drift_share": self.drift_share,
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "columns": {c.column: {k: v for k, v in asdict(c).items() if k != "column"} for c in self.columns},
            "skipped": dict(self.skipped),
        }


# ---------------------------------------------------------------------------------------------------------------
# Schema: which columns, of which kind


def _kind(arrow_type: pa.DataType) -> str:
    """What the drift tests make of a column: its `schema.column_type` (int, float, null: numerical; string, bool:
    categorical; datetime, date, other: not tested), except that a dictionary-encoded column is "dictionary":
    categorical whatever its values (`schema.column_kind`)."""
    if pa.types.is_dictionary(arrow_type) and schema.column_kind(arrow_type) == schema.CATEGORICAL:
        return "dictionary"
    return schema.column_type(arrow_type)


def _select_columns(
    ref_schema: pa.Schema, cur_schema: pa.Schema, columns, exclude, column_tests, reference_path, current_path
) -> tuple[list[str], dict[str, str], dict[str, str]]:
    """(columns to stream, their kinds, columns skipped with the reason), with errors for bad input."""
    ref_names, cur_names = list(ref_schema.names), list(cur_schema.names)
    captured = capture.input_columns(cur_names)
    if columns is None and captured is not None:  # captured traffic: the model's input columns, which it recorded
        missing_ref = [c for c in captured if c not in ref_names]
        if missing_ref:
            raise ValueError(
                f"the captured traffic ({current_path}) has input columns the reference ({reference_path}) lacks: "
                f"{', '.join(missing_ref)} (is the reference the served model's training data?)"
            )
        candidates = [c for c in captured if c not in set(exclude)]
    elif columns is None:
        missing_cur = [c for c in ref_names if c not in cur_names]
        missing_ref = [c for c in cur_names if c not in ref_names]
        if missing_cur or missing_ref:
            parts = []
            if missing_cur:
                parts.append(f"missing in current ({current_path}): {', '.join(missing_cur)}")
            if missing_ref:
                parts.append(f"missing in reference ({reference_path}): {', '.join(missing_ref)}")
            raise ValueError(
                "reference and current have different columns: "
                + "; ".join(parts)
                + " (pass columns=[...] to compare a subset)"
            )
        candidates = [c for c in cur_names if c not in set(exclude)]
    else:
        if not isinstance(columns, (list, tuple)) or not all(isinstance(c, str) for c in columns):
            raise ValueError(f"columns must be a list of column names, got {columns!r}")
        missing = [
            (c, side)
            for c in columns
            for side, names in (("reference", ref_names), ("current", cur_names))
            if c not in names
        ]
        if missing:
            raise ValueError("columns not found: " + ", ".join(f"'{c}' in {side}" for c, side in missing))
        candidates = list(dict.fromkeys(columns))
    unknown = sorted(set(column_tests) - set(candidates))
    if unknown:
        raise ValueError(
            f"column_tests names columns that are not tested: {', '.join(unknown)}; "
            f"tested columns: {', '.join(candidates)}"
        )
    kinds, skipped, mismatched = {}, {}, []
    for name in candidates:
        ref_type, cur_type = (schema.column_type(s.field(name).type) for s in (ref_schema, cur_schema))
        if "null" not in (ref_type, cur_type) and not schema.comparable(ref_type, cur_type):
            mismatched.append(
                f"'{name}' is {ref_schema.field(name).type} in reference but {cur_schema.field(name).type} in current"
            )
            continue
        arrow_type = (cur_schema if cur_type != "null" else ref_schema).field(name).type
        kind = _kind(arrow_type)
        if kind != "null" and schema.column_kind(arrow_type) not in (schema.NUMERIC, schema.CATEGORICAL):
            if columns is not None:
                raise ValueError(
                    f"column '{name}' has type {cur_schema.field(name).type}: drift is tested on "
                    "numerical and categorical columns only"
                )
            skipped[name] = f"type {cur_schema.field(name).type} is not tested"
            continue
        kinds[name] = kind
    if mismatched:
        raise ValueError("columns with different types in reference and current: " + "; ".join(mismatched))
    return list(kinds), kinds, skipped


# ---------------------------------------------------------------------------------------------------------------
# Detecting drift


def _default_test(col_type: str, ref: ColumnStats, cur: ColumnStats) -> str:
    """evidently.legacy.calculations.stattests.registry._get_default_stattest."""
    both = None if ref.counts is None or cur.counts is None else len(set(ref.counts) | set(cur.counts))
    few = both is not None and both <= 5
    if ref.n <= SMALL_REFERENCE:
        if col_type == "num" and not few:
            return "ks"
        return "chisquare" if both is None or both > 2 else "z"
    if col_type == "num" and not few:
        return "wasserstein"
    return "jensenshannon"


def _column_type(kind: str, cur: ColumnStats) -> tuple[Optional[str], Optional[str]]:
    """('num' or 'cat', note) or (None, why it is skipped): evidently.core.datasets.infer_column_type on current."""
    if kind in ("float", "null"):
        return "num", None
    if kind == "int":
        if not cur.integer:  # missing values: pandas reads the column as float
            return "num", None
        return ("cat" if cur.nunique is not None and cur.nunique <= INTEGER_CARDINALITY_LIMIT else "num"), None
    if kind == "string":
        if cur.counts is None:
            return None, f"text with more than {stats.MAX_CATEGORIES} distinct values: not tested"
        if len(cur.counts) > 0.5 * cur.n:
            return "cat", (
                "text (more than half of the current values are distinct): tested as categorical, where "
                "Evidently trains a text classifier"
            )
    return "cat", None


def _prepare(names, kinds, reference_path, current_path, exact, ks_forced):
    """ColumnStats per column and window, with the histogram range of the numerical ones when not exact."""
    ref_stats, cur_stats = {}, {}
    numeric = [name for name in names if kinds[name] in ("int", "float")]
    ranges = {} if exact else {path: stats.parquet_ranges(path, numeric) for path in (reference_path, current_path)}
    for name in names:
        is_numeric = name in numeric
        ref_stats[name] = ColumnStats(
            kinds[name],
            keep_values=is_numeric and (exact or name in ks_forced),
            keep_head=SMALL_REFERENCE + 1 if is_numeric else 0,
        )
        cur_stats[name] = ColumnStats(kinds[name], keep_values=is_numeric and exact)
        if is_numeric and not exact:
            ranges_of = [ranges[path][name] for path in (reference_path, current_path)]
            if all(ranges_of):
                lo, hi = min(r[0] for r in ranges_of), max(r[1] for r in ranges_of)
                ref_stats[name].hist_range = cur_stats[name].hist_range = (lo, hi if hi > lo else lo + 1.0)
    return ref_stats, cur_stats


def detect_drift(
    reference_path: str,
    current_path: str,
    drift_share: float = 0.5,
    columns: Optional[list] = None,
    column_tests: Optional[dict] = None,
    exclude_columns: Optional[list] = None,
) -> DriftResult:
    """Tests every column (or `columns`) of the current dataset against the reference one, as Evidently's
    DataDriftPreset does, streaming both Parquet files in bounded batches.

    `column_tests` overrides the test and/or threshold per column: {"col": {"test": "psi", "threshold": 0.2}}, with
    Evidently's test names (ks, chisquare, z, jensenshannon, wasserstein, psi, kl_div). `exclude_columns` drops
    columns (e.g. the target) from the default selection. Raises ValueError when the two datasets do not match
    (different columns, a column with another type in each) or a window is empty.
    """
    if not 0 < drift_share <= 1:
        raise ValueError(f"drift_share must be in (0, 1], got {drift_share}")
    tests = stats.parse_column_tests(column_tests)
    ref_file, cur_file = datasets.open_dataset(reference_path), datasets.open_dataset(current_path)
    ref_rows, cur_rows = ref_file.metadata.num_rows, cur_file.metadata.num_rows
    if cur_rows == 0:
        raise ValueError(f"the current window is empty: {current_path} has no rows")
    if ref_rows == 0:
        raise ValueError(f"the reference window is empty: {reference_path} has no rows")
    names, kinds, skipped = _select_columns(
        ref_file.schema_arrow,
        cur_file.schema_arrow,
        columns,
        exclude_columns or [],
        tests,
        reference_path,
        current_path,
    )
    if not names:
        raise ValueError("no numerical or categorical column to test" + (f" (skipped: {skipped})" if skipped else ""))
    exact = ref_rows + cur_rows <= EXACT_MAX_ROWS
    ks_forced = {n for n, t in tests.items() if t["test"] == "ks"}
    ref_stats, cur_stats = _prepare(names, kinds, reference_path, current_path, exact, ks_forced)
    stats.stream(reference_path, ref_stats)
    for name in names:  # a small (or K-S) reference: count the current values between its values as they stream
        if not exact and ref_stats[name].numeric and ref_stats[name].values is not None:
            cur_stats[name].ks_reference = np.unique(ref_stats[name].values, return_counts=True)
    stats.stream(current_path, cur_stats)

    plan, notes = {}, {}
    for name in names:
        ref, cur = ref_stats[name], cur_stats[name]
        col_type, note = _column_type(kinds[name], cur)
        if col_type is None:
            if columns is not None:
                raise ValueError(f"column '{name}': {note}")
            skipped[name] = note
            continue
        if note:
            notes[name] = note
        for side, where, path in ((ref, "reference", reference_path), (cur, "current", current_path)):
            if side.n == 0:
                raise ValueError(
                    f"column '{name}' has no values in the {where} data ({path}): every value is missing or infinite"
                )
        test = tests.get(name, {}).get("test")
        if test is None:  # Evidently's own choice may run chi-squared or Z on a numerical column with few values
            test = _default_test(col_type, ref, cur)
        elif col_type not in STAT_TESTS[test].column_types:
            raise ValueError(
                f"column '{name}': test '{test}' does not apply to a "
                f"{'numerical' if col_type == 'num' else 'categorical'} column"
            )
        plan[name] = (col_type, test)
    if not plan:
        raise ValueError(f"no numerical or categorical column to test (skipped: {skipped})")

    too_few = {name: _too_few(test, ref_stats[name], cur_stats[name]) for name, (_, test) in plan.items()}
    _second_pass(
        {name: p for name, p in plan.items() if not too_few[name]}, ref_stats, cur_stats, reference_path, current_path
    )
    results = []
    for name, (col_type, test) in plan.items():
        threshold = tests.get(name, {}).get("threshold")
        if too_few[name]:
            results.append(
                _not_judged(name, col_type, test, threshold, ref_stats[name], cur_stats[name], too_few[name])
            )
            continue
        results.append(
            _run_test(
                name,
                col_type,
                test,
                threshold,
                ref_stats[name],
                cur_stats[name],
                reference_path,
                current_path,
                notes.get(name),
            )
        )
    judged = [c for c in results if c.judged]
    drifted = sum(c.drifted for c in judged)
    share = drifted / len(judged) if judged else 0.0
    dataset_drift = bool(judged) and share >= drift_share
    return DriftResult(results, drifted, share, dataset_drift, drift_share, ref_rows, cur_rows, skipped)


def _too_few(test: str, ref: ColumnStats, cur: ColumnStats) -> Optional[str]:
    """Why a test cannot judge a column ("not enough rows: ..."), or None when both windows hold enough values."""
    need = STAT_TESTS[test].min_values
    short = [
        f"the {where} window has {side.n}" for where, side in (("reference", ref), ("current", cur)) if side.n < need
    ]
    if not short:
        return None
    return (
        f"not enough rows: {STAT_TESTS[test].display_name} needs at least {need} non-missing values in each window, "
        + " and ".join(short)
    )


def _not_judged(name, col_type, test, threshold, ref: ColumnStats, cur: ColumnStats, why: str) -> ColumnDrift:
    spec = STAT_TESTS[test]
    threshold = spec.default_threshold if threshold is None else threshold
    return ColumnDrift(
        name,
        col_type,
        test,
        spec.display_name,
        math.nan,
        spec.kind,
        threshold,
        False,
        ref.n,
        cur.n,
        note=why,
        judged=False,
    )


def _needs(col_type: str, test: str, ref: ColumnStats, cur: ColumnStats) -> Optional[str]:
    """What a test still needs after the first pass: 'counts', 'sturges', 'hist' or None."""
    have_counts = ref.counts is not None and cur.counts is not None
    have_values = ref.values is not None and cur.values is not None
    if test in ("chisquare", "z") or (test in stats.BINNED_TESTS and not stats.uses_sturges(col_type, ref)):
        return None if have_counts else "counts"
    if test in stats.BINNED_TESTS:
        return None if have_values else "sturges"
    if test == "wasserstein":
        return None if have_counts or have_values or ref.hist is not None else "hist"
    if not have_values and cur.slots is None:  # ks
        raise RuntimeError("K-S needs the reference values, which were not kept")
    return None


def _second_pass(plan, ref_stats, cur_stats, reference_path, current_path) -> None:
    """Reads again only the columns whose test the first pass cannot answer."""
    needs = {}
    for name, (col_type, test) in plan.items():
        ref, cur = ref_stats[name], cur_stats[name]
        need = _needs(col_type, test, ref, cur)
        if need == "sturges" or (need is None and test in stats.BINNED_TESTS and stats.uses_sturges(col_type, ref)):
            ref.edges = cur.edges = stats.sturges_edges(ref, cur)
            ref.hist = cur.hist = None
            if ref.values is not None and cur.values is not None:
                ref.hist, cur.hist = np.histogram(ref.values, ref.edges)[0], np.histogram(cur.values, cur.edges)[0]
                need = None
        elif need == "hist":
            lo, hi = min(ref.lo, cur.lo), max(ref.hi, cur.hi)
            ref.hist_range = cur.hist_range = (lo, hi if hi > lo else lo + 1.0)
        if need:
            needs[name] = need
    for path, sides in ((reference_path, ref_stats), (current_path, cur_stats)):
        todo = {n: need for n, need in needs.items() if not (need == "counts" and sides[n].counts is not None)}
        if not todo:
            continue
        for name, need in todo.items():
            if need == "counts":
                sides[name].counts, sides[name].n = {}, 0
        strings = [n for n in todo if sides[n].kind == "string"]
        for batch in stats.batches(path, list(todo), strings):
            for name, need in todo.items():
                side, array = sides[name], batch.column(name)
                if need == "counts":
                    side.add_counts(array)
                    continue
                x = stats._finite(array, side.kind)[0]
                if need == "sturges":
                    side.add_binned(x)
                else:
                    side.add_hist(x)
        for name, need in todo.items():
            if need == "counts" and sides[name].counts is None:
                raise ValueError(
                    f"column '{name}' has more than {stats.MAX_CATEGORIES} distinct values: too many to "
                    "test as categorical"
                )


def _run_test(
    name, col_type, test, threshold, ref: ColumnStats, cur: ColumnStats, reference_path, current_path, note
) -> ColumnDrift:
    spec = STAT_TESTS[test]
    threshold = spec.default_threshold if threshold is None else threshold
    exact = True
    if test == "chisquare":
        score = stats.chisquare_pvalue(ref, cur)
    elif test == "z":
        score = stats.z_pvalue(ref, cur)
    elif test in stats.BINNED_TESTS:
        score = stats.binned_distance(test, col_type, ref, cur)
    elif test == "ks":
        if ref.values is not None and cur.values is not None:
            from scipy.stats import ks_2samp

            score = float(ks_2samp(ref.values, cur.values)[1])
        else:
            u, counts = cur.ks_reference
            score = stats.ks_pvalue_from_slots(u, counts, cur.slots, ref.n, cur.n)
    else:  # wasserstein, divided by max(std(reference), 0.001)
        norm = max(ref.std, 0.001)
        if ref.counts is not None and cur.counts is not None:
            score = stats.wasserstein_from_counts(ref, cur) / norm
        elif ref.values is not None and cur.values is not None:
            from scipy.stats import wasserstein_distance

            score = float(wasserstein_distance(ref.values, cur.values)) / norm
        else:
            lower, estimate, upper = (v / norm for v in stats.wasserstein_bounds(ref, cur))
            if spec.drifted(lower, threshold) == spec.drifted(upper, threshold):
                score, exact = min(max(estimate, lower), upper), False
                if spec.drifted(score, threshold) != spec.drifted(lower, threshold):
                    score = lower
            else:  # too close to the threshold to decide from the histograms: read the column and compute it
                from scipy.stats import wasserstein_distance

                ref_values = stats.read_values(reference_path, name)
                cur_values = stats.read_values(current_path, name)
                score = float(wasserstein_distance(ref_values, cur_values)) / max(float(np.std(ref_values)), 0.001)
    score = float(score)
    return ColumnDrift(
        name,
        col_type,
        test,
        spec.display_name,
        score,
        spec.kind,
        threshold,
        spec.drifted(score, threshold),
        ref.n,
        cur.n,
        exact,
        note,
    )


# ---------------------------------------------------------------------------------------------------------------
# Triggers


@dataclass
class Triggers:
    """Which retraining triggers fired. A trigger that was not checked (no threshold, no labels, no champion) is
    None, and `details` says why."""

    data_drift: bool
    performance_decay: Optional[bool] = None
    new_data: Optional[bool] = None
    details: dict = field(default_factory=dict)

    @property
    def fired(self) -> list[str]:
        return [name for name in ("data_drift", "performance_decay", "new_data") if getattr(self, name)]

    @property
    def triggered(self) -> bool:
        return bool(self.fired)

    def to_dict(self) -> dict:
        return {
            "fired": self.fired,
            "triggered": self.triggered,
            "data_drift": self.data_drift,
            "performance_decay": self.performance_decay,
            "new_data": self.new_data,
            "details": self.details,
        }


def _recorded_metric(model, metric: str, model_name: str, version: str, tracking_uri: Optional[str]):
    """The champion's recorded value of `metric`: its model metadata's validation metrics, else its MLflow run."""
    recorded = (model.metadata.get("validation_metrics") or {}).get(metric)
    if recorded is not None:
        return float(recorded), "model metadata (validation_metrics)"
    from kfp_ct.components._common import tracking

    mlflow_client = tracking.client(tracking_uri)
    run_id = mlflow_client.get_model_version(model_name, version).run_id or model.metadata.get("mlflow_run_id")
    if run_id:
        value = mlflow_client.get_run(run_id).data.metrics.get(metric)
        if value is not None:
            return float(value), f"MLflow run {run_id}"
    return None, None


def _served_metrics(model, frame, target_column: str) -> dict[str, float]:
    """The metrics of the served model's own answers (captured predictions/probabilities) against the labels."""
    from kfp_ct.components._common.training import validation_metrics

    y = model.featurizer.encode_target(frame[target_column])
    if model.task == "classification":
        if "probabilities" not in frame.columns:
            raise ValueError("the captured rows have no 'probabilities' column for this classification model")
        scores = np.asarray(frame["probabilities"].tolist(), dtype=np.float64)
        if scores.ndim != 2 or scores.shape[1] != len(model.classes):
            raise ValueError(
                f"the captured probabilities have {scores.shape[-1]} classes, the champion {len(model.classes)}"
            )
    else:
        scores = frame["prediction"].to_numpy(dtype=np.float64)
    return validation_metrics(model.task, y, scores)


def performance_decay(
    current_path: str,
    target_column: str,
    model_name: str,
    max_metric_drop: float,
    tracking_uri: Optional[str] = None,
    labels: Optional[str] = None,
    label_id_column: str = capture.ID_COLUMN,
) -> tuple[Optional[bool], dict]:
    """Compares the champion's primary metric (roc_auc for classification, else accuracy; rmse for regression) on
    the labelled current rows with the value recorded for it. Without `labels` the champion scores the current rows
    (their label column); with `labels` (a labels source keyed by `label_id_column`, see
    `_common.capture.join_labels`) the current rows are the captured traffic and the metric comes from the served
    model's own predictions on the rows that have a label (no re-scoring), and the details state how many rows had
    one. The drop is in the metric's own units:
    recorded - current for higher-is-better metrics, current - recorded for lower-is-better ones. Returns (fired,
    details); fired is None when it cannot be checked."""
    import tempfile

    from kfp_ct.components._common.metrics import FALLBACK_PRIMARY, LOWER_IS_BETTER, PRIMARY, score
    from kfp_ct.components._common.model import load_champion

    stated = {}
    if labels:
        frame, stated = capture.join_labels(datasets.read_frame(current_path), labels, target_column, label_id_column)
        if frame.empty:
            return None, {"reason": f"no captured row of the current window has a label in {labels}", **stated}
    else:
        schema = datasets.open_dataset(current_path).schema_arrow
        if target_column not in schema.names:
            return None, {"reason": f"the current data has no label column '{target_column}'"}
        frame = datasets.read_frame(current_path)
        frame = frame[frame[target_column].notna()]
        if frame.empty:
            return None, {"reason": f"every value of the label column '{target_column}' is missing in the current data"}
    with tempfile.TemporaryDirectory(prefix="kfp-ct-monitor-") as tmp:
        found = load_champion(model_name, tracking_uri, dst=tmp)  # fails closed: see tracking.resolve_alias
        if found is None:
            return None, {"reason": f"'{model_name}' has no champion in the registry", **stated}
        version, model = found
        current = _served_metrics(model, frame, target_column) if labels else score(model, frame, target_column)
    metric = PRIMARY[model.task] if current.get(PRIMARY[model.task]) is not None else FALLBACK_PRIMARY[model.task]
    recorded, source = _recorded_metric(model, metric, model_name, version, tracking_uri)
    details = {
        "model_name": model_name,
        "champion_version": version,
        "metric": metric,
        "current": current.get(metric),
        "current_from": "the served model's captured predictions" if labels else "the champion scoring the rows",
        "recorded": recorded,
        "recorded_from": source,
        "labelled_rows": len(frame),
        "max_metric_drop": max_metric_drop,
        **stated,
    }
    if recorded is None or current.get(metric) is None or not math.isfinite(current[metric]):
        details["reason"] = f"no recorded or current {metric} to compare"
        return None, details
    drop = current[metric] - recorded if metric in LOWER_IS_BETTER else recorded - current[metric]
    details["drop"] = drop
    return bool(drop > max_metric_drop), details


def check_triggers(
    drift: DriftResult,
    current_path: str,
    target_column: Optional[str] = None,
    model_name: Optional[str] = None,
    max_metric_drop: Optional[float] = None,
    min_new_rows: Optional[int] = None,
    tracking_uri: Optional[str] = None,
    labels: Optional[str] = None,
    label_id_column: str = capture.ID_COLUMN,
) -> Triggers:
    """Combines the retraining triggers: data drift (always), performance decay (when `max_metric_drop` is set; it
    needs `target_column` and `model_name`, and is left unchecked when the current data has no labels or the model
    no champion) and new-data volume (current rows >= `min_new_rows`, when set)."""
    triggers = Triggers(data_drift=drift.dataset_drift)
    triggers.details["data_drift"] = {
        "share_of_drifted_columns": drift.share_of_drifted_columns,
        "drift_share": drift.drift_share,
        "drifted_columns": drift.drifted_columns,
    }
    if min_new_rows is not None:
        if min_new_rows < 0:
            raise ValueError(f"min_new_rows must be >= 0, got {min_new_rows}")
        triggers.new_data = drift.current_rows >= min_new_rows
        triggers.details["new_data"] = {"current_rows": drift.current_rows, "min_new_rows": min_new_rows}
    if max_metric_drop is not None:
        missing = [
            name
            for name, value in (("target_column", target_column), ("model_name", model_name))
            if value in (None, "")
        ]
        if missing:
            raise ValueError(
                "the performance-decay trigger (max_metric_drop is set) needs target_column and "
                f"model_name; missing: {', '.join(missing)}"
            )
        triggers.performance_decay, triggers.details["performance_decay"] = performance_decay(
            current_path, target_column, model_name, max_metric_drop, tracking_uri, labels, label_id_column
        )
    return triggers


# ---------------------------------------------------------------------------------------------------------------
# Outputs


def metric_name(name: str) -> str:
    """A metric key safe for KFP and MLflow: lowercase letters, digits and underscores."""
    key = re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_")
    return key if key and key[0].isalpha() else f"m_{key}"


def drift_metrics(result: DriftResult, triggers: Triggers) -> dict[str, float]:
    """The scalar metrics to log: dataset-level figures, each column's score and verdict, the triggers."""
    out = {
        "dataset_drift": float(result.dataset_drift),
        "share_of_drifted_columns": float(result.share_of_drifted_columns),
        "number_of_drifted_columns": float(result.number_of_drifted_columns),
        "number_of_columns": float(len(result.columns)),
        "number_of_not_judged_columns": float(len(result.not_judged)),
        "reference_rows": float(result.reference_rows),
        "current_rows": float(result.current_rows),
    }
    for c in result.columns:
        if not c.judged:
            continue  # no score, no verdict: counted in number_of_not_judged_columns
        base = metric_name(c.column)
        for key, value in ((f"drift_score_{base}", c.score), (f"drifted_{base}", float(c.drifted))):
            while key in out:
                key += "_"
            out[key] = float(value) if math.isfinite(value) else (1e308 if value > 0 else 0.0)
    out["trigger_data_drift"] = float(triggers.data_drift)
    for name in ("performance_decay", "new_data"):
        if getattr(triggers, name) is not None:
            out[f"trigger_{name}"] = float(getattr(triggers, name))
    perf = triggers.details.get("performance_decay") or {}
    for key in ("current", "recorded", "drop"):
        if isinstance(perf.get(key), (int, float)):
            out[f"champion_{metric_name(perf['metric'])}_{key}"] = float(perf[key])
    out["triggered"] = float(triggers.triggered)
    return out


def write_drift_table(result: DriftResult, triggers: Triggers, path: str) -> dict:
    """Writes the drift table JSON (atomically) and returns it."""
    table = _finite_json({**result.to_dict(), "triggers": triggers.to_dict()})
    text = json.dumps(table, indent=2, default=_jsonable, allow_nan=False)
    with datasets.atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as out:
        out.write(text)
    return table


def _finite_json(value):
    """NaN and +-inf (which JSON cannot hold) become None."""
    if isinstance(value, dict):
        return {k: _finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_json(v) for v in value]
    if isinstance(value, (float, np.floating)) and not math.isfinite(value):
        return None
    return value


def _jsonable(value):
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


@dataclass
class MonitorDriftResult(Result):
    """`triggered`: whether a retraining trigger fired (never for an empty current window: `no_new_data`); `drift`
    and `triggers`: the verdicts (None with no new data); `table`: the drift table as written."""

    triggered: bool
    no_new_data: bool
    drift: Optional[DriftResult]
    triggers: Optional[Triggers]
    table: dict


def no_new_data(reference_path: str, report_path: str, table_path: str, window: Optional[dict]) -> MonitorDriftResult:
    """The verdict on an empty current window: nothing to compare, nothing triggered, and the report says so."""
    reference_rows = datasets.open_dataset(reference_path).metadata.num_rows
    where = f" in the window [{window['start']}, {window['end']})" if window else ""
    table = {
        "no_new_data": True,
        "current_rows": 0,
        "reference_rows": reference_rows,
        "window": window,
        "dataset_drift": False,
        "triggers": {"fired": [], "triggered": False, "details": {"no_new_data": f"no rows{where}"}},
    }
    text = json.dumps(table, indent=2)
    with datasets.atomic_path(table_path) as tmp, open(tmp, "w", encoding="utf-8") as out:
        out.write(text)
    render_no_new_data(report_path, where, reference_rows)
    metrics = {"no_new_data": 1.0, "current_rows": 0.0, "reference_rows": float(reference_rows), "triggered": 0.0}
    metadata = {"no_new_data": True, "dataset_drift": False, "triggers": [], "drifted_columns": [], "window": window}
    return MonitorDriftResult(
        triggered=False, no_new_data=True, drift=None, triggers=None, table=table, metrics=metrics, metadata=metadata
    )


def monitor_drift(
    *,
    reference_path: str,
    current_path: str,
    report_path: str,
    table_path: str,
    drift_share: float = 0.5,
    columns: Optional[list] = None,
    column_tests: Optional[dict] = None,
    target_column: Optional[str] = None,
    model_name: Optional[str] = None,
    performance_trigger: bool = False,
    max_metric_drop: float = 0.05,
    min_new_rows: int = 0,
    tracking_uri: Optional[str] = None,
    report_sample_rows: int = 5000,
    labels: Optional[str] = None,
    label_id_column: str = capture.ID_COLUMN,
    current_window: Optional[dict] = None,
) -> MonitorDriftResult:
    """The whole monitor: drift per column, the triggers (performance decay when `performance_trigger`: on the
    champion's re-scored rows, or with `labels` on the served model's captured predictions; new data when
    `min_new_rows` > 0), the drift table and the HTML report. An empty current window (`current_window`: its
    recorded window, for the report) is "no new data": nothing is compared and nothing triggers."""
    if datasets.open_dataset(current_path).metadata.num_rows == 0:
        return no_new_data(reference_path, report_path, table_path, current_window)
    drift = detect_drift(
        reference_path,
        current_path,
        drift_share,
        columns,
        column_tests,
        exclude_columns=[target_column] if target_column else None,
    )
    triggers = check_triggers(
        drift,
        current_path,
        target_column,
        model_name,
        max_metric_drop if performance_trigger else None,
        min_new_rows or None,
        tracking_uri,
        labels or None,
        label_id_column,
    )
    render_report(reference_path, current_path, drift, report_path, triggers, report_sample_rows)
    table = write_drift_table(drift, triggers, table_path)
    metadata = {
        "no_new_data": False,
        "dataset_drift": drift.dataset_drift,
        "triggers": triggers.fired,
        "drifted_columns": drift.drifted_columns,
        "window": current_window,
    }
    return MonitorDriftResult(
        triggered=triggers.triggered,
        no_new_data=False,
        drift=drift,
        triggers=triggers,
        table=table,
        metrics=drift_metrics(drift, triggers),
        metadata=metadata,
    )
