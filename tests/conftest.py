"""Fixtures shared by every test tier: the real datasets, small real slices of them featurized once per session, a
local sqlite tracking store, and real servers started on loopback (and stopped)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
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


ELEC2_ROWS = 4000  # ~83 days of half-hours
BIKE_ROWS = 3000
BIKE_LEAKS = ["casual", "registered", "instant"]  # cnt = casual + registered; instant is a row id


def _write_slice(source, rows, path):
    import pyarrow.csv as pacsv

    from kfp_ct.components._common import datasets

    table = pacsv.read_csv(source)
    table = table.slice(0, rows) if rows else table
    return datasets.write_table(table, path, str(source))


@pytest.fixture(scope="session")
def elec2_dataset(shared_data, tmp_path_factory):
    """The first ELEC2_ROWS rows of elec2.csv as a Parquet dataset artifact: (path, metadata)."""
    path = tmp_path_factory.mktemp("elec2") / "elec2.parquet"
    return str(path), _write_slice(shared_data / "elec2" / "elec2.csv", ELEC2_ROWS, path)


@pytest.fixture(scope="session")
def bike_dataset(shared_data, tmp_path_factory):
    """The first BIKE_ROWS rows of bike_sharing hour.csv as a Parquet dataset artifact: (path, metadata)."""
    path = tmp_path_factory.mktemp("bike") / "hour.parquet"
    return str(path), _write_slice(shared_data / "bike_sharing" / "hour.csv", BIKE_ROWS, path)


def _featurize(dataset, target, out, **kwargs):
    from kfp_ct.components.featurize.core import featurize

    path, meta = dataset
    result = featurize(
        dataset_path=path,
        target_column=target,
        train_path=str(out / "train.parquet"),
        test_path=str(out / "test.parquet"),
        featurizer_path=str(out / "featurizer"),
        source_uri=meta["source_uri"],
        **kwargs,
    )
    return {
        "train": str(out / "train.parquet"),
        "test": str(out / "test.parquet"),
        "featurizer": str(out / "featurizer"),
        "result": result,
    }


@pytest.fixture(scope="session")
def elec2_split(elec2_dataset, tmp_path_factory):
    """elec2 slice featurized (stratified split, target `class`)."""
    return _featurize(elec2_dataset, "class", tmp_path_factory.mktemp("elec2_split"))


@pytest.fixture(scope="session")
def bike_split(bike_dataset, tmp_path_factory):
    """bike slice featurized (split by time on `dteday`, target `cnt`, leaking columns excluded)."""
    return _featurize(
        bike_dataset, "cnt", tmp_path_factory.mktemp("bike_split"), time_column="dteday", exclude_columns=BIKE_LEAKS
    )


@pytest.fixture(scope="session")
def sqlite_tracking(tmp_path_factory) -> str:
    """A local MLflow tracking store (sqlite file, artifacts beside it): the catalog's default kind of URI."""
    from kfp_ct.components._common import tracking

    uri = f"sqlite:///{tmp_path_factory.mktemp('tracking') / 'mlflow.db'}"
    tracking.client(uri).search_experiments()  # creates the tables once
    return uri


@pytest.fixture
def model_name() -> str:
    """A registered model name no other test uses."""
    return f"test-{uuid.uuid4().hex[:10]}"


@pytest.fixture(autouse=True)
def one_thread_per_trainer(monkeypatch):
    """One OpenMP/BLAS thread per trainer: on a shared 2-core machine, spinning threads make HistGradientBoosting ~25x
    slower (kfp.local tasks inherit it too)."""
    monkeypatch.setenv("KFP_CT_THREADS", "1")


@pytest.fixture(scope="session")
def elec2_capture(elec2_split, tmp_path_factory):
    """The elec2 test split as a model's captured traffic (`_common.capture`'s layout written by its own writer: one
    request per row, a minute apart from 2026-11-30 00:00 UTC, answered with the true class), and a labels CSV for
    the first 300 requests: {"path", "labels", "rows", "labelled"}."""
    from datetime import UTC, datetime, timedelta

    import pandas as pd

    from kfp_ct.components._common import capture, datasets
    from kfp_ct.components._common.featurizer import load_featurizer
    from kfp_ct.components.push.server import Columns

    featurizer = load_featurizer(elec2_split["featurizer"])
    inputs = [(c["name"], c["mlflow_type"]) for c in featurizer.feature_columns]
    test = datasets.read_frame(elec2_split["test"])
    names = [name for name, _ in inputs]
    schema = capture.CaptureSchema(inputs, "classification", featurizer.classes)
    ids = [f"req-{i}" for i in range(len(test))]
    answers = test["class"].tolist()
    table = schema.table(
        ids,
        [0] * len(test),
        [datetime(2026, 11, 30, tzinfo=UTC) + timedelta(minutes=i) for i in range(len(test))],
        ["1"] * len(test),
        Columns(inputs).from_instances(test[names].to_dict("records")),
        answers,
        [[1.0 if a == c else 0.0 for c in featurizer.classes] for a in answers],
    )
    folder = tmp_path_factory.mktemp("elec2_capture")
    path = str(folder / "capture.parquet")
    datasets.write_table(table, path, "capture")
    labels = folder / "labels.csv"
    pd.DataFrame({"request_id": ids[:300], "class": answers[:300]}).to_csv(labels, index=False)
    return {"path": path, "labels": str(labels), "rows": len(test), "labelled": 300, "inputs": names}
