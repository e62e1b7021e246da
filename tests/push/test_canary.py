"""The canary judged on traffic, with real models on the catalog's real model server: locally between the champion's
server and the candidate's (target="local", canary_bake_s > 0), and on KServe against the fake custom-objects API,
whose `prev` and `latest` tag URLs are served by two loopback model servers.

Candidates of one registered model, all trained on the same elec2 slice: a retrain of the champion (good), a random
forest of 1000 trees (slow), a model trained on flipped labels (shifted), and the good model with a signature that
says `weekday` is a number while live rows carry text (broken: it passes infra validation on its own input example,
and fails on every real row)."""

from __future__ import annotations

import json
import math
import shutil

import pandas as pd
import pytest
import yaml
from elec2_serving import start_model_server, stop_model_server, train_elec2
from fake_kube import AllStorage, FakeCustomObjectsApi

from kfp_ct.components._common import storage, tracking
from kfp_ct.components.push import manifests
from kfp_ct.components.push.canary import (
    Bounds,
    CanaryRejected,
    Traffic,
    analyse,
    load_rows,
    prediction_shift,
)
from kfp_ct.components.push.core import push
from kfp_ct.components.push.rollout import RolloutError

REGISTERED = "elec2-canary"
BAKE_S = 2
NS = "kubeflow-user-example-com"
LOOSE = {"canary_max_error_rate": 0.01, "canary_max_latency_ratio": 1000.0, "canary_max_prediction_shift": 1.0}


def _quiet(message: str) -> None:
    pass


def _break_signature(model_dir: str, out) -> str:
    """A copy of `model_dir` whose signature and input example say `weekday` is a number."""
    broken = out / "broken"
    shutil.copytree(model_dir, broken)
    mlmodel = yaml.safe_load((broken / "MLmodel").read_text())
    inputs = json.loads(mlmodel["signature"]["inputs"])
    for spec in inputs:
        if spec["name"] == "weekday":
            spec["type"] = "double"
    mlmodel["signature"]["inputs"] = json.dumps(inputs)
    (broken / "MLmodel").write_text(yaml.safe_dump(mlmodel, sort_keys=False))
    example = json.loads((broken / "input_example.json").read_text())
    column = example["columns"].index("weekday")
    for i, row in enumerate(example["data"]):
        row[column] = float(i % 7 + 1)
    (broken / "input_example.json").write_text(json.dumps(example))
    return str(broken)


@pytest.fixture(scope="module")
def models(shared_data, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("canary_models")
    uri = f"sqlite:///{out / 'mlflow.db'}"
    trained = {
        "champion": train_elec2(out / "champion", uri, REGISTERED, shared_data),
        "good": train_elec2(out / "good", uri, REGISTERED, shared_data, seed=1),
        "slow": train_elec2(
            out / "slow",
            uri,
            REGISTERED,
            shared_data,
            estimator="random_forest",
            hyperparameters={"n_estimators": 1000, "max_depth": 10},
        ),
        "shifted": train_elec2(out / "shifted", uri, REGISTERED, shared_data, flip_labels=True),
    }
    trained["broken"] = {**trained["good"], "path": _break_signature(trained["good"]["path"], out)}
    return {**trained, "tracking_uri": uri, "test": trained["champion"]["test"]}


@pytest.fixture
def champion(models) -> str:
    """The champion's version, made the champion again before each test."""
    version = models["champion"]["version"]
    tracking.promote(REGISTERED, version, "champion", models["tracking_uri"])
    return version


def _push_local(models, which: str, tmp_path, fast_path: bool = True, **bounds):
    """Pushes a candidate with its own test split (its serving fast path proven on it), or without one
    (`fast_path=False`: no proof is published and the server runs the model itself); every candidate is judged on
    the champion's test rows."""
    return push(
        model_dir=models[which]["path"],
        model_name="elec2",
        storage_uri=str(tmp_path / "store"),
        tracking_uri=models["tracking_uri"],
        test_path=models[which]["test"] if fast_path else None,
        canary_rows_uri=models["test"],
        canary_bake_s=BAKE_S,
        **{**LOOSE, **bounds},
        log=_quiet,
    )


def _rolled_back(models, champion: str, tmp_path) -> None:
    assert tracking.get_alias(REGISTERED, "champion", models["tracking_uri"]) == champion
    assert storage.list_versions(str(tmp_path / "store")) == []  # the candidate's copy was withdrawn


# --- the local canary: two catalog servers on loopback -------------------------------------------------------------


@pytest.mark.integration
def test_local_broken_candidate_is_rolled_back_on_its_error_rate(models, champion, tmp_path):
    with pytest.raises(CanaryRejected) as rejected:
        _push_local(models, "broken", tmp_path, canary_max_error_rate=0.01)
    analysis = rejected.value.analysis
    assert analysis.canary_error_rate == 1.0 and analysis.stable_error_rate == 0.0
    assert "error rate 100.00% > canary_max_error_rate 1.00%" in str(rejected.value)
    assert "HTTP 400" in str(rejected.value) and "weekday" in str(rejected.value)  # the first error is named
    assert "prediction shift: no row was answered by both models" in analysis.breaches
    _rolled_back(models, champion, tmp_path)


@pytest.mark.integration
def test_local_slow_candidate_is_rolled_back_on_latency(models, champion, tmp_path):
    # the 1000 trees themselves, not their numpy mirror: about 3.5x the champion's p99 on this shared machine
    with pytest.raises(CanaryRejected, match=r"p99 latency .* > canary_max_latency_ratio 2") as rejected:
        _push_local(models, "slow", tmp_path, fast_path=False, canary_max_latency_ratio=2.0)
    analysis = rejected.value.analysis
    assert analysis.latency_ratio > 2 and analysis.canary_error_rate == 0
    assert len(analysis.breaches) == 1
    _rolled_back(models, champion, tmp_path)


@pytest.mark.integration
def test_local_shifted_candidate_is_rolled_back_on_prediction_shift(models, champion, tmp_path):
    with pytest.raises(CanaryRejected, match=r"prediction shift 0\.\d+ \(share of changed labels") as rejected:
        _push_local(models, "shifted", tmp_path, canary_max_prediction_shift=0.2)
    analysis = rejected.value.analysis
    assert analysis.prediction_shift > 0.5 and analysis.rows_compared >= analysis.requests > 0
    assert len(analysis.breaches) == 1
    _rolled_back(models, champion, tmp_path)


@pytest.mark.integration
def test_local_good_candidate_is_promoted_with_its_analysis(models, champion, tmp_path):
    result = _push_local(
        models,
        "good",
        tmp_path,
        canary_max_error_rate=0.01,
        canary_max_latency_ratio=5.0,
        canary_max_prediction_shift=0.2,
    )
    assert result.canary.passed and result.canary.requests >= 20
    assert result.canary.canary_error_rate == 0 and result.canary.prediction_shift <= 0.2
    assert tracking.get_alias(REGISTERED, "champion", models["tracking_uri"]) == models["good"]["version"]
    assert result.previous_champion == champion
    recorded = result.metadata["canary_analysis"]
    assert recorded["passed"] is True and recorded["bounds"]["max_latency_ratio"] == 5.0
    assert json.loads(json.dumps(recorded)) == recorded
    assert set(result.metrics) >= {"canary_error_rate", "canary_latency_ratio", "canary_prediction_shift"}
    page = result.canary_html()
    assert "Canary analysis: promoted" in page and "p99 latency" in page


@pytest.mark.integration
def test_local_first_model_has_nothing_to_compare_with(shared_data, tmp_path, model_name):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    first = train_elec2(tmp_path / "first", uri, model_name, shared_data)
    result = push(
        model_dir=first["path"],
        model_name="elec2",
        storage_uri=str(tmp_path / "store"),
        tracking_uri=uri,
        test_path=first["test"],
        canary_bake_s=BAKE_S,
        log=_quiet,
    )
    assert result.canary is None and "has no champion yet" in result.canary_note
    assert result.metadata["canary_analysis"] == {"skipped": result.canary_note}
    assert "No canary analysis" in result.canary_html()
    assert tracking.get_alias(model_name, "champion", uri) == first["version"]


# --- the KServe path: tag URLs served by two loopback servers ------------------------------------------------------


@pytest.mark.integration
def test_kserve_canary_judged_between_the_prev_and_latest_tag_urls(models, champion, gcs_bucket, tmp_path):
    servers = {}
    try:
        for which in ("champion", "shifted", "good"):
            servers[which] = start_model_server(models[which]["path"], "elec2", tmp_path / f"{which}.log")
        api = FakeCustomObjectsApi(AllStorage(servers["champion"][1]), lag=1)
        kwargs = dict(
            model_name="elec2",
            target="kserve",
            storage_uri=f"gs://{gcs_bucket.name}/models/elec2",
            tracking_uri=models["tracking_uri"],
            canary_rows_uri=models["test"],
            canary_bake_s=1,
            api=api,
            poll_s=0.01,
            rollout_timeout_s=30,
            log=_quiet,
        )
        first = push(model_dir=models["champion"]["path"], test_path=models["champion"]["test"], **kwargs)
        assert first.canary is None and "first deployment" in first.canary_note

        api.endpoints = AllStorage(servers["shifted"][1])  # the next revision's pods serve the shifted model
        with pytest.raises(RolloutError, match=r"rolled back to 0%.*prediction shift 0\.\d+ .* > .*0\.2"):
            push(
                model_dir=models["shifted"]["path"],
                test_path=models["shifted"]["test"],
                **kwargs,
                **{**LOOSE, "canary_max_prediction_shift": 0.2},
            )
        assert api.live("elec2")["spec"]["predictor"]["canaryTrafficPercent"] == 0
        assert api.traffic("elec2") == {first.storage_uri: 100}
        assert tracking.get_alias(REGISTERED, "champion", models["tracking_uri"]) == champion

        api.endpoints = AllStorage(servers["good"][1])
        second = push(
            model_dir=models["good"]["path"],
            test_path=models["good"]["test"],
            **kwargs,
            **{**LOOSE, "canary_max_latency_ratio": 5.0},
        )
        assert second.canary.passed and second.canary.prediction_shift <= 0.2
        assert api.traffic("elec2") == {second.storage_uri: 100}
        assert tracking.get_alias(REGISTERED, "champion", models["tracking_uri"]) == models["good"]["version"]
        assert any("canary analysis passed" in event for event in second.events)
    finally:
        for process, _ in servers.values():
            stop_model_server(process)


@pytest.mark.integration
def test_kserve_raw_canary_judged_on_a_second_inference_service(models, champion, gcs_bucket, tmp_path):
    """RawDeployment: the candidate serves on `elec2-canary` (its address URL a loopback server of its own) and is
    judged against the stable `elec2`; the stable one is rolled out only when the canary passes."""
    servers = {}
    try:
        for which in ("champion", "shifted", "good"):
            servers[which] = start_model_server(models[which]["path"], "elec2", tmp_path / f"{which}.log")
        api = FakeCustomObjectsApi(AllStorage(servers["champion"][1]), lag=1)
        store = f"gs://{gcs_bucket.name}/models/elec2"
        kwargs = dict(
            model_name="elec2",
            target="kserve",
            deployment_mode="RawDeployment",
            storage_uri=store,
            tracking_uri=models["tracking_uri"],
            canary_rows_uri=models["test"],
            canary_bake_s=1,
            api=api,
            poll_s=0.01,
            rollout_timeout_s=30,
            log=_quiet,
        )
        first = push(model_dir=models["champion"]["path"], test_path=models["champion"]["test"], **kwargs)
        assert first.canary is None and "first deployment" in first.canary_note
        assert not api.exists("elec2-canary")

        api.endpoints = AllStorage(servers["shifted"][1])  # pods created from now on serve the shifted model
        with pytest.raises(
            RolloutError,
            match=r"canary elec2-canary of gs://.* rejected and deleted .*prediction shift 0\.\d+ .* > "
            r"canary_max_prediction_shift 0\.2",
        ):
            push(
                model_dir=models["shifted"]["path"],
                test_path=models["shifted"]["test"],
                **kwargs,
                **{**LOOSE, "canary_max_prediction_shift": 0.2},
            )
        stable = api.live("elec2")
        assert stable["spec"]["predictor"]["model"]["storageUri"] == first.storage_uri
        assert stable["metadata"]["generation"] == 1  # never touched
        assert not api.exists("elec2-canary")
        assert tracking.get_alias(REGISTERED, "champion", models["tracking_uri"]) == champion
        assert storage.list_versions(store) == [first.storage_uri]  # the shifted copy was withdrawn

        # a canary that a crashed push left behind is replaced (and its deletion takes a few reads to finish)
        api.deletion_lag = 2
        api.create_namespaced_custom_object(
            "serving.kserve.io", "v1beta1", NS, "inferenceservices", manifests.canary_service(first.manifest)
        )
        api.endpoints = AllStorage(servers["good"][1])
        second = push(
            model_dir=models["good"]["path"],
            test_path=models["good"]["test"],
            **kwargs,
            **{**LOOSE, "canary_max_latency_ratio": 5.0},
        )
        assert second.canary.passed and second.canary.prediction_shift <= 0.2 and second.canary.requests >= 20
        assert api.live("elec2")["spec"]["predictor"]["model"]["storageUri"] == second.storage_uri
        assert not api.exists("elec2-canary")
        assert tracking.get_alias(REGISTERED, "champion", models["tracking_uri"]) == models["good"]["version"]
        assert any("that an earlier push left behind" in event for event in second.events)
        assert second.metadata["canary_analysis"]["passed"] is True
    finally:
        for process, _ in servers.values():
            stop_model_server(process)


# --- the parts on their own --------------------------------------------------------------------------------------


def test_load_rows_reads_captured_traffic_of_one_model(tmp_path):
    for model, hour, rows in (("elec2", 1, 3), ("elec2", 2, 2), ("other", 1, 4)):
        folder = tmp_path / f"model={model}" / "dt=2026-11-30" / f"hour={hour}"
        folder.mkdir(parents=True)
        frame = pd.DataFrame({"x": [float(i) for i in range(rows)], "kind": ["a"] * rows, "extra": [1] * rows})
        frame.loc[0, "x"] = math.nan
        frame.to_parquet(folder / "part-0.parquet")
    rows = load_rows(str(tmp_path), ["x", "kind"], "elec2")
    assert len(rows) == 5 and all(set(row) == {"x", "kind"} for row in rows)
    assert sum(row["x"] is None for row in rows) == 2  # NaN travels as null
    assert len(load_rows(str(tmp_path), ["x"], "elec2", sample_rows=3)) == 3
    with pytest.raises(ValueError, match=r"lack the model's input column\(s\) weekday"):
        load_rows(str(tmp_path), ["x", "weekday"], "elec2")
    with pytest.raises(ValueError, match="hold no rows for model=nobody"):
        load_rows(str(tmp_path), ["x"], "nobody")
    with pytest.raises(FileNotFoundError, match="canary rows not found"):
        load_rows(str(tmp_path / "missing"), ["x"])
    with pytest.raises(ValueError, match="unsupported canary rows URI scheme 'http'"):
        load_rows("http://example.invalid/rows.parquet", ["x"])


@pytest.mark.integration
def test_load_rows_from_an_object_store_folder_or_file(gcs_bucket, tmp_path):
    """Captured traffic in a bucket (the GCS emulator): a hive-partitioned folder, or one Parquet file."""
    for hour, rows in ((1, 3), (2, 4)):
        path = tmp_path / f"part-{hour}.parquet"
        pd.DataFrame({"x": [float(i) for i in range(rows)], "kind": ["a"] * rows}).to_parquet(path)
        gcs_bucket.blob(f"captured/model=elec2/dt=2026-11-30/hour={hour}/part-0.parquet").upload_from_filename(path)
    root = f"gs://{gcs_bucket.name}/captured"
    assert len(load_rows(root, ["x", "kind"], "elec2")) == 7
    assert len(load_rows(f"{root}/model=elec2/dt=2026-11-30/hour=2/part-0.parquet", ["x"])) == 4
    with pytest.raises(FileNotFoundError):
        load_rows(f"gs://{gcs_bucket.name}/nothing-here", ["x"])


def test_prediction_shift_for_labels_and_values():
    assert prediction_shift(["UP", "UP", "DOWN", None], ["UP", "DOWN", "DOWN", "UP"], "classification") == (1 / 3, 3)
    shift, compared = prediction_shift([10.0, 20.0, -10.0], [11.0, 18.0, -10.0], "regression")
    assert compared == 3 and shift == pytest.approx(3 / 40)
    assert math.isnan(prediction_shift([None], [1.0], "regression")[0])


def test_analysis_names_every_bound_broken():
    stable, canary = Traffic(), Traffic()
    for i in range(100):
        stable.record(0.010, "UP", None)
        canary.record(0.050, "DOWN" if i < 30 else "UP", "HTTP 500: boom" if i >= 95 else None)
    analysis = analyse(stable, canary, "classification", Bounds(0.01, 2.0, 0.1), 5, "rows.parquet")
    assert analysis.canary_error_rate == 0.05 and analysis.latency_ratio == pytest.approx(5)
    assert analysis.prediction_shift == pytest.approx(30 / 95)
    assert [b.split(" ")[0] for b in analysis.breaches] == ["error", "p99", "prediction"]
    assert "(first: HTTP 500: boom)" in analysis.breaches[0]
    assert "Canary analysis: rolled back" in analysis.html() and analysis.html().count("broken") == 3


@pytest.mark.parametrize(
    "bounds, message",
    [
        ((1.5, 2, 0.1), "canary_max_error_rate must be within 0..1"),
        ((0.01, 0, 0.1), "canary_max_latency_ratio must be > 0"),
        ((0.01, 2, -1), "canary_max_prediction_shift must be >= 0"),
    ],
)
def test_bounds_are_checked(bounds, message):
    with pytest.raises(ValueError, match=message):
        Bounds(*bounds)


@pytest.mark.integration
def test_push_refuses_a_canary_it_cannot_judge_before_publishing(models, tmp_path):
    store = tmp_path / "store"
    common = dict(model_dir=models["good"]["path"], model_name="elec2", tracking_uri=models["tracking_uri"])
    with pytest.raises(ValueError, match="canary_bake_s > 0 needs rows to replay"):
        push(**common, storage_uri=str(store), canary_bake_s=5)
    with pytest.raises(ValueError, match=r"the raw-mode canary's name \(model_name \+ '-canary'\) 'a{40}-canary'"):
        push(
            **{**common, "model_name": "a" * 40},
            target="kserve",
            storage_uri="gs://bucket/models",
            deployment_mode="RawDeployment",
            test_path=models["test"],
            canary_bake_s=5,
        )
    with pytest.raises(ValueError, match="canary_traffic_percent within 1..99"):
        push(
            **common,
            target="kserve",
            storage_uri="gs://bucket/models",
            canary_traffic_percent=100,
            test_path=models["test"],
            canary_bake_s=5,
        )
    with pytest.raises(ValueError, match="canary_bake_s must be >= 0"):
        push(**common, storage_uri=str(store), canary_bake_s=-1)
    with pytest.raises(ValueError, match="canary_max_latency_ratio must be > 0"):
        push(**common, storage_uri=str(store), test_path=models["test"], canary_bake_s=5, canary_max_latency_ratio=0)
    assert not store.exists()
