"""push to s3:// (moto's S3 server on loopback), and the published model fetched by KServe's own storage code.

KServe's storage-initializer is its own container running the `kserve-storage` package, which pins
google-cloud-storage<3 (ours is 3.x); here it runs in a virtual environment of its own, created once under the cache
folder (KFP_CT_CACHE, default ~/.cache/kfp-ct) with `pip install kserve-storage`. It gets the environment KServe's
credential builder derives from the Secret that `manifests.s3_storage_access` writes (its keys, and AWS_ENDPOINT_URL
and the region from the `serving.kserve.io/s3-*` annotations); the catalog's model server then serves its download
(push's infra validation), and the V1 and V2 answers must equal the model's own predictions.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from fake_kube import AllStorage, FakeCustomObjectsApi

from kfp_ct.components._common import storage
from kfp_ct.components.push import manifests
from kfp_ct.components.push.core import infra_validate, push

pytestmark = pytest.mark.integration
KSERVE_STORAGE = "kserve-storage==0.21.0"  # KServe 0.21's storage-initializer, as setup.cfg's serving extra


@pytest.fixture(scope="session")
def kserve_storage_python() -> str:
    """The python of a cached virtual environment holding only kserve-storage (built on first use)."""
    cache = Path(os.environ.get("KFP_CT_CACHE", Path.home() / ".cache" / "kfp-ct"))
    venv = cache / f"venv-{KSERVE_STORAGE.replace('==', '-')}"
    python = venv / "bin" / "python"
    if not python.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        building = Path(tempfile.mkdtemp(prefix=".venv-building-", dir=cache))
        try:
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(building)], check=True, timeout=300)
            subprocess.run(
                [str(building / "bin" / "python"), "-m", "pip", "install", "-q", KSERVE_STORAGE],
                check=True,
                timeout=1200,
            )
            shutil.rmtree(venv, ignore_errors=True)
            building.rename(venv)  # a venv's scripts name their folder: use it through `python -m` only
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            raise
    return str(python)


def _storage_initializer_env(secret: dict) -> dict:
    """The variables KServe's S3 credential builder gives the storage-initializer from the Secret (its keys, and the
    endpoint and region from the serving.kserve.io/s3-* annotations)."""
    annotations, data = secret["metadata"]["annotations"], secret["stringData"]
    scheme = "https" if annotations["serving.kserve.io/s3-usehttps"] == "1" else "http"
    return {
        "PATH": os.environ["PATH"],
        "AWS_ACCESS_KEY_ID": data["AWS_ACCESS_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": data["AWS_SECRET_ACCESS_KEY"],
        "AWS_ENDPOINT_URL": f"{scheme}://{annotations['serving.kserve.io/s3-endpoint']}",
        "AWS_DEFAULT_REGION": annotations["serving.kserve.io/s3-region"],
        "AWS_REGION": annotations["serving.kserve.io/s3-region"],
    }


def test_push_to_s3_is_served_after_kserves_storage_initializer(
    trained_model, s3_bucket, kserve_storage_python, tmp_path
):
    uri = f"s3://{s3_bucket}/models/elec2"
    result = push(
        model_dir=trained_model["path"],
        model_name="elec2",
        storage_uri=uri,
        tracking_uri=trained_model["tracking_uri"],
        log=lambda message: None,
    )
    # published in the layout the storage-initializer copies (the model's files under the version prefix), after
    # infra validation served a copy downloaded from S3
    assert storage.list_versions(uri) == [result.storage_uri] and result.storage_uri.startswith(f"{uri}/v")
    predictor = result.manifest["spec"]["predictor"]
    assert predictor["model"]["storageUri"] == result.storage_uri
    assert predictor["serviceAccountName"] == manifests.S3_STORAGE_ACCESS
    assert manifests.crd_errors(result.manifest) == []

    secret, account = manifests.s3_storage_access(
        "kubeflow-user-example-com",
        os.environ["AWS_ENDPOINT_URL"],
        os.environ["AWS_REGION"],
        os.environ["AWS_ACCESS_KEY_ID"],
        os.environ["AWS_SECRET_ACCESS_KEY"],
    )
    assert account["secrets"] == [{"name": secret["metadata"]["name"]}]
    assert account["metadata"]["name"] == predictor["serviceAccountName"]
    assert secret["metadata"]["annotations"]["serving.kserve.io/s3-usehttps"] == "0"

    mnt = tmp_path / "mnt" / "models"
    script = "import sys; from kserve_storage import Storage; print(Storage.download(sys.argv[1], sys.argv[2]))"
    done = subprocess.run(
        [kserve_storage_python, "-c", script, result.storage_uri, str(mnt)],
        env=_storage_initializer_env(secret),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    storage.verify_directory(str(mnt))  # every file the marker lists, byte for byte

    # the catalog's model server on the downloaded copy: V1 and V2 answers equal the model's own predictions
    checked = infra_validate(str(mnt), trained_model["path"], "elec2", log_dir=str(tmp_path))
    assert checked["records"] and checked["expected"]["predictions"]


def test_push_to_a_missing_bucket_leaves_nothing(trained_model, s3_server):
    from kfp_ct.components._common import tracking

    before = tracking.get_alias(trained_model["registered"], "champion", trained_model["tracking_uri"])
    with pytest.raises(FileNotFoundError, match="bucket not found: s3://no-such-bucket-kfp-ct"):
        push(
            model_dir=trained_model["path"],
            model_name="elec2",
            storage_uri="s3://no-such-bucket-kfp-ct/models",
            tracking_uri=trained_model["tracking_uri"],
            log=lambda message: None,
        )
    assert tracking.get_alias(trained_model["registered"], "champion", trained_model["tracking_uri"]) == before


def test_kserve_target_with_s3_storage_runs_as_the_s3_service_account(trained_model, model_server, s3_bucket):
    api = FakeCustomObjectsApi(AllStorage(model_server), lag=1)
    result = push(
        model_dir=trained_model["path"],
        model_name="elec2",
        target="kserve",
        storage_uri=f"s3://{s3_bucket}/models",
        tracking_uri=trained_model["tracking_uri"],
        api=api,
        poll_s=0.01,
        rollout_timeout_s=30,
        log=lambda message: None,
    )
    assert [m["spec"]["predictor"]["serviceAccountName"] for m in api.received] == [manifests.S3_STORAGE_ACCESS]
    assert api.traffic("elec2") == {result.storage_uri: 100}
