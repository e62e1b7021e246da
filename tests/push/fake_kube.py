"""A fake of the Kubernetes CustomObjectsApi for InferenceServices (only the methods rollout.py uses), with a small
emulation of the KServe controller: metadata.generation moves on spec changes, status.observedGeneration catches up
a few reads later, Knative-style revisions and traffic splits in Serverless mode, a Ready condition per generation.
It holds any number of InferenceServices (e.g. a raw-mode service and its `<name>-canary`); a deleted one lingers for
`deletion_lag` reads (finalizers), during which creating it again conflicts. In raw mode the status is KServe 0.21's:
`address.url` the cluster-local Service (here the loopback server), `url` the external host (unreachable here).

A real cluster cannot run here; this is the one fake the serving tests allow. Every manifest it receives is checked
against the InferenceService CRD schema (the test fails on the first one that does not validate).
"""

from __future__ import annotations

import copy
import itertools
import json

from kubernetes.client.rest import ApiException

from kfp_ct.components.push import manifests

GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"


def _revision_config(spec: dict) -> str:
    predictor = copy.deepcopy(spec["predictor"])
    predictor.pop("canaryTrafficPercent", None)
    return json.dumps(predictor, sort_keys=True)


class AllStorage(dict):
    """Endpoints for FakeCustomObjectsApi where every storageUri is served at `url` (a revision keeps the URL it was
    created with: change `endpoints` between rollouts to give the next revision another server)."""

    def __init__(self, url: str | None):
        super().__init__()
        self.url = url

    def get(self, key, default=None):
        return self.url


class FakeCustomObjectsApi:
    """`endpoints` maps a storageUri to the base URL its pods answer on (None: the pods never get Ready)."""

    def __init__(self, endpoints: dict[str, str | None], lag: int = 2, deletion_lag: int = 0):
        self.endpoints = endpoints
        self.lag = lag
        self.deletion_lag = deletion_lag
        self.deleting: dict[tuple[str, str], int] = {}
        self.objects: dict[tuple[str, str], dict] = {}
        self.revisions: dict[tuple[str, str], list[dict]] = {}
        self.pending: dict[tuple[str, str], int] = {}
        self.received: list[dict] = []  # every manifest sent by create/replace, in order
        self.calls: list[str] = []
        self._rv = itertools.count(1)

    # --- the API ---------------------------------------------------------------------------------------------------
    def _check(self, group, version, plural):
        assert (group, version, plural) == (GROUP, VERSION, PLURAL), (group, version, plural)

    def _receive(self, body: dict) -> dict:
        body = json.loads(json.dumps(body))  # what goes over the wire: plain JSON
        errors = manifests.crd_errors(body)
        assert not errors, f"manifest does not validate against the CRD: {errors}"
        self.received.append(copy.deepcopy(body))
        return body

    def create_namespaced_custom_object(self, group, version, namespace, plural, body):
        self._check(group, version, plural)
        self.calls.append("create")
        body = self._receive(body)
        key = (namespace, body["metadata"]["name"])
        if key in self.objects:
            raise ApiException(status=409, reason="AlreadyExists")
        body["metadata"].update(
            namespace=namespace, generation=1, resourceVersion=str(next(self._rv)), uid=f"uid-{key[1]}"
        )
        body["status"] = {}
        self.objects[key] = body
        self.revisions[key] = []
        self.pending[key] = self.lag
        return copy.deepcopy(body)

    def get_namespaced_custom_object(self, group, version, namespace, plural, name):
        self._check(group, version, plural)
        self.calls.append("get")
        key = (namespace, name)
        if key in self.deleting:
            self.deleting[key] -= 1
            if self.deleting[key] < 0:
                del self.deleting[key], self.objects[key]
        if key not in self.objects:
            raise ApiException(status=404, reason="NotFound")
        if self.pending.get(key) is not None:
            self.pending[key] -= 1
            if self.pending[key] <= 0:
                del self.pending[key]
                self._reconcile(key)
        return copy.deepcopy(self.objects[key])

    def replace_namespaced_custom_object(self, group, version, namespace, plural, name, body):
        self._check(group, version, plural)
        self.calls.append("replace")
        body = self._receive(body)
        key = (namespace, name)
        live = self.objects.get(key)
        if live is None:
            raise ApiException(status=404, reason="NotFound")
        if body["metadata"].get("resourceVersion") != live["metadata"]["resourceVersion"]:
            raise ApiException(status=409, reason="Conflict")
        body.pop("status", None)
        generation = live["metadata"]["generation"] + (body["spec"] != live["spec"])
        body["metadata"].update(generation=generation, resourceVersion=str(next(self._rv)))
        body["status"] = live["status"]
        self.objects[key] = body
        if generation != live["metadata"]["generation"]:
            self.pending[key] = self.lag
        return copy.deepcopy(body)

    def delete_namespaced_custom_object(self, group, version, namespace, plural, name):
        self._check(group, version, plural)
        self.calls.append("delete")
        key = (namespace, name)
        if key not in self.objects:
            raise ApiException(status=404, reason="NotFound")
        if self.deletion_lag:
            self.objects[key]["metadata"]["deletionTimestamp"] = "2026-11-26T00:00:00Z"
            self.deleting.setdefault(key, self.deletion_lag)
        else:
            del self.objects[key]
        return {"status": "Success"}

    # --- the controller -----------------------------------------------------------------------------------------
    def _reconcile(self, key):
        isvc = self.objects[key]
        name, spec = key[1], isvc["spec"]
        storage = spec["predictor"]["model"]["storageUri"]
        url = self.endpoints.get(storage)
        mode = isvc["metadata"].get("annotations", {}).get(manifests.DEPLOYMENT_MODE_ANNOTATION, "Serverless")
        status = isvc["status"]
        status["observedGeneration"] = isvc["metadata"]["generation"]
        status["deploymentMode"] = mode
        if mode in manifests.RAW_MODES:
            ready = url is not None
            status["conditions"] = [self._condition(ready, "MinimumReplicasUnavailable")]
            if ready:
                status["address"] = {"url": url}
                status["url"] = f"http://{name}-{key[0]}.example.com"
                status["components"] = {
                    "predictor": {"url": f"http://{name}-predictor-{key[0]}.example.com", "address": {"url": url}}
                }
            return
        revisions = self.revisions[key]
        config = _revision_config(spec)
        if not revisions or revisions[-1]["config"] != config:
            revisions.append(
                {
                    "name": f"{name}-predictor-{len(revisions) + 1:05d}",
                    "config": config,
                    "url": url,
                    "ready": url is not None,
                }
            )
        predictor = status.setdefault("components", {}).setdefault("predictor", {})
        latest = revisions[-1]
        predictor["latestCreatedRevision"] = latest["name"]
        ready_revisions = [r for r in revisions if r["ready"]]
        if not latest["ready"]:  # Knative keeps routing to what served before
            status["conditions"] = [self._condition(False, "RevisionFailed")]
            return
        predictor["latestReadyRevision"] = latest["name"]
        rolled = predictor.get("latestRolledoutRevision")
        canary = spec["predictor"].get("canaryTrafficPercent")
        if canary is None or rolled is None or rolled == latest["name"]:
            if rolled and rolled != latest["name"]:
                predictor["previousRolledoutRevision"] = rolled
            predictor["latestRolledoutRevision"] = latest["name"]
            predictor["traffic"] = [
                {
                    "revisionName": latest["name"],
                    "percent": 100,
                    "latestRevision": True,
                    "tag": "latest",
                    "url": latest["url"],
                }
            ]
            serving = latest
        else:
            previous = next(r for r in ready_revisions if r["name"] == rolled)
            predictor["previousRolledoutRevision"] = rolled
            predictor["traffic"] = [
                {
                    "revisionName": rolled,
                    "percent": 100 - canary,
                    "latestRevision": False,
                    "tag": "prev",
                    "url": previous["url"],
                },
                {
                    "revisionName": latest["name"],
                    "percent": canary,
                    "latestRevision": True,
                    "tag": "latest",
                    "url": latest["url"],
                },
            ]
            serving = previous if canary < 50 else latest
        status["url"] = serving["url"]
        status["address"] = {"url": serving["url"]}
        status["conditions"] = [self._condition(True, "")]

    @staticmethod
    def _condition(ready: bool, reason: str) -> dict:
        condition = {
            "type": "Ready",
            "status": "True" if ready else "False",
            "lastTransitionTime": "2026-11-26T00:00:00Z",
        }
        if not ready:
            condition.update(reason=reason, message=f"the predictor pods did not become ready ({reason})")
        return condition

    # --- for assertions ----------------------------------------------------------------------------------------
    def live(self, name: str, namespace: str = "kubeflow-user-example-com") -> dict | None:
        return copy.deepcopy(self.objects.get((namespace, name)))

    def exists(self, name: str, namespace: str = "kubeflow-user-example-com") -> bool:
        """Whether the InferenceService exists and is not being deleted."""
        return (namespace, name) in self.objects and (namespace, name) not in self.deleting

    def traffic(self, name: str, namespace: str = "kubeflow-user-example-com") -> dict[str, int]:
        """storageUri -> percent of traffic, from the revisions the traffic block names."""
        key = (namespace, name)
        by_name = {r["name"]: json.loads(r["config"])["model"]["storageUri"] for r in self.revisions.get(key, [])}
        predictor = self.objects[key]["status"].get("components", {}).get("predictor", {})
        return {by_name[t["revisionName"]]: t["percent"] for t in predictor.get("traffic", []) if t["percent"]}
