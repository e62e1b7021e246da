"""Rolling an InferenceService out through the Kubernetes custom-objects API, gated on a smoke test.

Serverless (Knative) mode: the new spec goes out with `canaryTrafficPercent`, so the previous revision keeps most of
the traffic; once the new generation is Ready the canary revision (its own URL, through tag routing) is smoke-tested,
then, with a `judge`, judged on replayed traffic against the previous revision (reached through its own `prev` tag URL;
see canary.py), and promoted to 100% (canaryTrafficPercent removed) or rolled back to 0%.

Raw (RawDeployment/Standard) mode has no revisions to split traffic between: the new spec is rolled out fully, the
endpoint smoke-tested, and on failure the previous spec (its storageUri kept in an annotation) is put back. With a
`judge`, the candidate is first served by a second InferenceService, `<name>-canary` (the same spec, labelled
`kfp-ct.io/canary-of: <name>`; a leftover of a crashed push is deleted first, one that is not kfp-ct's canary of
<name> is refused), smoke-tested once Ready and judged between the stable service's URL and its own (each
`status.address.url`, the cluster-local Service of the predictor); only then is the stable one rolled out fully as
above. The canary InferenceService is deleted whatever the outcome.

`api` is a `kubernetes.client.CustomObjectsApi` (only get/create/replace/delete of namespaced custom objects are
used). Every manifest sent is validated against the InferenceService CRD first.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from kfp_ct.components.push import manifests

GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
FAILED_POLLS = 3
"""Ready=False for the new generation on this many polls in a row fails the wait at once, with the controller's
reason, rather than at the timeout."""


class RolloutError(RuntimeError):
    """The new model did not go live; what was serving before serves again (or, for a first deployment, nothing)."""


@dataclass
class RolloutResult:
    url: str
    storage_uri: str
    previous_storage_uri: str | None
    generation: int
    deployment_mode: str
    events: list[str] = field(default_factory=list)


def _status_code(err) -> int | None:
    return getattr(err, "status", None)


def ready_condition(isvc: dict) -> dict:
    for condition in (isvc.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return condition
    return {}


def predictor_status(isvc: dict) -> dict:
    return ((isvc.get("status") or {}).get("components") or {}).get("predictor") or {}


def _latest_traffic(isvc: dict) -> dict:
    for entry in predictor_status(isvc).get("traffic") or []:
        if entry.get("latestRevision"):
            return entry
    return {}


def _stable_traffic(isvc: dict) -> dict:
    """The traffic entry of the previously rolled-out revision during a canary: KServe tags it `prev` (and, with the
    enable-tag-routing annotation, the canary `latest`); each tagged entry's `url` reaches that revision only."""
    for entry in predictor_status(isvc).get("traffic") or []:
        if entry.get("tag") == "prev" and not entry.get("latestRevision"):
            return entry
    return {}


def served_storage_uri(isvc: dict) -> str | None:
    return (((isvc.get("spec") or {}).get("predictor") or {}).get("model") or {}).get("storageUri")


class Rollout:
    """One rollout of `manifest` (an InferenceService dict from manifests.inference_service)."""

    def __init__(
        self,
        api,
        manifest: dict,
        smoke_test: Callable[[str], None],
        canary_traffic_percent: int = 10,
        timeout_s: float = 600,
        poll_s: float = 5,
        judge: Callable[[str, str], object] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        log: Callable[[str], None] = print,
    ):
        if not 0 <= canary_traffic_percent <= 100:
            raise ValueError(f"canary_traffic_percent must be within 0..100, got {canary_traffic_percent}")
        if timeout_s <= 0 or poll_s <= 0:
            raise ValueError(f"timeout_s and poll_s must be > 0, got {timeout_s} and {poll_s}")
        self.api = api
        self.manifest = copy.deepcopy(manifest)
        self.manifest["spec"]["predictor"].pop("canaryTrafficPercent", None)
        self.name = manifest["metadata"]["name"]
        self.namespace = manifest["metadata"].get("namespace") or "default"
        self.mode = manifest["metadata"].get("annotations", {}).get(manifests.DEPLOYMENT_MODE_ANNOTATION, "Serverless")
        self.serverless = manifests.is_serverless(self.mode)
        self.smoke_test = smoke_test
        self.judge = judge
        self.canary = canary_traffic_percent
        self.timeout_s, self.poll_s, self.sleep, self.clock, self.log = timeout_s, poll_s, sleep, clock, log
        self.events: list[str] = []

    # --- API calls ---------------------------------------------------------------------------------------------
    def _note(self, message: str) -> None:
        self.events.append(message)
        self.log(f"[rollout {self.namespace}/{self.name}] {message}")

    def get(self) -> dict | None:
        try:
            return self.api.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, self.name)
        except Exception as err:
            if _status_code(err) == 404:
                return None
            raise

    def _create(self, body: dict) -> dict:
        manifests.validate_inference_service(body)
        return self.api.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, body)

    def delete(self) -> None:
        """Deletes the InferenceService (already gone is fine)."""
        try:
            self.api.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, self.name)
        except Exception as err:
            if _status_code(err) != 404:
                raise

    def _wait_deleted(self, what: str) -> None:
        """Polls until the InferenceService is gone (finalizers may keep it a while after the delete)."""
        deadline = self.clock() + self.timeout_s
        while self.get() is not None:
            if self.clock() >= deadline:
                raise RolloutError(
                    f"{what}: InferenceService {self.namespace}/{self.name} still exists {self.timeout_s:g} s after "
                    "it was deleted"
                )
            self.sleep(self.poll_s)

    def _update(self, edit: Callable[[dict], None]) -> dict:
        """Applies `edit` to the live object and replaces it, retrying on write conflicts."""
        for _ in range(5):
            live = self.get()
            if live is None:
                raise RolloutError(f"InferenceService {self.namespace}/{self.name} disappeared during the rollout")
            body = {key: copy.deepcopy(live[key]) for key in ("apiVersion", "kind", "metadata", "spec")}
            edit(body)
            manifests.validate_inference_service(body)
            try:
                return self.api.replace_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, PLURAL, self.name, body
                )
            except Exception as err:
                if _status_code(err) != 409:
                    raise
                self._note("write conflict; reading the InferenceService again")
        raise RolloutError(f"InferenceService {self.namespace}/{self.name} kept changing under the rollout (409)")

    # --- waiting -----------------------------------------------------------------------------------------------
    def wait_ready(
        self, generation: int, what: str, check: Callable[[dict], str | None] | None = None, require_ready: bool = True
    ) -> dict:
        """Polls until the controller has observed `generation` and reports Ready (and `check` finds nothing wrong).
        With require_ready=False only `check` counts (a rollback routes traffic away from a revision that may
        never become Ready).

        Raises RolloutError with the controller's reason when Ready turns False for that generation, or on timeout.
        """
        deadline = self.clock() + self.timeout_s
        last = "no status yet"
        false_polls = 0
        while True:
            isvc = self.get()
            if isvc is None:
                raise RolloutError(
                    f"InferenceService {self.namespace}/{self.name} was deleted while waiting for {what}"
                )
            status = isvc.get("status") or {}
            observed = status.get("observedGeneration", 0)
            ready = ready_condition(isvc)
            if observed >= generation:
                problem = check(isvc) if check else None
                if problem is None and (ready.get("status") == "True" or not require_ready):
                    return isvc
                false_polls = false_polls + 1 if ready.get("status") == "False" else 0
                if (
                    false_polls >= FAILED_POLLS and require_ready
                ):  # not a transient state: the controller keeps saying why
                    raise RolloutError(
                        f"{what}: generation {generation} is not Ready: {ready.get('reason')}: "
                        f"{ready.get('message', '')}".rstrip(": ")
                    )
                last = problem or f"Ready={ready.get('status', 'Unknown')} {ready.get('message', '')}".strip()
            else:
                last = f"controller has observed generation {observed} of {generation}"
            if self.clock() >= deadline:
                raise RolloutError(f"{what}: not Ready within {self.timeout_s:g} s ({last})")
            self.sleep(self.poll_s)

    def _check_new_revision(self, isvc: dict) -> str | None:
        if not self.serverless:
            return None
        predictor = predictor_status(isvc)
        created, ready = predictor.get("latestCreatedRevision"), predictor.get("latestReadyRevision")
        if not created or created != ready:
            return f"latest created revision {created} is not ready yet (latest ready: {ready})"
        return None

    def _check_traffic(self, percent: int) -> Callable[[dict], str | None]:
        def check(isvc: dict) -> str | None:
            problem = self._check_new_revision(isvc)
            if problem:
                return problem
            latest = _latest_traffic(isvc)
            if latest.get("percent") != percent:
                return f"latest revision has {latest.get('percent')}% of the traffic, expected {percent}%"
            if percent == 100 and predictor_status(isvc).get("latestRolledoutRevision") != latest.get("revisionName"):
                return "latest revision is not rolled out yet"
            return None

        return check

    @staticmethod
    def _check_no_canary(isvc: dict) -> str | None:
        latest = _latest_traffic(isvc)
        if latest and latest.get("percent"):
            return f"the new revision still has {latest.get('percent')}% of the traffic"
        return None

    def _wait_rollback(self, generation: int, check, failure: str) -> None:
        try:
            self.wait_ready(generation, "rollback", check, require_ready=check is None)
        except RolloutError as err:
            raise RolloutError(
                f"{self.namespace}/{self.name}: the new version failed ({failure}) and the rollback did "
                f"not complete either: {err}"
            ) from None
        self._note("rollback complete")

    # --- URLs --------------------------------------------------------------------------------------------------
    @staticmethod
    def base_url(isvc: dict) -> str:
        status = isvc.get("status") or {}
        predictor = predictor_status(isvc)
        for url in (
            (status.get("address") or {}).get("url"),
            status.get("url"),
            (predictor.get("address") or {}).get("url"),
            predictor.get("url"),
        ):
            if url:
                return url.rstrip("/")
        raise RolloutError(f"InferenceService {isvc['metadata']['name']} is Ready but reports no URL")

    def canary_url(self, isvc: dict) -> str:
        """The URL that reaches the newest revision only (tag routing), falling back to the service URL."""
        return (_latest_traffic(isvc).get("url") or self.base_url(isvc)).rstrip("/")

    def stable_url(self, isvc: dict) -> str | None:
        """The URL that reaches the previously rolled-out revision only (its `prev` tag), if the status has one."""
        url = _stable_traffic(isvc).get("url")
        return url.rstrip("/") if url else None

    def predict_url(self, isvc: dict) -> str:
        return f"{self.base_url(isvc)}/v1/models/{self.name}:predict"

    # --- the rollout -------------------------------------------------------------------------------------------
    def _smoke(self, url: str) -> str | None:
        try:
            self.smoke_test(url)
            self._note(f"smoke test passed at {url}")
            return None
        except Exception as err:
            self._note(f"smoke test failed at {url}: {err}")
            return f"smoke test failed at {url}: {err}"

    def _judged(self, stable: str, canary: str) -> str | None:
        """None when the judge finds the canary (at URL `canary`) within its bounds against the stable model (at URL
        `stable`), else why not."""
        try:
            self.judge(stable, canary)
            self._note(f"canary analysis passed ({canary} against {stable})")
            return None
        except Exception as err:
            self._note(str(err))
            return str(err)

    def _judged_revisions(self, isvc: dict) -> str | None:
        """_judged between the previous and the canary revision, each reached through its tag URL."""
        stable, canary = self.stable_url(isvc), (_latest_traffic(isvc).get("url") or "").rstrip("/")
        if stable is None:
            failure = "canary analysis: the status names no URL for the previous revision (traffic tag 'prev')"
        elif not canary:
            failure = (
                "canary analysis: the status names no URL for the canary revision (traffic tag 'latest', set with "
                f"the {manifests.TAG_ROUTING_ANNOTATION} annotation)"
            )
        else:
            return self._judged(stable, canary)
        self._note(failure)
        return failure

    def run(self) -> RolloutResult:
        new_storage = served_storage_uri(self.manifest)
        live = self.get()
        if live is None:
            return self._first_deployment(new_storage)
        previous_storage = served_storage_uri(live)
        if self.serverless and 0 < self.canary < 100:
            return self._canary(new_storage, previous_storage)
        if not self.serverless and self.judge is not None:
            return self._raw_canary(new_storage, previous_storage, live)
        return self._full(new_storage, previous_storage, live)

    def _apply_desired(self, body: dict, previous_storage: str | None, canary: int | None) -> None:
        body["spec"] = copy.deepcopy(self.manifest["spec"])
        if canary is not None:
            body["spec"]["predictor"]["canaryTrafficPercent"] = canary
        metadata = body["metadata"]
        metadata["labels"] = {**(metadata.get("labels") or {}), **(self.manifest["metadata"].get("labels") or {})}
        annotations = {**(metadata.get("annotations") or {}), **(self.manifest["metadata"].get("annotations") or {})}
        if previous_storage:
            annotations[manifests.PREVIOUS_STORAGE_ANNOTATION] = previous_storage
        metadata["annotations"] = annotations

    def _first_deployment(self, new_storage: str) -> RolloutResult:
        created = self._create(copy.deepcopy(self.manifest))
        generation = created["metadata"].get("generation", 1)
        self._note(f"created generation {generation} serving {new_storage}")
        try:
            isvc = self.wait_ready(generation, "first deployment", self._check_new_revision)
            failure = self._smoke(self.base_url(isvc))
        except RolloutError as err:
            isvc, failure = None, str(err)
        if failure:  # nothing served before: take the broken service away rather than leave it half-working
            self.api.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, self.name)
            self._note("deleted the new InferenceService: there is no previous version to roll back to")
            raise RolloutError(
                f"{self.namespace}/{self.name}: first deployment of {new_storage} failed and was deleted: {failure}"
            )
        return RolloutResult(self.predict_url(isvc), new_storage, None, generation, self.mode, self.events)

    def _canary(self, new_storage: str, previous_storage: str | None) -> RolloutResult:
        updated = self._update(lambda body: self._apply_desired(body, previous_storage, self.canary))
        generation = updated["metadata"]["generation"]
        self._note(f"generation {generation}: {self.canary}% canary for {new_storage} (previous {previous_storage})")
        try:
            isvc = self.wait_ready(generation, "canary", self._check_traffic(self.canary))
            failure = self._smoke(self.canary_url(isvc))
            if failure is None and self.judge is not None:
                failure = self._judged_revisions(isvc)
        except RolloutError as err:
            failure = str(err)
        if failure:
            rolled = self._update(lambda body: body["spec"]["predictor"].__setitem__("canaryTrafficPercent", 0))
            self._note(f"generation {rolled['metadata']['generation']}: canary rolled back to 0%")
            self._wait_rollback(rolled["metadata"]["generation"], self._check_no_canary, failure)
            raise RolloutError(
                f"{self.namespace}/{self.name}: canary of {new_storage} rolled back to 0% "
                f"({previous_storage} keeps serving): {failure}"
            )
        promoted = self._update(lambda body: body["spec"]["predictor"].pop("canaryTrafficPercent", None))
        generation = promoted["metadata"]["generation"]
        self._note(f"generation {generation}: promoted {new_storage} to 100%")
        isvc = self.wait_ready(generation, "promotion", self._check_traffic(100))
        return RolloutResult(self.predict_url(isvc), new_storage, previous_storage, generation, self.mode, self.events)

    def _raw_canary(self, new_storage: str, previous_storage: str | None, live: dict) -> RolloutResult:
        """Raw mode with a judge: the candidate on its own InferenceService `<name>-canary`, judged against the stable
        one, then the stable one rolled out fully (`_full`); the canary is deleted whatever happens."""
        ready = ready_condition(live)
        if ready.get("status") != "True":
            raise RolloutError(
                f"{self.namespace}/{self.name} is not Ready (Ready={ready.get('status', 'Unknown')} "
                f"{ready.get('message', '')}): there is no stable model to judge the canary against"
            )
        stable_url = self.base_url(live)
        canary = Rollout(
            self.api,
            manifests.canary_service(self.manifest),
            self.smoke_test,
            0,
            self.timeout_s,
            self.poll_s,
            sleep=self.sleep,
            clock=self.clock,
            log=self.log,
        )
        canary.events = self.events
        leftover = canary.get()
        if leftover is not None:
            owner = (leftover["metadata"].get("labels") or {}).get(manifests.CANARY_OF_LABEL)
            if owner != self.name:
                raise RolloutError(
                    f"InferenceService {self.namespace}/{canary.name} exists and is not kfp-ct's canary of {self.name} "
                    f"(label {manifests.CANARY_OF_LABEL}={owner!r}): it is left alone and the canary cannot be created"
                )
            canary.delete()
            canary._note(f"deleted the canary InferenceService {canary.name} that an earlier push left behind")
            canary._wait_deleted("replacing the leftover canary")
        try:
            created = canary._create(canary.manifest)
            canary._note(f"created the canary InferenceService {canary.name} serving {new_storage}")
            try:
                isvc = canary.wait_ready(created["metadata"].get("generation", 1), "canary InferenceService")
                canary_url = canary.base_url(isvc)
                failure = canary._smoke(canary_url) or self._judged(stable_url, canary_url)
            except RolloutError as err:
                failure = str(err)
            if failure:
                raise RolloutError(
                    f"{self.namespace}/{self.name}: canary {canary.name} of {new_storage} rejected and deleted "
                    f"({previous_storage} keeps serving): {failure}"
                )
            return self._full(new_storage, previous_storage, live)
        finally:
            canary.delete()
            canary._note(f"deleted the canary InferenceService {canary.name}")

    def _full(self, new_storage: str, previous_storage: str | None, live: dict) -> RolloutResult:
        previous_spec = copy.deepcopy(live["spec"])
        updated = self._update(lambda body: self._apply_desired(body, previous_storage, None))
        generation = updated["metadata"]["generation"]
        self._note(f"generation {generation}: full rollout of {new_storage} (previous {previous_storage})")
        try:
            isvc = self.wait_ready(generation, "rollout", self._check_new_revision)
            failure = self._smoke(self.base_url(isvc))
        except RolloutError as err:
            failure = str(err)
        if failure:

            def restore(body: dict) -> None:
                body["spec"] = copy.deepcopy(previous_spec)
                body["metadata"].setdefault("annotations", {}).pop(manifests.PREVIOUS_STORAGE_ANNOTATION, None)

            rolled = self._update(restore)
            self._note(f"generation {rolled['metadata']['generation']}: rolled back to {previous_storage}")
            self._wait_rollback(rolled["metadata"]["generation"], None, failure)
            raise RolloutError(
                f"{self.namespace}/{self.name}: rollout of {new_storage} failed and was rolled back to "
                f"{previous_storage}: {failure}"
            )
        return RolloutResult(self.predict_url(isvc), new_storage, previous_storage, generation, self.mode, self.events)


def rollout(
    api,
    manifest: dict,
    smoke_test: Callable[[str], None],
    canary_traffic_percent: int = 10,
    timeout_s: float = 600,
    poll_s: float = 5,
    judge: Callable[[str, str], object] | None = None,
    **kwargs,
) -> RolloutResult:
    """Creates or updates the InferenceService `manifest`, gated on `smoke_test(base_url)` and, for a canary, on
    `judge(stable_url, canary_url)`; see the module doc."""
    return Rollout(api, manifest, smoke_test, canary_traffic_percent, timeout_s, poll_s, judge, **kwargs).run()
