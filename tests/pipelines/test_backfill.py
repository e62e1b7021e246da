"""`kfp-ct backfill`: the scheduled runs of a past period, each with its as_of, on Hive-partitioned ELEC2; the loop
retrains exactly in the period where drift appears (vicprice, vicdemand and transfer are constant for the first 363
days, 1996-05-07 to 1997-05-04, and vary from then on), quiet periods trigger nothing, an empty window is "no new
data", and the reference moves with the retrained champion."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from kfp_ct.components._common import tracking
from kfp_ct.pipelines import PIPELINES
from kfp_ct.pipelines.backfill import backfill, period_line, schedule
from kfp_ct.pipelines.local_run import run_local

CHANGE = pd.Timestamp("1997-05-05")  # day_index 363: the first day the Victorian columns vary


def test_the_schedule_of_a_backfill():
    assert schedule("2026-01-01", "2026-01-22T00:00:00Z", "7d") == [
        datetime(2026, 1, 8, tzinfo=UTC),
        datetime(2026, 1, 15, tzinfo=UTC),
        datetime(2026, 1, 22, tzinfo=UTC),
    ]
    with pytest.raises(ValueError, match="--to .* must be at least one period"):
        schedule("2026-01-01", "2026-01-05", "7d")
    with pytest.raises(ValueError, match="--every must be a positive whole number"):
        schedule("2026-01-01", "2026-02-01", "weekly")


def test_a_period_line_says_what_the_run_decided():
    base = {"start": "2026-01-01T00:00:00Z", "end": "2026-01-08T00:00:00Z", "rows": 10, "blessed": True}
    quiet = {**base, "no_new_data": False, "dataset_drift": False, "drifted_columns": [], "triggers": []}
    assert period_line({**quiet, "triggered": False}).endswith("no dataset drift; no trigger fired")
    drifted = {**quiet, "dataset_drift": True, "drifted_columns": ["x"], "triggers": ["data_drift"], "triggered": True}
    line = period_line({**drifted, "retrained": True, "pushed_version": "2"})
    assert line.endswith("drift in x; fired: data_drift -> retrained, promoted version 2")
    assert period_line({**base, "rows": 0, "no_new_data": True}).endswith(
        "no new data: nothing compared, nothing triggered"
    )


@pytest.fixture
def elec2_days(shared_data, tmp_path):
    """ELEC2 as daily Hive partitions (dt=YYYY-MM-DD/part-0.parquet) of approx_date; the champion's first data, the
    90 days before 1997-03-10, as one file. day_index and date (a running index and a normalized date) are left
    out: they drift in every window."""
    frame = pd.read_csv(shared_data / "elec2" / "elec2_enriched.csv.gz", parse_dates=["approx_date"])
    frame = frame.drop(columns=["day_index", "date"])
    root = tmp_path / "elec2"
    for day, rows in frame.groupby(frame["approx_date"].dt.strftime("%Y-%m-%d")):
        (root / f"dt={day}").mkdir(parents=True)
        rows.to_parquet(root / f"dt={day}" / "part-0.parquet", index=False)
    first = frame[(frame.approx_date >= "1996-12-10") & (frame.approx_date < "1997-03-10")]
    first.to_parquet(tmp_path / "first.parquet", index=False)
    return {"partitions": root, "first": tmp_path / "first.parquet"}


@pytest.mark.local
@pytest.mark.integration
def test_backfill_retrains_exactly_where_drift_appears(kfp_local, mlflow_server, elec2_days, tmp_path, capsys):
    common = {
        "target_column": "class",
        "model_name": "elec2-backfill",
        "time_column": "approx_date",
        "tracking_uri": mlflow_server,
        "storage_uri": (tmp_path / "models").as_uri(),
    }
    run_local(PIPELINES["training_pipeline"], {**common, "source_uri": str(elec2_days["first"])}, kfp_local)
    periods = backfill(
        PIPELINES["continuous_training_pipeline"],
        {**common, "current_uri": str(elec2_days["partitions"]), "performance_trigger": False},
        "1997-03-10",
        "1997-06-02",
        "28d",
        kfp_local,
    )
    starts = [p["start"] for p in periods]
    assert starts == ["1997-03-10T00:00:00Z", "1997-04-07T00:00:00Z", "1997-05-05T00:00:00Z"]
    assert [p["rows"] for p in periods] == [28 * 48] * 3
    assert [p["retrained"] for p in periods] == [False, False, True]
    assert not any(p["triggered"] for p in periods[:2])
    assert {"vicprice", "vicdemand", "transfer"} <= set(periods[2]["drifted_columns"])
    assert periods[2]["pushed_version"] == "2" == tracking.get_alias("elec2-backfill", tracking.CHAMPION, mlflow_server)
    printed = capsys.readouterr().out
    assert "backfill of continuous-training-pipeline, 3 periods of 28d:" in printed
    assert f"[1997-05-05T00:00:00Z, 1997-06-02T00:00:00Z)     {28 * 48} rows  drift in" in printed

    # the next period's reference is what version 2 was trained on: the window 1997-05-05 to 1997-06-02
    fourth = run_local(
        PIPELINES["continuous_training_pipeline"],
        {
            **common,
            "current_uri": str(elec2_days["partitions"]),
            "performance_trigger": False,
            "window": "28d",
            "as_of": "1997-06-30T00:00:00Z",
        },
        kfp_local,
    )
    reference = fourth.task("reference-data").artifacts["reference"]["metadata"]
    assert reference["champion_version"] == "2"
    assert (reference["window"]["start"], reference["window"]["end"]) == (
        "1997-05-05T00:00:00Z",
        "1997-06-02T00:00:00Z",
    )

    # an empty window: no new data, nothing triggered, nothing trained
    empty = run_local(
        PIPELINES["continuous_training_pipeline"],
        {**common, "current_uri": str(elec2_days["partitions"]), "window": "7d", "as_of": "2001-01-01T00:00:00Z"},
        kfp_local,
    )
    assert empty.task("ingest").parameters["Output"] == 0
    assert empty.task("monitor-drift").artifacts["drift_table"]["metadata"]["no_new_data"] is True
    assert empty.task("monitor-drift").parameters["Output"] is False
    assert not any(t.name.startswith(("validate-2", "featurize", "train-")) for t in empty.tasks)
    assert empty.record["verdicts"]["no_new_data"] is True


def test_as_of_is_for_a_windowed_pipeline(capsys):
    from kfp_ct.pipelines.cli import main

    with pytest.raises(SystemExit, match="training-pipeline has no as_of parameter"):
        main(["run", "training_pipeline", "--as-of", "2026-01-07T00:00:00Z"])
