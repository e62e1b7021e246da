"""Windowed ingest: [as_of - window, as_of) in UTC, folders and Hive partitions (pruned before any file is opened),
URI templates, empty windows, late rows, and the same on s3://."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from kfp_ct.components._common import storage, windows
from kfp_ct.components.ingest.core import ingest

AS_OF = "2026-01-07T00:00:00Z"


def hourly(day: str, hours: int = 24) -> pd.DataFrame:
    times = pd.date_range(day, periods=hours, freq="h")
    return pd.DataFrame({"time": times, "x": range(hours), "label": ["a", "b"] * (hours // 2)})


def partitioned(root: Path, days: int = 10, first: str = "2026-01-01") -> Path:
    """Daily Hive partitions dt=YYYY-MM-DD/part-0.parquet, 24 hourly rows each."""
    for day in pd.date_range(first, periods=days, freq="D"):
        folder = root / f"dt={day:%Y-%m-%d}"
        folder.mkdir(parents=True)
        hourly(str(day.date())).to_parquet(folder / "part-0.parquet", index=False)
    return root


def corrupt(path: Path) -> None:
    """A file no reader can parse: a read of it fails, so a run that succeeds never opened it."""
    path.write_bytes(b"not parquet at all")


def read(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path)


def test_the_window_is_as_of_minus_window_to_as_of_half_open(tmp_path):
    source = partitioned(tmp_path / "events")
    result = ingest(
        source_uri=str(source), output_path=str(tmp_path / "out"), time_column="time", window="2d", as_of=AS_OF
    )
    times = read(tmp_path / "out")["time"]
    assert result.rows == 48 == len(times)
    assert times.min() == pd.Timestamp("2026-01-05 00:00") and times.max() == pd.Timestamp("2026-01-06 23:00")
    window = result.metadata["window"]
    assert (window["start"], window["end"], window["as_of"]) == ("2026-01-05T00:00:00Z", AS_OF, AS_OF)
    assert result.metadata["files_read"] == 2


def test_partitions_outside_the_window_are_never_opened(tmp_path):
    source = partitioned(tmp_path / "events")
    for day in ("2026-01-01", "2026-01-04", "2026-01-07", "2026-01-10"):  # around the window [01-05, 01-07)
        corrupt(source / f"dt={day}" / "part-0.parquet")
    result = ingest(
        source_uri=str(source), output_path=str(tmp_path / "out"), time_column="time", window="2d", as_of=AS_OF
    )
    assert result.rows == 48
    with pytest.raises(ValueError, match=r"dt=2026-01-04/part-0.parquet is not a readable Parquet file"):
        ingest(source_uri=str(source), output_path=str(tmp_path / "bad"), time_column="time", window="3d", as_of=AS_OF)
    assert not (tmp_path / "bad").exists()


def test_hour_partitions_are_pruned_to_the_hour(tmp_path):
    root = tmp_path / "capture"
    for hour in range(24):
        folder = root / "model=m" / "dt=2026-01-06" / f"hour={hour}"
        folder.mkdir(parents=True)
        frame = pd.DataFrame({"time": [pd.Timestamp("2026-01-06") + pd.Timedelta(hours=hour, minutes=30)], "x": [hour]})
        frame.to_parquet(folder / "part-0.parquet", index=False)
        if not 10 <= hour < 16:
            corrupt(folder / "part-0.parquet")
    result = ingest(
        source_uri=f"{root}/model=m/",
        output_path=str(tmp_path / "out"),
        time_column="time",
        window="6h",
        as_of="2026-01-06T16:00:00Z",
    )
    assert sorted(read(tmp_path / "out")["x"]) == list(range(10, 16)) and result.metadata["files_read"] == 6


def test_a_folder_without_partitions_is_filtered_on_the_time_column(tmp_path):
    source = tmp_path / "flat"
    source.mkdir()
    for day in ("2026-01-04", "2026-01-05", "2026-01-06"):
        hourly(day).to_csv(source / f"events-{day}.csv", index=False)
    (source / "_SUCCESS").write_text("")
    result = ingest(
        source_uri=str(source), output_path=str(tmp_path / "out"), time_column="time", window="1d", as_of=AS_OF
    )
    assert result.rows == 24 and read(tmp_path / "out")["time"].min() == pd.Timestamp("2026-01-06")
    assert result.metadata["files_read"] == 3


def test_as_of_with_an_offset_is_converted_to_utc_and_naive_times_are_utc(tmp_path):
    source = partitioned(tmp_path / "events")
    ingest(
        source_uri=str(source),
        output_path=str(tmp_path / "out"),
        time_column="time",
        window="6h",
        as_of="2026-01-07T02:00:00+02:00",  # = 2026-01-07T00:00Z
    )
    assert read(tmp_path / "out")["time"].tolist() == list(pd.date_range("2026-01-06 18:00", periods=6, freq="h"))


def test_time_columns_with_zones_are_compared_as_instants(tmp_path):
    source = tmp_path / "zoned"
    source.mkdir()
    frame = hourly("2026-01-07")
    frame.assign(time=frame["time"].dt.tz_localize("Europe/Berlin")).to_parquet(source / "aware.parquet", index=False)
    text = pd.DataFrame({"time": ["2026-01-06T23:30:00+01:00", "2026-01-07T00:30:00+01:00"], "x": [1, 2]})
    text.to_csv(tmp_path / "offsets.csv", index=False)
    ingest(source_uri=str(source), output_path=str(tmp_path / "aware"), time_column="time", window="1h", as_of=AS_OF)
    assert read(tmp_path / "aware")["x"].tolist() == [0]  # 2026-01-07 00:00 Berlin is 2026-01-06 23:00 UTC
    ingest(
        source_uri=str(tmp_path / "offsets.csv"),
        output_path=str(tmp_path / "text"),
        time_column="time",
        window="1h",
        as_of=AS_OF,
    )
    assert read(tmp_path / "text")["x"].tolist() == [2]  # 00:30+01:00 is 23:30 UTC, in [23:00, 00:00)


def test_an_empty_window_is_not_an_error(tmp_path):
    source = partitioned(tmp_path / "events")
    gap = ingest(
        source_uri=str(source / "dt=2026-01-03"),
        output_path=str(tmp_path / "gap"),
        time_column="time",
        window="1d",
        as_of=AS_OF,
    )
    assert gap.rows == 0 and pq.read_schema(tmp_path / "gap").names == ["time", "x", "label"]  # a file was read
    future = ingest(
        source_uri=str(source),
        output_path=str(tmp_path / "future"),
        time_column="time",
        window="7d",
        as_of="2027-01-01",
    )
    assert future.rows == 0 and future.metadata["files_read"] == 0 and future.metadata["columns"] == 0


def test_a_template_is_expanded_over_the_windows_days(tmp_path):
    for day in ("2026-01-04", "2026-01-05", "2026-01-06", "2026-01-07"):
        folder = tmp_path / "events" / day
        folder.mkdir(parents=True)
        hourly(day).to_csv(folder / "a.csv", index=False)
        hourly(day).to_csv(folder / "b.txt", index=False)  # not matched by *.csv
    corrupt(tmp_path / "events" / "2026-01-04" / "a.csv")
    result = ingest(
        source_uri=f"{tmp_path}/events/{{date}}/*.csv",
        output_path=str(tmp_path / "out"),
        time_column="time",
        window="36h",
        as_of=AS_OF,
    )
    assert result.metadata["files_read"] == 2 and result.rows == 36  # 2026-01-05 12:00 to 2026-01-07 00:00
    as_uri = ingest(
        source_uri=f"file://{tmp_path}/events/{{date}}/*.csv",
        output_path=str(tmp_path / "uri"),
        time_column="time",
        window="36h",
        as_of=AS_OF,
    )
    assert as_uri.metadata["sha256"] == result.metadata["sha256"]
    spans = windows.expand_template("gs://b/e/{date}/h={hour}/", windows.resolve("3h", "2026-01-07T01:00:00Z"))
    assert spans == ["gs://b/e/2026-01-06/h=22/", "gs://b/e/2026-01-06/h=23/", "gs://b/e/2026-01-07/h=00/"]


def test_lookback_reads_the_rows_before_the_window_again(tmp_path):
    source = partitioned(tmp_path / "events")
    result = ingest(
        source_uri=str(source),
        output_path=str(tmp_path / "out"),
        time_column="time",
        window="1d",
        as_of=AS_OF,
        lookback="12h",
    )
    assert result.rows == 36 and read(tmp_path / "out")["time"].min() == pd.Timestamp("2026-01-05 12:00")
    assert result.metadata["window"]["lookback"] == "12h"


def test_as_of_defaults_to_now_rounded_down_to_the_windows_unit():
    now = datetime(2026, 1, 7, 0, 4, 31, tzinfo=UTC)  # a daily run that started 4 minutes late
    assert windows.resolve("7d", now=now).end == datetime(2026, 1, 7, tzinfo=UTC)
    assert windows.resolve("24h", now=datetime(2026, 1, 7, 13, 59, tzinfo=UTC)).start == datetime(
        2026, 1, 6, 13, tzinfo=UTC
    )
    assert windows.resolve("7d", "20260107000000").end == datetime(2026, 1, 7, tzinfo=UTC)  # [[ScheduledTime]]


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"window": "7 days"}, "window must be a positive whole number and a unit"),
        ({"window": "0d"}, "window must be a positive"),
        ({"window": "1d", "as_of": "[[ScheduledTime]]"}, "a placeholder the KFP backend did not expand"),
        ({"window": "1d", "as_of": "{{$.pipeline_job_schedule_time_utc}}"}, "did not expand"),
        ({"window": "1d", "as_of": "last tuesday"}, "as_of must be an ISO 8601 time"),
        ({"as_of": AS_OF}, "as_of and lookback need a window"),
        ({"window": "1d", "start": "2026-01-01"}, "either a window .* or start/end"),
        ({"window": "1d", "lookback": "-1d"}, "lookback must be a positive"),
    ],
)
def test_bad_window_parameters_are_named(tmp_path, kwargs, error):
    source = partitioned(tmp_path / "events", days=1)
    with pytest.raises(ValueError, match=error):
        ingest(source_uri=str(source), output_path=str(tmp_path / "out"), time_column="time", **kwargs)
    assert not (tmp_path / "out").exists()


def test_a_missing_source_is_not_an_empty_window(tmp_path):
    with pytest.raises(FileNotFoundError, match="no file, folder or prefix at .*nowhere"):
        ingest(source_uri=str(tmp_path / "nowhere"), output_path=str(tmp_path / "out"), time_column="t", window="1d")
    assert not (tmp_path / "out").exists()


def test_a_window_needs_a_time_column_it_can_read(tmp_path):
    source = partitioned(tmp_path / "events", days=1)
    with pytest.raises(ValueError, match="a window needs time_column"):
        ingest(source_uri=str(source), output_path=str(tmp_path / "a"), window="1d", as_of="2026-01-02")
    with pytest.raises(ValueError, match="time column 'when' is not in .*columns are: time, x, label"):
        ingest(
            source_uri=str(source), output_path=str(tmp_path / "b"), time_column="when", window="1d", as_of="2026-01-02"
        )
    with pytest.raises(ValueError, match="time column 'x' is int64: a window .* needs dates or times"):
        ingest(
            source_uri=str(source), output_path=str(tmp_path / "c"), time_column="x", window="1d", as_of="2026-01-02"
        )
    assert not any(tmp_path.glob("[abc]"))


@pytest.mark.integration
def test_s3_prefix_partitions_are_pruned(tmp_path, s3_bucket):
    source = partitioned(tmp_path / "events")
    corrupt(source / "dt=2026-01-04" / "part-0.parquet")
    client = storage.s3_client(f"s3://{s3_bucket}")
    for path in source.rglob("*.parquet"):
        client.upload_file(str(path), s3_bucket, f"events/{path.relative_to(source)}")
    result = ingest(
        source_uri=f"s3://{s3_bucket}/events/",
        output_path=str(tmp_path / "out"),
        time_column="time",
        window="2d",
        as_of=AS_OF,
    )
    assert result.rows == 48 and result.metadata["files_read"] == 2
    ingest(
        source_uri=f"s3://{s3_bucket}/events/dt={{date}}/",
        output_path=str(tmp_path / "template"),
        time_column="time",
        window="2d",
        as_of=AS_OF,
    )
    assert pq.read_table(tmp_path / "template").equals(pq.read_table(tmp_path / "out"))
