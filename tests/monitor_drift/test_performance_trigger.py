"""The performance-decay trigger against a real MLflow server: a champion trained on 2011 bike demand, scored on
later windows."""

from __future__ import annotations

import uuid

import pandas as pd
import pytest

from kfp_ct.components._common import datasets, tracking
from kfp_ct.components.monitor_drift import core

pytestmark = pytest.mark.integration
LEAKS = ["casual", "registered", "instant", "yr"]  # cnt = casual + registered; instant is a row id; yr is the split


@pytest.fixture(scope="module")
def champion(shared_data, mlflow_server, tmp_path_factory):
    """A hist-gradient-boosting model of `cnt` trained on 2011, registered and promoted to champion."""
    from kfp_ct.components.featurize.core import featurize
    from kfp_ct.components.train_sklearn.core import train_sklearn

    folder = tmp_path_factory.mktemp("perf")
    hours = pd.read_csv(shared_data / "bike_sharing" / "hour.csv")
    paths = {}
    for name, part in (("y2011", hours[hours.yr == 0]), ("y2012", hours[hours.yr == 1].head(3000))):
        paths[name] = str(folder / f"{name}.parquet")
        datasets.write_frame(part.reset_index(drop=True), paths[name], "test")
    featurize(
        dataset_path=paths["y2011"],
        target_column="cnt",
        train_path=str(folder / "train.parquet"),
        test_path=str(folder / "test.parquet"),
        featurizer_path=str(folder / "featurizer"),
        time_column="dteday",
        exclude_columns=LEAKS,
    )
    name = f"bike-{uuid.uuid4().hex[:8]}"
    outcome = train_sklearn(
        train_path=str(folder / "train.parquet"),
        featurizer_path=str(folder / "featurizer"),
        model_path=str(folder / "model"),
        model_name=name,
        estimator="hist_gradient_boosting",
        hyperparameters={"max_iter": 60},
        seed=0,
        tracking_uri=mlflow_server,
    )
    tracking.promote(name, outcome.version, tracking_uri=mlflow_server)
    return {
        "name": name,
        "recorded_rmse": outcome.metrics["rmse"],
        "test": str(folder / "test.parquet"),
        "reference": paths["y2011"],
        "y2012": paths["y2012"],
        "folder": folder,
    }


def test_a_later_year_fires_performance_decay(champion, mlflow_server):
    drift = core.detect_drift(champion["reference"], champion["y2012"], exclude_columns=["cnt"])
    triggers = core.check_triggers(
        drift, champion["y2012"], "cnt", champion["name"], max_metric_drop=20.0, tracking_uri=mlflow_server
    )
    perf = triggers.details["performance_decay"]
    assert perf["metric"] == "rmse" and perf["champion_version"] == "1" and perf["labelled_rows"] == 3000
    assert perf["recorded"] == pytest.approx(champion["recorded_rmse"])
    assert perf["recorded_from"] == "model metadata (validation_metrics)"
    # demand grew in 2012: the 2011 model's error grows by more than half (rmse ~53 -> ~88 on Jan-May 2012)
    assert perf["current"] > 1.5 * perf["recorded"]
    assert perf["drop"] == pytest.approx(perf["current"] - perf["recorded"]) and perf["drop"] > 20.0
    assert triggers.performance_decay is True and "performance_decay" in triggers.fired and triggers.triggered


def test_the_same_period_does_not_fire(champion, mlflow_server):
    drift = core.detect_drift(champion["reference"], champion["test"], exclude_columns=["cnt"])
    triggers = core.check_triggers(
        drift, champion["test"], "cnt", champion["name"], max_metric_drop=40.0, tracking_uri=mlflow_server
    )
    perf = triggers.details["performance_decay"]
    assert abs(perf["drop"]) < 40.0 and triggers.performance_decay is False
    assert "performance_decay" not in triggers.fired


def test_no_champion_or_no_labels_leaves_it_unchecked(champion, mlflow_server, tmp_path):
    drift = core.detect_drift(champion["reference"], champion["y2012"], exclude_columns=["cnt"])
    none = core.check_triggers(drift, champion["y2012"], "cnt", "no-such-model", 1.0, tracking_uri=mlflow_server)
    assert none.performance_decay is None and "has no champion" in none.details["performance_decay"]["reason"]
    unlabelled = str(tmp_path / "unlabelled.parquet")
    datasets.write_frame(datasets.read_frame(champion["y2012"]).drop(columns=["cnt"]), unlabelled, "test")
    nolabels = core.check_triggers(drift, unlabelled, "cnt", champion["name"], 1.0, tracking_uri=mlflow_server)
    assert nolabels.performance_decay is None
    assert "no label column 'cnt'" in nolabels.details["performance_decay"]["reason"]


def test_component_reports_the_performance_trigger(champion, mlflow_server, tmp_path):
    from kfp import dsl

    from kfp_ct.components.monitor_drift import monitor_drift

    outputs = {
        "report": dsl.HTML(uri=str(tmp_path / "report.html")),
        "metrics": dsl.Metrics(uri=str(tmp_path / "m")),
        "drift_table": dsl.Artifact(uri=str(tmp_path / "table.json")),
    }
    triggered = monitor_drift.python_func(
        reference=dsl.Dataset(uri=champion["reference"]),
        current=dsl.Dataset(uri=champion["y2012"]),
        columns=["temp", "hum", "windspeed", "hr"],
        target_column="cnt",
        model_name=champion["name"],
        performance_trigger=True,
        max_metric_drop=20.0,
        tracking_uri=mlflow_server,
        report_sample_rows=300,
        **outputs,
    )
    assert triggered is True
    metrics = outputs["metrics"].metadata
    assert metrics["trigger_performance_decay"] == 1.0 and metrics["champion_rmse_drop"] > 20.0
    assert "performance_decay" in outputs["drift_table"].metadata["triggers"]  # temp drifts too: Jan-May vs 2011
