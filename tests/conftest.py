"""Fixtures shared by every test tier: the real datasets, and real servers started on loopback (and stopped)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from loopback import free_port, start_server, stop_server

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"the real datasets are missing: expected them in {SHARED_DATA}")
    return SHARED_DATA


def start_mlflow(root: Path, artifact_args: list[str], env: dict | None = None) -> tuple[subprocess.Popen, str]:
    """`mlflow server` (sqlite backend) on loopback; (process, URI)."""
    port = free_port()
    process = start_server(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{root}/mlflow.db",
            *artifact_args,
        ],
        f"http://127.0.0.1:{port}/health",
        root / "server.log",
        env=env,
    )
    return process, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory) -> str:
    """A real MLflow tracking server and model registry (sqlite backend) on loopback; yields its URI."""
    root = tmp_path_factory.mktemp("mlflow")
    process, uri = start_mlflow(root, ["--artifacts-destination", str(root / "artifacts")])
    yield uri
    stop_server(process)


@pytest.fixture(scope="session")
def gcs_emulator(tmp_path_factory) -> str:
    """gcp-storage-emulator on loopback; sets STORAGE_EMULATOR_HOST for this process and its children."""
    root = tmp_path_factory.mktemp("gcs")
    port = free_port()
    host = f"http://127.0.0.1:{port}"
    process = start_server(
        [
            sys.executable,
            "-m",
            "gcp_storage_emulator",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--in-memory",
        ],
        f"{host}/storage/v1/b",
        root / "server.log",
    )
    previous = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = host
    yield host
    if previous is None:
        del os.environ["STORAGE_EMULATOR_HOST"]
    else:
        os.environ["STORAGE_EMULATOR_HOST"] = previous
    stop_server(process)


@pytest.fixture
def gcs_bucket(gcs_emulator):
    """A fresh bucket in the emulator."""
    from kfp_ct.components._common.storage import gcs_client

    client = gcs_client()
    bucket = client.create_bucket(f"kfp-ct-test-{time.monotonic_ns()}")
    return bucket


def start_moto(root: Path, env: dict | None = None) -> tuple[subprocess.Popen, str]:
    """moto's S3 API in server mode (ThreadedMotoServer, as `moto_server` runs it) on loopback; (process, URL)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    code = (
        "import sys, threading; from moto.server import ThreadedMotoServer; "
        "ThreadedMotoServer(ip_address='127.0.0.1', port=int(sys.argv[1])).start(); threading.Event().wait()"
    )
    process = start_server(
        [sys.executable, "-c", code, str(port)],
        f"{url}/moto-api/",
        root / "server.log",
        env={**os.environ, **(env or {})},
    )
    return process, url


S3_ENV = {
    "AWS_ACCESS_KEY_ID": "kfp-ct-test",
    "AWS_SECRET_ACCESS_KEY": "kfp-ct-test-secret",
    "AWS_REGION": "us-east-1",
}


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> str:
    """moto's S3 server on loopback; sets AWS_ENDPOINT_URL and test keys for this process and its children."""
    process, url = start_moto(tmp_path_factory.mktemp("s3"))
    env = {**S3_ENV, "AWS_ENDPOINT_URL": url}
    previous = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    yield url
    for name, value in previous.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    stop_server(process)


@pytest.fixture(scope="session")
def s3_mlflow_server(s3_server, tmp_path_factory) -> tuple[str, str]:
    """An MLflow server whose artifact root is s3:// on the moto server (clients write there themselves, reading
    MLFLOW_S3_ENDPOINT_URL and AWS_*, which this sets); yields (tracking URI, artifact root)."""
    from kfp_ct.components._common.storage import s3_client

    bucket = f"kfp-ct-mlflow-{time.monotonic_ns()}"
    s3_client(f"s3://{bucket}").create_bucket(Bucket=bucket)
    root = f"s3://{bucket}/mlflow"
    previous = os.environ.get("MLFLOW_S3_ENDPOINT_URL")
    os.environ["MLFLOW_S3_ENDPOINT_URL"] = s3_server
    args = ["--default-artifact-root", root, "--no-serve-artifacts"]
    process, uri = start_mlflow(tmp_path_factory.mktemp("mlflow-s3"), args, dict(os.environ))
    yield uri, root
    stop_server(process)
    if previous is None:
        os.environ.pop("MLFLOW_S3_ENDPOINT_URL", None)
    else:
        os.environ["MLFLOW_S3_ENDPOINT_URL"] = previous


@pytest.fixture
def start_s3_server(tmp_path_factory):
    """Starts further moto S3 servers (e.g. one that checks keys: INITIAL_NO_AUTH_ACTION_COUNT=0); stopped after."""
    started = []

    def start(env: dict | None = None) -> str:
        process, url = start_moto(tmp_path_factory.mktemp("s3-extra"), env)
        started.append(process)
        return url

    yield start
    for process in started:
        stop_server(process)


@pytest.fixture
def s3_bucket(s3_server) -> str:
    """A fresh bucket (3 to 63 characters) in the S3 server; yields its name."""
    from kfp_ct.components._common.storage import s3_client

    name = f"kfp-ct-{time.monotonic_ns()}"
    s3_client(f"s3://{name}").create_bucket(Bucket=name)
    return name


@pytest.fixture
def kfp_local(tmp_path):
    """kfp.local with the SubprocessRunner (use_venv=False): the same executor code that runs in a KFP pod."""
    from kfp import local

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "pipeline_root"))
    return tmp_path / "pipeline_root"
