"""KServe rollout logic against a fake of the Kubernetes CustomObjectsApi that behaves like the KServe controller
(generations, observedGeneration, revisions, traffic, Ready). Every manifest the fake receives must validate
against the InferenceService CRD (the fake asserts it)."""

from __future__ import annotations

import pytest
from fake_kube import GROUP, PLURAL, VERSION, FakeCustomObjectsApi

from kfp_ct.components.push import manifests
from kfp_ct.components.push.rollout import Rollout, RolloutError, rollout

NS = "kubeflow-user-example-com"
V1, V2 = "gs://bucket/models/v1", "gs://bucket/models/v2"
URL1, URL2 = "http://revision-1.local", "http://revision-2.local"


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class Smoke:
    """Records the URLs it is called with and the traffic split at that moment; fails for `failing` URLs."""

    def __init__(self, api: FakeCustomObjectsApi, name: str, failing: set[str] = frozenset()):
        self.api, self.name, self.failing = api, name, failing
        self.calls: list[tuple[str, dict]] = []

    def __call__(self, url: str) -> None:
        self.calls.append((url, self.api.traffic(self.name)))
        if url in self.failing:
            raise RuntimeError(f"V1 predict answered HTTP 500 at {url}")


def _manifest(storage: str, mode: str = "Serverless", name: str = "elec2") -> dict:
    return manifests.inference_service(
        manifests.ServiceSpec(name=name, storage_uri=storage, namespace=NS, deployment_mode=mode)
    )


def _run(api, storage, smoke, mode="Serverless", canary=10, timeout_s=600, judge=None):
    clock = Clock()
    return rollout(
        api,
        _manifest(storage, mode),
        smoke,
        canary,
        timeout_s=timeout_s,
        poll_s=5,
        judge=judge,
        sleep=clock.sleep,
        clock=clock,
        log=lambda message: None,
    )


@pytest.mark.parametrize("mode", ["Serverless", "RawDeployment"])
def test_first_deployment(mode):
    api = FakeCustomObjectsApi({V1: URL1})
    smoke = Smoke(api, "elec2")
    result = _run(api, V1, smoke, mode)
    assert api.calls[:2] == ["get", "create"]
    assert result.url == f"{URL1}/v1/models/elec2:predict"
    assert result.generation == 1 and result.previous_storage_uri is None
    assert [url for url, _ in smoke.calls] == [URL1]
    live = api.live("elec2")
    assert live["status"]["observedGeneration"] == live["metadata"]["generation"] == 1
    assert "canaryTrafficPercent" not in live["spec"]["predictor"]


def test_canary_is_smoke_tested_then_promoted():
    api = FakeCustomObjectsApi({V1: URL1, V2: URL2})
    _run(api, V1, Smoke(api, "elec2"))
    smoke = Smoke(api, "elec2")
    result = _run(api, V2, smoke, canary=10)
    # the smoke test reached the new revision (tag routing URL) while it had 10% of the traffic
    assert smoke.calls == [(URL2, {V1: 90, V2: 10})]
    assert [m["spec"]["predictor"].get("canaryTrafficPercent") for m in api.received[1:]] == [10, None]
    live = api.live("elec2")
    assert api.traffic("elec2") == {V2: 100}
    assert "canaryTrafficPercent" not in live["spec"]["predictor"]
    assert live["metadata"]["annotations"][manifests.PREVIOUS_STORAGE_ANNOTATION] == V1
    assert live["status"]["components"]["predictor"]["latestRolledoutRevision"] == "elec2-predictor-00002"
    assert result.generation == live["metadata"]["generation"] == 3
    assert result.previous_storage_uri == V1 and result.storage_uri == V2


def test_failed_canary_smoke_test_rolls_back_to_zero():
    api = FakeCustomObjectsApi({V1: URL1, V2: URL2})
    _run(api, V1, Smoke(api, "elec2"))
    with pytest.raises(RolloutError, match=r"rolled back to 0%.*HTTP 500"):
        _run(api, V2, Smoke(api, "elec2", failing={URL2}))
    live = api.live("elec2")
    assert live["spec"]["predictor"]["canaryTrafficPercent"] == 0
    assert api.traffic("elec2") == {V1: 100}
    assert live["status"]["observedGeneration"] == live["metadata"]["generation"]


def test_canary_that_never_gets_ready_rolls_back():
    api = FakeCustomObjectsApi({V1: URL1, V2: None})
    _run(api, V1, Smoke(api, "elec2"))
    smoke = Smoke(api, "elec2")
    with pytest.raises(RolloutError, match="RevisionFailed"):
        _run(api, V2, smoke)
    assert smoke.calls == []  # never smoke-tested: it never got Ready
    assert api.live("elec2")["spec"]["predictor"]["canaryTrafficPercent"] == 0
    assert api.traffic("elec2") == {V1: 100}


def test_raw_deployment_full_rollout_keeps_previous_storage():
    api = FakeCustomObjectsApi({V1: URL1, V2: URL2})
    _run(api, V1, Smoke(api, "elec2"), "RawDeployment")
    result = _run(api, V2, Smoke(api, "elec2"), "RawDeployment")
    live = api.live("elec2")
    assert live["spec"]["predictor"]["model"]["storageUri"] == V2
    assert live["metadata"]["annotations"][manifests.PREVIOUS_STORAGE_ANNOTATION] == V1
    assert all("canaryTrafficPercent" not in m["spec"]["predictor"] for m in api.received)
    assert result.url == f"{URL2}/v1/models/elec2:predict"


def test_raw_deployment_rolls_back_to_previous_storage_on_failed_smoke_test():
    api = FakeCustomObjectsApi({V1: URL1, V2: URL2})
    _run(api, V1, Smoke(api, "elec2"), "RawDeployment")
    with pytest.raises(RolloutError, match=f"rolled back to {V1}"):
        _run(api, V2, Smoke(api, "elec2", failing={URL2}), "RawDeployment")
    live = api.live("elec2")
    assert live["spec"]["predictor"]["model"]["storageUri"] == V1
    assert live["status"]["observedGeneration"] == live["metadata"]["generation"] == 3
    assert live["status"]["address"]["url"] == URL1


def test_failed_first_deployment_is_deleted():
    api = FakeCustomObjectsApi({V1: URL1})
    with pytest.raises(RolloutError, match="first deployment .* failed and was deleted"):
        _run(api, V1, Smoke(api, "elec2", failing={URL1}))
    assert api.live("elec2") is None and api.calls[-1] == "delete"


def test_timeout_names_what_it_waited_for():
    api = FakeCustomObjectsApi({V1: URL1}, lag=10_000)
    with pytest.raises(RolloutError, match=r"not Ready within 30 s \(controller has observed generation 0 of 1\)"):
        _run(api, V1, Smoke(api, "elec2"), timeout_s=30)


def test_write_conflict_is_retried():
    api = FakeCustomObjectsApi({V1: URL1, V2: URL2})
    _run(api, V1, Smoke(api, "elec2"))
    replace = api.replace_namespaced_custom_object
    state = {"conflicts": 0}

    def someone_else_writes_first(*args):
        if state["conflicts"] == 0:  # another client changes the object between our read and our write
            state["conflicts"] += 1
            live = api.objects[(NS, "elec2")]
            live["metadata"]["resourceVersion"] = "999"
            live["metadata"].setdefault("labels", {})["team"] = "other"
        return replace(*args)

    api.replace_namespaced_custom_object = someone_else_writes_first
    _run(api, V2, Smoke(api, "elec2"))
    live = api.live("elec2")
    assert live["metadata"]["labels"]["team"] == "other"  # the other writer's change survived
    assert live["spec"]["predictor"]["model"]["storageUri"] == V2


def test_bad_arguments():
    api = FakeCustomObjectsApi({})
    with pytest.raises(ValueError, match="0..100"):
        Rollout(api, _manifest(V1), lambda url: None, canary_traffic_percent=101)
    with pytest.raises(ValueError, match="timeout_s"):
        Rollout(api, _manifest(V1), lambda url: None, timeout_s=0)


def test_canary_is_judged_between_the_prev_and_latest_tag_urls():
    api = FakeCustomObjectsApi({V1: URL1, V2: URL2})
    _run(api, V1, Smoke(api, "elec2"))
    calls = []

    def judge(stable_url, canary_url):
        calls.append((stable_url, canary_url, api.traffic("elec2")))

    clock = Clock()
    result = rollout(
        api,
        _manifest(V2),
        Smoke(api, "elec2"),
        10,
        poll_s=5,
        judge=judge,
        sleep=clock.sleep,
        clock=clock,
        log=lambda message: None,
    )
    assert calls == [(URL1, URL2, {V1: 90, V2: 10})]  # judged while the canary held its share
    assert api.traffic("elec2") == {V2: 100} and result.storage_uri == V2
    assert f"canary analysis passed ({URL2} against {URL1})" in result.events


def test_a_rejected_canary_is_rolled_back_to_zero():
    api = FakeCustomObjectsApi({V1: URL1, V2: URL2})
    _run(api, V1, Smoke(api, "elec2"))

    def judge(stable_url, canary_url):
        raise RuntimeError("canary analysis failed: error rate 12.00% > canary_max_error_rate 1.00%")

    clock = Clock()
    with pytest.raises(RolloutError, match=r"rolled back to 0% .*error rate 12\.00% > canary_max_error_rate"):
        rollout(
            api,
            _manifest(V2),
            Smoke(api, "elec2"),
            10,
            judge=judge,
            sleep=clock.sleep,
            clock=clock,
            log=lambda message: None,
        )
    assert api.live("elec2")["spec"]["predictor"]["canaryTrafficPercent"] == 0
    assert api.traffic("elec2") == {V1: 100}


@pytest.mark.parametrize(
    "untag, message",
    [
        ("prev", r"no URL for the previous revision \(traffic tag 'prev'\)"),
        ("latest", r"no URL for the canary revision \(traffic tag 'latest', set with the serving.kserve.io/enable-tag"),
    ],
)
def test_a_canary_without_both_tag_urls_is_not_promoted(untag, message):
    """Without the tagged URL of either revision there is nothing to judge: the canary goes back to 0%."""
    api = FakeCustomObjectsApi({V1: URL1, V2: URL2})
    _run(api, V1, Smoke(api, "elec2"))
    reconcile = api._reconcile

    def untagged(key):
        reconcile(key)
        for entry in api.objects[key]["status"].get("components", {}).get("predictor", {}).get("traffic", []):
            if entry.get("tag") == untag:
                entry.pop("tag")
                entry.pop("url")

    api._reconcile = untagged
    clock = Clock()
    with pytest.raises(RolloutError, match=message):
        rollout(
            api,
            _manifest(V2),
            lambda url: None,
            10,
            judge=lambda s, c: None,
            sleep=clock.sleep,
            clock=clock,
            log=lambda message: None,
        )
    assert api.traffic("elec2") == {V1: 100}


# --- raw mode: the canary is a second InferenceService, <name>-canary ----------------------------------------------

RAW = "RawDeployment"


class Judge:
    """Records (stable URL, canary URL, the canary's storageUri and labels, the stable's storageUri) per call; raises
    `failure` when set."""

    def __init__(self, api: FakeCustomObjectsApi, failure: str | None = None):
        self.api, self.failure = api, failure
        self.calls: list[tuple] = []

    def __call__(self, stable_url: str, canary_url: str) -> None:
        canary, stable = self.api.live("elec2-canary"), self.api.live("elec2")
        self.calls.append(
            (
                stable_url,
                canary_url,
                canary["spec"]["predictor"]["model"]["storageUri"],
                canary["metadata"]["labels"][manifests.CANARY_OF_LABEL],
                stable["spec"]["predictor"]["model"]["storageUri"],
            )
        )
        if self.failure:
            raise RuntimeError(self.failure)


def _stable_untouched(api: FakeCustomObjectsApi) -> None:
    live = api.live("elec2")
    assert live["spec"]["predictor"]["model"]["storageUri"] == V1 and live["metadata"]["generation"] == 1
    assert not api.exists("elec2-canary")


def test_raw_canary_is_judged_on_its_own_service_then_the_stable_one_rolled_out():
    api = FakeCustomObjectsApi({V1: URL1, V2: URL2})
    _run(api, V1, Smoke(api, "elec2"), RAW)
    judge, smoke = Judge(api), Smoke(api, "elec2")
    result = _run(api, V2, smoke, RAW, judge=judge)
    # judged between the two services' cluster-local URLs (status.address.url), not their external hosts
    assert judge.calls == [(URL1, URL2, V2, "elec2", V1)]
    assert [url for url, _ in smoke.calls] == [URL2, URL2]  # the canary service, then the rolled-out stable one
    canary = next(m for m in api.received if m["metadata"]["name"] == "elec2-canary")
    assert canary["metadata"]["labels"]["app.kubernetes.io/part-of"] == "kfp-ct"
    assert manifests.PREVIOUS_STORAGE_ANNOTATION not in canary["metadata"]["annotations"]
    live = api.live("elec2")
    assert live["spec"]["predictor"]["model"]["storageUri"] == V2
    assert live["metadata"]["annotations"][manifests.PREVIOUS_STORAGE_ANNOTATION] == V1
    assert not api.exists("elec2-canary") and api.calls[-1] == "delete"
    assert result.url == f"{URL2}/v1/models/elec2:predict" and result.previous_storage_uri == V1
    assert "canary analysis passed" in " ".join(result.events)


def test_raw_canary_rejected_leaves_the_stable_service_untouched():
    api = FakeCustomObjectsApi({V1: URL1, V2: URL2})
    _run(api, V1, Smoke(api, "elec2"), RAW)
    judge = Judge(api, "canary analysis failed: error rate 12.00% > canary_max_error_rate 1.00%")
    with pytest.raises(
        RolloutError,
        match=rf"canary elec2-canary of {V2} rejected and deleted \({V1} keeps serving\): .*error rate 12\.00% > ",
    ):
        _run(api, V2, Smoke(api, "elec2"), RAW, judge=judge)
    assert len(judge.calls) == 1
    _stable_untouched(api)


@pytest.mark.parametrize(
    "lag, message",
    [
        (1, "canary InferenceService: generation 1 is not Ready: MinimumReplicasUnavailable"),
        (10_000, r"canary InferenceService: not Ready within 30 s \(controller has observed generation 0 of 1\)"),
    ],
)
def test_raw_canary_never_ready_is_deleted(lag, message):
    api = FakeCustomObjectsApi({V1: URL1, V2: None}, lag=1)
    _run(api, V1, Smoke(api, "elec2"), RAW)
    api.lag = lag
    judge = Judge(api)
    with pytest.raises(RolloutError, match=f"canary elec2-canary of {V2} rejected and deleted.*{message}"):
        _run(api, V2, Smoke(api, "elec2"), RAW, timeout_s=30, judge=judge)
    assert judge.calls == []
    _stable_untouched(api)


def test_raw_leftover_canary_is_replaced():
    api = FakeCustomObjectsApi({V1: URL1, V2: URL2, "gs://bucket/models/v0": URL1}, deletion_lag=2)
    _run(api, V1, Smoke(api, "elec2"), RAW)
    leftover = manifests.canary_service(_manifest("gs://bucket/models/v0", RAW))  # from a push that crashed
    api.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, leftover)
    judge = Judge(api)
    _run(api, V2, Smoke(api, "elec2"), RAW, judge=judge)
    assert judge.calls == [(URL1, URL2, V2, "elec2", V1)]  # judged against the new canary, not the leftover
    creates = [m["metadata"]["name"] for m in api.received if m["metadata"].get("generation") is None]
    assert creates.count("elec2-canary") == 2
    assert api.live("elec2")["spec"]["predictor"]["model"]["storageUri"] == V2
    assert not api.exists("elec2-canary")


def test_raw_canary_refuses_to_replace_a_service_that_is_not_its_own():
    api = FakeCustomObjectsApi({V1: URL1, V2: URL2})
    _run(api, V1, Smoke(api, "elec2"), RAW)
    other = _manifest("gs://bucket/models/other", RAW, name="elec2-canary")
    api.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, other)
    with pytest.raises(RolloutError, match=r"elec2-canary exists and is not kfp-ct's canary of elec2 \(label"):
        _run(api, V2, Smoke(api, "elec2"), RAW, judge=Judge(api))
    assert api.live("elec2-canary")["spec"]["predictor"]["model"]["storageUri"] == "gs://bucket/models/other"
    assert api.live("elec2")["spec"]["predictor"]["model"]["storageUri"] == V1


def test_raw_canary_needs_a_ready_stable_service_before_it_creates_anything():
    api = FakeCustomObjectsApi({V1: URL1, V2: URL2})
    _run(api, V1, Smoke(api, "elec2"), RAW)
    api.objects[(NS, "elec2")]["status"]["conditions"] = [api._condition(False, "MinimumReplicasUnavailable")]
    calls = len(api.calls)
    with pytest.raises(RolloutError, match=r"elec2 is not Ready \(Ready=False .*\): there is no stable model to judge"):
        _run(api, V2, Smoke(api, "elec2"), RAW, judge=Judge(api))
    assert api.calls[calls:] == ["get"] and not api.exists("elec2-canary")
