"""The drift statistics, streamed: what is kept about each column of each window, and Evidently's tests computed
from it (evidently 0.7.23, evidently/legacy/calculations/stattests/*).

Per column and window one pass keeps the count of finite non-missing values, min, max, mean and second moment
(merged batch by batch), and the value counts while there are at most `MAX_TRACKED_VALUES` distinct values (always
for categorical columns). Numerical columns also get a `HIST_BINS`-bin histogram over the range both windows share
(from the Parquet statistics), which bounds the Wasserstein distance; and when the reference is small, the current
values are counted between the distinct reference values, which gives K-S exactly.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from kfp_ct.components._common import datasets

MAX_TRACKED_VALUES = 1000  # numerical columns: value counts are kept up to this many distinct values
MAX_CATEGORIES = 200_000  # a string column with more distinct values is not counted (treated as free text)
HIST_BINS = 1 << 16  # bins of the Wasserstein histograms
READ_BUFFER = 1 << 20  # bytes: Parquet is read through a buffer this big
PROBE = 4096  # the first values of a batch, checked for many distinct values before counting them all


@dataclass(frozen=True)
class StatTest:
    name: str  # Evidently's registered name
    display_name: str  # Evidently's display name
    default_threshold: float
    kind: str  # 'p_value' (drift when the p-value is below the threshold) or 'distance' (drift when above)
    column_types: tuple
    inclusive: bool  # drift when score == threshold
    min_values: int  # non-missing, finite values each window needs for a verdict (fewer: "not enough rows")

    def drifted(self, score: float, threshold: float) -> bool:
        if self.kind == "p_value":
            return bool(score <= threshold) if self.inclusive else bool(score < threshold)
        return bool(score >= threshold)


STAT_TESTS = {
    t.name: t
    for t in (
        # K-S is exact on small samples, but below 20 values a window cannot show a shift it would not also show
        # by chance; the chi-squared and Z tests rest on normal approximations (about 5 expected per cell), and
        # the distances on shares, which one value of fewer than 30 moves by more than 3 points
        StatTest("ks", "K-S p_value", 0.05, "p_value", ("num",), True, 20),
        StatTest("chisquare", "chi-square p_value", 0.05, "p_value", ("cat",), False, 30),
        StatTest("z", "Z-test p_value", 0.05, "p_value", ("cat",), False, 30),
        StatTest("jensenshannon", "Jensen-Shannon distance", 0.1, "distance", ("cat", "num"), True, 30),
        StatTest("wasserstein", "Wasserstein distance (normed)", 0.1, "distance", ("num",), True, 30),
        StatTest("psi", "PSI", 0.1, "distance", ("cat", "num"), True, 30),
        StatTest("kl_div", "Kullback-Leibler divergence", 0.1, "distance", ("cat", "num"), True, 30),
    )
}
BINNED_TESTS = ("jensenshannon", "psi", "kl_div")


class ColumnStats:
    """Everything kept about one column of one window."""

    def __init__(self, kind: str, keep_values: bool = False, keep_head: int = 0):
        self.kind = kind  # int, float, null (numerical); string, dictionary, bool (categorical)
        self.numeric = kind in ("int", "float", "null")
        self.integer = kind == "int"  # pandas reads it as int64: integers without missing values
        self.n = 0  # finite, non-missing values
        self.lo, self.hi = math.inf, -math.inf
        self.mean, self.m2 = 0.0, 0.0
        self.counts: Optional[dict] = {}  # value -> count; None when there are too many distinct values
        self.keep_values, self.keep_head = keep_values, keep_head
        self._parts: list[np.ndarray] = []
        self._kept = 0
        self.values: Optional[np.ndarray] = None  # every value, when kept or when they all fit in the head
        self.hist_range: Optional[tuple[float, float]] = None  # set before streaming: histogram over this range
        self.hist: Optional[np.ndarray] = None
        self.ks_reference: Optional[tuple[np.ndarray, np.ndarray]] = None  # (distinct values, counts) to slot into
        self.slots: Optional[np.ndarray] = None
        self.edges: Optional[np.ndarray] = None  # set before a second pass: sturges bin edges

    @property
    def std(self) -> float:
        """Population standard deviation (numpy's default, ddof=0)."""
        return math.sqrt(self.m2 / self.n) if self.n else 0.0

    @property
    def nunique(self) -> Optional[int]:
        return None if self.counts is None else len(self.counts)

    def add(self, array: pa.Array) -> None:
        if array.null_count:
            self.integer = False
        if self.numeric:
            self.add_numeric(*_finite(array, self.kind))
        else:
            self.add_counts(array)

    def add_counts(self, array: pa.Array) -> None:
        """Counts per value (missing values dropped)."""
        if self.numeric:
            x = _finite(array, self.kind)[0]
            self.n += len(x)
            if self.counts is not None:
                self._count(pa.array(x))
            return
        self.n += len(array) - array.null_count
        if self.counts is None:
            return
        if pa.types.is_dictionary(array.type):
            indices = array.indices.drop_null() if array.null_count else array.indices
            counts = np.bincount(indices.to_numpy(), minlength=len(array.dictionary))
            nonzero = np.flatnonzero(counts)
            keys = array.dictionary.take(pa.array(nonzero)).to_pylist()
            for value, count in zip(keys, counts[nonzero].tolist()):
                self.counts[value] = self.counts.get(value, 0) + count
        else:
            self._count(array)
        if self.counts is not None and len(self.counts) > MAX_CATEGORIES:
            self.counts = None

    def _count(self, array: pa.Array) -> None:
        counts = pc.value_counts(array)
        values = counts.field(0)
        values = values.to_numpy(zero_copy_only=False) if self.numeric else values.to_pylist()
        for value, count in zip(values, counts.field(1).to_numpy().tolist()):
            if value is not None:
                self.counts[value] = self.counts.get(value, 0) + count

    def add_numeric(self, x: np.ndarray, lo: float, hi: float) -> None:
        m = len(x)
        if m == 0:
            return
        self.lo, self.hi = min(self.lo, lo), max(self.hi, hi)
        mean = float(x.mean())
        d = np.subtract(x, mean)
        m2 = float(np.vdot(d, d))
        total = self.n + m
        delta = mean - self.mean
        self.mean += delta * m / total
        self.m2 += m2 + delta * delta * self.n * m / total
        self.n = total
        if self.keep_values or self._kept < self.keep_head:
            part = x if self.keep_values else x[: self.keep_head - self._kept].copy()
            self._parts.append(part)
            self._kept += len(part)
        if self.counts is not None:
            if m > PROBE and len(pc.unique(pa.array(x[:PROBE]))) > MAX_TRACKED_VALUES:
                self.counts = None
            else:
                self._count(pa.array(x))
                if len(self.counts) > MAX_TRACKED_VALUES:
                    self.counts = None
        if self.hist_range is not None:
            self.add_hist(x, out=d)
        if self.ks_reference is not None:
            self.add_slots(x)

    def add_hist(self, x: np.ndarray, out: Optional[np.ndarray] = None) -> None:
        lo, hi = self.hist_range
        scaled = np.subtract(x, lo, out=out)
        np.multiply(scaled, HIST_BINS / (hi - lo), out=scaled)
        idx = scaled.astype(np.int64)
        np.clip(idx, 0, HIST_BINS - 1, out=idx)
        counts = np.bincount(idx, minlength=HIST_BINS)
        if self.hist is None:
            self.hist = counts
        else:
            self.hist += counts

    def add_slots(self, x: np.ndarray) -> None:
        counts = ks_slots(self.ks_reference[0], x)
        self.slots = counts if self.slots is None else self.slots + counts

    def add_binned(self, x: np.ndarray) -> None:
        counts = np.histogram(x, self.edges)[0]
        self.hist = counts if self.hist is None else self.hist + counts

    def finish(self) -> None:
        """After the pass: `values` holds every value when they were kept or all fit in the head."""
        if self.keep_values or self.n <= self._kept:
            self.values = np.concatenate(self._parts) if self._parts else np.empty(0)
        self._parts = []


def _finite(array: pa.Array, kind: str) -> tuple[np.ndarray, float, float]:
    """(values, min, max): the finite, non-missing values of a numerical Arrow array as float64 (Evidently drops NaN
    and +-inf)."""
    x = array.to_numpy(zero_copy_only=False)
    if x.dtype != np.float64:
        x = x.astype(np.float64)
    if not len(x):
        return x, math.inf, -math.inf
    lo, hi = float(x.min()), float(x.max())
    if kind == "int" and not array.null_count or math.isfinite(lo) and math.isfinite(hi):  # NaN would propagate
        return x, lo, hi
    x = x[np.isfinite(x)]
    return (x, float(x.min()), float(x.max())) if len(x) else (x, math.inf, -math.inf)


def batches(path: str, columns: list[str], dictionary_columns: tuple = ()):
    """The dataset's record batches (datasets.BATCH_ROWS rows), string columns read dictionary-encoded.

    Read through a 1 MiB buffer instead of pyarrow's default pre-buffering of whole row groups, which holds far
    more in memory (on 5M rows: ~1 GB against ~350 MB) and is slower too."""
    datasets.open_dataset(path)  # the clear errors for a missing or unreadable file
    file = pq.ParquetFile(
        path, read_dictionary=list(dictionary_columns) or None, pre_buffer=False, buffer_size=READ_BUFFER
    )
    yield from file.iter_batches(batch_size=datasets.BATCH_ROWS, columns=columns)


def stream(path: str, columns: dict[str, ColumnStats], workers: int = 0) -> None:
    """One pass over a dataset, feeding each column's batches to its ColumnStats. The columns of a batch are worked
    on by a few threads (numpy and Arrow release the GIL) while the next batch is read."""
    from concurrent.futures import ThreadPoolExecutor, wait

    strings = [name for name, stats in columns.items() if stats.kind == "string"]
    workers = workers or min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending = []
        for batch in batches(path, list(columns), strings):
            for future in pending:
                future.result()
            pending = [pool.submit(stats.add, batch.column(name)) for name, stats in columns.items()]
        wait(pending)
        for future in pending:
            future.result()
    for stats in columns.values():
        stats.finish()


def parquet_ranges(path: str, columns: list[str]) -> dict[str, Optional[tuple[float, float]]]:
    """(min, max) per numerical column from the Parquet statistics; None for a column where some row group lacks
    them or they are not finite."""
    meta = datasets.open_dataset(path).metadata
    leaves = {meta.schema.column(i).path: i for i in range(meta.num_columns)}
    return {column: _range(meta, leaves[column]) if column in leaves else None for column in columns}


def _range(meta, index: int) -> Optional[tuple[float, float]]:
    lo, hi = math.inf, -math.inf
    for g in range(meta.num_row_groups):
        chunk = meta.row_group(g).column(index)
        stats = chunk.statistics
        if chunk.num_values == 0 or (stats is not None and stats.null_count == chunk.num_values):
            continue
        if stats is None or not stats.has_min_max:
            return None
        try:
            lo, hi = min(lo, float(stats.min)), max(hi, float(stats.max))
        except (TypeError, ValueError):
            return None
    return (lo, hi) if math.isfinite(lo) and math.isfinite(hi) else None


def parse_column_tests(column_tests) -> dict[str, dict]:
    """column_tests checked: {column: {"test": name or None, "threshold": float or None}}."""
    if column_tests is None:
        return {}
    if not isinstance(column_tests, dict):
        raise ValueError(
            f"column_tests must map column names to {{'test': name, 'threshold': value}}, got {column_tests!r}"
        )
    parsed = {}
    for name, spec in column_tests.items():
        if isinstance(spec, str):
            spec = {"test": spec}
        if not isinstance(spec, dict) or set(spec) - {"test", "threshold"}:
            raise ValueError(f"column_tests['{name}'] must be {{'test': name, 'threshold': value}}, got {spec!r}")
        test = spec.get("test")
        if test is not None and test not in STAT_TESTS:
            raise ValueError(f"column_tests['{name}']: unknown test '{test}'; supported: {', '.join(STAT_TESTS)}")
        threshold = spec.get("threshold")
        if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))):
            raise ValueError(f"column_tests['{name}']: threshold must be a number, got {threshold!r}")
        parsed[name] = {"test": test, "threshold": None if threshold is None else float(threshold)}
    return parsed


# ---------------------------------------------------------------------------------------------------------------
# The tests


def counts_of(ref: ColumnStats, cur: ColumnStats) -> tuple[np.ndarray, np.ndarray]:
    """Counts per value, over the values of both windows."""
    keys = list(set(ref.counts) | set(cur.counts))
    return (
        np.array([ref.counts.get(k, 0) for k in keys], dtype=np.float64),
        np.array([cur.counts.get(k, 0) for k in keys], dtype=np.float64),
    )


def sturges_edges(ref: ColumnStats, cur: ColumnStats) -> np.ndarray:
    """np.histogram_bin_edges(concat(reference, current), 'sturges'), from the min, max and counts alone."""
    lo, hi, n = min(ref.lo, cur.lo), max(ref.hi, cur.hi), ref.n + cur.n
    width = (hi - lo) / (np.log2(n) + 1.0)
    if ref.integer and cur.integer and width < 1:  # numpy's rule for integer data
        width = 1
    first, last = (lo - 0.5, hi + 0.5) if lo == hi else (lo, hi)
    bins = int(np.ceil((last - first) / width)) if width else 1
    return np.linspace(first, last, bins + 1, endpoint=True, dtype=np.float64)


def uses_sturges(col_type: str, ref: ColumnStats) -> bool:
    """evidently's get_binned_data bins numerical columns with more than 20 distinct reference values."""
    return col_type == "num" and (ref.nunique is None or ref.nunique > 20)


def _fill_zeroes(p: np.ndarray) -> np.ndarray:
    smallest = p[p != 0].min()
    return np.where(p == 0, smallest / 10**6 if smallest <= 0.0001 else 0.0001, p)


def binned_distance(test: str, col_type: str, ref: ColumnStats, cur: ColumnStats) -> float:
    """Jensen-Shannon distance, PSI or K-L divergence over evidently's get_binned_data shares."""
    if uses_sturges(col_type, ref):
        r, c = ref.hist / ref.n, cur.hist / cur.n
    else:
        r, c = counts_of(ref, cur)
        r, c = r / ref.n, c / cur.n
    if test == "jensenshannon":
        return jensenshannon(r, c)
    r, c = _fill_zeroes(r), _fill_zeroes(c)
    if test == "psi":
        return float(np.sum((r - c) * np.log(r / c)))
    from scipy import stats

    return float(stats.entropy(r, c))


def _rel_entr(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    out = np.zeros_like(x)
    positive = x > 0
    out[positive] = x[positive] * np.log(x[positive] / y[positive])
    return out


def jensenshannon(p: np.ndarray, q: np.ndarray) -> float:
    """scipy.spatial.distance.jensenshannon(p, q) (natural log), without importing SciPy."""
    p, q = p / np.sum(p), q / np.sum(q)
    m = (p + q) / 2.0
    return float(np.sqrt((np.sum(_rel_entr(p, m)) + np.sum(_rel_entr(q, m))) / 2.0))


def chisquare_pvalue(ref: ColumnStats, cur: ColumnStats) -> float:
    from scipy.stats import chisquare

    ref_counts, f_obs = counts_of(ref, cur)
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(chisquare(f_obs, ref_counts * (cur.n / ref.n))[1])


def z_pvalue(ref: ColumnStats, cur: ColumnStats) -> float:
    """Two-sided Z-test for proportions of the first value (in sorted order) against the rest."""
    from scipy.stats import norm

    if len(ref.counts) == 1 and len(cur.counts) == 1 and set(ref.counts) == set(cur.counts):
        return 1.0
    first = sorted(set(ref.counts) | set(cur.counts))[0]
    n1, n2 = ref.n, cur.n
    p1 = float(n1 - ref.counts.get(first, 0)) / n1
    p2 = float(n2 - cur.counts.get(first, 0)) / n2
    pooled = float(p1 * n1 + p2 * n2) / (n1 + n2)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (p1 - p2) / np.sqrt(pooled * (1 - pooled) * (1.0 / n1 + 1.0 / n2))
    return float(2 * (1 - norm.cdf(np.abs(z))))


def ks_pvalue_of_gap(i: int, j: int, n1: int, n2: int) -> float:
    """scipy's ks_2samp p-value when the statistic is the ECDF gap i/n1 - j/n2 (at the point it picks).

    The p-value depends on the statistic and the sizes only: two-valued samples with the same gap reproduce
    scipy's exact path (both sizes <= 10000); above that it is scipy's asymptotic formula."""
    from scipy import stats

    if max(n1, n2) <= 10000:
        a = np.repeat([0.0, 1.0], [i, n1 - i])
        b = np.repeat([0.0, 1.0], [j, n2 - j])
        return float(stats.ks_2samp(a, b).pvalue)
    d = abs(i / n1 - j / n2)
    m, n = sorted([float(n1), float(n2)], reverse=True)
    return float(np.clip(stats.distributions.kstwo.sf(d, np.round(m * n / (m + n))), 0, 1))


def ks_slots(u: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Counts of x around the sorted distinct values u: slot 2k+1 holds x == u[k], slot 2k the values strictly
    between u[k-1] and u[k], slot 2K those above u[K-1]."""
    pos = np.searchsorted(u, x, side="left")
    eq = np.zeros(len(x), dtype=np.int64)
    inside = pos < len(u)
    eq[inside] = u[pos[inside]] == x[inside]
    return np.bincount(2 * pos + eq, minlength=2 * len(u) + 1)


def ks_pvalue_from_slots(u: np.ndarray, u_counts: np.ndarray, slots: np.ndarray, n1: int, n2: int) -> float:
    """Exact two-sample K-S p-value from the reference's distinct values and the current values' slots.

    scipy takes the largest ECDF gaps over the data points. Between two reference values the reference ECDF is
    flat, so the extremes there are at the reference values themselves (current ECDF <= u[k]) or at the last
    current value below u[k] (current ECDF < u[k])."""
    f1_le = np.cumsum(u_counts)
    f1_before = np.concatenate([[0], f1_le[:-1]])
    c = np.cumsum(slots)
    f2_le, f2_lt = c[1::2], c[0::2][: len(u)]
    i = np.concatenate([f1_le, f1_before])
    j = np.concatenate([f2_le, f2_lt])
    point = np.concatenate([np.ones(len(u), bool), slots[0::2][: len(u)] > 0])
    i, j = i[point], j[point]
    gaps = i / n1 - j / n2
    k_max, k_min = int(np.argmax(gaps)), int(np.argmin(gaps))
    k = k_min if np.clip(-gaps[k_min], 0, 1) > gaps[k_max] else k_max
    return ks_pvalue_of_gap(int(i[k]), int(j[k]), n1, n2)


def wasserstein_from_counts(ref: ColumnStats, cur: ColumnStats) -> float:
    keys = np.array(sorted(set(ref.counts) | set(cur.counts)), dtype=np.float64)
    fr = np.cumsum([ref.counts.get(k, 0) for k in keys]) / ref.n
    fc = np.cumsum([cur.counts.get(k, 0) for k in keys]) / cur.n
    return float(np.sum(np.abs(fr - fc)[:-1] * np.diff(keys)))


def wasserstein_bounds(ref: ColumnStats, cur: ColumnStats) -> tuple[float, float, float]:
    """(lower bound, estimate, upper bound) of the Wasserstein distance from the two histograms.

    Within a bin each ECDF lies between its values at the bin's edges, which bounds |F_ref - F_cur| there; the
    estimate interpolates both ECDFs linearly inside each bin."""
    lo, hi = ref.hist_range
    width = (hi - lo) / HIST_BINS
    fr = np.concatenate([[0.0], np.cumsum(ref.hist) / ref.n])
    fc = np.concatenate([[0.0], np.cumsum(cur.hist) / cur.n])
    upper = np.maximum(np.abs(fr[1:] - fc[:-1]), np.abs(fr[:-1] - fc[1:])).sum() * width
    lower = np.maximum(0.0, np.maximum(fr[:-1] - fc[1:], fc[:-1] - fr[1:])).sum() * width
    d0, d1 = fr[:-1] - fc[:-1], fr[1:] - fc[1:]
    a0, a1 = np.abs(d0), np.abs(d1)
    with np.errstate(divide="ignore", invalid="ignore"):
        crossing = np.where(a0 + a1 > 0, (d0 * d0 + d1 * d1) / (2 * (a0 + a1)), 0.0)
    estimate = np.where(d0 * d1 >= 0, (a0 + a1) / 2, crossing).sum() * width
    slack = 1e-9 * (upper + width)  # float rounding of the bin assignment
    return max(0.0, lower - slack), float(estimate), upper + slack


def read_values(path: str, column: str) -> np.ndarray:
    """Every finite value of one column (for the rare Wasserstein distance too close to its threshold)."""
    array = datasets.open_dataset(path).read(columns=[column]).column(column).combine_chunks()
    x = array.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    return x[np.isfinite(x)]
