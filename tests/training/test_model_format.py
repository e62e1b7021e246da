"""The model format: featurizer + estimator in one MLflow model directory that takes raw rows."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from kfp_ct.components._common import datasets, training
from kfp_ct.components._common import model as model_format
from kfp_ct.components.train_sklearn import core as sk


def _fit(split, estimator="hist_gradient_boosting", hyperparameters=None):
    data = training.load_train_data(split["train"], split["featurizer"], seed=0)
    featurizer = data.featurizer
    result = sk.fit(
        data.x_fit,
        data.y_fit,
        data.x_val,
        data.y_val,
        featurizer.task,
        featurizer.n_classes,
        hyperparameters or {"max_iter": 30},
        0,
        estimator=estimator,
    )
    return data, result


@pytest.fixture(scope="module")
def elec2_model(elec2_split, tmp_path_factory):
    data, result = _fit(elec2_split)
    path = tmp_path_factory.mktemp("elec2_model") / "model"
    model_format.save_model(
        path,
        result.estimator,
        data.featurizer,
        sk.SklearnAdapter(),
        input_example=data.x_raw,
        metadata={
            "estimator": "hist_gradient_boosting",
            "hyperparameters": {"max_iter": 30},
            "train_data": {"sha256": "abc"},
        },
    )
    return str(path), result


def test_round_trip_classification(elec2_model, elec2_split):
    path, result = elec2_model
    test = datasets.read_frame(elec2_split["test"])
    model = model_format.load_model(path)
    assert model.task == "classification" and model.classes == ["DOWN", "UP"]
    assert model.input_columns[:3] == [("date", "double"), ("day", "long"), ("period", "double")]
    assert model.metadata["framework"] == "sklearn"
    assert model.metadata["adapter"] == "sklearn"  # a name in the catalog's registry, not an import path
    assert model.metadata["hyperparameters"] == {"max_iter": 30}
    assert {"scikit-learn", "mlflow", "numpy", "skops"} <= set(model.metadata["libraries"])
    labels = model.predict(test)
    assert set(labels) <= {"DOWN", "UP"} and len(labels) == len(test)
    proba = model.predict_proba(test)
    assert proba.shape == (len(test), 2) and np.allclose(proba.sum(axis=1), 1.0)
    # the saved pipeline reproduces the in-memory estimator exactly
    featurizer = model.featurizer
    expected = result.estimator.predict_proba(featurizer.transform(test))
    np.testing.assert_allclose(proba, expected, rtol=1e-6)
    assert (labels == np.where(proba[:, 1] > proba[:, 0], "UP", "DOWN")).all()


def test_pyfunc_and_sklearn_flavors_load(elec2_model, elec2_split):
    import mlflow.pyfunc
    import mlflow.sklearn

    path, _ = elec2_model
    test = datasets.read_frame(elec2_split["test"]).head(20)
    pyfunc = mlflow.pyfunc.load_model(path)
    features = test.drop(columns=["class"])
    assert list(pyfunc.predict(features)) == list(model_format.load_model(path).predict(test))
    pipeline = model_format.load_model(path).scorer.pipeline  # the sklearn flavor's file: Pipeline(featurizer, est.)
    assert pipeline.predict_proba(features).shape == (20, 2)
    assert os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] == "false"  # set by importing kfp_ct's _common
    with pytest.raises(Exception, match="MLFLOW_ALLOW_PICKLE_DESERIALIZATION"):
        mlflow.sklearn.load_model(path)  # MLflow's own loader, which follows the MLmodel, is switched off
    mlmodel = open(os.path.join(path, "MLmodel")).read()
    assert "loader_module: kfp_ct.components._common.model" in mlmodel
    assert "skops_trusted_types" in mlmodel and "TreePredictor" in mlmodel
    example = json.load(open(os.path.join(path, "input_example.json")))
    assert example["columns"][:2] == ["date", "day"] and len(example["data"]) == model_format.INPUT_EXAMPLE_ROWS


def test_regression_with_dates_through_pyfunc(bike_split, tmp_path):
    import mlflow.pyfunc

    data, result = _fit(bike_split, "random_forest", {"n_estimators": 20})
    path = tmp_path / "model"
    model_format.save_model(path, result.estimator, data.featurizer, sk.SklearnAdapter(), input_example=data.x_raw)
    model = model_format.load_model(path)
    assert ("dteday", "datetime") in model.input_columns
    test = datasets.read_frame(bike_split["test"]).head(10)
    values = model.predict(test)
    assert values.dtype == np.float64 and values.shape == (10,)
    features = test.drop(columns=["cnt", "casual", "registered", "instant"])
    features["dteday"] = features["dteday"].astype(str)  # as JSON would send it
    np.testing.assert_allclose(mlflow.pyfunc.load_model(str(path)).predict(features), values)
    with pytest.raises(ValueError, match="regression"):
        model.predict_proba(test)
    with pytest.raises(ValueError, match="lacks the feature column\\(s\\) hr"):
        model.predict(test.drop(columns=["hr"]))


class _BrokenAdapter(sk.SklearnAdapter):
    def save(self, estimator, featurizer, path, mlflow_model):
        super().save(estimator, featurizer, path, mlflow_model)
        raise RuntimeError("disk full")


def test_failed_save_leaves_nothing(elec2_split, tmp_path):
    data, result = _fit(elec2_split, "logistic_regression", {})
    with pytest.raises(RuntimeError, match="disk full"):
        model_format.save_model(
            tmp_path / "model", result.estimator, data.featurizer, _BrokenAdapter(), input_example=data.x_raw
        )
    assert os.listdir(tmp_path) == []
    with pytest.raises(TypeError, match="JSON serializable"):
        model_format.save_model(
            tmp_path / "model",
            result.estimator,
            data.featurizer,
            sk.SklearnAdapter(),
            input_example=data.x_raw,
            metadata={"bad": object()},
        )
    assert os.listdir(tmp_path) == []


def test_only_catalog_adapters_are_imported():
    for name in ("os:system", "kfp_ct.components._common.storage:main", "kfp_ct.pipelines.cli:main", "torch "):
        with pytest.raises(ValueError, match="not one of the catalog's adapters"):
            model_format.resolve_adapter(name)
    # the names of models saved before the registry: accepted when exactly a registered adapter's path
    legacy = "kfp_ct.components.train_sklearn.core:SklearnAdapter"
    assert type(model_format.resolve_adapter(legacy)) is sk.SklearnAdapter
    assert type(model_format.resolve_adapter("sklearn")) is sk.SklearnAdapter
    with pytest.raises(FileNotFoundError, match="MLmodel"):
        model_format.load_model("/nonexistent/model")
