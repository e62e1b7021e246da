"""The cluster side of capture: InferenceServices that `push` deploys with a capture URL carry KServe's logger
(validated against the real CRD schema) pointed at the sink, and kserve/capture-sink.yaml runs the sink."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
import yaml

from kfp_ct.components.push import manifests

REPO = Path(__file__).resolve().parents[2]


def test_a_capture_url_adds_kserves_logger_naming_the_model_and_its_version():
    uri = "gs://bucket/models/elec2/v20261130T000000000000Z-abcdef"
    spec = manifests.ServiceSpec(name="elec2", storage_uri=uri, capture_url="http://kfp-ct-capture-sink.ml/")
    logger = manifests.inference_service(spec)["spec"]["predictor"]["logger"]  # validated against the CRD
    assert logger["mode"] == "all"
    url = urlparse(logger["url"])
    assert (url.scheme, url.netloc, url.path) == ("http", "kfp-ct-capture-sink.ml", "/models/elec2")
    assert parse_qs(url.query) == {"model_uri": [uri], "version": ["v20261130T000000000000Z-abcdef"]}
    assert (
        "logger"
        not in manifests.inference_service(manifests.ServiceSpec(name="elec2", storage_uri=uri))["spec"]["predictor"]
    )


def test_a_capture_url_that_is_not_http_is_refused():
    with pytest.raises(ValueError, match="capture_url must be the capture sink's http"):
        manifests.inference_service(manifests.ServiceSpec(name="elec2", storage_uri="gs://b/m/v1", capture_url="sink"))


def test_the_generated_sink_deployment_runs_the_sink_module_of_the_serving_image():
    claim, deployment, service = yaml.safe_load_all((REPO / "kserve" / "capture-sink.yaml").read_text())
    assert (claim["kind"], deployment["kind"], service["kind"]) == ("PersistentVolumeClaim", "Deployment", "Service")
    assert deployment["spec"]["strategy"] == {"type": "Recreate"} and deployment["spec"]["replicas"] == 1
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    from kfp_ct.components._common.images import SERVING_IMAGE

    assert container["image"] == SERVING_IMAGE
    wal = container["args"][container["args"].index("--wal") + 1]
    assert container["volumeMounts"] == [{"name": "wal", "mountPath": wal}]
    assert (
        deployment["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"]
        == claim["metadata"]["name"]
    )
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    # the module and the arguments the container runs exist
    done = subprocess.run(
        [sys.executable, *container["command"][1:], *container["args"], "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0 and "--capture" in done.stdout, done.stderr
