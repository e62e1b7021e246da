"""Slices and fairness: the rows of the test split grouped by a column, each group's metrics, and how alike the groups
of a sensitive column are treated.

A slice spec names a column of the test split, or filters it:

- `"column"`: one slice per value of the column, when it is text, boolean, a date or a number with at most
  `MAX_VALUES` distinct values; a number with more distinct values is cut into `QUANTILE_BINS` quantile bins (edges
  at the 0, 25, 50, 75 and 100th percentiles of the test split's values; equal edges merge, so a skewed column may
  have fewer bins), named `[low, high)` (the last bin includes its upper edge); dates likewise. Missing values are a
  slice of their own, `missing`. A text column with more than `MAX_SLICES` distinct values is refused.
- `"column=value"`: the rows whose `column` equals `value` (a number for a numeric column, true/false for a boolean
  one, the text itself otherwise).

The columns are read from the test split's own rows: featurize writes every column of the dataset there, features
or not (`exclude_columns` included), so a column kept out of the model (a sensitive attribute, an identifier of a
segment) can still be sliced on. Metrics per slice come from the predictions made once on the whole split, grouped
by each row's slice code (metrics.grouped_metrics): nothing is scored twice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from kfp_ct.components._common.metrics import FAIRNESS, grouped_metrics, score_order

MAX_VALUES = 20
MAX_SLICES = 100  # a text column with more distinct values (an identifier) is refused: slice it by filters
QUANTILE_BINS = 4
MISSING = "missing"


@dataclass(frozen=True)
class SliceSpec:
    column: str
    value: str | None = None  # None: every value of the column (or bin) is a slice

    def __str__(self) -> str:
        return self.column if self.value is None else f"{self.column}={self.value}"


@dataclass
class Grouping:
    """The rows of the test split grouped by one spec: `codes[i]` is row i's group (-1: in none), named by `labels`."""

    spec: SliceSpec
    labels: list[str]
    codes: np.ndarray


@dataclass
class Slice:
    """One slice's figures: candidate's and champion's metrics (the champion's None without a champion)."""

    spec: str
    column: str
    value: str
    rows: int
    candidate: dict[str, float]
    champion: dict[str, float] | None

    @property
    def name(self) -> str:
        return f"{self.column}={self.value}"


def parse_specs(slices: list | None, columns: list[str], what: str = "slices") -> list[SliceSpec]:
    """Checks `slices` against the test split's `columns`; returns one SliceSpec per entry."""
    if not slices:
        return []
    if not isinstance(slices, (list, tuple)):
        raise ValueError(f"{what} must be a list of column names or 'column=value' filters, got {slices!r}")
    specs = []
    for entry in slices:
        if not isinstance(entry, str) or not entry.strip():
            raise ValueError(f"{what}: each entry must be a column name or 'column=value', got {entry!r}")
        column, sep, value = entry.partition("=")
        column = column.strip()
        if not column or (sep and not value.strip()):
            raise ValueError(f"{what}: '{entry}' is not a column name or a 'column=value' filter")
        if column not in columns:
            raise ValueError(
                f"{what}: '{entry}' names the column '{column}', which is not in the test split; its columns are: "
                f"{', '.join(columns)}"
            )
        spec = SliceSpec(column, value.strip() if sep else None)
        if spec in specs:
            raise ValueError(f"{what}: '{entry}' is given twice")
        specs.append(spec)
    return specs


def group(values: pd.Series, spec: SliceSpec) -> Grouping:
    """Groups the rows by `spec` (see the module docstring)."""
    if spec.value is not None:
        return Grouping(spec, [spec.value], np.where(_matches(values, spec), 0, -1))
    missing = values.isna().to_numpy()
    dates = pd.api.types.is_datetime64_any_dtype(values)
    numeric = dates or (pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values))
    if numeric and values.nunique() > MAX_VALUES:
        present = values.to_numpy(dtype="datetime64[ns]").astype(np.int64) if dates else values.to_numpy(np.float64)
        edges = np.unique(np.quantile(present[~missing], np.linspace(0, 1, QUANTILE_BINS + 1)))
        codes = np.searchsorted(edges[1:-1], present, side="right")
        shown = [str(pd.Timestamp(int(edge))) if dates else f"{edge:.6g}" for edge in edges]
        labels = [
            f"[{low}, {high}{']' if i == len(edges) - 2 else ')'}"
            for i, (low, high) in enumerate(zip(shown, shown[1:]))
        ]
    else:
        codes, uniques = pd.factorize(values, sort=True)
        if len(uniques) > MAX_SLICES:
            raise ValueError(
                f"slice '{spec}': '{spec.column}' has {len(uniques)} distinct values, more than {MAX_SLICES} slices: "
                f"slice it by filters ('{spec.column}=value') or by a column with fewer values"
            )
        labels = [str(value) for value in uniques]
    if missing.any():
        codes = np.where(missing, len(labels), codes)
        labels.append(MISSING)
    return Grouping(spec, labels, np.asarray(codes, dtype=np.int64))


def _matches(values: pd.Series, spec: SliceSpec) -> np.ndarray:
    text = spec.value
    if pd.api.types.is_bool_dtype(values):
        if text.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"slice '{spec}': '{spec.column}' is boolean; expected true or false, got '{text}'")
        return (values == (text.lower() in ("true", "1"))).to_numpy()
    if pd.api.types.is_numeric_dtype(values):
        try:
            number = float(text)
        except ValueError:
            raise ValueError(f"slice '{spec}': '{spec.column}' is numeric; '{text}' is not a number") from None
        return (values == number).to_numpy()
    if pd.api.types.is_datetime64_any_dtype(values):
        try:
            when = pd.Timestamp(text)
        except ValueError:
            raise ValueError(f"slice '{spec}': '{spec.column}' holds dates; '{text}' is not a date") from None
        return (values == when).to_numpy()
    return (values.astype(str) == text).to_numpy() & values.notna().to_numpy()


def slice_metrics(
    task: str,
    groupings: list[Grouping],
    candidate: tuple[np.ndarray, np.ndarray],
    champion: tuple[np.ndarray, np.ndarray] | None,
) -> list[Slice]:
    """Every slice's rows and metrics, candidate's and champion's, from each model's (true values, scores) on the
    whole test split (metrics.model_scores)."""
    models = [(y, scores, score_order(task, scores)) for y, scores in [candidate, *([champion] if champion else [])]]
    out = []
    for grouping in groupings:
        n = len(grouping.labels)
        rows = np.bincount(grouping.codes[grouping.codes >= 0], minlength=n)
        mine, *theirs = [grouped_metrics(task, y, scores, grouping.codes, n, order) for y, scores, order in models]
        for g, label in enumerate(grouping.labels):
            out.append(
                Slice(
                    spec=str(grouping.spec),
                    column=grouping.spec.column,
                    value=label,
                    rows=int(rows[g]),
                    candidate=mine[g],
                    champion=theirs[0][g] if theirs else None,
                )
            )
    return out


def fairness(y: np.ndarray, proba: np.ndarray, grouping: Grouping) -> dict[str, float]:
    """fairlearn's demographic parity difference and equalized odds difference (binary classification: the positive
    class is the model's second class, predicted when its probability is the larger) between the groups of one
    sensitive column.

    fairlearn evaluates its metrics row by row in Python (about 30 s for 1M rows); it is given the same rows
    compressed to one row per (group, true class, predicted class) with their count as the sample weight, which
    yields the same figures (selection and true/false positive rates are weighted means)."""
    from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference

    predicted = np.argmax(proba, axis=1)
    keys = (grouping.codes * 2 + y) * 2 + predicted
    counts = np.bincount(keys, minlength=len(grouping.labels) * 4)
    present = np.flatnonzero(counts)
    kwargs = {
        "y_true": (present // 2) % 2,
        "y_pred": present % 2,
        "sensitive_features": present // 4,
        "sample_weight": counts[present],
    }
    values = {
        "demographic_parity_difference": demographic_parity_difference(**kwargs),
        "equalized_odds_difference": equalized_odds_difference(**kwargs),
    }
    return {name: float(values[name]) for name in FAIRNESS}


def metric_name(*parts: str) -> str:
    """A KFP metric name from its parts: letters, digits and '_' only (e.g. slice_nswprice_0_05_0_07_roc_auc)."""
    return re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9_]+", "_", "_".join(parts))).strip("_")
