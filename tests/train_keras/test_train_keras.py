"""train_keras: the Keras (TensorFlow) trainer on real slices (elec2 classification, bike sharing regression);
seeded, early-stopped, class-weighted, printing the PyTorch trainer's epoch lines, saved as a model that takes raw
rows, tracked and registered. TensorFlow's import alone takes seconds: the fits here are few and short."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest
import yaml

from kfp_ct.components._common import datasets, neural, tracking, training
from kfp_ct.components._common import model as model_format
from kfp_ct.components.train_keras import core as tk

KATIB_FILTER = re.compile(r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)")
CLASSIFICATION_LINES = ["epoch", "loss", "validation-loss", "validation-accuracy", "validation-roc_auc"]
REGRESSION_LINES = ["epoch", "loss", "validation-loss", "validation-rmse", "validation-mae", "validation-r2"]


@pytest.fixture(scope="module")
def elec2(elec2_split):
    return training.load_train_data(elec2_split["train"], elec2_split["featurizer"], seed=0)


@pytest.fixture(scope="module")
def bike(bike_split):
    return training.load_train_data(bike_split["train"], bike_split["featurizer"], seed=0)


def _fit(data, hyperparameters, seed=0, lines=None):
    featurizer = data.featurizer
    log = lines.append if lines is not None else (lambda line: None)
    return tk.fit(
        data.x_fit,
        data.y_fit,
        data.x_val,
        data.y_val,
        featurizer.task,
        featurizer.n_classes,
        hyperparameters,
        seed,
        log=log,
    )


def _test_metrics(split, result, featurizer):
    test = datasets.read_frame(split["test"])
    x, y = featurizer.split_xy(test)
    return training.validation_metrics(featurizer.task, y, result.estimator.scores(featurizer.transform(x)))


@pytest.fixture(scope="module")
def elec2_fit(elec2):
    lines: list[str] = []
    return _fit(elec2, {"epochs": 10}, lines=lines), lines


def test_classification_on_elec2(elec2_fit, elec2, elec2_split):
    result, lines = elec2_fit
    assert set(result.metrics) == {"accuracy", "precision", "recall", "f1", "roc_auc", "log_loss"}
    # Measured on this 4000-row slice (10 epochs, seed 0, CPU): validation ROC AUC 0.918, test 0.921; chance is 0.5.
    assert result.metrics["roc_auc"] > 0.88, result.metrics
    assert _test_metrics(elec2_split, result, elec2.featurizer)["roc_auc"] > 0.88
    assert result.estimator.device == "cpu" and result.estimator.precision == "float32"
    best = min(result.history, key=lambda record: record["validation-loss"])
    assert best["epoch"] == result.estimator.best_epoch
    assert result.metrics["log_loss"] == pytest.approx(best["validation-loss"], rel=1e-4)


def test_epoch_lines_match_the_torch_trainer_and_katib(elec2_fit):
    result, lines = elec2_fit
    assert len(lines) == len(CLASSIFICATION_LINES) * len(result.history)
    for epoch, record in enumerate(result.history, start=1):
        chunk = lines[(epoch - 1) * len(CLASSIFICATION_LINES) : epoch * len(CLASSIFICATION_LINES)]
        matches = [KATIB_FILTER.fullmatch(line) for line in chunk]
        assert all(matches), chunk
        assert [m.group(1) for m in matches] == CLASSIFICATION_LINES
        assert float(matches[0].group(2)) == epoch
        for match in matches[1:]:
            assert float(match.group(2)) == pytest.approx(record[match.group(1)], rel=1e-6)


def test_regression_on_bike(bike, bike_split):
    lines: list[str] = []
    result = _fit(bike, {"epochs": 15, "lr": 0.01}, lines=lines)
    assert set(result.metrics) == {"rmse", "mae", "r2", "mape"}
    # Measured (the first 3000 hours of 2011, split by day; 15 epochs, seed 0, CPU): validation R2 0.53, test 0.55.
    assert result.metrics["r2"] > 0.4, result.metrics
    assert _test_metrics(bike_split, result, bike.featurizer)["r2"] > 0.4
    assert [line.split("=")[0] for line in lines[: len(REGRESSION_LINES)]] == REGRESSION_LINES
    predictions = result.estimator.scores(bike.x_val)  # counts: the scaling is folded into the output layer
    assert abs(predictions.mean() - bike.y_val.mean()) < 0.25 * bike.y_val.mean()


def test_same_seed_gives_the_same_metrics_on_cpu(elec2):
    runs = [_fit(elec2, {"epochs": 2, "hidden_sizes": [64]}, seed) for seed in (3, 3, 4)]
    assert runs[0].metrics == runs[1].metrics
    assert [r["validation-loss"] for r in runs[0].history] == [r["validation-loss"] for r in runs[1].history]
    assert runs[0].metrics != runs[2].metrics


def test_early_stopping_keeps_the_best_epoch(elec2):
    patience = 2
    result = _fit(elec2, {"epochs": 60, "patience": patience, "lr": 0.02, "dropout": 0.0, "hidden_sizes": [128]})
    losses = [record["validation-loss"] for record in result.history]
    assert len(result.history) < 60, "expected early stopping on a 2560-row fit with lr=0.02"
    assert result.estimator.best_epoch == int(np.argmin(losses)) + 1
    assert len(result.history) == result.estimator.best_epoch + patience
    assert result.metrics["log_loss"] == pytest.approx(min(losses), rel=1e-4)


def test_class_weights_lift_the_minority_class(elec2):
    fit_rows = np.flatnonzero((elec2.y_fit == 0) | (np.arange(len(elec2.y_fit)) % 8 == 0))
    val_rows = np.flatnonzero((elec2.y_val == 0) | (np.arange(len(elec2.y_val)) % 8 == 0))
    x, y, xv, yv = elec2.x_fit[fit_rows], elec2.y_fit[fit_rows], elec2.x_val[val_rows], elec2.y_val[val_rows]

    def minority_recall(mode):
        result = tk.fit(
            x,
            y,
            xv,
            yv,
            "classification",
            2,
            {"epochs": 6, "class_weight": mode, "hidden_sizes": [64]},
            0,
            log=lambda line: None,
        )
        return (result.estimator.scores(xv).argmax(axis=1)[yv == 1] == 1).mean()

    unweighted, balanced = minority_recall("none"), minority_recall("balanced")
    assert balanced > unweighted + 0.1, (unweighted, balanced)


def test_unknown_hyperparameter_fails_before_reading_anything(tmp_path):
    with pytest.raises(
        ValueError,
        match="unknown hyperparameter\\(s\\) for mlp: units; allowed: batch_size, "
        "class_weight, compile, dropout, epochs, hidden_sizes, lr, patience",
    ):
        tk.train_keras(
            train_path=str(tmp_path / "missing.parquet"),
            featurizer_path=str(tmp_path / "missing"),
            model_path=str(tmp_path / "m"),
            model_name="m",
            hyperparameters={"units": 3},
        )
    with pytest.raises(ValueError, match="'patience' must lie in"):
        tk.train_keras(
            train_path=str(tmp_path / "missing.parquet"),
            featurizer_path=str(tmp_path / "missing"),
            model_path=str(tmp_path / "m"),
            model_name="m",
            hyperparameters={"patience": 0},
        )
    assert not os.path.exists(tmp_path / "m")


def test_saved_model_takes_raw_rows_with_both_loaders(elec2_fit, elec2, elec2_split, tmp_path):
    import mlflow.keras
    import mlflow.pyfunc

    result, _ = elec2_fit
    path = str(tmp_path / "model")
    model_format.save_model(
        path,
        result.estimator,
        elec2.featurizer,
        tk.KerasAdapter(),
        input_example=elec2.x_raw,
        metadata={"estimator": neural.ESTIMATOR},
    )
    test = datasets.read_frame(elec2_split["test"])
    expected = result.estimator.scores(elec2.featurizer.transform(test))

    model = model_format.load_model(path)
    assert model.framework == "keras" and "keras" in model.metadata["libraries"]
    np.testing.assert_allclose(model.predict_proba(test), expected, rtol=1e-5, atol=1e-6)
    labels = model.predict(test)
    assert (np.asarray(mlflow.pyfunc.load_model(path).predict(test.drop(columns=["class"]))) == labels).all()
    network = mlflow.keras.load_model(path)  # the keras flavor: the float32 network, featurized input, logits out
    logits = np.asarray(network(elec2.featurizer.transform(test), training=False))
    np.testing.assert_allclose(neural.outputs_to_scores(logits, "classification"), expected, rtol=1e-5, atol=1e-6)
    with open(os.path.join(path, "MLmodel")) as f:
        flavors = yaml.safe_load(f)["flavors"]
    assert set(flavors) == {"keras", "python_function"}
    assert os.path.isfile(os.path.join(path, "data", "model.keras"))


def test_a_keras_file_with_code_is_refused(elec2_fit, elec2, tmp_path):
    """A .keras file holding a Lambda layer (Python bytecode) does not load: Keras' safe mode, whatever the
    MLmodel says; the code never runs."""
    import keras

    result, _ = elec2_fit
    path = tmp_path / "model"
    model_format.save_model(
        path, result.estimator, elec2.featurizer, tk.KerasAdapter(), input_example=elec2.x_raw, metadata={}
    )
    marker = tmp_path / "marker"
    target = str(marker)
    payload = keras.layers.Lambda(lambda x: (open(target, "w").write("pwned"), x)[1])
    evil = keras.Sequential([keras.Input((result.estimator.n_features_in_,)), payload, keras.layers.Dense(2)])
    evil.save(path / "data" / "model.keras")
    marker.unlink(missing_ok=True)  # building the model ran the lambda once; loading must not
    with pytest.raises(ValueError, match="model.keras does not load as a Keras model \\(safe_mode=True\\)"):
        model_format.load_model(path)
    assert not marker.exists()


@pytest.mark.integration
def test_component_python_func_with_mlflow_server(bike_split, mlflow_server, model_name, tmp_path):
    import mlflow.pyfunc
    from kfp import dsl

    from kfp_ct.components.train_keras import train_keras

    train = dsl.Dataset(uri=bike_split["train"], metadata=dict(bike_split["result"].train))
    featurizer = dsl.Model(uri=bike_split["featurizer"])
    model, metrics = dsl.Model(uri=str(tmp_path / "model")), dsl.Metrics(uri=str(tmp_path / "metrics"))
    train_keras.python_func(
        train=train,
        featurizer=featurizer,
        target_column="cnt",
        task="regression",
        model=model,
        metrics=metrics,
        hyperparameters={"epochs": "4", "lr": "0.01"},
        model_name=model_name,
        tracking_uri=mlflow_server,
        seed=2,
    )
    assert model.metadata["version"] == "1" and model.metadata["framework"] == "keras"
    assert set(metrics.metadata) == {"rmse", "mae", "r2", "mape"} and metrics.metadata["r2"] > 0.2
    test = datasets.read_frame(bike_split["test"])
    local = model_format.load_model(model.path)
    assert local.metadata["hyperparameters"] == {
        **neural.DEFAULTS,
        "epochs": 4,
        "lr": 0.01,  # Katib's text, read
        "hidden_sizes": list(neural.DEFAULTS["hidden_sizes"]),
    }
    downloaded = tracking.download_version(model_name, "1", tmp_path / "download", mlflow_server)
    np.testing.assert_allclose(mlflow.pyfunc.load_model(downloaded).predict(test), local.predict(test), rtol=1e-6)


def test_component_runs_in_the_gpu_image(tmp_path):
    from kfp import compiler

    from kfp_ct.components._common.images import GPU_IMAGE
    from kfp_ct.components.train_keras import train_keras

    compiler.Compiler().compile(train_keras, str(tmp_path / "train_keras.yaml"))
    with open(tmp_path / "train_keras.yaml") as f:
        spec = yaml.safe_load(f)
    assert spec["deploymentSpec"]["executors"]["exec-train-keras"]["container"]["image"] == GPU_IMAGE
    outputs = spec["root"]["outputDefinitions"]["artifacts"]
    assert set(outputs) == {"model", "metrics"} and all(d.get("description") for d in outputs.values())


@pytest.mark.gpu
def test_gpu_training_in_mixed_precision(elec2):
    import tensorflow as tf

    if not tf.config.list_physical_devices("GPU"):
        pytest.skip("needs a GPU that TensorFlow sees")
    device, policy = tk.gpu_precision()
    assert device == "gpu" and policy in ("mixed_bfloat16", "mixed_float16")
    result = _fit(elec2, {"epochs": 8})
    assert result.estimator.device == "gpu" and result.estimator.precision == policy
    assert result.metrics["roc_auc"] > 0.85, result.metrics
    assert all(w.dtype == np.float32 for w in result.estimator.model.get_weights())  # saved in float32
