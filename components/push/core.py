"""Push: publish a model version to storage, prove it serves, then roll it out to KServe or make it the champion.

0. Every check comes first: names, the manifest, and the registry (it must exist and answer, and know the model's
   training run: push never creates a registry).
1. The model directory is copied to `{storage_uri}/{new version}` atomically (storage.publish_directory): a reader
   never sees a half-written version.
2. Infra validation: the catalog's model server is started on the COPY, as the serving image runs it
   (`python -m kfp_ct.components.push.server`, on a free loopback port), and the model's input example is sent
   through V1 and V2; both answers must equal the model's own predictions. Any failure stops the push, the copy is
   withdrawn and nothing is promoted (as after any later failure, up to a successful rollout).
3. The InferenceService is built with the kserve SDK's models and validated against the CRD schema.
4. target="kserve": rollout.rollout (canary and promote or roll back in Serverless mode; full rollout gated on the
   smoke test, with rollback to the previous storageUri, in raw mode).
   target="local": the registered version becomes the `champion` in the MLflow registry (the previous champion stays
   registered, for rollback), and the manifest that would be applied is recorded.

With `canary_bake_s > 0` the candidate is also judged on replayed traffic before it is promoted (canary.py): on
KServe Serverless between the canary and the previous revision (their tag URLs) while the canary holds its share of the
traffic; on KServe RawDeployment/Standard between the stable InferenceService and a second one, `<name>-canary`, that
serves the candidate (rollout.py); locally between two catalog model servers on loopback, the champion's and the
candidate's. A canary that breaks a bound is rolled back (0% of the traffic; in raw mode the canary service deleted
and the stable one untouched; locally the champion alias does not move) and the push fails.
"""

from __future__ import annotations

import html
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

from kfp_ct.components._common import storage
from kfp_ct.components._common.results import Result
from kfp_ct.components.push import canary, manifests

DEFAULT_STORAGE_URI = "kfp-ct-models"
"""A folder in the working directory (beside the default MLflow sqlite file); use gs:// or s3://bucket/prefix on a
cluster."""
TARGETS = ("local", "kserve")
NO_BAKE = "canary_bake_s is 0: no canary analysis"
SERVER_START_TIMEOUT_S = 120


class InfraValidationError(RuntimeError):
    """The copied model did not serve its own input example correctly; nothing was promoted."""


@dataclass
class PushResult(Result):
    """What was pushed and where it serves; `canary` holds the canary analysis when one ran, else `canary_note`
    says why none did. `metadata` (for the manifest artifact) and `metrics` (the canary's figures) follow."""

    url: str
    storage_uri: str
    manifest: dict
    target: str
    registered_model: str | None = None
    version: str | None = None
    previous_champion: str | None = None
    events: list[str] = field(default_factory=list)
    canary: canary.CanaryAnalysis | None = None
    canary_note: str = NO_BAKE

    def __post_init__(self):
        self.metadata = {
            "url": self.url,
            "storage_uri": self.storage_uri,
            "target": self.target,
            "registered_model": self.registered_model or "",
            "version": self.version or "",
            "previous_champion": self.previous_champion or "",
            "canary_analysis": self.canary.to_dict() if self.canary else {"skipped": self.canary_note},
        }
        self.metrics = self.canary.metrics() if self.canary else {}

    def canary_html(self) -> str:
        """The canary analysis as a page (or a page saying why there was none)."""
        if self.canary is not None:
            return self.canary.html()
        return (
            '<!doctype html><html><head><meta charset="utf-8"><title>Canary analysis</title></head><body>'
            f"<h1>No canary analysis</h1><p>{html.escape(self.canary_note)}</p></body></html>"
        )


# --- infra validation ------------------------------------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def input_example(model_dir: str) -> list[dict]:
    """The model's input example as JSON records (missing values as null)."""
    import math

    path = os.path.join(model_dir, "input_example.json")
    if not os.path.isfile(path):
        raise InfraValidationError(f"the model has no input example ({path} is missing): cannot validate it")
    with open(path) as f:
        example = json.load(f)
    if isinstance(example, dict) and "columns" in example and "data" in example:
        records = [dict(zip(example["columns"], row)) for row in example["data"]]
    elif isinstance(example, list) and all(isinstance(row, dict) for row in example):
        records = example
    else:
        raise InfraValidationError(f"{path} is neither pandas 'split' JSON nor a list of records")
    if not records:
        raise InfraValidationError(f"{path} holds no rows")
    return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()} for row in records]


def _post(url: str, body: dict, timeout: float = 30) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST", headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        text = err.read().decode(errors="replace")
        try:
            return err.code, json.loads(text)
        except ValueError:
            return err.code, {"error": text}


def v2_request(records: list[dict], columns: list[tuple[str, str]]) -> dict:
    """An Open Inference Protocol request: one named input per column (null for a missing value)."""
    numeric = {"double", "float", "long", "integer"}
    inputs = []
    for name, kind in columns:
        values = [row.get(name) for row in records]
        if kind in numeric:
            data = [None if v is None else float(v) for v in values]
            inputs.append({"name": name, "shape": [len(values)], "datatype": "FP64", "data": data})
        else:
            data = [None if v is None else str(v) for v in values]
            inputs.append({"name": name, "shape": [len(values)], "datatype": "BYTES", "data": data})
    return {"inputs": inputs}


def _close(a: list, b: list, tol: float = 1e-9) -> bool:
    import numpy as np

    try:
        return bool(np.allclose(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64), atol=tol, rtol=0))
    except (TypeError, ValueError):
        return list(map(str, np.asarray(a).reshape(-1))) == list(map(str, np.asarray(b).reshape(-1)))


def expected_answer(model, records: list[dict]) -> dict:
    """What the loaded model itself says for `records`: {"predictions", "probabilities" (classification)}."""
    import pandas as pd

    frame = pd.DataFrame.from_records(records, columns=[name for name, _ in model.input_columns])
    if model.task == "classification":
        return {"predictions": model.predict(frame).tolist(), "probabilities": model.predict_proba(frame).tolist()}
    return {"predictions": model.predict(frame).tolist()}


def check_answer(answer: dict, expected: dict, where: str) -> None:
    """Raises naming the difference when a served answer differs from the model's own."""
    for key in expected:
        if key not in answer:
            raise InfraValidationError(f"{where}: the answer lacks '{key}': {json.dumps(answer)[:500]}")
        if len(answer[key]) != len(expected[key]) or not _close(answer[key], expected[key]):
            raise InfraValidationError(
                f"{where}: '{key}' differs from the model's own predictions: served "
                f"{answer[key]!r}, expected {expected[key]!r}"
            )


def v2_answer(response: dict) -> dict:
    outputs = {output["name"]: output for output in response.get("outputs", [])}
    answer = {}
    for name, output in outputs.items():
        data = output.get("data", [])
        shape = output.get("shape", [len(data)])
        if len(shape) == 2:
            width = shape[1]
            data = [data[i * width : (i + 1) * width] for i in range(shape[0])]
        answer[name] = data
    return answer


@contextmanager
def serving(model_uri: str, model_name: str, log_path: str, timeout_s: float = SERVER_START_TIMEOUT_S) -> Iterator[str]:
    """The catalog's model server on `model_uri`, as the serving image runs it, on a free loopback port: yields its
    base URL once ready, and stops it on leaving. Its output goes to `log_path`. Raises InfraValidationError (with
    the log) when it exits or is not ready within `timeout_s`."""
    port = free_port()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                manifests.SERVER_MODULE,
                "--model_uri",
                model_uri,
                "--model_name",
                model_name,
                "--http_port",
                str(port),
                "--host",
                "127.0.0.1",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log_tail() -> str:
        with open(log_path, errors="replace") as f:
            return f.read()[-3000:]

    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(f"{base}/v2/models/{model_name}/ready", process, timeout_s, log_tail)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def infra_validate(
    model_uri: str,
    model_dir: str,
    model_name: str,
    timeout_s: float = SERVER_START_TIMEOUT_S,
    log_dir: str | None = None,
) -> dict:
    """Serves `model_uri` (the published copy) with the catalog's server on a free loopback port, as the serving
    image does, and checks V1 and V2 answers to the input example against `model_dir`'s own predictions.

    The server's log goes to `log_dir`, by default a temporary directory removed afterwards, whatever happens.
    Returns {"records": input example, "expected": the model's answer}. Raises InfraValidationError.
    """
    if log_dir is None:
        with tempfile.TemporaryDirectory(prefix="kfp-ct-infra-") as tmp:
            return infra_validate(model_uri, model_dir, model_name, timeout_s, tmp)
    from kfp_ct.components._common.model import load_model

    records = input_example(model_dir)
    try:
        model = load_model(model_dir)
        expected = expected_answer(model, records)
    except Exception as err:
        raise InfraValidationError(
            f"the model cannot predict its own input example: {type(err).__name__}: {err}"
        ) from err
    columns = model.input_columns
    with serving(model_uri, model_name, os.path.join(log_dir, "model-server.log"), timeout_s) as base:
        status, v1 = _post(f"{base}/v1/models/{model_name}:predict", {"instances": records})
        if status != 200:
            raise InfraValidationError(f"V1 predict answered HTTP {status}: {v1}")
        check_answer(v1, expected, "V1 predict")
        status, v2 = _post(f"{base}/v2/models/{model_name}/infer", v2_request(records, columns))
        if status != 200:
            raise InfraValidationError(f"V2 infer answered HTTP {status}: {v2}")
        check_answer(v2_answer(v2), expected, "V2 infer")
        for path in ("/v2/health/live", "/metrics"):
            with urllib.request.urlopen(base + path, timeout=10) as response:
                if response.status != 200:
                    raise InfraValidationError(f"{path} answered HTTP {response.status}")
    return {"records": records, "expected": expected}


def _wait_ready(url: str, process: subprocess.Popen, timeout_s: float, log_tail) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise InfraValidationError(
                f"the model server exited with code {process.returncode} before it was ready; its log:\n{log_tail()}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.25)
    raise InfraValidationError(f"the model server was not ready within {timeout_s:g} s; its log:\n{log_tail()}")


# --- the smoke test used by the KServe rollout -------------------------------------------------------------------


def http_smoke_test(model_name: str, records: list[dict], expected: dict, timeout_s: float = 30):
    """smoke_test(base_url) for rollout: the V1 answer to the input example must equal the model's own."""

    def smoke(base_url: str) -> None:
        status, answer = _post(f"{base_url}/v1/models/{model_name}:predict", {"instances": records}, timeout_s)
        if status != 200:
            raise RuntimeError(f"V1 predict answered HTTP {status}: {json.dumps(answer)[:500]}")
        check_answer(answer, expected, "V1 predict")

    return smoke


# --- push ----------------------------------------------------------------------------------------------------------


def _registry_version(
    meta: dict, model_name: str, published: str, tracking_uri: str | None, registered_version: str | None = None
) -> tuple[str, str, bool]:
    """(registered model, version, whether push registered it) of this model: the version its training run
    registered, or a new one."""
    from kfp_ct.components._common import tracking

    registered = str(meta.get("model_name") or model_name)
    run_id = meta.get("mlflow_run_id")
    version = str(registered_version) if registered_version else None
    if version is None and run_id:
        version = tracking.version_for_run(registered, run_id, tracking_uri)
    if version is not None:
        return registered, version, False
    version = tracking.register_version(
        registered, published, run_id, tracking_uri, tags={"kfp_ct.storage_uri": published}
    )
    return registered, version, True


def _check_registry(meta: dict, tracking_uri: str | None) -> None:
    """Before anything is published: the registry exists and answers (push never creates one), and it knows the
    run that trained the model."""
    from kfp_ct.components._common import tracking

    tracking.check_registry(tracking_uri)
    if meta.get("mlflow_run_id"):
        tracking.check_run(meta["mlflow_run_id"], tracking_uri)


def _canary_judge(
    model_dir: str,
    model_name: str,
    target: str,
    deployment_mode: str,
    canary_traffic_percent: int,
    test_path: str | None,
    canary_bake_s: float,
    canary_rows_uri: str,
    bounds: canary.Bounds,
    log,
) -> canary.Judge | None:
    """The judge of the canary (None when canary_bake_s is 0), with its rows loaded: every check of the canary
    settings runs here, before anything is published."""
    from kfp_ct.components._common.model import load_model

    if canary_bake_s < 0:
        raise ValueError(f"canary_bake_s must be >= 0, got {canary_bake_s}")
    if canary_bake_s == 0:
        return None
    if target == "kserve" and not manifests.is_serverless(deployment_mode):  # the canary is a second service
        manifests.check_name(manifests.canary_name(model_name), "the raw-mode canary's name (model_name + '-canary')")
    elif target == "kserve" and not 0 < canary_traffic_percent < 100:
        raise ValueError(
            f"canary_bake_s > 0 needs a canary: canary_traffic_percent within 1..99, got {canary_traffic_percent}"
        )
    rows_uri = canary_rows_uri or test_path
    if not rows_uri:
        raise ValueError(
            "canary_bake_s > 0 needs rows to replay: a test dataset input, or canary_rows_uri (a Parquet dataset with "
            "the model's input columns, e.g. captured traffic)"
        )
    model = load_model(model_dir)
    rows = canary.load_rows(rows_uri, [name for name, _ in model.input_columns], model_name)
    return canary.Judge(model_name, rows, model.task, bounds, canary_bake_s, rows_uri, log)


def _local_canary(
    judge: canary.Judge,
    registered: str,
    tracking_uri: str | None,
    published: str,
    model_name: str,
    timeout_s: float,
    log,
) -> tuple[canary.CanaryAnalysis | None, str]:
    """Judges the published candidate against the champion, each served by the catalog's server on loopback;
    (analysis, note). Raises CanaryRejected."""
    from kfp_ct.components._common import tracking

    with tempfile.TemporaryDirectory(prefix="kfp-ct-canary-") as tmp:
        champion = tracking.champion(registered, tracking_uri, dst=os.path.join(tmp, "champion"))
        if champion is None:
            note = f"{registered} has no champion yet: nothing to compare the candidate with"
            log(note)
            return None, note
        version, champion_dir = champion
        with (
            serving(champion_dir, model_name, os.path.join(tmp, "champion.log"), timeout_s) as stable,
            serving(published, model_name, os.path.join(tmp, "candidate.log"), timeout_s) as candidate,
        ):
            analysis = judge(stable, candidate)
    return analysis, f"compared with the champion, version {version}"


def push(
    *,
    model_dir: str,
    model_name: str,
    target: str = "local",
    storage_uri: str = DEFAULT_STORAGE_URI,
    namespace: str = "kubeflow-user-example-com",
    canary_traffic_percent: int = 10,
    deployment_mode: str = "Serverless",
    tracking_uri: str | None = None,
    resources: manifests.Resources | None = None,
    min_replicas: int = 1,
    max_replicas: int = 3,
    rollout_timeout_s: float = 600,
    test_path: str | None = None,
    canary_bake_s: float = 0,
    canary_rows_uri: str = "",
    canary_max_error_rate: float = 0.01,
    canary_max_latency_ratio: float = 1.5,
    canary_max_prediction_shift: float = 0.1,
    poll_s: float = 5,
    api=None,
    validation_timeout_s: float = SERVER_START_TIMEOUT_S,
    registered_version: str | None = None,
    capture_url: str = "",
    log=print,
) -> PushResult:
    """Publishes, validates and deploys the model directory `model_dir` (see the module docstring).

    With `test_path` (the model's test split) the serving fast path is proven on the whole split first and the
    proof published with the model (`_with_proof`); the same rows are what the canary analysis replays unless
    `canary_rows_uri` is set. Every check (names, storage scheme, manifest, the canary's settings and rows, the
    registry and the model's run in it) runs before anything is published; a failure after publishing withdraws the
    published version (and a registry version push itself registered), unless the version already serves on the
    cluster.
    """
    from kfp_ct.components._common import tracking
    from kfp_ct.components._common.model import read_metadata

    if target not in TARGETS:
        raise ValueError(f"unknown target '{target}': expected one of {', '.join(TARGETS)}")
    manifests.check_name(model_name)
    manifests.check_deployment_mode(deployment_mode)
    if not 0 <= canary_traffic_percent <= 100:
        raise ValueError(f"canary_traffic_percent must be within 0..100, got {canary_traffic_percent}")
    scheme = storage.check_scheme(storage_uri)
    if target == "kserve" and scheme not in ("gs", "s3"):
        raise ValueError(
            "target='kserve' needs a storage_uri KServe's storage-initializer can read (gs://bucket/prefix or "
            f"s3://bucket/prefix), got '{storage_uri}'"
        )
    meta = read_metadata(model_dir)  # fails here, before anything is copied, when it is not a kfp-ct model
    bounds = canary.Bounds(canary_max_error_rate, canary_max_latency_ratio, canary_max_prediction_shift)
    judge = _canary_judge(
        model_dir,
        model_name,
        target,
        deployment_mode,
        canary_traffic_percent,
        test_path,
        canary_bake_s,
        canary_rows_uri,
        bounds,
        log,
    )
    tracking_uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or meta.get("tracking_uri")
    uses_registry = target == "local" or bool(tracking_uri and meta.get("mlflow_run_id"))
    if uses_registry:
        _check_registry(meta, tracking_uri)
    resources = resources or manifests.Resources()
    # the manifest is checked before the copy, so a bad resource or name fails fast; storageUri is filled in below
    spec = manifests.ServiceSpec(
        name=model_name,
        storage_uri="gs://placeholder/model",
        namespace=namespace,
        deployment_mode=deployment_mode,
        resources=resources,
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        image=manifests.predictor_image(meta.get("framework", "")),
        service_account=manifests.s3_service_account(storage_uri),
        capture_url=capture_url,
    )
    manifests.inference_service(spec)

    if scheme == "":
        storage_uri = os.path.abspath(os.path.expanduser(storage.split_uri(storage_uri)[2]))
    with tempfile.TemporaryDirectory(prefix="kfp-ct-push-") as staging:
        published = storage.publish_directory(_with_proof(model_dir, test_path, staging, log), storage_uri)
    log(f"published {model_dir} to {published}")
    registered = version = None
    created = False
    note = NO_BAKE
    try:
        checked = infra_validate(published, model_dir, model_name, validation_timeout_s)
        log(f"infra validation passed: V1 and V2 answers to the input example match the model ({published})")
        labels = manifests.version_labels(published)
        manifest = manifests.inference_service(replace(spec, storage_uri=published, labels=labels))
        if uses_registry:
            registered, version, created = _registry_version(
                meta, model_name, published, tracking_uri, registered_version
            )
        if target == "local":
            analysis = None
            if judge is not None:
                analysis, note = _local_canary(
                    judge, registered, tracking_uri, published, model_name, validation_timeout_s, log
                )
            previous = tracking.promote(registered, version, tracking.CHAMPION, tracking_uri, storage_uri=published)
            log(f"{registered} version {version} is the champion (previous: {previous})")
            return PushResult(
                manifests.service_url(model_name, namespace, deployment_mode),
                published,
                manifest,
                target,
                registered,
                version,
                previous,
                canary=analysis,
                canary_note=note,
            )
        from kfp_ct.components._common.kube import custom_objects_api
        from kfp_ct.components.push import rollout

        api = api if api is not None else custom_objects_api()
        smoke = http_smoke_test(model_name, checked["records"], checked["expected"])
        result = rollout.rollout(
            api, manifest, smoke, canary_traffic_percent, rollout_timeout_s, poll_s, judge=judge, log=log
        )
    except BaseException:
        _undo(published, registered if created else None, version, tracking_uri, log)
        raise
    # the version serves now: a registry failure from here on leaves it published (and raises)
    previous = (
        tracking.promote(registered, version, tracking.CHAMPION, tracking_uri, storage_uri=published)
        if uses_registry
        else None
    )
    if judge is not None and judge.analysis is None:
        note = "no previous revision served: a first deployment has nothing to compare with"
    return PushResult(
        result.url,
        published,
        manifest,
        target,
        registered,
        version,
        previous,
        result.events,
        canary=judge.analysis if judge is not None else None,
        canary_note=note,
    )


def _with_proof(model_dir: str, test_path: str | None, staging: str, log) -> str:
    """The folder to publish: `model_dir`, or a copy of it in `staging` that carries push's own proof that the
    server's fast path equals the model on the whole test split at `test_path` (see `fast_path`). A proof already in
    `model_dir` is never published: without a test split, no fast path, or a failed proof, the server runs the model
    itself."""
    from kfp_ct.components._common import fast_path

    proof = None
    if test_path:
        from kfp_ct.components._common.model import load_model

        try:
            proof = fast_path.prove(load_model(model_dir), test_path)
        except fast_path.FastPathMismatch as err:
            log(f"no serving fast path: {err}; the server runs the model itself")
    if proof is None and not os.path.exists(os.path.join(model_dir, fast_path.PROOF_FILE)):
        return model_dir
    staged = os.path.join(staging, "model")
    shutil.copytree(model_dir, staged, ignore=shutil.ignore_patterns(fast_path.PROOF_FILE))
    if proof is not None:
        fast_path.write_proof(proof, staged)
        log(f"serving fast path proven equal to the model on the {proof['test_rows']} rows of the test split")
    return staged


def _undo(published: str, registered: str | None, version: str | None, tracking_uri: str | None, log) -> None:
    """Withdraws the published version, and the registry version push registered for it, after a failed push."""
    from kfp_ct.components._common import tracking

    storage.withdraw_version(published)
    log(f"push failed: withdrew {published}")
    if registered is not None:
        tracking.delete_version(registered, version, tracking_uri)
        log(f"push failed: deleted version {version} of {registered}, which it had registered")


def write_manifest(manifest: dict, path: str) -> None:
    """Writes the manifest as YAML at `path`, atomically."""
    import yaml

    from kfp_ct.components._common.datasets import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w") as f:
        yaml.safe_dump(manifest, f, sort_keys=False)
