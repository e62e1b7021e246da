"""push end to end on a real model: publish, infra validation with the real model server, the champion alias in a
real MLflow registry (sqlite), and the KServe rollout against the fake cluster with smoke tests on a real server."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import yaml
from fake_kube import AllStorage, FakeCustomObjectsApi
from loopback import free_port

from kfp_ct.components._common import storage, tracking
from kfp_ct.components.push import manifests
from kfp_ct.components.push.core import InfraValidationError, push, write_manifest
from kfp_ct.components.push.rollout import RolloutError

pytestmark = pytest.mark.integration
NS = "kubeflow-user-example-com"


def _quiet(message: str) -> None:
    pass


def test_push_local_validates_publishes_and_promotes(trained_model, tmp_path):
    registered, tracking_uri = trained_model["registered"], trained_model["tracking_uri"]
    before = tracking.get_alias(registered, "champion", tracking_uri)
    result = push(
        model_dir=trained_model["path"],
        model_name="elec2",
        storage_uri=str(tmp_path / "store"),
        tracking_uri=tracking_uri,
        log=_quiet,
    )
    assert result.url == f"http://elec2.{NS}.svc.cluster.local/v1/models/elec2:predict"
    assert storage.list_versions(str(tmp_path / "store")) == [result.storage_uri]
    assert (result.registered_model, result.version) == (registered, trained_model["version"])
    assert tracking.get_alias(registered, "champion", tracking_uri) == trained_model["version"]
    assert result.previous_champion == before
    assert result.manifest["spec"]["predictor"]["model"]["storageUri"] == result.storage_uri
    assert manifests.crd_errors(result.manifest) == []
    write_manifest(result.manifest, str(tmp_path / "manifest.yaml"))
    assert yaml.safe_load((tmp_path / "manifest.yaml").read_text()) == result.manifest


def _broken_copy(trained_model, tmp_path, how: str) -> str:
    broken = tmp_path / f"model-{how}"
    shutil.copytree(trained_model["path"], broken)
    if how == "corrupt":
        with open(broken / "model.skops", "r+b") as f:
            f.truncate(1000)
    else:  # the featurizer expects a column the signature and the input example do not have: predict raises
        spec = json.loads((broken / "featurizer" / "featurizer.json").read_text())
        spec["feature_columns"][0]["name"] = "no_such_column"
        (broken / "featurizer" / "featurizer.json").write_text(json.dumps(spec))
    return str(broken)


@pytest.mark.parametrize(
    "how, message", [("corrupt", "cannot predict its own input example"), ("predict_raises", "no_such_column")]
)
def test_infra_validation_stops_a_broken_model_and_the_champion_stays(trained_model, tmp_path, how, message):
    registered, tracking_uri = trained_model["registered"], trained_model["tracking_uri"]
    tracking.promote(registered, trained_model["version"], "champion", tracking_uri)
    candidate = tracking.register_version(registered, trained_model["path"], tracking_uri=tracking_uri)
    store = tmp_path / "store"
    with pytest.raises(InfraValidationError, match=message):
        push(
            model_dir=_broken_copy(trained_model, tmp_path, how),
            model_name="elec2",
            storage_uri=str(store),
            tracking_uri=tracking_uri,
            registered_version=candidate,
            log=_quiet,
        )
    assert tracking.get_alias(registered, "champion", tracking_uri) == trained_model["version"]
    assert storage.list_versions(str(store)) == []  # the copy was withdrawn
    assert not store.exists() or os.listdir(store) == []


def test_server_that_cannot_load_the_copy_stops_the_push(trained_model, tmp_path, monkeypatch):
    """The copy is what gets served: a copy that differs from its marker never reaches a rollout."""
    real_publish = storage.publish_directory

    def publish_then_damage(source, uri, version=None):
        published = real_publish(source, uri, version)
        with open(os.path.join(storage.split_uri(published)[2], "model.skops"), "r+b") as f:
            f.write(b"bit rot")
        return published

    monkeypatch.setattr(storage, "publish_directory", publish_then_damage)
    with pytest.raises(InfraValidationError, match="(?s)model server exited.*model file corrupted: model.skops"):
        push(
            model_dir=trained_model["path"],
            model_name="elec2",
            storage_uri=str(tmp_path / "store"),
            tracking_uri=trained_model["tracking_uri"],
            log=_quiet,
        )


def test_push_kserve_gcs_canary_promote_and_rollback(trained_model, model_server, gcs_bucket):
    """gs:// storage on the emulator; the fake cluster's pods answer on the real model server (same model)."""
    api = FakeCustomObjectsApi(AllStorage(model_server), lag=1)
    uri = f"gs://{gcs_bucket.name}/models/elec2"
    kwargs = dict(
        target="kserve",
        storage_uri=uri,
        tracking_uri=trained_model["tracking_uri"],
        api=api,
        poll_s=0.01,
        rollout_timeout_s=30,
        log=_quiet,
    )
    first = push(model_dir=trained_model["path"], model_name="elec2", **kwargs)
    assert first.url == f"{model_server}/v1/models/elec2:predict"
    second = push(model_dir=trained_model["path"], model_name="elec2", canary_traffic_percent=20, **kwargs)
    assert storage.list_versions(uri) == [first.storage_uri, second.storage_uri]
    assert [m["spec"]["predictor"].get("canaryTrafficPercent") for m in api.received] == [None, 20, None]
    assert api.traffic("elec2") == {second.storage_uri: 100}
    assert (
        tracking.get_alias(trained_model["registered"], "champion", trained_model["tracking_uri"])
        == trained_model["version"]
    )

    api.endpoints = AllStorage(f"http://127.0.0.1:{free_port()}")  # the new revision's pods answer nothing
    with pytest.raises(RolloutError, match="rolled back to 0%.*smoke test failed"):
        push(model_dir=trained_model["path"], model_name="elec2", **kwargs)
    live = api.live("elec2")
    assert live["spec"]["predictor"]["canaryTrafficPercent"] == 0
    assert api.traffic("elec2") == {second.storage_uri: 100}


def test_push_refuses_bad_arguments(trained_model, tmp_path):
    with pytest.raises(ValueError, match="needs a storage_uri KServe's storage-initializer can read"):
        push(model_dir=trained_model["path"], model_name="elec2", target="kserve", storage_uri=str(tmp_path))
    with pytest.raises(ValueError, match="unknown target 'cluster'"):
        push(model_dir=trained_model["path"], model_name="elec2", target="cluster")
    with pytest.raises(ValueError, match="cannot name an InferenceService"):
        push(model_dir=trained_model["path"], model_name="Elec2_Model")
    with pytest.raises(FileNotFoundError, match="not a model directory"):
        push(model_dir=str(tmp_path), model_name="elec2", storage_uri=str(tmp_path / "store"))
    assert not (tmp_path / "store").exists()


@pytest.fixture
def own_temp_dir(tmp_path, monkeypatch):
    """A temporary directory of the test's own, for this process (tempfile) and the servers it starts (TMPDIR)."""
    import tempfile

    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))
    monkeypatch.setattr(tempfile, "tempdir", None)  # recomputed from TMPDIR
    yield temp
    tempfile.tempdir = None


def test_a_push_leaves_nothing_in_the_temp_dir_on_success_or_failure(trained_model, tmp_path, own_temp_dir):
    registered, tracking_uri = trained_model["registered"], trained_model["tracking_uri"]
    push(
        model_dir=trained_model["path"],
        model_name="elec2",
        storage_uri=str(tmp_path / "store"),
        tracking_uri=tracking_uri,
        log=_quiet,
    )
    assert sorted(os.listdir(own_temp_dir)) == []
    candidate = tracking.register_version(registered, trained_model["path"], tracking_uri=tracking_uri)
    with pytest.raises(InfraValidationError, match="no_such_column"):
        push(
            model_dir=_broken_copy(trained_model, tmp_path, "predict_raises"),
            model_name="elec2",
            storage_uri=str(tmp_path / "store"),
            tracking_uri=tracking_uri,
            registered_version=candidate,
            log=_quiet,
        )
    assert sorted(os.listdir(own_temp_dir)) == []
