"""What the monitor finds on the shared datasets, its triggers, its outputs and its errors on bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from kfp_ct.components._common import datasets
from kfp_ct.components.monitor_drift import core, report


def write(frame: pd.DataFrame, path) -> str:
    datasets.write_frame(frame, path, "test")
    return str(path)


def test_bike_2011_vs_2012_drifts_in_demand_and_at_a_third_of_the_columns(windows):
    ref, cur = windows["bike_sharing", "full"]
    result = core.detect_drift(ref, cur, drift_share=0.3)
    # demand grows ~60% (casual, registered, cnt), humidity falls; the weather barely moves
    assert {"casual", "registered", "cnt", "hum"} <= set(result.drifted_columns)
    assert not {"temp", "atemp", "windspeed", "season", "mnth", "hr", "weekday"} & set(result.drifted_columns)
    # 7 of 17: with the split column yr and the row id instant, which drift by construction
    assert {"yr", "instant"} <= set(result.drifted_columns)
    assert result.dataset_drift and result.share_of_drifted_columns == pytest.approx(7 / 17)
    # with Evidently's default drift_share (0.5) the same share is no dataset drift, as in Evidently itself
    assert not core.detect_drift(ref, cur).dataset_drift
    label_excluded = core.detect_drift(ref, cur, drift_share=0.3, exclude_columns=["cnt"])
    assert "cnt" not in [c.column for c in label_excluded.columns] and label_excluded.dataset_drift


@pytest.mark.parametrize("name", ["bike_sharing", "elec2", "weather_nebraska"])
@pytest.mark.parametrize("size", ["full", "small"])
def test_a_window_compared_with_itself_triggers_nothing(name, size, windows, tmp_path):
    ref, _ = windows[name, size]
    result = core.detect_drift(ref, ref)
    assert result.drifted_columns == [] and not result.dataset_drift and result.share_of_drifted_columns == 0
    for c in result.columns:
        assert c.score == (1.0 if c.score_kind == "p_value" else pytest.approx(0.0, abs=1e-12)), c
    triggers = core.check_triggers(result, ref)
    assert not triggers.triggered and triggers.fired == []


def test_weather_first_vs_last_part(windows):
    ref, cur = windows["weather_nebraska", "full"]
    result = core.detect_drift(ref, cur, exclude_columns=["day_index"])
    # gradual drift: wind speeds fall and visibility rises beyond 0.1 std; temperatures, pressure, rain do not
    assert set(result.drifted_columns) == {"visibility", "avg_wind_speed", "max_sustained_wind_speed"}
    assert result.column("max_sustained_wind_speed").score == pytest.approx(0.257, abs=0.001)
    assert result.column("rain").test == "jensenshannon" and result.column("rain").column_type == "cat"
    assert not result.dataset_drift and result.share_of_drifted_columns == pytest.approx(3 / 9)


def test_elec2_first_year_vs_1998(windows):
    ref, cur = windows["elec2", "full"]
    result = core.detect_drift(ref, cur, exclude_columns=["date", "day_index", "approx_date"])
    assert {"transfer", "vicdemand", "vicprice", "nswprice", "nswdemand"} <= set(result.drifted_columns)
    assert not {"period", "day", "class"} & set(result.drifted_columns)
    assert result.dataset_drift


def test_new_data_volume_trigger(windows):
    ref, cur = windows["weather_nebraska", "full"]
    result = core.detect_drift(ref, cur, exclude_columns=["day_index"])
    assert result.current_rows == 6159
    fired = core.check_triggers(result, cur, min_new_rows=6159)
    assert fired.new_data and fired.fired == ["new_data"] and fired.triggered
    assert fired.details["new_data"] == {"current_rows": 6159, "min_new_rows": 6159}
    quiet = core.check_triggers(result, cur, min_new_rows=6160)
    assert quiet.new_data is False and not quiet.triggered
    with pytest.raises(ValueError, match="min_new_rows must be >= 0"):
        core.check_triggers(result, cur, min_new_rows=-1)


def test_performance_trigger_needs_its_three_settings(windows):
    ref, cur = windows["weather_nebraska", "small"]
    result = core.detect_drift(ref, cur)
    with pytest.raises(ValueError, match="needs target_column and model_name; missing: target_column"):
        core.check_triggers(result, cur, model_name="m", max_metric_drop=0.1)
    assert core.check_triggers(result, cur, model_name="m").performance_decay is None  # no max_metric_drop: off


def test_component_writes_every_output(windows, tmp_path, monkeypatch):
    from kfp import dsl

    from kfp_ct.components.monitor_drift import monitor_drift

    monkeypatch.chdir(tmp_path)
    ref, cur = windows["bike_sharing", "full"]
    outputs = {
        "report": dsl.HTML(uri=str(tmp_path / "report.html")),
        "metrics": dsl.Metrics(uri=str(tmp_path / "m")),
        "drift_table": dsl.Artifact(uri=str(tmp_path / "table.json")),
    }
    triggered = monitor_drift.python_func(
        reference=dsl.Dataset(uri=ref),
        current=dsl.Dataset(uri=cur),
        drift_share=0.3,
        target_column="cnt",
        column_tests={"temp": {"test": "psi", "threshold": 0.2}},
        min_new_rows=100_000,
        report_sample_rows=400,
        **outputs,
    )
    assert triggered is True
    table = json.loads(open(outputs["drift_table"].path).read())
    assert table["dataset_drift"] is True and "cnt" not in table["columns"]
    assert table["triggers"]["fired"] == ["data_drift"] and table["triggers"]["new_data"] is False
    assert table["triggers"]["performance_decay"] is None
    temp = table["columns"]["temp"]
    assert temp["test"] == "psi" and temp["threshold"] == 0.2 and temp["column_type"] == "num"
    assert table["columns"]["casual"]["drifted"] is True and table["columns"]["casual"]["score_kind"] == "distance"
    metrics = outputs["metrics"].metadata
    assert metrics["dataset_drift"] == 1.0 and metrics["triggered"] == 1.0 and metrics["trigger_new_data"] == 0.0
    assert metrics["share_of_drifted_columns"] == table["share_of_drifted_columns"]
    assert metrics["drifted_casual"] == 1.0 and metrics["drift_score_casual"] == table["columns"]["casual"]["score"]
    assert all(k.replace("_", "").isalnum() and k == k.lower() for k in metrics)
    assert outputs["drift_table"].metadata["triggers"] == ["data_drift"]
    html = open(outputs["report"].path, encoding="utf-8").read()
    assert "DATASET DRIFT" in html and "random sample of 400 reference and 400 current rows" in html
    assert "<script" in html and 'src="http' not in html  # Evidently's dashboard, self-contained
    assert not list(tmp_path.glob(".*.partial"))


def test_outputs_are_not_written_when_the_input_is_bad(tmp_path):
    ref = write(pd.DataFrame({"a": [1.0, 2.0]}), tmp_path / "ref.parquet")
    cur = write(pd.DataFrame({"b": [1.0, 2.0]}), tmp_path / "cur.parquet")
    with pytest.raises(ValueError):
        core.monitor_drift(
            reference_path=ref,
            current_path=cur,
            report_path=str(tmp_path / "report.html"),
            table_path=str(tmp_path / "table.json"),
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cur.parquet", "ref.parquet"]


def test_metric_names_are_safe_and_distinct():
    assert core.metric_name("Max Temp (°F)") == "max_temp_f"
    assert core.metric_name("2nd") == "m_2nd"


@pytest.fixture
def pair(tmp_path):
    def make(ref: pd.DataFrame, cur: pd.DataFrame):
        return write(ref, tmp_path / "ref.parquet"), write(cur, tmp_path / "cur.parquet")

    return make


def test_different_columns_are_named(pair):
    ref, cur = pair(pd.DataFrame({"a": [1.0], "b": [1.0], "c": [1]}), pd.DataFrame({"a": [1.0], "d": [2.0]}))
    with pytest.raises(ValueError, match=r"missing in current \(.*\): b, c; missing in reference \(.*\): d"):
        core.detect_drift(ref, cur)
    with pytest.raises(ValueError, match="columns not found: 'd' in reference"):
        core.detect_drift(ref, cur, columns=["a", "d"])
    assert [c.column for c in core.detect_drift(ref, cur, columns=["a"]).columns] == ["a"]


def test_an_empty_current_window_is_an_error(pair):
    ref, cur = pair(pd.DataFrame({"a": [1.0, 2.0]}), pd.DataFrame({"a": pd.Series([], dtype="float64")}))
    with pytest.raises(ValueError, match=r"the current window is empty: .*cur.parquet has no rows"):
        core.detect_drift(ref, cur)


def test_a_column_with_another_type_in_each_window_is_named(pair):
    ref, cur = pair(
        pd.DataFrame({"a": [1.0, 2.0], "b": [1, 2], "c": ["x", "y"]}),
        pd.DataFrame({"a": ["1", "2"], "b": [1.5, 2.5], "c": [True, False]}),
    )
    with pytest.raises(
        ValueError,
        match="'a' is double in reference but string in current; 'c' is string in reference but bool in current",
    ):
        core.detect_drift(ref, cur)  # b: integer vs float is fine


def test_a_column_with_no_values_is_named(pair):
    ref, cur = pair(
        pd.DataFrame({"a": [1.0, 2.0], "b": [1.0, 2.0]}), pd.DataFrame({"a": [1.0, 3.0], "b": [np.nan, np.inf]})
    )
    with pytest.raises(ValueError, match="column 'b' has no values in the current data .*: every value is missing"):
        core.detect_drift(ref, cur)


@pytest.mark.parametrize(
    "column_tests, message",
    [
        ({"a": {"test": "anderson"}}, "unknown test 'anderson'; supported: ks, chisquare"),
        ({"a": {"test": "chisquare"}}, "column 'a': test 'chisquare' does not apply to a numerical column"),
        ({"s": {"test": "wasserstein"}}, "column 's': test 'wasserstein' does not apply to a categorical column"),
        ({"a": {"threshold": "high"}}, "threshold must be a number"),
        ({"a": {"tset": "ks"}}, "must be {'test': name, 'threshold': value}"),
        ({"zz": {"test": "ks"}}, "column_tests names columns that are not tested: zz"),
    ],
)
def test_bad_column_tests(pair, column_tests, message):
    ref, cur = pair(
        pd.DataFrame({"a": np.arange(50.0), "s": ["x", "y"] * 25}),
        pd.DataFrame({"a": np.arange(50.0), "s": ["x", "y"] * 25}),
    )
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("{", r"\{")):
        core.detect_drift(ref, cur, column_tests=column_tests)


def test_bad_drift_share_and_missing_file(pair, tmp_path):
    ref, cur = pair(pd.DataFrame({"a": [1.0]}), pd.DataFrame({"a": [1.0]}))
    with pytest.raises(ValueError, match="drift_share must be in"):
        core.detect_drift(ref, cur, drift_share=0)
    with pytest.raises(FileNotFoundError, match="nothing.parquet"):
        core.detect_drift(ref, str(tmp_path / "nothing.parquet"))


def test_dates_are_left_out_unless_named(pair):
    ref, cur = pair(
        pd.DataFrame({"t": pd.to_datetime(["2020-01-01", "2020-01-02"]), "a": [1.0, 2.0]}),
        pd.DataFrame({"t": pd.to_datetime(["2021-01-01", "2021-01-02"]), "a": [1.0, 2.0]}),
    )
    result = core.detect_drift(ref, cur)
    assert [c.column for c in result.columns] == ["a"] and "t" in result.skipped
    with pytest.raises(ValueError, match="column 't' has type timestamp"):
        core.detect_drift(ref, cur, columns=["t", "a"])


def test_the_report_is_rendered_on_a_bounded_sample(windows, tmp_path):
    ref, cur = windows["elec2", "full"]
    sample = report.sample_frame(ref, 1000, ["nswprice", "class"], seed=4)
    assert len(sample) == 1000 and list(sample.columns) == ["nswprice", "class"]
    assert sample.equals(report.sample_frame(ref, 1000, ["nswprice", "class"], seed=4))
    result = core.detect_drift(ref, cur, columns=["nswprice", "class", "transfer"])
    report.render_report(ref, cur, result, str(tmp_path / "r.html"), sample_rows=300)
    html = open(tmp_path / "r.html", encoding="utf-8").read()
    assert "2 of 3 judged columns drifted" in html and "300 reference and 300 current rows" in html


@pytest.mark.parametrize("current_rows", [1, 5])
def test_a_window_too_small_for_its_test_is_not_judged(pair, tmp_path, current_rows):
    rng = np.random.default_rng(0)
    ref_frame = pd.DataFrame({"a": rng.normal(size=500), "s": rng.choice(["x", "y", "z"], 500)})
    far = pd.DataFrame({"a": np.full(current_rows, 50.0) + np.arange(current_rows), "s": ["w"] * current_rows})
    ref, cur = pair(ref_frame, far)  # values far outside the reference: a verdict would say "drifted"
    result = core.detect_drift(ref, cur)
    assert [(c.column, c.test, c.judged, c.drifted) for c in result.columns] == [
        ("a", "ks", False, False),
        ("s", "chisquare", False, False),
    ]
    assert result.column("a").note == (
        f"not enough rows: K-S p_value needs at least 20 non-missing values in each window, the current window has "
        f"{current_rows}"
    )
    assert "chi-square p_value needs at least 30" in result.column("s").note
    assert (result.dataset_drift, result.share_of_drifted_columns, result.number_of_drifted_columns) == (False, 0, 0)
    table = result.to_dict()
    assert table["number_of_judged_columns"] == 0 and set(table["not_judged"]) == {"a", "s"}
    outcome = core.monitor_drift(
        reference_path=ref,
        current_path=cur,
        report_path=str(tmp_path / "report.html"),
        table_path=str(tmp_path / "table.json"),
        report_sample_rows=50,
    )
    assert not outcome.triggered and outcome.metrics["number_of_not_judged_columns"] == 2
    assert not any(key.startswith(("drift_score_", "drifted_")) for key in outcome.metrics)
    page = (tmp_path / "report.html").read_text()
    assert "0 of 0 judged columns drifted" in page and "2 of 2 columns not judged: not enough rows" in page


def test_the_dataset_verdict_counts_only_judged_columns(pair):
    rng = np.random.default_rng(1)
    ref_frame = pd.DataFrame({"a": rng.normal(size=500), "b": rng.normal(size=500)})
    # 'a' drifts on 40 values; 'b' has 10 values left after missing ones: not judged
    cur_frame = pd.DataFrame({"a": rng.normal(5, 1, 40), "b": [1.0] * 10 + [np.nan] * 30})
    result = core.detect_drift(*pair(ref_frame, cur_frame), drift_share=0.6)
    assert result.column("a").drifted and not result.column("b").judged
    assert result.share_of_drifted_columns == 1.0 and result.dataset_drift
    assert "the current window has 10" in result.not_judged["b"]
