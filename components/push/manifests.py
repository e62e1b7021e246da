"""KServe manifests for the catalog's model server: the ServingRuntime and InferenceServices, built with the kserve
SDK's typed models and validated against the InferenceService CRD's structural schema.

`write_manifests(directory)` writes the committed files of `kserve/` (ServingRuntime, an example InferenceService,
kustomization.yaml) from the same builders the push component uses, so what is applied by hand and what the pipeline
applies cannot drift apart.
"""

from __future__ import annotations

import copy
import functools
import os
from dataclasses import dataclass, field
from pathlib import Path

from kfp_ct.components._common import checks
from kfp_ct.components._common.storage import S3_SECRET

API_VERSION = "serving.kserve.io/v1beta1"
RUNTIME_API_VERSION = "serving.kserve.io/v1alpha1"
RUNTIME_NAME = "kfp-ct-serving"
MODEL_FORMAT = "kfp-ct"
MODEL_FORMAT_VERSION = "1"
DEPLOYMENT_MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
TAG_ROUTING_ANNOTATION = "serving.kserve.io/enable-tag-routing"
PREVIOUS_STORAGE_ANNOTATION = "kfp-ct.io/previous-storage-uri"
SERVERLESS_MODES = ("Serverless", "Knative")
RAW_MODES = ("RawDeployment", "Standard")
HTTP_PORT = 8080
SERVER_MODULE = "kfp_ct.components.push.server"
EXAMPLE_STORAGE_URI = "gs://YOUR-BUCKET/models/elec2/v20261126T000000000000Z-000000"
EXAMPLE_CAPTURE_URI = "gs://YOUR-BUCKET/capture"
CAPTURE_SINK_NAME = "kfp-ct-capture-sink"
CAPTURE_SINK_URL = f"http://{CAPTURE_SINK_NAME}.kubeflow-user-example-com.svc.cluster.local"
S3_STORAGE_ACCESS = S3_SECRET
"""The Secret (AWS_* keys, KServe's s3 annotations) and ServiceAccount that s3:// InferenceServices run as."""
CRD_PATH = (
    Path(__file__).resolve().parents[2].parent
    / "shared"
    / "schemas"
    / "kserve"
    / "serving.kserve.io_inferenceservices.yaml"
)
PACKAGED_SCHEMA = Path(__file__).resolve().parent / "inferenceservice_v1beta1.schema.json.gz"


@dataclass(frozen=True)
class Resources:
    """CPU, memory and GPU of one predictor replica (Kubernetes quantities)."""

    cpu_request: str = "500m"
    memory_request: str = "1Gi"
    cpu_limit: str = "2"
    memory_limit: str = "2Gi"
    gpu_count: int = 0
    gpu_resource: str = "nvidia.com/gpu"

    def to_k8s(self):
        from kubernetes.client import V1ResourceRequirements

        if self.gpu_count < 0:
            raise ValueError(f"gpu_count must be >= 0, got {self.gpu_count}")
        limits = {"cpu": self.cpu_limit, "memory": self.memory_limit}
        if self.gpu_count:
            limits[self.gpu_resource] = str(self.gpu_count)
        return V1ResourceRequirements(requests={"cpu": self.cpu_request, "memory": self.memory_request}, limits=limits)


@dataclass(frozen=True)
class ServiceSpec:
    """What an InferenceService of the catalog's runtime is made of."""

    name: str
    storage_uri: str
    namespace: str = "kubeflow-user-example-com"
    deployment_mode: str = "Serverless"
    canary_traffic_percent: int | None = None
    resources: Resources = field(default_factory=Resources)
    min_replicas: int = 1
    max_replicas: int = 3
    labels: dict = field(default_factory=dict)
    annotations: dict = field(default_factory=dict)
    image: str | None = None  # the predictor's image, in place of the runtime's (see predictor_image)
    service_account: str | None = None  # the predictor's ServiceAccount (s3:// storage: see s3_storage_access)
    capture_url: str = ""  # the capture sink's URL: KServe's logger sends it every request and answer ("" = off)


MODEL_VERSION_LABEL = "kfp-ct.io/model-version"


def version_labels(storage_uri: str) -> dict:
    """The InferenceService's labels naming the published version it serves (the last folder of its storageUri)."""
    return {MODEL_VERSION_LABEL: storage_uri.rstrip("/").rsplit("/", 1)[-1][:63]}


CANARY_SUFFIX = "-canary"
CANARY_OF_LABEL = "kfp-ct.io/canary-of"


def canary_name(name: str) -> str:
    """The name of the second InferenceService that holds `name`'s canary in raw (RawDeployment/Standard) mode."""
    return f"{name}{CANARY_SUFFIX}"


def canary_service(manifest: dict) -> dict:
    """The raw-mode canary of the InferenceService `manifest`: the same spec under `canary_name`, labelled as kfp-ct's
    canary of it. It carries no capture logger: the rows replayed to it are not production traffic."""
    canary = copy.deepcopy(manifest)
    name = canary["metadata"]["name"]
    canary["metadata"]["name"] = canary_name(name)
    canary["metadata"]["labels"] = {**(canary["metadata"].get("labels") or {}), CANARY_OF_LABEL: name}
    (canary["metadata"].get("annotations") or {}).pop(PREVIOUS_STORAGE_ANNOTATION, None)
    canary["spec"]["predictor"].pop("logger", None)
    validate_inference_service(canary)
    return canary


def check_name(name: str, what: str = "model_name") -> str:
    """Checks that `name` can name an InferenceService (see _common.checks.check_serving_name)."""
    return checks.check_serving_name(name, what)


def check_deployment_mode(mode: str) -> str:
    if mode not in SERVERLESS_MODES + RAW_MODES:
        raise ValueError(f"deployment_mode '{mode}' is not one of {', '.join(SERVERLESS_MODES + RAW_MODES)}")
    return mode


def is_serverless(mode: str) -> bool:
    return check_deployment_mode(mode) in SERVERLESS_MODES


def to_dict(obj) -> dict:
    """A kserve/kubernetes SDK model as the plain dict (camelCase keys, no nulls) that the API server receives."""
    from kubernetes.client import ApiClient

    return ApiClient().sanitize_for_serialization(obj)


# Frameworks whose models the serving image cannot load (it holds neither torch nor TensorFlow): their
# InferenceServices run the catalog's GPU image, which holds both and the same server, on CPU unless given a GPU.
FRAMEWORKS_ON_GPU_IMAGE = ("torch", "keras")


def predictor_image(framework: str) -> str | None:
    """The image an InferenceService of a `framework` model runs in place of the runtime's: None (the serving image)
    for scikit-learn, the GPU image for torch and Keras."""
    if framework not in FRAMEWORKS_ON_GPU_IMAGE:
        return None
    from kfp_ct.components._common.images import GPU_IMAGE

    return GPU_IMAGE


def serving_runtime(namespace: str | None = None, image: str | None = None) -> dict:
    """The catalog's ServingRuntime: the kfp-ct predictor image (default SERVING_IMAGE) serving V1 and V2 REST."""
    if image is None:
        from kfp_ct.components._common.images import SERVING_IMAGE

        image = SERVING_IMAGE
    from kubernetes.client import V1Container, V1ContainerPort, V1HTTPGetAction, V1ObjectMeta, V1Probe

    from kserve import V1alpha1ServingRuntime, V1alpha1ServingRuntimeSpec, V1alpha1SupportedModelFormat

    container = V1Container(
        name="kserve-container",
        image=image,
        command=["python", "-m", SERVER_MODULE],
        args=["--model_name={{.Name}}", "--model_uri=/mnt/models", f"--http_port={HTTP_PORT}"],
        ports=[V1ContainerPort(container_port=HTTP_PORT, protocol="TCP")],
        readiness_probe=V1Probe(
            http_get=V1HTTPGetAction(path="/v2/health/ready", port=HTTP_PORT), initial_delay_seconds=5, period_seconds=5
        ),
        resources=Resources().to_k8s(),
    )
    runtime = V1alpha1ServingRuntime(
        api_version=RUNTIME_API_VERSION,
        kind="ServingRuntime",
        metadata=V1ObjectMeta(
            name=RUNTIME_NAME,
            namespace=namespace,
            labels={"app.kubernetes.io/part-of": "kfp-ct"},
            annotations={"prometheus.kserve.io/port": str(HTTP_PORT), "prometheus.kserve.io/path": "/metrics"},
        ),
        spec=V1alpha1ServingRuntimeSpec(
            supported_model_formats=[
                V1alpha1SupportedModelFormat(
                    name=MODEL_FORMAT, version=MODEL_FORMAT_VERSION, auto_select=True, priority=1
                )
            ],
            protocol_versions=["v1", "v2"],
            multi_model=False,
            containers=[container],
        ),
    )
    return to_dict(runtime)


def inference_service(spec: ServiceSpec) -> dict:
    """The InferenceService serving `spec.storage_uri` with the catalog's runtime, validated against the CRD."""
    from kubernetes.client import V1ObjectMeta

    from kserve import (
        V1beta1InferenceService,
        V1beta1InferenceServiceSpec,
        V1beta1ModelFormat,
        V1beta1ModelSpec,
        V1beta1PredictorSpec,
    )

    check_name(spec.name)
    logger = capture_logger(spec.capture_url, spec.name, spec.storage_uri) if spec.capture_url else None
    serverless = is_serverless(spec.deployment_mode)
    if spec.canary_traffic_percent is not None and not 0 <= spec.canary_traffic_percent <= 100:
        raise ValueError(f"canary_traffic_percent must be within 0..100, got {spec.canary_traffic_percent}")
    if spec.canary_traffic_percent is not None and not serverless:
        raise ValueError(f"canary_traffic_percent needs a Serverless deployment, not {spec.deployment_mode}")
    if not 0 <= spec.min_replicas <= spec.max_replicas or spec.max_replicas < 1:
        raise ValueError(
            f"need 0 <= min_replicas <= max_replicas and max_replicas >= 1, got {spec.min_replicas}, "
            f"{spec.max_replicas}"
        )
    annotations = {DEPLOYMENT_MODE_ANNOTATION: spec.deployment_mode, **spec.annotations}
    if serverless:  # tag routing gives the canary revision its own URL, so the smoke test reaches it
        annotations[TAG_ROUTING_ANNOTATION] = "true"
    isvc = V1beta1InferenceService(
        api_version=API_VERSION,
        kind="InferenceService",
        metadata=V1ObjectMeta(
            name=spec.name,
            namespace=spec.namespace,
            annotations=annotations,
            labels={"app.kubernetes.io/part-of": "kfp-ct", **spec.labels},
        ),
        spec=V1beta1InferenceServiceSpec(
            predictor=V1beta1PredictorSpec(
                service_account_name=spec.service_account,
                min_replicas=spec.min_replicas,
                max_replicas=spec.max_replicas,
                canary_traffic_percent=spec.canary_traffic_percent,
                logger=logger,
                model=V1beta1ModelSpec(
                    model_format=V1beta1ModelFormat(name=MODEL_FORMAT, version=MODEL_FORMAT_VERSION),
                    runtime=RUNTIME_NAME,
                    image=spec.image,
                    storage_uri=spec.storage_uri,
                    resources=spec.resources.to_k8s(),
                ),
            )
        ),
    )
    manifest = to_dict(isvc)
    if manifest["spec"]["predictor"]["model"].get("name") == "":  # the SDK's default; the CRD means a container name
        del manifest["spec"]["predictor"]["model"]["name"]
    validate_inference_service(manifest)
    return manifest


def capture_logger(capture_url: str, name: str, storage_uri: str):
    """KServe's logger spec (mode all) sending this InferenceService's requests and answers to the capture sink at
    `capture_url`: the URL names the model, the version (the published folder) and its storage URI, from which the
    sink reads the signature that types the captured columns (see capture_sink)."""
    from urllib.parse import quote

    from kserve import V1beta1LoggerSpec

    if not capture_url.startswith(("http://", "https://")):
        raise ValueError(
            f"capture_url must be the capture sink's http(s):// URL (e.g. {CAPTURE_SINK_URL}), got '{capture_url}'"
        )
    version = storage_uri.rstrip("/").rsplit("/", 1)[-1]
    url = f"{capture_url.rstrip('/')}/models/{name}?model_uri={quote(storage_uri, safe='')}&version={quote(version)}"
    return V1beta1LoggerSpec(mode="all", url=url)


def capture_sink(namespace: str | None = None, image: str | None = None, capture_uri: str = EXAMPLE_CAPTURE_URI):
    """The capture sink's PersistentVolumeClaim (its write-ahead log), Deployment (one replica of the serving image
    running `python -m kfp_ct.components.push.capture_sink`; Recreate, so two never share the log) and Service."""
    from kfp_ct.components._common.images import SERVING_IMAGE

    meta = {"name": CAPTURE_SINK_NAME, "labels": {"app.kubernetes.io/name": CAPTURE_SINK_NAME}}
    if namespace:
        meta["namespace"] = namespace
    selector = {"app.kubernetes.io/name": CAPTURE_SINK_NAME}
    wal = "/var/lib/kfp-ct/capture-wal"
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {**meta, "name": f"{CAPTURE_SINK_NAME}-wal"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}},
    }
    container = {
        "name": "capture-sink",
        "image": image or SERVING_IMAGE,
        "command": ["python", "-m", "kfp_ct.components.push.capture_sink"],
        "args": ["--capture", capture_uri, "--wal", wal, "--host", "0.0.0.0", "--port", str(HTTP_PORT)],
        "ports": [{"name": "http", "containerPort": HTTP_PORT}],
        "envFrom": [{"secretRef": {"name": S3_SECRET, "optional": True}}],  # AWS_* keys for an s3:// capture URI
        "volumeMounts": [{"name": "wal", "mountPath": wal}],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": HTTP_PORT}, "periodSeconds": 5},
        "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "2Gi"}},
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": selector},
                "spec": {
                    "containers": [container],
                    "volumes": [{"name": "wal", "persistentVolumeClaim": {"claimName": f"{CAPTURE_SINK_NAME}-wal"}}],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {"selector": selector, "ports": [{"name": "http", "port": 80, "targetPort": HTTP_PORT}]},
    }
    return [claim, deployment, service]


def s3_service_account(storage_uri: str) -> str | None:
    """The ServiceAccount an InferenceService serving `storage_uri` runs as: S3_STORAGE_ACCESS for s3://, else the
    namespace's default (None)."""
    return S3_STORAGE_ACCESS if storage_uri.startswith("s3://") else None


def s3_storage_access(
    namespace: str | None,
    endpoint_url: str | None = None,
    region: str | None = None,
    access_key_id: str = "YOUR-ACCESS-KEY-ID",
    secret_access_key: str = "YOUR-SECRET-ACCESS-KEY",
    name: str = S3_STORAGE_ACCESS,
) -> list[dict]:
    """The Secret and ServiceAccount through which KServe's storage-initializer reads s3:// models (and Katib trials
    read s3:// data, the Secret's keys being the AWS_* variables).

    KServe reads the `serving.kserve.io/s3-*` annotations (endpoint host:port, usehttps, region) of a Secret listed
    by the predictor's ServiceAccount and injects the keys into the storage-initializer; the ServiceAccount carries
    the same annotations. `endpoint_url` is an AWS_ENDPOINT_URL (None: AWS S3 itself).
    """
    from urllib.parse import urlparse

    from kubernetes.client import V1ObjectMeta, V1ObjectReference, V1Secret, V1ServiceAccount

    annotations = {"serving.kserve.io/s3-useanoncredential": "false"}
    data = {"AWS_ACCESS_KEY_ID": access_key_id, "AWS_SECRET_ACCESS_KEY": secret_access_key}
    if endpoint_url:
        parsed = urlparse(endpoint_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"S3 endpoint '{endpoint_url}' must be an http:// or https:// URL (AWS_ENDPOINT_URL)")
        annotations["serving.kserve.io/s3-endpoint"] = parsed.netloc
        annotations["serving.kserve.io/s3-usehttps"] = "1" if parsed.scheme == "https" else "0"
        data["AWS_ENDPOINT_URL"] = endpoint_url
    if region:
        annotations["serving.kserve.io/s3-region"] = region
        data["AWS_REGION"] = region
    labels = {"app.kubernetes.io/part-of": "kfp-ct"}
    meta = {"name": name, "namespace": namespace, "annotations": annotations, "labels": labels}
    secret = V1Secret(api_version="v1", kind="Secret", metadata=V1ObjectMeta(**meta), type="Opaque", string_data=data)
    account = V1ServiceAccount(
        api_version="v1", kind="ServiceAccount", metadata=V1ObjectMeta(**meta), secrets=[V1ObjectReference(name=name)]
    )
    return [to_dict(secret), to_dict(account)]


def service_url(name: str, namespace: str, deployment_mode: str) -> str:
    """The cluster-local V1 predict URL an InferenceService answers on (KServe's address.url naming)."""
    host = (
        f"{name}.{namespace}.svc.cluster.local"
        if is_serverless(deployment_mode)
        else f"{name}-predictor.{namespace}.svc.cluster.local"
    )
    return f"http://{host}/v1/models/{name}:predict"


# --- CRD validation -------------------------------------------------------------------------------------------------


def _structural(node):
    """A CRD structural schema as JSON Schema: the x-kubernetes-* keys the API server enforces made explicit."""
    if isinstance(node, list):
        return [_structural(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _structural(value) for key, value in node.items() if not key.startswith("x-kubernetes-")}
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    out.pop("nullable", None)
    # the API server's strict field validation refuses unknown fields unless the schema preserves them
    if (
        "properties" in node
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    if node.get("x-kubernetes-list-type") == "set":
        out["uniqueItems"] = True
    keys = node.get("x-kubernetes-list-map-keys")
    if node.get("x-kubernetes-list-type") == "map" and keys:
        out["x-list-map-keys"] = keys
    return out


def crd_schema(crd_path: str | os.PathLike, version: str = "v1beta1") -> dict:
    """The openAPIV3Schema of one version of a CRD file."""
    import yaml

    if not os.path.isfile(crd_path):
        raise FileNotFoundError(f"CRD file not found: {crd_path}")
    with open(crd_path) as f:
        crd = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    for served in crd["spec"]["versions"]:
        if served["name"] == version:
            return served["schema"]["openAPIV3Schema"]
    raise ValueError(f"{crd_path} has no version {version}")


def write_packaged_schema(crd_path: str | os.PathLike = CRD_PATH, dest: str | os.PathLike = PACKAGED_SCHEMA) -> None:
    """Stores the CRD's v1beta1 schema beside this module (gzip'd JSON), so validation works inside the image."""
    import gzip
    import json

    from kfp_ct.components._common.datasets import atomic_path

    data = json.dumps(crd_schema(crd_path), sort_keys=True, separators=(",", ":")).encode()
    with atomic_path(dest) as tmp, open(tmp, "wb") as f:
        f.write(gzip.compress(data, 9, mtime=0))
    os.chmod(dest, 0o644)


@functools.lru_cache(maxsize=4)
def crd_validator(crd_path: str | None = None):
    """A jsonschema validator for the InferenceService v1beta1 schema (structural; unknown fields refused).

    Without `crd_path` it reads the copy stored beside this module (made by write_packaged_schema from
    ../shared/schemas/kserve), which the image carries.
    """
    import gzip
    import json

    import jsonschema

    if crd_path is None:
        if not PACKAGED_SCHEMA.is_file():
            raise FileNotFoundError(
                f"the InferenceService schema is missing from the package: {PACKAGED_SCHEMA} (its "
                "package_data must include push/*.json.gz)"
            )
        with gzip.open(PACKAGED_SCHEMA, "rt") as f:
            raw = json.load(f)
    else:
        raw = crd_schema(crd_path)
    schema = _structural(raw)

    def list_map_keys(validator, keys, instance, schema):
        if not validator.is_type(instance, "array"):
            return
        seen = set()
        for item in instance:
            if isinstance(item, dict):
                key = tuple(repr(item.get(k)) for k in keys)
                if key in seen:
                    yield jsonschema.ValidationError(f"duplicate entry for key {dict(zip(keys, key))}")
                seen.add(key)

    cls = jsonschema.validators.extend(jsonschema.Draft7Validator, {"x-list-map-keys": list_map_keys})
    return cls(schema)


def crd_errors(manifest: dict, crd_path: str | None = None) -> list[str]:
    """Every way `manifest` breaks the CRD schema, each as 'path: message'."""
    validator = crd_validator(crd_path)
    errors = []
    for error in sorted(validator.iter_errors(manifest), key=lambda e: list(map(str, e.absolute_path))):
        path = ".".join(str(p) for p in error.absolute_path) or "(root)"
        errors.append(f"{path}: {error.message}")
    return errors


def validate_inference_service(manifest: dict, crd_path: str | None = None) -> None:
    """Raises ValueError naming every field of `manifest` the InferenceService CRD refuses."""
    if manifest.get("apiVersion") != API_VERSION or manifest.get("kind") != "InferenceService":
        raise ValueError(
            f"not a {API_VERSION} InferenceService: apiVersion={manifest.get('apiVersion')}, "
            f"kind={manifest.get('kind')}"
        )
    name = (manifest.get("metadata") or {}).get("name")
    check_name(name, "metadata.name")
    errors = crd_errors(manifest, crd_path)
    if errors:
        raise ValueError(f"InferenceService '{name}' does not validate against the CRD schema: " + "; ".join(errors))


# --- the committed kserve/ folder -----------------------------------------------------------------------------------

HEADER = "# Generated by kfp_ct.components.push.manifests.write_manifests (make manifests): do not edit.\n"


def example_inference_service() -> dict:
    return inference_service(ServiceSpec(name="elec2-classifier", storage_uri=EXAMPLE_STORAGE_URI, namespace=None))


def render_manifests() -> dict[str, str]:
    """File name -> text of the generated files of kserve/."""
    import yaml

    def dump(obj) -> str:
        return HEADER + yaml.safe_dump(obj, sort_keys=False, default_flow_style=False)

    return {
        "servingruntime.yaml": dump(serving_runtime()),
        "inferenceservice-example.yaml": dump(example_inference_service()),
        "s3-storage-access-example.yaml": HEADER
        + yaml.safe_dump_all(
            s3_storage_access(None, "https://s3.us-east-2.amazonaws.com", "us-east-2"),
            sort_keys=False,
            default_flow_style=False,
        ),
        "capture-sink.yaml": HEADER + yaml.safe_dump_all(capture_sink(), sort_keys=False, default_flow_style=False),
        "kustomization.yaml": dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": ["servingruntime.yaml"],
            }
        ),
    }


def write_manifests(directory: str | os.PathLike) -> list[Path]:
    """Writes kserve/servingruntime.yaml, inferenceservice-example.yaml, s3-storage-access-example.yaml,
    capture-sink.yaml and kustomization.yaml into `directory`."""
    from kfp_ct.components._common.datasets import write_text_files

    return write_text_files(directory, render_manifests())
