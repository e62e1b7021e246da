"""Human approval and rollback of a registered model's versions: `kfp-ct promote`, `reject`, `rollback`, `status`.

With the pipelines' `require_approval=True`, evaluate points the `challenger` alias at a blessed candidate and nothing
is deployed. Then:
- `promote` runs push for a version (the challenger by default): the same checks, publication, infra validation and
  rollout as a pipeline run, and the version becomes the `champion`. A version evaluate did not bless, or one a
  person rejected, is refused unless forced.
- `reject` records why a version was turned down (the version tags `kfp_ct.rejected`, `kfp_ct.rejected_at`) and
  removes the `challenger` alias when it points at that version.
- `rollback` makes the previous champion (from the champion history push records, see
  kfp_ct.components._common.tracking) the champion again and, with a namespace, first sets the InferenceService back
  to that version's published copy, rolled out and smoke-tested as push does.
- `status` reads the versions, aliases, evaluate's records and the champion history, and the InferenceService's
  traffic split.

Every operation checks everything before it changes anything, and raises DeliveryError naming what failed; nothing
moves then.
"""

from __future__ import annotations

import copy
import json
import tempfile

from kfp_ct.components._common import kube, tracking

ROLLED_BACK_TAG = "kfp_ct.rolled_back_at"


class DeliveryError(ValueError):
    """A refused operation: a check failed and nothing was changed."""


def _model_version(mlflow_client, model_name: str, version: str):
    """The registered version `version` of `model_name`, or DeliveryError."""
    from mlflow.exceptions import MlflowException

    if not str(version).isdigit():
        raise DeliveryError(f"version must be a registered version number of '{model_name}', got '{version}'")
    try:
        return mlflow_client.get_model_version(model_name, str(version))
    except MlflowException as err:
        if "RESOURCE_DOES_NOT_EXIST" not in str(err) and getattr(err, "error_code", "") != "RESOURCE_DOES_NOT_EXIST":
            raise
        known = tracking.versions(model_name, mlflow_client.tracking_uri)
        raise DeliveryError(
            f"'{model_name}' has no version {version}"
            + (f" (its versions: {', '.join(known)})" if known else " (it has no registered version)")
        ) from None


def _check_model(model_dir: str, model_name: str, version: str) -> None:
    """The downloaded version is a catalog model of `model_name` (not another model's, registered under this name)."""
    from kfp_ct.components._common.model import read_metadata

    trained_as = read_metadata(model_dir).get("model_name")
    if trained_as and trained_as != model_name:
        raise DeliveryError(
            f"version {version} of '{model_name}' holds a model trained as '{trained_as}': promote it as that model"
        )


# --- promote and reject ----------------------------------------------------------------------------------------------


def promote(
    model_name: str,
    *,
    version: str | None = None,
    force: bool = False,
    tracking_uri: str | None = None,
    log=print,
    **push_options,
):
    """Runs push (kfp_ct.components.push.core) for `version` of `model_name`, the challenger by default, with
    `push_options` (target, storage_uri, namespace, canary and rollout options, as push takes them); returns push's
    result. Refuses the champion itself, a version evaluate did not bless and a rejected one (unless `force`)."""
    from kfp_ct.components.push.core import push

    uri = tracking.check_registry(tracking_uri)
    mlflow_client = tracking.client(uri)
    if version is None:
        version = tracking.resolve_alias(model_name, tracking.CHALLENGER, uri)
        if version is None:
            raise DeliveryError(
                f"'{model_name}' has no challenger (no blessed candidate awaits approval): name the version"
            )
    tags = _model_version(mlflow_client, model_name, version).tags or {}
    if tracking.get_alias(model_name, tracking.CHAMPION, uri) == str(version):
        raise DeliveryError(f"version {version} of '{model_name}' is the champion already")
    objections = []
    if tracking.REJECTED_TAG in tags:
        objections.append(f"it was rejected ({tags[tracking.REJECTED_TAG]})")
    blessed = tags.get(tracking.BLESSED_TAG)
    if blessed != "true":
        objections.append("evaluate did not bless it" if blessed == "false" else "evaluate never judged it")
    if objections and not force:
        raise DeliveryError(
            f"refusing to promote version {version} of '{model_name}': {'; '.join(objections)}. "
            "--force promotes it anyway"
        )
    if objections:
        log(f"promoting version {version} of '{model_name}' although {'; '.join(objections)} (forced)")
    with tempfile.TemporaryDirectory(prefix="kfp-ct-promote-") as tmp:
        model_dir = tracking.download_version(model_name, version, tmp, uri)
        _check_model(model_dir, model_name, str(version))
        return push(
            model_dir=model_dir,
            model_name=model_name,
            tracking_uri=uri,
            registered_version=str(version),
            log=log,
            **push_options,
        )


def reject(model_name: str, *, version: str, reason: str, tracking_uri: str | None = None) -> dict:
    """Records `reason` on `version` (tags kfp_ct.rejected, kfp_ct.rejected_at) and removes the challenger alias when
    it points at it; the champion cannot be rejected (roll it back first). Returns {"version", "reason",
    "cleared_challenger"}."""
    if not reason or not reason.strip():
        raise DeliveryError("a rejection needs a reason (--reason): it is recorded on the version")
    uri = tracking.check_registry(tracking_uri)
    mlflow_client = tracking.client(uri)
    _model_version(mlflow_client, model_name, version)
    if tracking.get_alias(model_name, tracking.CHAMPION, uri) == str(version):
        raise DeliveryError(
            f"version {version} of '{model_name}' is the champion: roll it back first (kfp-ct rollback), then reject it"
        )
    mlflow_client.set_model_version_tag(model_name, str(version), tracking.REJECTED_TAG, reason.strip())
    mlflow_client.set_model_version_tag(model_name, str(version), tracking.REJECTED_AT_TAG, tracking.now_utc())
    cleared = tracking.get_alias(model_name, tracking.CHALLENGER, uri) == str(version)
    if cleared:
        tracking.clear_alias(model_name, tracking.CHALLENGER, uri)
    return {"version": str(version), "reason": reason.strip(), "cleared_challenger": cleared}


# --- rollback --------------------------------------------------------------------------------------------------------


def rollback(
    model_name: str,
    *,
    tracking_uri: str | None = None,
    namespace: str | None = None,
    api=None,
    rollout_timeout_s: float = 600,
    poll_s: float = 5,
    log=print,
) -> dict:
    """Makes the previous champion the champion again; with `namespace`, first sets the InferenceService
    `model_name` there back to that version's published copy (see `_roll_back_service`). Returns {"version" (the
    champion now), "rolled_back" (the one it replaced), "storage_uri" (with a namespace)}."""
    uri = tracking.check_registry(tracking_uri)
    mlflow_client = tracking.client(uri)
    try:
        current = tracking.resolve_alias(model_name, tracking.CHAMPION, uri)
    except tracking.AliasError as err:
        raise DeliveryError(str(err)) from None
    if current is None:
        raise DeliveryError(f"'{model_name}' has no champion: nothing to roll back")
    history = tracking.champion_history(model_name, uri)
    if not history or history[-1]["version"] != current:
        recorded = history[-1]["version"] if history else "none"
        raise DeliveryError(
            f"the champion of '{model_name}' is version {current} but the champion history "
            f"('{tracking.HISTORY_TAG}') ends with {recorded}: the alias was moved outside kfp-ct, so the previous "
            "champion is unknown"
        )
    if len(history) < 2:
        raise DeliveryError(f"version {current} is the first champion of '{model_name}': no previous champion")
    previous = history[-2]["version"]
    tags = _model_version(mlflow_client, model_name, previous).tags or {}
    if tracking.REJECTED_TAG in tags:
        raise DeliveryError(
            f"the previous champion, version {previous} of '{model_name}', was rejected "
            f"({tags[tracking.REJECTED_TAG]}): not rolling back to it"
        )
    outcome = {"version": previous, "rolled_back": current}
    if namespace:
        current_tags = _model_version(mlflow_client, model_name, current).tags or {}
        outcome["storage_uri"] = _roll_back_service(
            model_name,
            namespace,
            previous,
            tags.get(tracking.STORAGE_TAG),
            current_tags.get(tracking.STORAGE_TAG),
            uri,
            api,
            rollout_timeout_s,
            poll_s,
            log,
        )
    tracking.set_alias(model_name, tracking.CHAMPION, previous, uri)
    tracking.write_champion_history(model_name, history[:-1], uri)
    mlflow_client.set_model_version_tag(model_name, current, ROLLED_BACK_TAG, tracking.now_utc())
    log(f"'{model_name}': version {previous} is the champion again (version {current} rolled back)")
    return outcome


def _roll_back_service(
    model_name: str,
    namespace: str,
    version: str,
    storage_uri: str | None,
    current_storage_uri: str | None,
    tracking_uri: str,
    api,
    rollout_timeout_s: float,
    poll_s: float,
    log,
) -> str:
    """Sets the InferenceService back to `storage_uri`, version `version`'s published copy, the way push rolls out:
    the copy is infra-validated first (served on loopback, its input example checked), then the live spec with
    that storageUri goes out as a full rollout, smoke-tested, and put back as it was when the smoke test fails. The
    service must serve the champion's copy now (`current_storage_uri`), with no canary under way."""
    from kfp_ct.components.push import manifests, rollout
    from kfp_ct.components.push.core import http_smoke_test, infra_validate
    from kfp_ct.components.push.rollout import served_storage_uri

    where = f"InferenceService {namespace}/{model_name}"
    if not storage_uri:
        raise DeliveryError(
            f"version {version} of '{model_name}' has no recorded published copy ('{tracking.STORAGE_TAG}'): it never "
            "served through push, so there is no storageUri to set back"
        )
    api = api if api is not None else kube.custom_objects_api()
    live = _live_service(api, namespace, model_name)
    if live is None:
        raise DeliveryError(f"there is no {where} to roll back")
    serving = served_storage_uri(live)
    canary = live["spec"]["predictor"].get("canaryTrafficPercent")
    if canary == 0:
        # a failed canary's leftover: the spec names the copy that failed, and a rollout that had to be undone
        # would put that spec back, which routes to whatever was rolled out last
        raise DeliveryError(
            f"{where} still carries canaryTrafficPercent: 0 from a canary that was rolled back (its spec names "
            f"{serving}, which does not serve): set spec.predictor.model.storageUri back to the champion's copy "
            f"{current_storage_uri} and remove canaryTrafficPercent, then roll back"
        )
    if canary not in (None, 100):
        raise DeliveryError(f"{where} has a canary under way ({canary}% of the traffic): wait for it to end")
    if serving != current_storage_uri:
        raise DeliveryError(
            f"{where} serves {serving}, not the champion's published copy {current_storage_uri}: refusing to "
            "roll back a service that serves something else"
        )
    with tempfile.TemporaryDirectory(prefix="kfp-ct-rollback-") as tmp:
        model_dir = tracking.download_version(model_name, version, tmp, tracking_uri)
        _check_model(model_dir, model_name, version)
        checked = infra_validate(storage_uri, model_dir, model_name)
    log(f"infra validation passed for version {version} ({storage_uri})")
    spec = copy.deepcopy(live["spec"])
    spec["predictor"].pop("canaryTrafficPercent", None)
    spec["predictor"]["model"]["storageUri"] = storage_uri
    metadata = live["metadata"]
    manifest = {
        "apiVersion": live["apiVersion"],
        "kind": live["kind"],
        "metadata": {
            "name": model_name,
            "namespace": namespace,
            "labels": {**(metadata.get("labels") or {}), **manifests.version_labels(storage_uri)},
            "annotations": dict(metadata.get("annotations") or {}),
        },
        "spec": spec,
    }
    smoke = http_smoke_test(model_name, checked["records"], checked["expected"])
    result = rollout.rollout(api, manifest, smoke, 100, rollout_timeout_s, poll_s, log=log)
    log(f"{where} serves version {version} again ({result.url})")
    return storage_uri


def _live_service(api, namespace: str, name: str) -> dict | None:
    from kfp_ct.components.push import rollout

    try:
        return api.get_namespaced_custom_object(rollout.GROUP, rollout.VERSION, namespace, rollout.PLURAL, name)
    except Exception as err:
        if getattr(err, "status", None) == 404:
            return None
        raise


# --- status ----------------------------------------------------------------------------------------------------------


def _version_status(version, aliases: list[str]) -> dict:
    tags = version.tags or {}
    try:
        evaluation = json.loads(tags.get(tracking.EVALUATION_TAG) or "{}")
    except ValueError:
        evaluation = {}
    blessed = tags.get(tracking.BLESSED_TAG)
    return {
        "version": str(version.version),
        "aliases": aliases,
        "blessed": None if blessed is None else blessed == "true",
        "rule": tags.get(tracking.RULE_TAG),
        "metrics": evaluation.get("metrics") or {},
        "checks": evaluation.get("checks") or [],
        "compared_with": evaluation.get("champion_version"),
        "evaluated_at": evaluation.get("evaluated_at"),
        "storage_uri": tags.get(tracking.STORAGE_TAG),
        "rejected": tags.get(tracking.REJECTED_TAG),
        "rejected_at": tags.get(tracking.REJECTED_AT_TAG),
        "rolled_back_at": tags.get(ROLLED_BACK_TAG),
        "run_id": version.run_id,
    }


def status(model_name: str, *, tracking_uri: str | None = None, namespace: str | None = None, api=None) -> dict:
    """What the registry (and, with `namespace`, the cluster) says about `model_name`: {"model", "aliases",
    "history", "versions" (newest first: aliases, blessed, rule, metrics, checks, storage_uri, rejected, ...),
    "service" (with a namespace: the InferenceService's storageUri, readiness, URL and traffic split by version)}."""
    uri = tracking.check_registry(tracking_uri)
    mlflow_client = tracking.client(uri)
    quoted = model_name.replace("'", "\\'")
    registered = mlflow_client.search_registered_models(filter_string=f"name = '{quoted}'")
    if not registered:
        raise DeliveryError(f"'{model_name}' is not registered at {tracking.without_credentials(uri)}")
    aliases = {alias: str(version) for alias, version in (registered[0].aliases or {}).items()}
    found = mlflow_client.search_model_versions(f"name = '{quoted}'")
    versions = sorted(found, key=lambda v: int(v.version), reverse=True)
    report = {
        "model": model_name,
        "tracking_uri": tracking.without_credentials(uri),
        "aliases": aliases,
        "history": tracking.champion_history(model_name, uri),
        "versions": [
            _version_status(v, sorted(a for a, n in aliases.items() if n == str(v.version))) for v in versions
        ],
    }
    if namespace:
        report["service"] = service_status(model_name, namespace, report["versions"], api)
    return report


def service_status(model_name: str, namespace: str, versions: list[dict], api=None) -> dict:
    """The InferenceService's storageUri, Ready condition, URL and traffic split, each revision named by the
    registered version whose published copy it serves (from the versions' `storage_uri`)."""
    from kfp_ct.components.push import manifests
    from kfp_ct.components.push.rollout import predictor_status, ready_condition, served_storage_uri

    api = api if api is not None else kube.custom_objects_api()
    live = _live_service(api, namespace, model_name)
    if live is None:
        return {"namespace": namespace, "exists": False}
    by_storage = {v["storage_uri"]: v["version"] for v in versions if v["storage_uri"]}
    storage = served_storage_uri(live)
    previous = (live["metadata"].get("annotations") or {}).get(manifests.PREVIOUS_STORAGE_ANNOTATION)
    ready = ready_condition(live)
    traffic = []
    for entry in predictor_status(live).get("traffic") or []:
        # the latest revision runs the spec's storageUri; the other one (a canary split) what served before
        served = storage if entry.get("latestRevision") else previous
        traffic.append(
            {
                "revision": entry.get("revisionName"),
                "percent": entry.get("percent", 0),
                "storage_uri": served,
                "version": by_storage.get(served),
                "latest": bool(entry.get("latestRevision")),
            }
        )
    if not traffic and ready.get("status") == "True":  # RawDeployment: one Deployment serves the spec
        traffic.append(
            {
                "revision": None,
                "percent": 100,
                "storage_uri": storage,
                "version": by_storage.get(storage),
                "latest": True,
            }
        )
    return {
        "namespace": namespace,
        "exists": True,
        "storage_uri": storage,
        "version": by_storage.get(storage),
        "ready": ready.get("status"),
        "reason": ready.get("reason") or ready.get("message"),
        "url": (live.get("status") or {}).get("url"),
        "canary_traffic_percent": live["spec"]["predictor"].get("canaryTrafficPercent"),
        "traffic": traffic,
    }


def _fmt(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def format_status(report: dict) -> str:
    """`status`'s report as text for the console."""
    lines = [f"{report['model']} ({report['tracking_uri']})"]
    aliases = ", ".join(f"{a} -> {v}" for a, v in sorted(report["aliases"].items())) or "none"
    lines.append(f"aliases: {aliases}")
    history = " -> ".join(e["version"] + (f" ({e['since']})" if e.get("since") else "") for e in report["history"])
    lines.append(f"champion history: {history or 'none recorded'}")
    for v in report["versions"]:
        verdict = {True: "blessed", False: "NOT blessed", None: "not evaluated"}[v["blessed"]]
        head = f"version {v['version']}" + (f" [{', '.join(v['aliases'])}]" if v["aliases"] else "")
        lines.append(f"{head}: {verdict}" + (f" ({v['rule']})" if v["rule"] else ""))
        if v["metrics"]:
            compared = f" (vs champion version {v['compared_with']})" if v["compared_with"] else ""
            metrics = ", ".join(f"{k} {_fmt(m)}" for k, m in v["metrics"].items())
            lines.append(f"    test metrics{compared}: {metrics}")
        lines.extend(f"    {check}" for check in v["checks"])
        if v["storage_uri"]:
            lines.append(f"    published: {v['storage_uri']}")
        if v["rejected"]:
            lines.append(f"    REJECTED {v['rejected_at']}: {v['rejected']}")
        if v["rolled_back_at"]:
            lines.append(f"    rolled back {v['rolled_back_at']}")
    service = report.get("service")
    if service is not None:
        where = f"InferenceService {service['namespace']}/{report['model']}"
        if not service["exists"]:
            lines.append(f"{where}: not found")
        else:
            state = f"Ready={service['ready']}" + (f" ({service['reason']})" if service["reason"] else "")
            lines.append(f"{where}: {state}, {service['url'] or 'no URL yet'}")
            for entry in service["traffic"]:
                version = f"version {entry['version']}" if entry["version"] else "an unregistered copy"
                revision = f" revision {entry['revision']}" if entry["revision"] else ""
                lines.append(f"    {entry['percent']}%{revision}: {version} ({entry['storage_uri']})")
    return "\n".join(lines)
