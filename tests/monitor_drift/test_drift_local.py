"""monitor_drift under kfp.local (SubprocessRunner): the executor code a KFP pod runs."""

# no `from __future__ import annotations`: kfp reads the pipeline's annotations as types, not strings
import json
from typing import NamedTuple

import pytest
from kfp import dsl

pytestmark = pytest.mark.local


def test_weather_windows_under_kfp_local(kfp_local, shared_data):
    from kfp_ct.components.ingest import ingest
    from kfp_ct.components.monitor_drift import monitor_drift

    class Outputs(NamedTuple):
        triggered: bool
        metrics: dsl.Metrics
        drift_table: dsl.Artifact
        report: dsl.HTML

    @dsl.pipeline
    def weather_drift(source: str) -> Outputs:
        reference = ingest(source_uri=source, time_column="day_index", start="0", end="3000")
        current = ingest(source_uri=source, time_column="day_index", start="15000", end="18159")
        drift = monitor_drift(
            reference=reference.outputs["dataset"],
            current=current.outputs["dataset"],
            columns=["avg_wind_speed", "max_sustained_wind_speed", "temp", "rain"],
            column_tests={"temp": {"threshold": 0.2}},
            min_new_rows=5000,
            report_sample_rows=500,
        )
        return Outputs(
            triggered=drift.outputs["Output"],
            metrics=drift.outputs["metrics"],
            drift_table=drift.outputs["drift_table"],
            report=drift.outputs["report"],
        )

    run = weather_drift(source=str(shared_data / "weather_nebraska" / "weather.csv"))
    assert run.outputs["triggered"] is True
    with open(run.outputs["drift_table"].path) as f:
        table = json.load(f)
    assert table["triggers"]["fired"] == ["data_drift"] and table["triggers"]["new_data"] is False
    assert table["columns"]["max_sustained_wind_speed"]["drifted"] is True
    assert table["columns"]["temp"]["threshold"] == 0.2
    assert run.outputs["metrics"].metadata["dataset_drift"] == 1.0
    with open(run.outputs["report"].path, encoding="utf-8") as f:
        assert "DATASET DRIFT" in f.read()
