"""The fast statistics agree with Evidently 0.7.23's DataDriftPreset, column by column, on every shared dataset.

Each case runs both on the same two windows and compares the test Evidently picks, its verdict and its score.
Evidently runs once per case; ours runs twice: as configured for these sizes (values kept, SciPy on them) and
forced onto the streaming path used for large data (histogram bounds for Wasserstein, K-S from counts).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest

from kfp_ct.components.monitor_drift import core, report
from kfp_ct.components.monitor_drift import stats as drift_stats

CASES = [(name, size) for name in ("bike_sharing", "elec2", "weather_nebraska") for size in ("full", "small")]
OVERRIDES = {
    "temp": {"test": "psi", "threshold": 0.05},  # numerical, > 20 values: sturges bins
    "hum": {"test": "ks"},  # K-S on a large reference
    "weathersit": {"test": "chisquare"},
    "season": {"test": "kl_div"},
    "windspeed": {"test": "jensenshannon", "threshold": 0.05},
    "hr": {"test": "jensenshannon"},  # integer column, 24 values: numpy's integer bin width
    "atemp": {"threshold": 0.05},  # threshold only
    "cnt": {"test": "psi"},
}


def streaming(monkeypatch):
    """Forces the large-data path: no values kept, value counts only up to 25 distinct values."""
    monkeypatch.setattr(core, "EXACT_MAX_ROWS", 0)
    monkeypatch.setattr(drift_stats, "MAX_TRACKED_VALUES", 25)


def frame(path: str) -> pd.DataFrame:
    """The Parquet file as plain pandas (an integer column with missing values becomes float, as Arrow gives it)."""
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pandas(ignore_metadata=True)


def evidently_on(ref_path, cur_path, columns, column_tests=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return report.evidently_drift(frame(ref_path), frame(cur_path), columns, column_tests)


def assert_agree(ours: core.DriftResult, theirs: report.EvidentlyDrift, score_rel: float) -> None:
    assert sorted(c.column for c in ours.columns) == sorted(theirs.columns)
    for c in ours.columns:
        e = theirs.columns[c.column]
        where = f"column {c.column}: ours {c.test} {c.score} {c.drifted}, evidently {e}"
        assert c.test_display_name == e["test"], where
        assert c.threshold == e["threshold"], where
        assert c.drifted == e["drifted"], where
        tolerance = score_rel if not c.exact else 1e-7
        assert math.isclose(c.score, e["score"], rel_tol=tolerance, abs_tol=1e-12 if c.exact else 1e-4), where
    assert ours.share_of_drifted_columns == pytest.approx(theirs.share_of_drifted_columns)
    assert ours.dataset_drift == theirs.dataset_drift


@pytest.fixture(scope="module")
def evidently_results(windows):
    """Evidently's verdicts per case, on every column ours tests as Evidently would (text columns left out: there
    Evidently trains a text classifier, ours tests them as categorical)."""
    results = {}
    for case in CASES:
        ref, cur = windows[case]
        columns = [c.column for c in core.detect_drift(ref, cur).columns if c.note is None]
        results[case] = (columns, evidently_on(ref, cur, columns))
    return results


@pytest.mark.parametrize("case", CASES, ids=["-".join(c) for c in CASES])
def test_verdicts_agree_with_evidently(case, windows, evidently_results):
    ref, cur = windows[case]
    columns, theirs = evidently_results[case]
    ours = core.detect_drift(ref, cur, columns=columns)
    assert_agree(ours, theirs, score_rel=1e-7)
    tests = {c.test for c in ours.columns}
    assert tests <= ({"ks", "chisquare", "z"} if case[1] == "small" else {"wasserstein", "jensenshannon"})


@pytest.mark.parametrize("case", CASES, ids=["-".join(c) for c in CASES])
def test_streaming_path_agrees_with_evidently(case, windows, evidently_results, monkeypatch):
    ref, cur = windows[case]
    columns, theirs = evidently_results[case]
    streaming(monkeypatch)
    ours = core.detect_drift(ref, cur, columns=columns)
    assert_agree(ours, theirs, score_rel=5e-3)
    if case[1] == "full":  # the histogram estimate was used for the continuous columns
        assert any(not c.exact for c in ours.columns)


@pytest.mark.parametrize("size", ["full", "small"])
def test_overridden_tests_and_thresholds_agree(size, windows, monkeypatch):
    ref, cur = windows["bike_sharing", size]
    columns = list(OVERRIDES) + ["mnth", "holiday"]
    theirs = evidently_on(ref, cur, columns, OVERRIDES)
    assert_agree(core.detect_drift(ref, cur, columns=columns, column_tests=OVERRIDES), theirs, 1e-7)
    streaming(monkeypatch)
    assert_agree(core.detect_drift(ref, cur, columns=columns, column_tests=OVERRIDES), theirs, 5e-3)


def _synthetic(rows: int, current: bool, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    shift = 0.3 if current else 0.0
    with_gaps = rng.normal(shift, 1, rows)
    with_gaps[rng.random(rows) < 0.1] = np.nan
    with_gaps[:3] = [np.inf, -np.inf, np.nan]
    counts = pd.array(rng.poisson(30, rows), dtype="Int64")
    counts[rng.random(rows) < 0.05] = pd.NA  # integers with missing values: float in pandas, numerical
    colours = ["red", "green", "blue"] + (["violet"] if current else [])  # a category only the current window has
    return pd.DataFrame(
        {
            "with_gaps": with_gaps,
            "counts": counts,
            "flag": rng.random(rows) < (0.6 if current else 0.5),  # bool: categorical, Z-test or Jensen-Shannon
            "colour": rng.choice(colours, rows),
            "level": pd.Categorical(rng.choice(["low", "mid", "high"], rows)),  # dictionary-encoded in Parquet
            "constant": np.full(rows, 3.5 if current else 3.0),  # std 0: normed by 0.001
            "three_values": rng.choice([1.0, 2.0, 3.0], rows),  # float with <= 5 values
            "hour": rng.integers(0, 24, rows),  # integer with > 10 values: numerical
            "small_int": rng.integers(0, 4, rows),  # integer with <= 10 values: categorical
            "binary_text": rng.choice(["yes", "no"], rows, p=[0.3, 0.7] if current else [0.5, 0.5]),
        }
    )


@pytest.mark.parametrize("rows", [(500, 400), (3000, 2500)], ids=["small", "large"])
def test_missing_values_types_and_edge_cases_agree(rows, tmp_path, monkeypatch):
    from kfp_ct.components._common import datasets

    ref_frame, cur_frame = _synthetic(rows[0], False, 1), _synthetic(rows[1], True, 2)
    ref, cur = str(tmp_path / "ref.parquet"), str(tmp_path / "cur.parquet")
    datasets.write_frame(ref_frame, ref, "test")
    datasets.write_frame(cur_frame, cur, "test")
    theirs = evidently_on(ref, cur, None)
    ours = core.detect_drift(ref, cur)
    assert_agree(ours, theirs, 1e-7)
    assert ours.column("counts").column_type == "num" and ours.column("small_int").column_type == "cat"
    assert ours.column("with_gaps").reference_values < rows[0] - 3  # NaN and +-inf dropped
    streaming(monkeypatch)
    assert_agree(core.detect_drift(ref, cur), theirs, 5e-3)


def test_wasserstein_close_to_its_threshold_is_decided_exactly(tmp_path, monkeypatch):
    """A normed distance within the histogram's error of 0.1: the column is read again and computed exactly."""
    from kfp_ct.components._common import datasets

    rng = np.random.default_rng(3)
    base = rng.normal(0, 1, 20000)
    frames = {}
    for name, offset in (("at", 0.1), ("above", 0.1 + 2e-6), ("below", 0.1 - 2e-6)):
        frames[name] = offset * base.std()
    ref_frame = pd.DataFrame({name: base for name in frames})
    cur_frame = pd.DataFrame({name: base + offset for name, offset in frames.items()})
    ref, cur = str(tmp_path / "ref.parquet"), str(tmp_path / "cur.parquet")
    datasets.write_frame(ref_frame, ref, "test")
    datasets.write_frame(cur_frame, cur, "test")
    theirs = evidently_on(ref, cur, None)
    streaming(monkeypatch)
    ours = core.detect_drift(ref, cur)
    assert_agree(ours, theirs, 1e-7)
    assert all(c.exact for c in ours.columns)  # all three were too close for the histogram
    assert not ours.column("below").drifted and ours.column("above").drifted
