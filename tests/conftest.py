"""Fixtures shared by every test tier: the real datasets, and real servers started on loopback (and stopped)."""

from __future__ import annotations

import os
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


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory) -> str:
    """A real MLflow tracking server and model registry (sqlite backend) on loopback; yields its URI."""
    root = tmp_path_factory.mktemp("mlflow")
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
            "--artifacts-destination",
            str(root / "artifacts"),
        ],
        f"http://127.0.0.1:{port}/health",
        root / "server.log",
    )
    yield f"http://127.0.0.1:{port}"
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


@pytest.fixture
def kfp_local(tmp_path):
    """kfp.local with the SubprocessRunner (use_venv=False): the same executor code that runs in a KFP pod."""
    from kfp import local

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "pipeline_root"))
    return tmp_path / "pipeline_root"
