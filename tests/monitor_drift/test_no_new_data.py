"""An empty current window is "no new data": nothing compared, nothing triggered, and the metrics, the drift table
and the report say so."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kfp_ct.components.monitor_drift import core

WINDOW = {"time_column": "t", "start": "2026-01-06T00:00:00Z", "end": "2026-01-07T00:00:00Z"}


@pytest.mark.parametrize("columns", [True, False], ids=["with-the-columns", "no-file-in-the-window"])
def test_an_empty_window_is_no_new_data(tmp_path, columns):
    reference = pa.table({"x": [1.0, 2.0, 3.0] * 20, "y": ["a", "b", "c"] * 20})
    pq.write_table(reference, tmp_path / "ref.parquet")
    pq.write_table(reference.slice(0, 0) if columns else pa.table({}), tmp_path / "cur.parquet")
    result = core.monitor_drift(
        reference_path=str(tmp_path / "ref.parquet"),
        current_path=str(tmp_path / "cur.parquet"),
        report_path=str(tmp_path / "report.html"),
        table_path=str(tmp_path / "table.json"),
        min_new_rows=1,
        current_window=WINDOW,
    )
    assert result.no_new_data and not result.triggered
    assert result.metrics == {"no_new_data": 1.0, "current_rows": 0.0, "reference_rows": 60.0, "triggered": 0.0}
    assert result.metadata["no_new_data"] and result.metadata["triggers"] == [] and result.metadata["window"] == WINDOW
    table = json.loads((tmp_path / "table.json").read_text())
    assert table["no_new_data"] and table["triggers"]["fired"] == [] and table["window"] == WINDOW
    report = (tmp_path / "report.html").read_text()
    assert "No new data" in report and "[2026-01-06T00:00:00Z, 2026-01-07T00:00:00Z)" in report


def test_a_window_with_rows_has_no_new_data_false(tmp_path):
    reference = pa.table({"x": [1.0, 2.0, 3.0] * 20})
    pq.write_table(reference, tmp_path / "ref.parquet")
    result = core.monitor_drift(
        reference_path=str(tmp_path / "ref.parquet"),
        current_path=str(tmp_path / "ref.parquet"),
        report_path=str(tmp_path / "report.html"),
        table_path=str(tmp_path / "table.json"),
        report_sample_rows=50,
    )
    assert not result.no_new_data and not result.triggered and result.metadata["no_new_data"] is False
    assert "no_new_data" not in result.metrics and result.metrics["current_rows"] == 60.0
