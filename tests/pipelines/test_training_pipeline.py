"""The training and continuous-training pipelines under kfp.local on the real datasets, with a real MLflow server."""

import pandas as pd
import pytest

from kfp_ct.components._common import tracking
from kfp_ct.pipelines import PIPELINES
from kfp_ct.pipelines.local_run import run_local

pytestmark = [pytest.mark.local, pytest.mark.integration]
FAST = {"torch": {"epochs": 8, "hidden_sizes": [64, 32]}, "keras": {"epochs": 6, "hidden_sizes": [64, 32]}}


def _metric(summary, task: str, name: str) -> float:
    return summary.task(task).artifacts["metrics"]["metadata"][name]


@pytest.mark.parametrize("framework,floor", [("sklearn", 0.85), ("torch", 0.85), ("keras", 0.85)])
def test_each_framework_trains_evaluates_and_pushes_on_elec2(
    kfp_local, mlflow_server, shared_data, tmp_path, framework, floor
):
    model_name = f"elec2-{framework}"
    summary = run_local(
        PIPELINES["training_pipeline"],
        {
            "source_uri": str(shared_data / "elec2" / "elec2.csv"),
            "target_column": "class",
            "framework": framework,
            "hyperparameters": FAST.get(framework, {}),
            "model_name": model_name,
            "tracking_uri": mlflow_server,
            "thresholds": {"roc_auc": {"min": floor}},
            "storage_uri": (tmp_path / "models").as_uri(),
        },
        kfp_local,
    )
    assert _metric(summary, "evaluate", "roc_auc") >= floor
    assert summary.task("evaluate").parameters["Output"] is True
    assert tracking.get_alias(model_name, tracking.CHAMPION, mlflow_server) == "1"


def test_tuned_training_matches_or_beats_the_defaults(kfp_local, mlflow_server, shared_data, tmp_path):
    common = {
        "source_uri": str(shared_data / "elec2" / "elec2.csv"),
        "target_column": "class",
        "tracking_uri": mlflow_server,
        "storage_uri": (tmp_path / "models").as_uri(),
        "estimator": "random_forest",
        "hyperparameters": {"n_estimators": 40},
    }
    default = run_local(PIPELINES["training_pipeline"], {**common, "model_name": "elec2-default"}, kfp_local)
    tuned = run_local(
        PIPELINES["training_pipeline"],
        {
            **common,
            "model_name": "elec2-tuned",
            "tune_hyperparameters": True,
            "tuning_algorithm": "grid",
            "max_trial_count": 3,
            "parallel_trial_count": 2,
            # the grid holds the default (1), so tuning can only match or beat it on validation
            "search_space": {
                "min_samples_leaf": {"parameterType": "discrete", "feasibleSpace": {"list": ["1", "4", "16"]}}
            },
        },
        kfp_local,
    )
    assert tuned.task("tune").parameters["Output"]["n_estimators"] == 40
    assert _metric(tuned, "evaluate", "roc_auc") >= _metric(default, "evaluate", "roc_auc") - 0.005


def test_bike_2012_retrains_and_the_new_model_beats_the_old(kfp_local, mlflow_server, shared_data, tmp_path):
    hours = shared_data / "bike_sharing" / "hour.csv"
    common = {
        "target_column": "cnt",
        "task": "regression",
        "time_column": "dteday",
        "model_name": "bike",
        "exclude_columns": ["instant", "casual", "registered", "yr"],
        "tracking_uri": mlflow_server,
        "storage_uri": (tmp_path / "models").as_uri(),
    }
    run_local(PIPELINES["training_pipeline"], {**common, "source_uri": str(hours), "end": "2012-01-01"}, kfp_local)
    retrain = run_local(
        PIPELINES["continuous_training_pipeline"],
        {**common, "current_uri": str(hours), "start": "2012-01-01", "drift_share": 0.3, "max_metric_drop": 10.0},
        kfp_local,
    )
    assert retrain.task("monitor-drift").parameters["Output"] is True
    metrics = retrain.task("evaluate").artifacts["metrics"]["metadata"]
    assert metrics["rmse"] < metrics["champion_rmse"]
    assert tracking.get_alias("bike", tracking.CHAMPION, mlflow_server) == "2"


def test_a_window_compared_with_itself_triggers_nothing(kfp_local, mlflow_server, shared_data, tmp_path):
    source = str(shared_data / "weather_nebraska" / "weather.csv")
    frame = pd.read_csv(source, nrows=1)
    target = "rain" if "rain" in frame.columns else frame.columns[-1]
    steady = run_local(
        PIPELINES["continuous_training_pipeline"],
        {
            "current_uri": source,
            "reference_uri": source,
            "target_column": target,
            "model_name": "weather",
            "tracking_uri": mlflow_server,
            "storage_uri": (tmp_path / "models").as_uri(),
        },
        kfp_local,
    )
    assert steady.task("monitor-drift").parameters["Output"] is False
    assert not any(task.name.startswith(("train-", "push")) for task in steady.tasks)


def test_a_blessed_candidate_awaits_approval_and_nothing_is_deployed(
    kfp_local, mlflow_server, elec2_dataset, tmp_path, model_name, capfd
):
    summary = run_local(
        PIPELINES["training_pipeline"],
        {
            "source_uri": elec2_dataset[0],
            "target_column": "class",
            "model_name": model_name,
            "tracking_uri": mlflow_server,
            "hyperparameters": {"max_iter": 20},
            "storage_uri": (tmp_path / "models").as_uri(),
            "require_approval": True,
        },
        kfp_local,
    )
    assert summary.task("evaluate").parameters["Output"] is True
    assert not any(task.name.startswith("push") for task in summary.tasks)
    assert tracking.get_alias(model_name, tracking.CHALLENGER, mlflow_server) == "1"
    assert tracking.get_alias(model_name, tracking.CHAMPION, mlflow_server) is None
    assert not (tmp_path / "models").exists()
    verdicts = summary.record["verdicts"]
    assert verdicts["blessed"] is True and verdicts["challenger"] == "1" and "pushed_version" not in verdicts
    assert "awaiting approval: version 1 is the challenger, nothing deployed" in capfd.readouterr().out
