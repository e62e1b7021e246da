"""train_torch: the MLP trainer on real slices (elec2 classification, bike sharing regression), on CPU here and on
CUDA where there is one (tests marked gpu); seeded, early-stopped, class-weighted, saved as a model that takes raw
rows, tracked and registered."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
import yaml

from kfp_ct.components._common import datasets, neural, tracking, training
from kfp_ct.components._common import model as model_format
from kfp_ct.components.train_torch import core as tt

# Katib's default StdOut metrics filter.
KATIB_FILTER = re.compile(r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)")
CLASSIFICATION_LINES = ["epoch", "loss", "validation-loss", "validation-accuracy", "validation-roc_auc"]
REGRESSION_LINES = ["epoch", "loss", "validation-loss", "validation-rmse", "validation-mae", "validation-r2"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread (KFP_CT_THREADS, which fit reads on CPU): the test machine is small and shared, and two
    threads that wait for each other there are ten times slower than one."""
    import torch

    previous, variable = torch.get_num_threads(), os.environ.get("KFP_CT_THREADS")
    torch.set_num_threads(1)
    os.environ["KFP_CT_THREADS"] = "1"
    yield
    torch.set_num_threads(previous)
    if variable is None:
        del os.environ["KFP_CT_THREADS"]
    else:
        os.environ["KFP_CT_THREADS"] = variable


@pytest.fixture(scope="module")
def elec2(elec2_split):
    return training.load_train_data(elec2_split["train"], elec2_split["featurizer"], seed=0)


@pytest.fixture(scope="module")
def bike(bike_split):
    return training.load_train_data(bike_split["train"], bike_split["featurizer"], seed=0)


def _fit(data, hyperparameters, seed=0, lines=None, **options):
    featurizer = data.featurizer
    log = lines.append if lines is not None else (lambda line: None)
    return tt.fit(
        data.x_fit,
        data.y_fit,
        data.x_val,
        data.y_val,
        featurizer.task,
        featurizer.n_classes,
        hyperparameters,
        seed,
        log=log,
        **options,
    )


def _test_metrics(split, result, featurizer):
    test = datasets.read_frame(split["test"])
    x, y = featurizer.split_xy(test)
    return training.validation_metrics(featurizer.task, y, result.estimator.scores(featurizer.transform(x)))


@pytest.fixture(scope="module")
def elec2_fit(elec2):
    lines: list[str] = []
    return _fit(elec2, {"epochs": 12}, lines=lines), lines


def test_classification_on_elec2(elec2_fit, elec2, elec2_split):
    result, lines = elec2_fit
    assert set(result.metrics) == {"accuracy", "precision", "recall", "f1", "roc_auc", "log_loss"}
    # Measured on this 4000-row slice (12 epochs, seed 0, CPU): validation ROC AUC 0.922, test 0.924, test accuracy
    # 0.834; chance is 0.5.
    assert result.metrics["roc_auc"] > 0.88, result.metrics
    test = _test_metrics(elec2_split, result, elec2.featurizer)
    assert test["roc_auc"] > 0.88 and test["accuracy"] > 0.78, test
    assert result.estimator.device == "cpu" and 1 <= result.estimator.best_epoch <= 12
    # the returned metrics are those of the best epoch's network (log_loss is the validation cross-entropy)
    best = min(result.history, key=lambda record: record["validation-loss"])
    assert best["epoch"] == result.estimator.best_epoch
    assert result.metrics["log_loss"] == pytest.approx(best["validation-loss"], rel=1e-4)
    assert result.metrics["roc_auc"] == pytest.approx(best["validation-roc_auc"], abs=1e-6)


def test_epoch_lines_are_what_katib_reads(elec2_fit):
    result, lines = elec2_fit
    assert len(lines) == len(CLASSIFICATION_LINES) * len(result.history)
    for epoch, record in enumerate(result.history, start=1):
        chunk = lines[(epoch - 1) * len(CLASSIFICATION_LINES) : epoch * len(CLASSIFICATION_LINES)]
        parsed = []
        for line in chunk:
            match = KATIB_FILTER.fullmatch(line)
            assert match, f"Katib's filter does not read {line!r}"
            parsed.append((match.group(1), float(match.group(2))))
        assert [name for name, _ in parsed] == CLASSIFICATION_LINES
        assert parsed[0] == ("epoch", epoch)
        for name, value in parsed[1:]:
            assert value == pytest.approx(record[name], rel=1e-6)


def test_regression_on_bike(bike, bike_split):
    lines: list[str] = []
    result = _fit(bike, {"epochs": 30, "lr": 0.01}, lines=lines)
    assert set(result.metrics) == {"rmse", "mae", "r2", "mape"}
    # Measured (the first 3000 hours of 2011, split by day; 30 epochs, seed 0, CPU): validation R2 0.645, test (the
    # latest days, busier than any seen in training) 0.658; scikit-learn's HistGradientBoosting gets 0.59 there.
    assert result.metrics["r2"] > 0.55, result.metrics
    test = _test_metrics(bike_split, result, bike.featurizer)
    assert test["r2"] > 0.55, test
    assert [line.split("=")[0] for line in lines[: len(REGRESSION_LINES)]] == REGRESSION_LINES
    # the target scaling is folded into the network: its output is the count itself
    predictions = result.estimator.scores(bike.x_val)
    assert abs(predictions.mean() - bike.y_val.mean()) < 0.25 * bike.y_val.mean()
    best = min(result.history, key=lambda record: record["validation-loss"])
    assert result.metrics["rmse"] == pytest.approx(best["validation-rmse"], rel=1e-4)


def test_same_seed_gives_the_same_metrics_on_cpu(elec2):
    runs = [_fit(elec2, {"epochs": 3}, seed) for seed in (3, 3, 4)]

    def without_time(history):
        return [{k: v for k, v in record.items() if k != "seconds"} for record in history]

    assert runs[0].metrics == runs[1].metrics
    assert without_time(runs[0].history) == without_time(runs[1].history)
    np.testing.assert_array_equal(runs[0].estimator.scores(elec2.x_val), runs[1].estimator.scores(elec2.x_val))
    assert runs[0].metrics != runs[2].metrics


def test_early_stopping_keeps_the_best_epoch(elec2):
    patience = 3
    result = _fit(elec2, {"epochs": 100, "patience": patience, "lr": 0.01, "dropout": 0.0})
    losses = [record["validation-loss"] for record in result.history]
    best_epoch = int(np.argmin(losses)) + 1
    assert len(result.history) < 100, "expected early stopping on a 2560-row fit with lr=0.01"
    assert result.estimator.best_epoch == best_epoch
    assert len(result.history) == best_epoch + patience
    assert min(losses) < losses[-1]
    # the network returned is the best epoch's, not the last one's
    assert result.metrics["log_loss"] == pytest.approx(min(losses), rel=1e-4)


def test_class_weights_lift_the_minority_class(elec2):
    fit_rows = np.flatnonzero((elec2.y_fit == 0) | (np.arange(len(elec2.y_fit)) % 8 == 0))
    val_rows = np.flatnonzero((elec2.y_val == 0) | (np.arange(len(elec2.y_val)) % 8 == 0))
    x, y, xv, yv = elec2.x_fit[fit_rows], elec2.y_fit[fit_rows], elec2.x_val[val_rows], elec2.y_val[val_rows]
    assert 0.05 < y.mean() < 0.15  # UP is now the minority class

    def minority_recall(mode):
        result = tt.fit(
            x, y, xv, yv, "classification", 2, {"epochs": 8, "class_weight": mode}, 0, log=lambda line: None
        )
        return (result.estimator.scores(xv).argmax(axis=1)[yv == 1] == 1).mean()

    unweighted, balanced = minority_recall("none"), minority_recall("balanced")
    assert balanced > unweighted + 0.1, (unweighted, balanced)
    weights = neural.class_weights(np.array([0] * 90 + [1] * 10), 2, "balanced")
    np.testing.assert_allclose(weights, [100 / 180, 100 / 20], rtol=1e-6)
    assert neural.class_weights(np.array([0, 1]), 2, "none") is None


def test_hyperparameters_are_checked_and_converted(elec2):
    allowed = "batch_size, class_weight, compile, dropout, epochs, hidden_sizes, lr, patience, weight_decay"
    with pytest.raises(ValueError, match=f"unknown hyperparameter\\(s\\) for mlp: depth, layers; allowed: {allowed}"):
        neural.resolve_hyperparameters({"depth": 3, "layers": 2, "lr": 0.1})
    for bad, message in [
        ({"dropout": 2}, "'dropout' must lie in"),
        ({"lr": 0}, "'lr' must lie in"),
        ({"epochs": 2.5}, "'epochs' must be an integer"),
        ({"hidden_sizes": "a,b"}, "'hidden_sizes'"),
        ({"hidden_sizes": []}, "'hidden_sizes' must be a non-empty list"),
        ({"class_weight": "auto"}, "'class_weight' must be 'balanced' or 'none'"),
        ({"compile": "maybe"}, "'compile' must be true or false"),
    ]:
        with pytest.raises(ValueError, match=message):
            neural.resolve_hyperparameters(bad)
    # Katib substitutes every value as text
    hp = neural.resolve_hyperparameters(
        {"lr": "0.01", "hidden_sizes": "64,32", "epochs": "2", "batch_size": "128", "compile": "false", "dropout": "0"}
    )
    assert hp == {
        **neural.DEFAULTS,
        "lr": 0.01,
        "hidden_sizes": [64, 32],
        "epochs": 2,
        "batch_size": 128,
        "compile": False,
        "dropout": 0.0,
    }
    # a KFP dict parameter turns whole numbers into floats
    assert neural.resolve_hyperparameters({"epochs": 40.0, "hidden_sizes": [128.0, 64.0], "batch_size": 4096.0}) == {
        **neural.DEFAULTS,
        "epochs": 40,
        "hidden_sizes": [128, 64],
        "batch_size": 4096,
    }
    result = _fit(elec2, {"lr": "0.01", "hidden_sizes": "[64, 32]", "epochs": "2", "dropout": "0"})
    widths = [layer.out_features for layer in result.estimator.network if hasattr(layer, "out_features")]
    assert widths == [64, 32, 2] and len(result.history) == 2


def test_bad_inputs_name_the_problem(elec2):
    x = elec2.x_fit.copy()
    x[5, 3] = np.nan
    with pytest.raises(ValueError, match="training features hold NaN or infinity in column\\(s\\) 3"):
        tt.fit(x, elec2.y_fit, elec2.x_val, elec2.y_val, "classification", 2, {"epochs": 1})
    with pytest.raises(ValueError, match="class indices 0..1"):
        tt.fit(elec2.x_fit, elec2.y_fit + 1, elec2.x_val, elec2.y_val, "classification", 2, {"epochs": 1})
    with pytest.raises(ValueError, match="validation features have 3 columns, training features 8"):
        tt.fit(elec2.x_fit, elec2.y_fit, elec2.x_val[:, :3], elec2.y_val, "classification", 2, {"epochs": 1})
    with pytest.raises(ValueError, match="training features have 2560 rows but the training target has 10"):
        tt.fit(elec2.x_fit, elec2.y_fit[:10], elec2.x_val, elec2.y_val, "classification", 2, {"epochs": 1})
    with pytest.raises(ValueError, match="unknown task 'ranking'"):
        tt.fit(elec2.x_fit, elec2.y_fit, elec2.x_val, elec2.y_val, "ranking", 2, {"epochs": 1})


def test_auto_batch_size_and_device_roc_auc():
    import torch
    from sklearn.metrics import roc_auc_score

    assert neural.auto_batch_size(100, "cpu") == 64
    assert neural.auto_batch_size(2560, "cpu") == 256
    assert neural.auto_batch_size(10_000_000, "cpu") == 1024
    assert neural.auto_batch_size(10_000_000, "cuda") == 8192
    rng = np.random.default_rng(0)
    scores = np.round(rng.random(2000), 1)  # many ties, as bf16 outputs have
    labels = rng.random(2000) < 0.2 + 0.6 * scores
    auc = tt.roc_auc_tensor(torch.from_numpy(scores), torch.from_numpy(labels)).item()
    assert auc == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def _save(data, result, path):
    model_format.save_model(
        path,
        result.estimator,
        data.featurizer,
        tt.TorchAdapter(),
        input_example=data.x_raw,
        metadata={"estimator": neural.ESTIMATOR, "hyperparameters": {"epochs": 12}},
    )
    return str(path)


def test_saved_model_takes_raw_rows_with_both_loaders(elec2_fit, elec2, elec2_split, tmp_path):
    import mlflow.pyfunc

    result, _ = elec2_fit
    path = _save(elec2, result, tmp_path / "model")
    test = datasets.read_frame(elec2_split["test"])
    expected = result.estimator.scores(elec2.featurizer.transform(test))

    model = model_format.load_model(path)
    assert model.framework == "torch" and model.metadata["adapter"] == "torch"
    assert "torch" in model.metadata["libraries"]
    np.testing.assert_allclose(model.predict_proba(test), expected, rtol=1e-5, atol=1e-6)
    labels = model.predict(test)
    assert (labels == np.where(expected[:, 1] > expected[:, 0], "UP", "DOWN")).all()

    pyfunc = mlflow.pyfunc.load_model(path)  # raw rows in, labels out
    assert (np.asarray(pyfunc.predict(test.drop(columns=["class"]))) == labels).all()

    # the network as data: a state dict that loads with weights_only=True, and build_network's arguments in JSON
    import torch

    state = torch.load(os.path.join(path, tt.WEIGHTS_FILE), weights_only=True)
    with open(os.path.join(path, tt.NETWORK_FILE)) as f:
        spec = json.load(f)
    network = tt.network_from(spec, state, "test")
    with torch.no_grad():
        logits = network(torch.from_numpy(elec2.featurizer.transform(test))).numpy()
    np.testing.assert_allclose(neural.outputs_to_scores(logits, "classification"), expected, rtol=1e-5, atol=1e-6)

    with open(os.path.join(path, "MLmodel")) as f:
        flavors = yaml.safe_load(f)["flavors"]
    assert set(flavors) == {"python_function"}
    assert flavors["python_function"]["loader_module"] == "kfp_ct.components._common.model"
    assert sorted(os.listdir(os.path.join(path, "data"))) == ["network.json", "weights.pt"]


def test_saved_regression_model_predicts_counts(bike, bike_split, tmp_path):
    result = _fit(bike, {"epochs": 3})
    path = _save(bike, result, tmp_path / "model")
    test = datasets.read_frame(bike_split["test"])
    predicted = model_format.load_model(path).predict(test)
    np.testing.assert_allclose(
        predicted, result.estimator.scores(bike.featurizer.transform(test)), rtol=1e-5, atol=1e-3
    )
    import mlflow.pyfunc

    np.testing.assert_allclose(mlflow.pyfunc.load_model(path).predict(test), predicted, rtol=1e-6)


def test_train_torch_registers_a_version(elec2_split, sqlite_tracking, model_name, tmp_path, capsys):
    outcome = tt.train_torch(
        train_path=elec2_split["train"],
        featurizer_path=elec2_split["featurizer"],
        model_path=str(tmp_path / "model"),
        model_name=model_name,
        hyperparameters={"epochs": 3, "hidden_sizes": [64]},
        seed=0,
        tracking_uri=sqlite_tracking,
        target_column="class",
        task="classification",
        train_metadata={"sha256": "feed", "source_uri": "gs://bucket/elec2.csv"},
    )
    assert outcome.metrics["roc_auc"] > 0.75, outcome.metrics  # measured 0.821 (3 epochs of a 64-unit layer)
    printed = capsys.readouterr().out.splitlines()
    final = training.format_metrics(outcome.metrics, training.METRIC_PREFIX)  # the glue's lines, after the epochs'
    assert printed[-len(final) :] == final and "epoch=3" in printed
    assert tracking.versions(model_name, sqlite_tracking) == [outcome.version] == ["1"]
    run = tracking.client(sqlite_tracking).get_run(outcome.run_id)
    assert run.data.params["framework"] == "torch" and run.data.params["estimator"] == "mlp"
    history = tracking.client(sqlite_tracking).get_metric_history(outcome.run_id, "history.validation-loss")
    assert sorted(m.step for m in history) == [1, 2, 3]
    loaded = model_format.load_model(outcome.model_path)
    assert loaded.metadata["train_data"]["sha256"] == "feed"
    assert loaded.metadata["hyperparameters"]["hidden_sizes"] == [64]


def test_unknown_hyperparameter_fails_before_reading_anything(tmp_path):
    with pytest.raises(ValueError, match="unknown hyperparameter\\(s\\) for mlp: depth"):
        tt.train_torch(
            train_path=str(tmp_path / "missing.parquet"),
            featurizer_path=str(tmp_path / "missing"),
            model_path=str(tmp_path / "m"),
            model_name="m",
            hyperparameters={"depth": 3},
        )
    assert not os.path.exists(tmp_path / "m")


@pytest.mark.integration
def test_component_python_func_with_mlflow_server(elec2_split, mlflow_server, model_name, tmp_path):
    import mlflow.pyfunc
    from kfp import dsl

    from kfp_ct.components.train_torch import train_torch

    train = dsl.Dataset(uri=elec2_split["train"], metadata=dict(elec2_split["result"].train))
    featurizer = dsl.Model(uri=elec2_split["featurizer"])
    model, metrics = dsl.Model(uri=str(tmp_path / "model")), dsl.Metrics(uri=str(tmp_path / "metrics"))
    train_torch.python_func(
        train=train,
        featurizer=featurizer,
        target_column="class",
        task="classification",
        model=model,
        metrics=metrics,
        hyperparameters={"epochs": 4, "hidden_sizes": "128,64"},
        model_name=model_name,
        tracking_uri=mlflow_server,
        seed=1,
    )
    assert model.metadata["version"] == "1" and model.metadata["framework"] == "torch"
    assert metrics.metadata["roc_auc"] == model.metadata["roc_auc"] > 0.8
    test = datasets.read_frame(elec2_split["test"]).head(50)
    local = model_format.load_model(model.path)
    assert local.metadata["train_data"]["sha256"] == elec2_split["result"].train["sha256"]
    # the registered version, downloaded from the server, is the same model
    downloaded = tracking.download_version(model_name, "1", tmp_path / "download", mlflow_server)
    assert (mlflow.pyfunc.load_model(downloaded).predict(test) == local.predict(test)).all()


# ------------------------------------------------------------------------------------------------ on a GPU


@pytest.fixture
def cuda():
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    return torch.device("cuda")


@pytest.mark.gpu
def test_cuda_training(cuda, elec2, elec2_split):
    result = _fit(elec2, {"epochs": 12}, device="cuda")
    assert result.estimator.device.startswith("cuda")
    assert result.metrics["roc_auc"] > 0.85, result.metrics
    assert next(result.estimator.network.parameters()).device.type == "cpu"  # returned on the CPU, in float32
    assert _test_metrics(elec2_split, result, elec2.featurizer)["roc_auc"] > 0.85


@pytest.mark.gpu
def test_bf16_autocast_on_cuda_and_float32_on_cpu(cuda):
    import torch

    layer = torch.nn.Linear(8, 4)
    with tt.autocast_context("cpu"):
        assert layer(torch.ones(2, 8)).dtype == torch.float32
    layer = layer.to(cuda)
    with tt.autocast_context("cuda"):
        assert layer(torch.ones(2, 8, device=cuda)).dtype == torch.bfloat16
    optimizer = tt.make_optimizer(layer.parameters(), 1e-3, 0.0, "cuda")
    assert optimizer.defaults["fused"] is True


@pytest.mark.gpu
def test_training_epoch_never_copies_between_host_and_device(cuda, elec2):
    import torch
    from torch.profiler import ProfilerActivity, profile

    network = tt.build_network(elec2.x_fit.shape[1], 2, [256, 256], 0.1).to(cuda)
    optimizer = tt.make_optimizer(network.parameters(), 1e-3, 1e-4, "cuda")
    criterion = torch.nn.CrossEntropyLoss(weight=torch.ones(2, device=cuda))
    X, y = torch.from_numpy(elec2.x_fit).to(cuda), torch.from_numpy(elec2.y_fit).to(cuda)
    generator = torch.Generator(device=cuda).manual_seed(0)
    tt.train_epoch(network, optimizer, criterion, X, y, 256, generator, "cuda")  # warm-up (lazy optimizer state)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        loss = tt.train_epoch(network, optimizer, criterion, X, y, 256, generator, "cuda")
        torch.cuda.synchronize()
    assert loss.device.type == "cuda"
    copies = [
        e.name
        for e in prof.events()
        if "memcpy" in e.name.lower() and ("htod" in e.name.lower() or "dtoh" in e.name.lower())
    ]
    assert copies == [], f"{len(copies)} host/device copies in one epoch of {len(y) // 256 + 1} batches: {copies[:5]}"


@pytest.mark.gpu
def test_compile_on_cuda_trains(cuda, elec2):
    result = _fit(elec2, {"epochs": 3, "compile": True}, device="cuda")
    assert result.metrics["roc_auc"] > 0.8, result.metrics


def test_component_runs_in_the_gpu_image_and_documents_every_input_and_output(tmp_path):
    from kfp import compiler

    from kfp_ct.components._common.images import GPU_IMAGE
    from kfp_ct.components.train_torch import train_torch

    compiler.Compiler().compile(train_torch, str(tmp_path / "train_torch.yaml"))
    with open(tmp_path / "train_torch.yaml") as f:
        spec = yaml.safe_load(f)
    assert spec["deploymentSpec"]["executors"]["exec-train-torch"]["container"]["image"] == GPU_IMAGE
    inputs, outputs = spec["root"]["inputDefinitions"], spec["root"]["outputDefinitions"]
    assert set(inputs["parameters"]) == {
        "target_column",
        "task",
        "hyperparameters",
        "model_name",
        "tracking_uri",
        "max_classes",
        "seed",
    }
    assert set(inputs["artifacts"]) == {"train", "featurizer"} and set(outputs["artifacts"]) == {"model", "metrics"}
    for definition in [*inputs["parameters"].values(), *inputs["artifacts"].values(), *outputs["artifacts"].values()]:
        assert definition.get("description"), definition
