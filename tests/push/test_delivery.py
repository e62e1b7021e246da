"""Approval and rollback (kfp_ct.pipelines.delivery, `kfp-ct promote/reject/rollback/status`) against a real MLflow
server with real trained elec2 models; on KServe against the fake custom-objects API, whose pods answer on the
catalog's model server serving each version."""

from __future__ import annotations

import os

import pytest
from elec2_serving import start_model_server, stop_model_server, train_elec2
from fake_kube import FakeCustomObjectsApi
from loopback import free_port

from kfp_ct.components._common import storage, tracking
from kfp_ct.components.evaluate.core import evaluate
from kfp_ct.components.push.core import push
from kfp_ct.components.push.manifests import MODEL_VERSION_LABEL
from kfp_ct.components.push.rollout import GROUP, PLURAL, VERSION, RolloutError
from kfp_ct.pipelines import delivery
from kfp_ct.pipelines.cli import main

pytestmark = pytest.mark.integration
NS = "kubeflow-user-example-com"
PASSES = {"roc_auc": {"min": 0.5}}  # absolute only: blessed whatever the champion
FAILS = {"roc_auc": {"min": 0.9999}}


def _quiet(message: str) -> None:
    pass


def _candidate(tmp_path, tracking_uri: str, name: str, shared_data, seed: int, thresholds: dict) -> dict:
    """A trained, registered and evaluated elec2 version of `name`."""
    out = tmp_path / f"seed{seed}"
    out.mkdir()
    model = train_elec2(out, tracking_uri, name, shared_data, seed=seed)
    outcome = evaluate(
        model_path=model["path"],
        test_path=model["test"],
        target_column="class",
        model_name=name,
        thresholds=thresholds,
        tracking_uri=tracking_uri,
    )
    assert outcome.blessed == (thresholds is PASSES)
    return model


def _aliases(name: str, uri: str) -> dict:
    return {alias: tracking.get_alias(name, alias, uri) for alias in (tracking.CHAMPION, tracking.CHALLENGER)}


def _published(folder) -> list[str]:
    return storage.list_versions(str(folder)) if os.path.isdir(folder) else []


def test_approve_reject_and_roll_back_in_the_registry(mlflow_server, shared_data, tmp_path, model_name, capsys):
    uri, store = mlflow_server, tmp_path / "store"
    local = dict(target="local", storage_uri=str(store), log=_quiet)
    first = _candidate(tmp_path, uri, model_name, shared_data, 0, PASSES)
    v1 = first["version"]
    assert _aliases(model_name, uri) == {"champion": None, "challenger": v1}
    evaluated = delivery.status(model_name, tracking_uri=uri)["versions"][0]
    assert evaluated["blessed"] is True and evaluated["rule"] == "every threshold passes (absolute only: no champion)"
    assert evaluated["metrics"]["roc_auc"] > 0.5 and evaluated["checks"][0].startswith("PASS roc_auc")

    promoted = delivery.promote(model_name, tracking_uri=uri, **local)  # the challenger, by default
    assert (promoted.version, promoted.previous_champion) == (v1, None)
    assert _published(store) == [promoted.storage_uri]
    assert [e["version"] for e in tracking.champion_history(model_name, uri)] == [v1]
    with pytest.raises(delivery.DeliveryError, match=f"version {v1} is the first champion.*no previous champion"):
        delivery.rollback(model_name, tracking_uri=uri)
    with pytest.raises(delivery.DeliveryError, match=f"version {v1} of '{model_name}' is the champion already"):
        delivery.promote(model_name, version=v1, tracking_uri=uri, **local)

    second = _candidate(tmp_path, uri, model_name, shared_data, 1, PASSES)
    v2 = second["version"]
    v3 = _candidate(tmp_path, uri, model_name, shared_data, 2, FAILS)["version"]
    assert _aliases(model_name, uri) == {"champion": v1, "challenger": v2}  # v3 was not blessed
    with pytest.raises(delivery.DeliveryError, match=f"refusing to promote version {v3}.*evaluate did not bless it"):
        delivery.promote(model_name, version=v3, tracking_uri=uri, **local)
    with pytest.raises(delivery.DeliveryError, match=f"'{model_name}' has no version 99 \\(its versions: 1, 2, 3\\)"):
        delivery.promote(model_name, version="99", tracking_uri=uri, **local)
    with pytest.raises(delivery.DeliveryError, match="is the champion: roll it back first"):
        delivery.reject(model_name, version=v1, reason="too slow", tracking_uri=uri)
    assert _published(store) == [promoted.storage_uri]  # nothing published by a refusal

    main(["reject", model_name, "--version", v2, "--reason", "worse on weekends", "--tracking-uri", uri])
    assert "rejected: worse on weekends; the challenger alias is removed" in capsys.readouterr().out
    assert _aliases(model_name, uri) == {"champion": v1, "challenger": None}
    with pytest.raises(delivery.DeliveryError, match="has no challenger"):
        delivery.promote(model_name, tracking_uri=uri, **local)
    with pytest.raises(
        SystemExit, match=f"refusing to promote version {v2}.*rejected \\(worse on weekends\\).*--force"
    ):
        main(["promote", model_name, "--version", v2, "--tracking-uri", uri, "--storage-uri", str(store)])
    assert _aliases(model_name, uri)["champion"] == v1 and len(_published(store)) == 1

    # forced, through the CLI, judged on replayed rows against the champion's server first (push's canary analysis)
    main(
        ["promote", model_name, "--version", v2, "--force", "--tracking-uri", uri, "--storage-uri", str(store)]
        + ["--canary-bake-s", "1", "--canary-rows-uri", second["test"], "--canary-max-latency-ratio", "10"]
    )
    assert f"{model_name} version {v2} is the champion (previous: {v1})" in capsys.readouterr().out
    forced_uri = tracking.client(uri).get_model_version(model_name, v2).tags[tracking.STORAGE_TAG]
    assert [e["version"] for e in tracking.champion_history(model_name, uri)] == [v1, v2]
    report = delivery.status(model_name, tracking_uri=uri)
    assert report["aliases"] == {"champion": v2}
    by_version = {v["version"]: v for v in report["versions"]}
    assert by_version[v2]["rejected"] == "worse on weekends" and by_version[v2]["storage_uri"] == forced_uri
    assert by_version[v3]["blessed"] is False and by_version[v3]["checks"][0].startswith("FAIL roc_auc")
    assert by_version[v1]["storage_uri"] == promoted.storage_uri

    main(["rollback", model_name, "--tracking-uri", uri])
    assert f"version {v1} is the champion again (version {v2} rolled back)" in capsys.readouterr().out
    assert _aliases(model_name, uri)["champion"] == v1
    assert [e["version"] for e in tracking.champion_history(model_name, uri)] == [v1]
    with pytest.raises(delivery.DeliveryError, match="no previous champion"):
        delivery.rollback(model_name, tracking_uri=uri)

    main(["status", model_name, "--tracking-uri", uri])
    text = capsys.readouterr().out
    assert f"aliases: champion -> {v1}" in text and f"champion history: {v1} (" in text
    assert f"version {v3}: NOT blessed (every threshold passes" in text and "FAIL roc_auc" in text
    assert f"version {v2}: blessed" in text and "REJECTED" in text and "rolled back" in text
    assert f"version {v1} [champion]: blessed" in text


def test_a_champion_moved_outside_kfp_ct_is_not_rolled_back(mlflow_server, shared_data, tmp_path, model_name):
    uri = mlflow_server
    v1 = _candidate(tmp_path, uri, model_name, shared_data, 0, PASSES)["version"]
    delivery.promote(model_name, tracking_uri=uri, target="local", storage_uri=str(tmp_path / "store"), log=_quiet)
    second = _candidate(tmp_path, uri, model_name, shared_data, 1, PASSES)
    v2 = second["version"]
    tracking.set_alias(model_name, tracking.CHAMPION, v2, uri)  # by hand: the history does not know
    with pytest.raises(delivery.DeliveryError, match=f"champion .* is version {v2} but the champion history"):
        delivery.rollback(model_name, tracking_uri=uri)
    assert tracking.get_alias(model_name, tracking.CHAMPION, uri) == v2

    # a version registered under this name that holds another model is never pushed under it
    other = f"{model_name}-other"
    registered = tracking.client(uri).get_model_version(model_name, v1)
    foreign = tracking.register_version(other, registered.source, registered.run_id, tracking_uri=uri)
    tracking.record_evaluation(
        other, foreign, blessed=True, rule="test", metrics={}, checks=[], champion_version=None, tracking_uri=uri
    )
    with pytest.raises(delivery.DeliveryError, match=f"holds a model trained as '{model_name}'"):
        delivery.promote(other, version=foreign, tracking_uri=uri, storage_uri=str(tmp_path / "other"), log=_quiet)
    assert not (tmp_path / "other").exists() and tracking.get_alias(other, tracking.CHAMPION, uri) is None


class _Endpoints(dict):
    """The fake cluster's endpoints: a storageUri's pods answer on the URL given for it, else on `fallback`."""

    def __init__(self, known: dict, fallback: str):
        super().__init__(known)
        self.fallback = fallback

    def get(self, key, default=None):
        return super().get(key, self.fallback)


@pytest.fixture
def two_served_versions(mlflow_server, shared_data, tmp_path, model_name):
    """Two blessed versions of `model_name`, each served by the catalog's model server: {version: (model, URL)}."""
    served, processes = {}, []
    for seed in (0, 1):
        model = _candidate(tmp_path, mlflow_server, model_name, shared_data, seed, PASSES)
        process, base = start_model_server(model["path"], model_name, tmp_path / f"server{seed}.log")
        processes.append(process)
        served[model["version"]] = (model, base)
    yield served
    for process in processes:
        stop_model_server(process)


def test_rollback_and_status_of_an_inference_service(mlflow_server, gcs_bucket, model_name, two_served_versions):
    uri = mlflow_server
    (v1, (_, url1)), (v2, (model2, url2)) = two_served_versions.items()
    api = FakeCustomObjectsApi(_Endpoints({}, url1), lag=1)
    kserve = dict(
        target="kserve",
        storage_uri=f"gs://{gcs_bucket.name}/models/{model_name}",
        tracking_uri=uri,
        api=api,
        poll_s=0.01,
        rollout_timeout_s=30,
        log=_quiet,
    )
    first = delivery.promote(model_name, version=v1, **kserve)
    api.endpoints = _Endpoints({first.storage_uri: url1}, url2)
    second = delivery.promote(model_name, canary_traffic_percent=20, **kserve)  # v2, the challenger
    assert second.version == v2 and api.traffic(model_name) == {second.storage_uri: 100}
    service = delivery.status(model_name, tracking_uri=uri, namespace=NS, api=api)["service"]
    assert service["ready"] == "True" and service["version"] == v2
    assert [(t["version"], t["percent"]) for t in service["traffic"]] == [(v2, 100)]

    # a canary that fails leaves v2 serving with the new revision at 0%: the split names both
    api.endpoints = _Endpoints({first.storage_uri: url1, second.storage_uri: url2}, f"http://127.0.0.1:{free_port()}")
    with pytest.raises(RolloutError, match="rolled back to 0%"):
        push(model_dir=model2["path"], model_name=model_name, registered_version=v2, **kserve)
    service = delivery.status(model_name, tracking_uri=uri, namespace=NS, api=api)["service"]
    split = {t["version"]: t["percent"] for t in service["traffic"]}
    assert split == {v2: 100, None: 0} and service["canary_traffic_percent"] == 0

    # the failed canary's leftover (its spec names the withdrawn copy) is refused until the spec is clean again
    sent = len(api.received)
    with pytest.raises(delivery.DeliveryError, match="still carries canaryTrafficPercent: 0 .*then roll back"):
        delivery.rollback(model_name, tracking_uri=uri, namespace=NS, api=api)
    assert len(api.received) == sent and tracking.get_alias(model_name, tracking.CHAMPION, uri) == v2
    live = api.live(model_name)
    del live["spec"]["predictor"]["canaryTrafficPercent"]
    live["spec"]["predictor"]["model"]["storageUri"] = second.storage_uri
    cleaned = api.replace_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, model_name, live)
    for _ in range(api.lag):  # the fake controller reconciles after `lag` reads
        api.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, model_name)
    assert api.live(model_name)["status"]["observedGeneration"] == cleaned["metadata"]["generation"]
    assert api.traffic(model_name) == {second.storage_uri: 100}

    # the previous champion's pods do not answer: the rollout puts v2 back and the registry does not move
    api.endpoints[first.storage_uri] = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(RolloutError, match="rolled back"):
        delivery.rollback(model_name, tracking_uri=uri, namespace=NS, api=api, poll_s=0.01, rollout_timeout_s=30)
    assert tracking.get_alias(model_name, tracking.CHAMPION, uri) == v2
    assert api.traffic(model_name) == {second.storage_uri: 100}
    assert [e["version"] for e in tracking.champion_history(model_name, uri)] == [v1, v2]

    api.endpoints[first.storage_uri] = url1
    live_before = api.live(model_name)
    outcome = delivery.rollback(model_name, tracking_uri=uri, namespace=NS, api=api, poll_s=0.01, log=_quiet)
    assert outcome == {"version": v1, "rolled_back": v2, "storage_uri": first.storage_uri}
    live = api.live(model_name)
    assert live["spec"]["predictor"]["model"]["storageUri"] == first.storage_uri
    assert live["metadata"]["labels"][MODEL_VERSION_LABEL] == first.storage_uri.rsplit("/", 1)[-1]
    assert live["spec"]["predictor"]["minReplicas"] == live_before["spec"]["predictor"]["minReplicas"]
    assert api.traffic(model_name) == {first.storage_uri: 100}
    assert tracking.get_alias(model_name, tracking.CHAMPION, uri) == v1
    service = delivery.status(model_name, tracking_uri=uri, namespace=NS, api=api)["service"]
    assert service["version"] == v1 and [(t["version"], t["percent"]) for t in service["traffic"]] == [(v1, 100)]
    text = delivery.format_status(delivery.status(model_name, tracking_uri=uri, namespace=NS, api=api))
    assert f"InferenceService {NS}/{model_name}: Ready=True" in text and "100%" in text

    sent = len(api.received)
    with pytest.raises(delivery.DeliveryError, match="no previous champion"):
        delivery.rollback(model_name, tracking_uri=uri, namespace=NS, api=api)
    assert len(api.received) == sent


def test_a_champion_from_before_the_history_can_be_rolled_back_to(sqlite_tracking, model_name, tmp_path):
    """A champion set before push recorded the history is recorded first when the next one is promoted."""
    uri = sqlite_tracking
    old, new = (tracking.register_version(model_name, str(tmp_path / name), tracking_uri=uri) for name in "ab")
    tracking.set_alias(model_name, tracking.CHAMPION, old, uri)  # as push did before the history existed
    assert tracking.champion_history(model_name, uri) == []
    assert tracking.promote(model_name, new, tracking.CHAMPION, uri, storage_uri="gs://b/models/v2") == old
    history = tracking.champion_history(model_name, uri)
    assert [(e["version"], e["since"] is None) for e in history] == [(old, True), (new, False)]
    assert tracking.client(uri).get_model_version(model_name, new).tags[tracking.STORAGE_TAG] == "gs://b/models/v2"
    delivery.reject(model_name, version=old, reason="leaks the label", tracking_uri=uri)
    with pytest.raises(delivery.DeliveryError, match="was rejected \\(leaks the label\\): not rolling back"):
        delivery.rollback(model_name, tracking_uri=uri)
    assert tracking.get_alias(model_name, tracking.CHAMPION, uri) == new
    tracking.client(uri).delete_model_version_tag(model_name, old, tracking.REJECTED_TAG)
    assert delivery.rollback(model_name, tracking_uri=uri, log=_quiet) == {"version": old, "rolled_back": new}
    assert tracking.get_alias(model_name, tracking.CHAMPION, uri) == old
    with pytest.raises(delivery.DeliveryError, match="no previous champion"):
        delivery.rollback(model_name, tracking_uri=uri)

    tracking.client(uri).set_registered_model_tag(model_name, tracking.HISTORY_TAG, '{"version": 1}')
    with pytest.raises(ValueError, match="is not a champion history"):
        delivery.rollback(model_name, tracking_uri=uri)
    assert tracking.get_alias(model_name, tracking.CHAMPION, uri) == old
