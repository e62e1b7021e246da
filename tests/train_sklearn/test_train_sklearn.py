"""train_sklearn: every estimator on real slices, seeded, tracked and registered; bad input registers nothing."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from kfp_ct.components._common import datasets, tracking, training
from kfp_ct.components._common.model import load_model
from kfp_ct.components.train_sklearn import core as sk

FAST = {"random_forest": {"n_estimators": 30}, "hist_gradient_boosting": {"max_iter": 60}}


@pytest.mark.parametrize("estimator", ["logistic_regression", "random_forest", "hist_gradient_boosting"])
def test_classifiers_on_elec2(estimator, elec2_split, sqlite_tracking, model_name, tmp_path, capsys):
    outcome = sk.train_sklearn(
        train_path=elec2_split["train"],
        featurizer_path=elec2_split["featurizer"],
        model_path=str(tmp_path / "model"),
        model_name=model_name,
        estimator=estimator,
        hyperparameters=FAST.get(estimator),
        seed=0,
        tracking_uri=sqlite_tracking,
        target_column="class",
        task="classification",
        train_metadata={"sha256": "feed", "source_uri": "gs://bucket/elec2.csv"},
    )
    assert set(outcome.metrics) == {"accuracy", "precision", "recall", "f1", "roc_auc", "log_loss"}
    assert outcome.metrics["roc_auc"] > 0.75, outcome.metrics  # well above chance on the 4000-row slice
    printed = capsys.readouterr().out.splitlines()
    assert f"validation-roc_auc={outcome.metrics['roc_auc']:.8g}" in printed  # the Katib StdOut format
    assert tracking.versions(model_name, sqlite_tracking) == [outcome.version] == ["1"]
    model = load_model(outcome.model_path)
    assert model.metadata["estimator"] == estimator
    assert model.metadata["train_data"]["sha256"] == "feed"
    assert model.metadata["train_data"]["source_uri"] == "gs://bucket/elec2.csv"
    assert model.metadata["mlflow_run_id"] == outcome.run_id
    assert model.metadata["hyperparameters"] == {**sk.HYPERPARAMETERS[estimator], **FAST.get(estimator, {})}
    run = tracking.client(sqlite_tracking).get_run(outcome.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["roc_auc"] == pytest.approx(outcome.metrics["roc_auc"])
    assert run.data.params["estimator"] == estimator and run.data.params["train_sha256"] == "feed"
    # the registered version's artifacts are the model
    downloaded = tracking.download_version(model_name, outcome.version, tmp_path / "download", sqlite_tracking)
    test = datasets.read_frame(elec2_split["test"])
    assert (load_model(downloaded).predict(test) == model.predict(test)).all()


@pytest.mark.parametrize("estimator", ["linear_regression", "random_forest", "hist_gradient_boosting"])
def test_regressors_on_bike(estimator, bike_split, sqlite_tracking, model_name, tmp_path):
    outcome = sk.train_sklearn(
        train_path=bike_split["train"],
        featurizer_path=bike_split["featurizer"],
        model_path=str(tmp_path / "model"),
        model_name=model_name,
        estimator=estimator,
        hyperparameters=FAST.get(estimator),
        seed=0,
        tracking_uri=sqlite_tracking,
    )
    assert set(outcome.metrics) == {"rmse", "mae", "r2", "mape"}
    floor = 0.2 if estimator == "linear_regression" else 0.6  # hour of day is far from linear
    assert outcome.metrics["r2"] > floor, outcome.metrics
    test = datasets.read_frame(bike_split["test"])  # whole days: the time split keeps a day's hours together
    assert load_model(outcome.model_path).predict(test).shape == (len(test),)


def test_same_data_and_seed_give_the_same_metrics(elec2_split):
    data = training.load_train_data(elec2_split["train"], elec2_split["featurizer"], seed=5)
    runs = [
        sk.fit(
            data.x_fit,
            data.y_fit,
            data.x_val,
            data.y_val,
            "classification",
            2,
            {"n_estimators": 20},
            seed,
            estimator="random_forest",
        ).metrics
        for seed in (5, 5, 6)
    ]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_task_and_estimator_must_match(elec2_split, sqlite_tracking, model_name, tmp_path):
    with pytest.raises(
        ValueError, match="'linear_regression' is for regression, but the featurizer's task is classification"
    ):
        sk.train_sklearn(
            train_path=elec2_split["train"],
            featurizer_path=elec2_split["featurizer"],
            model_path=str(tmp_path / "m"),
            model_name=model_name,
            estimator="linear_regression",
            tracking_uri=sqlite_tracking,
        )
    with pytest.raises(ValueError, match="unknown estimator 'xgboost'"):
        sk.train_sklearn(
            train_path=elec2_split["train"],
            featurizer_path=elec2_split["featurizer"],
            model_path=str(tmp_path / "m"),
            model_name=model_name,
            estimator="xgboost",
            tracking_uri=sqlite_tracking,
        )
    with pytest.raises(ValueError, match="task 'regression' differs"):
        sk.train_sklearn(
            train_path=elec2_split["train"],
            featurizer_path=elec2_split["featurizer"],
            model_path=str(tmp_path / "m"),
            model_name=model_name,
            estimator="random_forest",
            tracking_uri=sqlite_tracking,
            task="regression",
        )
    assert tracking.versions(model_name, sqlite_tracking) == []


def _bad_train(elec2_split, tmp_path, change) -> str:
    frame = change(datasets.read_frame(elec2_split["train"]))
    path = tmp_path / "train.parquet"
    datasets.write_frame(frame, path, "test")
    return str(path)


@pytest.mark.parametrize(
    "change, hyperparameters, error, message",
    [
        (
            lambda f: f,
            {"learning_rate": 0.1, "n_layers": 3, "dropout": 0.5},
            ValueError,
            "unknown hyperparameter\\(s\\) for hist_gradient_boosting: dropout, n_layers; allowed: class_weight, "
            "early_stopping, l2_regularization, learning_rate",
        ),
        (lambda f: f[f["class"] == "UP"], None, ValueError, "single class \\('UP'\\) in the train split"),
        (
            lambda f: f.assign(**{"class": f["class"].where(f.index % 50 != 0, None)}),
            None,
            ValueError,
            "target column 'class' has 64 null label\\(s\\)",
        ),
        (lambda f: f.head(0), None, ValueError, "has no rows"),
        (lambda f: f.drop(columns=["nswprice"]), None, ValueError, "lacks the feature column\\(s\\) nswprice"),
        (
            lambda f: f.assign(**{"class": np.where(f.index % 2, "UP", "SIDEWAYS")}),
            None,
            ValueError,
            "label\\(s\\) SIDEWAYS",
        ),
    ],
)
def test_bad_input_fails_clearly_and_registers_nothing(
    elec2_split, sqlite_tracking, model_name, tmp_path, change, hyperparameters, error, message
):
    train = _bad_train(elec2_split, tmp_path, change)
    with pytest.raises(error, match=message):
        sk.train_sklearn(
            train_path=train,
            featurizer_path=elec2_split["featurizer"],
            model_path=str(tmp_path / "model"),
            model_name=model_name,
            hyperparameters=hyperparameters,
            tracking_uri=sqlite_tracking,
        )
    assert tracking.versions(model_name, sqlite_tracking) == []
    assert not os.path.exists(tmp_path / "model")
    assert tracking.client(sqlite_tracking).get_experiment_by_name(model_name) is None  # no run was even started


def test_unknown_hyperparameter_fails_before_reading_anything(tmp_path):
    with pytest.raises(ValueError, match="unknown hyperparameter\\(s\\) for random_forest: depth"):
        sk.train_sklearn(
            train_path=str(tmp_path / "missing.parquet"),
            featurizer_path=str(tmp_path / "missing"),
            model_path=str(tmp_path / "m"),
            model_name="m",
            estimator="random_forest",
            hyperparameters={"depth": 3},
        )


def test_component_python_func(elec2_split, sqlite_tracking, model_name, tmp_path):
    from kfp import dsl

    from kfp_ct.components.train_sklearn import train_sklearn

    train = dsl.Dataset(uri=elec2_split["train"], metadata=dict(elec2_split["result"].train))
    featurizer = dsl.Model(uri=elec2_split["featurizer"])
    model, metrics = dsl.Model(uri=str(tmp_path / "model")), dsl.Metrics(uri=str(tmp_path / "metrics"))
    train_sklearn.python_func(
        train=train,
        featurizer=featurizer,
        target_column="class",
        task="classification",
        model=model,
        metrics=metrics,
        estimator="logistic_regression",
        hyperparameters={"C": 0.5},
        model_name=model_name,
        tracking_uri=sqlite_tracking,
        seed=1,
    )
    assert model.metadata["version"] == "1" and model.metadata["model_name"] == model_name
    assert metrics.metadata["roc_auc"] == model.metadata["roc_auc"] > 0.7
    loaded = load_model(model.path)
    assert loaded.metadata["train_data"]["sha256"] == elec2_split["result"].train["sha256"]
    assert loaded.metadata["hyperparameters"]["C"] == 0.5


def test_default_tracking_uri_is_a_sqlite_file_in_the_working_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    assert tracking.resolve_uri() == f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking.resolve_uri() == "http://127.0.0.1:5000"
    assert tracking.resolve_uri("sqlite:///x.db") == "sqlite:///x.db"
    assert training.without_credentials("https://user:secret@mlflow.example:443/") == "https://mlflow.example:443/"


def test_validation_split_holds_out_the_latest_rows():
    fit_idx, val_idx = training.validation_split(
        10, np.zeros(10, dtype=int), "regression", 0, times=pd.Series(np.arange(10)[::-1])
    )
    assert sorted(val_idx) == [0, 1]


def test_hyperparameters_from_kfp_and_katib_are_coerced():
    allowed = sk.hyperparameters_for("hist_gradient_boosting")
    hp = training.check_hyperparameters(
        {
            "max_iter": 40.0,
            "max_depth": 3.0,
            "learning_rate": "0.05",
            "early_stopping": "true",
            "min_samples_leaf": "10",
        },
        allowed,
        "hgb",
    )
    assert hp["max_iter"] == 40 and isinstance(hp["max_iter"], int) and hp["max_depth"] == 3
    assert hp["learning_rate"] == 0.05 and hp["early_stopping"] is True and hp["min_samples_leaf"] == 10
    with pytest.raises(ValueError, match="'max_iter' of hgb must be a number, got 'many'"):
        training.check_hyperparameters({"max_iter": "many"}, allowed, "hgb")
