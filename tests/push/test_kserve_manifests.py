"""The ServingRuntime and InferenceService builders, and validation against the real InferenceService CRD."""

from __future__ import annotations

import copy
import gzip
import json
from pathlib import Path

import pytest
import yaml

from kfp_ct.components._common.images import SERVING_IMAGE
from kfp_ct.components.push import manifests

REPO = Path(__file__).resolve().parents[2]
CRD = REPO.parent / "shared" / "schemas" / "kserve" / "serving.kserve.io_inferenceservices.yaml"


def _isvc(**kwargs) -> dict:
    fields = {"name": "elec2-classifier", "storage_uri": "gs://bucket/models/v1", **kwargs}
    return manifests.inference_service(manifests.ServiceSpec(**fields))


def test_packaged_schema_is_the_shared_crd():
    with gzip.open(manifests.PACKAGED_SCHEMA, "rt") as f:
        packaged = json.load(f)
    assert packaged == manifests.crd_schema(CRD), (
        "components/push/inferenceservice_v1beta1.schema.json.gz is stale: run manifests.write_packaged_schema()"
    )


def test_committed_kserve_folder_is_not_stale():
    for name, text in manifests.render_manifests().items():
        path = REPO / "kserve" / name
        assert path.is_file(), f"kserve/{name} is missing: run make manifests"
        assert path.read_text() == text, f"kserve/{name} is stale: run make manifests"
    example = yaml.safe_load((REPO / "kserve" / "inferenceservice-example.yaml").read_text())
    assert manifests.crd_errors(example, str(CRD)) == []
    runtime = yaml.safe_load((REPO / "kserve" / "servingruntime.yaml").read_text())
    container = runtime["spec"]["containers"][0]
    assert container["image"] == SERVING_IMAGE
    assert container["command"] == ["python", "-m", manifests.SERVER_MODULE]
    assert "--model_name={{.Name}}" in container["args"]
    assert (
        runtime["spec"]["supportedModelFormats"][0]["name"]
        == example["spec"]["predictor"]["model"]["modelFormat"]["name"]
    )
    assert runtime["metadata"]["name"] == example["spec"]["predictor"]["model"]["runtime"]


def test_write_manifests(tmp_path):
    written = manifests.write_manifests(tmp_path)
    assert sorted(p.name for p in written) == [
        "capture-sink.yaml",
        "inferenceservice-example.yaml",
        "kustomization.yaml",
        "s3-storage-access-example.yaml",
        "servingruntime.yaml",
    ]
    kustomization = yaml.safe_load((tmp_path / "kustomization.yaml").read_text())
    assert kustomization["resources"] == ["servingruntime.yaml"]


def test_s3_storage_access_and_the_service_account_it_names():
    secret, account = manifests.s3_storage_access("ns", "http://minio-service.kubeflow:9000", "minio", "ak", "sk")
    assert secret["metadata"]["annotations"] == {
        "serving.kserve.io/s3-endpoint": "minio-service.kubeflow:9000",
        "serving.kserve.io/s3-usehttps": "0",
        "serving.kserve.io/s3-region": "minio",
        "serving.kserve.io/s3-useanoncredential": "false",
    }
    assert secret["stringData"]["AWS_ACCESS_KEY_ID"] == "ak" and secret["type"] == "Opaque"
    assert account["kind"] == "ServiceAccount" and account["secrets"] == [{"name": manifests.S3_STORAGE_ACCESS}]
    assert account["metadata"]["annotations"] == secret["metadata"]["annotations"]
    aws = manifests.s3_storage_access("ns")  # AWS S3 itself: no endpoint annotation
    assert "serving.kserve.io/s3-endpoint" not in aws[0]["metadata"]["annotations"]
    with pytest.raises(ValueError, match="S3 endpoint 'minio:9000' must be an http:// or https:// URL"):
        manifests.s3_storage_access("ns", "minio:9000")
    isvc = _isvc(storage_uri="s3://bucket/models/v1", service_account=manifests.s3_service_account("s3://b/m"))
    assert isvc["spec"]["predictor"]["serviceAccountName"] == manifests.S3_STORAGE_ACCESS
    assert manifests.crd_errors(isvc, str(CRD)) == []
    assert "serviceAccountName" not in _isvc()["spec"]["predictor"]


def test_inference_service_fields_and_crd():
    isvc = _isvc(canary_traffic_percent=10, resources=manifests.Resources(gpu_count=1), min_replicas=0)
    predictor = isvc["spec"]["predictor"]
    assert predictor["canaryTrafficPercent"] == 10
    assert predictor["minReplicas"] == 0
    assert predictor["model"]["runtime"] == manifests.RUNTIME_NAME
    assert predictor["model"]["storageUri"] == "gs://bucket/models/v1"
    assert predictor["model"]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert "tracing" not in isvc["spec"] and "schedulingGroup" not in predictor
    assert isvc["metadata"]["annotations"][manifests.DEPLOYMENT_MODE_ANNOTATION] == "Serverless"
    assert manifests.crd_errors(isvc, str(CRD)) == []  # the full CRD file, not only the packaged copy
    raw = _isvc(deployment_mode="RawDeployment")
    assert manifests.TAG_ROUTING_ANNOTATION not in raw["metadata"]["annotations"]
    assert "canaryTrafficPercent" not in raw["spec"]["predictor"]


def test_crd_refuses_what_the_sdk_has_but_the_crd_lacks():
    isvc = _isvc()
    bad = copy.deepcopy(isvc)
    bad["spec"]["tracing"] = {"enabled": True}
    bad["spec"]["predictor"]["schedulingGroup"] = "group-a"
    errors = manifests.crd_errors(bad)
    assert any("tracing" in e for e in errors) and any("schedulingGroup" in e for e in errors), errors
    with pytest.raises(ValueError, match="schedulingGroup"):
        manifests.validate_inference_service(bad)


@pytest.mark.parametrize(
    "edit, field",
    [
        (lambda m: m["spec"]["predictor"].__setitem__("minReplicas", "two"), "spec.predictor.minReplicas"),
        (lambda m: m["spec"]["predictor"]["model"].__setitem__("storageURI", "gs://x"), "storageURI"),
        (
            lambda m: m["spec"]["predictor"]["model"]["resources"]["limits"].__setitem__("cpu", [2]),
            "spec.predictor.model.resources.limits.cpu",
        ),
        (lambda m: m["spec"]["predictor"]["model"].__setitem__("modelFormat", {"version": "1"}), "name"),
        (lambda m: m["spec"]["predictor"].__setitem__("canaryTrafficPercent", "ten"), "canaryTrafficPercent"),
    ],
)
def test_crd_errors_name_the_field(edit, field):
    isvc = _isvc()
    edit(isvc)
    errors = manifests.crd_errors(isvc)
    assert errors and any(field in e for e in errors), errors


def test_int_or_string_quantities_pass():
    isvc = _isvc()
    isvc["spec"]["predictor"]["model"]["resources"]["limits"]["cpu"] = 2
    assert manifests.crd_errors(isvc) == []


@pytest.mark.parametrize("name", ["Elec2", "elec2_model", "-x", "x-", "1model", "a" * 46, ""])
def test_bad_names_are_refused(name):
    with pytest.raises(ValueError, match="cannot name an InferenceService"):
        _isvc(name=name)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="deployment_mode 'Knativ'"):
        _isvc(deployment_mode="Knativ")
    with pytest.raises(ValueError, match="canary_traffic_percent needs a Serverless"):
        _isvc(deployment_mode="RawDeployment", canary_traffic_percent=10)
    with pytest.raises(ValueError, match="0..100"):
        _isvc(canary_traffic_percent=120)
    with pytest.raises(ValueError, match="gpu_count"):
        _isvc(resources=manifests.Resources(gpu_count=-1))


def test_service_url():
    assert manifests.service_url("m", "ns", "Serverless") == "http://m.ns.svc.cluster.local/v1/models/m:predict"
    assert (
        manifests.service_url("m", "ns", "RawDeployment")
        == "http://m-predictor.ns.svc.cluster.local/v1/models/m:predict"
    )


def test_torch_and_keras_models_are_served_by_the_gpu_image():
    """The serving image holds neither torch nor TensorFlow: an InferenceService of such a model names the GPU
    image (same server, CPU unless a GPU is requested) in place of the runtime's."""
    from kfp_ct.components._common.images import GPU_IMAGE

    assert manifests.predictor_image("sklearn") is None
    for framework in ("torch", "keras"):
        isvc = _isvc(image=manifests.predictor_image(framework))
        assert isvc["spec"]["predictor"]["model"]["image"] == GPU_IMAGE
        assert isvc["spec"]["predictor"]["model"]["runtime"] == manifests.RUNTIME_NAME
        assert manifests.crd_errors(isvc, str(CRD)) == []
    assert "image" not in _isvc()["spec"]["predictor"]["model"]
