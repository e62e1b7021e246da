"""The capture sink (`kfp-ct capture-sink`) as a real process on loopback, fed real CloudEvents built with the
`cloudevents` SDK in binary and structured modes: rows typed by the model's signature, duplicates written once, bad
events answered 4xx and counted, a kill -9 mid-batch losing nothing acknowledged and leaving nothing partial visible,
5xx when the log's disk is full or the store cannot be reached, and capture on gs:// and s3://."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import pyarrow.parquet as pq
import pytest
from loopback import free_port, wait_for_http

from kfp_ct.components._common import capture
from kfp_ct.components.push.capture_sink import WriteAheadLog

pytestmark = pytest.mark.integration

REQUEST = "org.kubeflow.serving.inference.request"
RESPONSE = "org.kubeflow.serving.inference.response"
MODEL = "elec2"


def _records(trained_model, n: int) -> list[dict]:
    with open(Path(trained_model["path"]) / "input_example.json") as f:
        example = json.load(f)
    rows = [dict(zip(example["columns"], row)) for row in example["data"]]
    return [dict(rows[i % len(rows)], nswprice=0.01 * i) for i in range(n)]


def event(kind: str, rid: str, data, structured: bool = False) -> tuple[dict, bytes]:
    from cloudevents.conversion import to_binary, to_structured
    from cloudevents.http import CloudEvent

    attributes = {
        "type": kind,
        "source": "http://localhost:9081/",
        "id": rid,
        "inferenceservicename": MODEL,
        "namespace": "ml",
        "component": "predictor",
        "endpoint": "default",
    }
    return (to_structured if structured else to_binary)(CloudEvent(attributes, data))


class Sink:
    """`kfp-ct capture-sink` in a subprocess (its own session, so a kill reaches only it)."""

    def __init__(self, tmp: Path, capture_uri: str, model_path: str, flush: float = 0.3, env=None, preexec=None):
        self.tmp, self.capture_uri, self.model_path = tmp, capture_uri, model_path
        self.flush, self.env, self.preexec = flush, env, preexec
        self.wal = tmp / "wal"
        self.process = None

    def start(self) -> Sink:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        args = [sys.executable, "-m", "kfp_ct.pipelines.cli", "capture-sink", "--capture", self.capture_uri]
        args += ["--wal", str(self.wal), "--port", str(self.port), "--flush-seconds", str(self.flush)]
        args += ["--pair-timeout-s", "2"]
        with open(self.tmp / "sink.log", "ab") as log:
            self.process = subprocess.Popen(
                args,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, **(self.env or {})},
                preexec_fn=self.preexec,
            )
        wait_for_http(f"{self.base}/metrics", self.process, timeout=120)
        return self

    def post(self, headers: dict, body: bytes, model_uri: str | None = None) -> tuple[int, dict]:
        url = f"{self.base}/models/{MODEL}?model_uri={quote(model_uri or self.model_path)}&version=v7"
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    def send(self, kind: str, rid: str, data, structured: bool = False) -> tuple[int, dict]:
        return self.post(*event(kind, rid, data, structured))

    def stats(self) -> dict:
        with urllib.request.urlopen(f"{self.base}/stats", timeout=10) as response:
            return json.loads(response.read())

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=60)

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()


@pytest.fixture
def sink_factory(tmp_path, trained_model):
    started = []

    def make(capture_uri: str | None = None, **kwargs) -> Sink:
        sink = Sink(tmp_path, capture_uri or str(tmp_path / "capture"), trained_model["path"], **kwargs)
        started.append(sink)
        return sink.start()

    yield make
    for sink in started:
        if sink.process.poll() is None:
            sink.kill()


def wait_for_rows(uri: str, ids: set[str], timeout: float = 30):
    deadline = time.monotonic() + timeout
    while True:
        table = capture.read_capture(uri, MODEL)
        found = set(table["request_id"].to_pylist()) if table is not None else set()
        if ids <= found or time.monotonic() > deadline:
            return table
        time.sleep(0.2)


def test_binary_and_structured_events_become_typed_rows(sink_factory, trained_model, tmp_path):
    sink = sink_factory()
    records = _records(trained_model, 3)
    assert sink.send(REQUEST, "a", {"instances": records[:2]})[0] == 200  # binary, two rows
    assert (
        sink.send(RESPONSE, "a", {"predictions": ["UP", "DOWN"], "probabilities": [[0.2, 0.8], [0.9, 0.1]]})[0] == 200
    )
    assert sink.send(RESPONSE, "b", {"predictions": ["DOWN"], "probabilities": [[0.6, 0.4]]}, structured=True)[0] == 200
    assert sink.send(REQUEST, "b", {"instances": [records[2]]}, structured=True)[0] == 200  # response came first
    table = wait_for_rows(str(tmp_path / "capture"), {"a", "b"})
    rows = sorted(table.to_pylist(), key=lambda r: (r["request_id"], r["row"]))
    assert [(r["request_id"], r["row"], r["prediction"]) for r in rows] == [
        ("a", 0, "UP"),
        ("a", 1, "DOWN"),
        ("b", 0, "DOWN"),
    ]
    assert rows[1]["probabilities"] == [0.9, 0.1] and rows[2]["nswprice"] == pytest.approx(0.02)
    assert {r["model_version"] for r in rows} == {"v7"}
    # every input typed as the signature types it; the classes named in the file's metadata
    schema = table.schema
    assert str(schema.field("day").type) == "int64" and str(schema.field("nswprice").type) == "double"
    assert str(schema.field("weekday").type) == "string" and str(schema.field("time").type) == "timestamp[us, tz=UTC]"
    files = capture.capture_files(str(tmp_path / "capture"), MODEL)
    assert json.loads(pq.read_schema(files[0]).metadata[capture.CLASSES_KEY]) == ["DOWN", "UP"]
    now = datetime.now(UTC)
    assert all(f"/model={MODEL}/dt=" in f and "/hour=" in f for f in files)
    assert any(capture.partition(MODEL, now - timedelta(minutes=m)) in files[0] for m in (0, 60))
    assert sink.stats()["rows_written"] == 3


def test_a_repeated_event_is_written_once_even_after_a_restart(sink_factory, trained_model, tmp_path):
    sink = sink_factory()
    record = _records(trained_model, 1)
    answer = {"predictions": ["UP"], "probabilities": [[0.3, 0.7]]}
    for _ in range(3):
        assert sink.send(REQUEST, "dup", {"instances": record})[0] == 200
        assert sink.send(RESPONSE, "dup", answer)[0] == 200
    wait_for_rows(str(tmp_path / "capture"), {"dup"})
    sink.stop()
    sink.start()  # the same write-ahead log: the ids it wrote are remembered
    assert sink.send(REQUEST, "dup", {"instances": record})[0] == 200
    assert sink.send(REQUEST, "other", {"instances": record})[0] == 200
    assert sink.send(RESPONSE, "other", answer)[0] == 200
    table = wait_for_rows(str(tmp_path / "capture"), {"other"})
    assert sorted(table["request_id"].to_pylist()) == ["dup", "other"]
    assert sink.stats()["duplicates"] == 1


def test_a_request_waits_for_its_response_across_a_restart(sink_factory, trained_model, tmp_path):
    """The request is logged, the sink stops before its response comes: the flusher keeps it in a carry file, and the
    response sent to the restarted sink completes the row. A request whose response never comes is written without a
    prediction once the pair timeout (2 s here) has passed, with no other event to wake the sink."""
    sink = sink_factory()
    record = _records(trained_model, 1)
    assert sink.send(REQUEST, "early", {"instances": record})[0] == 200
    deadline = time.monotonic() + 30
    while not list(sink.wal.glob("carry-*.log")) and time.monotonic() < deadline:
        time.sleep(0.1)
    sink.stop()
    assert list(sink.wal.glob("carry-*.log"))
    assert len(list(sink.wal.glob("wal-*.log"))) <= 1  # only the new, empty active segment: the sealed one is gone
    assert capture.read_capture(str(tmp_path / "capture"), MODEL) is None
    sink.start()
    assert sink.send(RESPONSE, "early", {"predictions": ["UP"], "probabilities": [[0.1, 0.9]]})[0] == 200
    assert sink.send(REQUEST, "alone", {"instances": record})[0] == 200
    table = wait_for_rows(str(tmp_path / "capture"), {"early", "alone"})
    rows = {r["request_id"]: r for r in table.to_pylist()}
    assert rows["early"]["prediction"] == "UP" and rows["early"]["probabilities"] == [0.1, 0.9]
    assert rows["alone"]["prediction"] is None
    assert sink.stats()["unanswered_rows"] == 1


def _flusher(sink_pid: int) -> int:
    """The pid of the sink's flusher process (multiprocessing's spawned child; not its resource tracker)."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                spawned = b"spawn_main" in f.read()
        except OSError:
            continue
        if parent == sink_pid and spawned:
            found.append(int(entry))
    (pid,) = found
    return pid


def test_the_flusher_dies_with_the_sink_and_the_sink_with_it(sink_factory, trained_model, tmp_path):
    """A kill -9 of the sink takes its flusher too (a restarted sink never meets a stale one); a flusher that dies
    takes the sink down, so that it is restarted, and the restarted sink writes what was acknowledged."""
    sink = sink_factory(flush=60)
    flusher = _flusher(sink.process.pid)
    sink.kill()
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{flusher}") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{flusher}"), "the flusher outlived the sink"
    sink.start()
    record = _records(trained_model, 1)
    assert sink.send(REQUEST, "kept", {"instances": record})[0] == 200
    assert sink.send(RESPONSE, "kept", {"predictions": ["UP"], "probabilities": [[0.2, 0.8]]})[0] == 200
    os.kill(_flusher(sink.process.pid), signal.SIGKILL)
    assert sink.process.wait(timeout=30) == 1
    assert "flusher process stopped" in (tmp_path / "sink.log").read_text()
    sink.flush = 0.3
    sink.start()
    table = wait_for_rows(str(tmp_path / "capture"), {"kept"})
    assert table["request_id"].to_pylist() == ["kept"]


def test_pipelined_requests_are_answered_in_order(sink_factory, trained_model):
    """One keep-alive connection, three requests in one write: an event, the same event again while the first is being
    logged, and /stats, which is answerable at once but waits for the two answers before it."""
    import socket

    sink = sink_factory()
    headers, body = event(REQUEST, "piped", {"instances": _records(trained_model, 1)})
    path = f"/models/{MODEL}?model_uri={quote(sink.model_path)}"
    post = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
    post = (post + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode() + body
    with socket.create_connection(("127.0.0.1", sink.port), timeout=30) as conn:
        conn.sendall(post + post + b"GET /stats HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while data.count(b"HTTP/1.1 ") < 3 or not data.rstrip().endswith(b"}"):
            data += conn.recv(65536)
    answers = [json.loads(part.split(b"\r\n\r\n", 1)[1]) for part in data.split(b"HTTP/1.1 ")[1:]]
    assert answers[0] == answers[1] == {"status": "accepted"}
    assert answers[2]["accepted"] == 1 and answers[2]["duplicates"] == 1


def test_bad_events_are_refused_with_4xx_and_counted(sink_factory, trained_model):
    sink = sink_factory()
    record = _records(trained_model, 1)[0]
    status, body = sink.post({"content-type": "application/json"}, b'{"instances": []}')  # no CloudEvent headers
    assert status == 400 and "CloudEvent" in body["error"]
    status, body = sink.send("com.example.other", "x1", {"instances": [record]})
    assert status == 400 and "event type 'com.example.other'" in body["error"]
    status, body = sink.send(REQUEST, "x2", {"instances": [{"nswprice": 1.0}]})
    assert status == 400 and "'day'" in body["error"] and "x2" in body["error"]
    status, body = sink.send(RESPONSE, "x3", {"answer": 1})
    assert status == 400 and "predictions" in body["error"]
    headers, _ = event(REQUEST, "x4", {"instances": [record]})
    status, body = sink.post(headers, b"{not json")
    assert status == 400
    status, body = sink.send(REQUEST, "x5", {"instances": [record]}, structured=False)
    assert status == 200
    status, body = sink.post(*event(REQUEST, "x6", {"instances": [record]}), model_uri=str(sink.tmp / "nowhere"))
    assert status == 400 and "nowhere" in body["error"]
    assert sink.stats()["malformed"] == 6
    with urllib.request.urlopen(f"{sink.base}/metrics", timeout=10) as response:
        assert "kfp_ct_capture_malformed 6" in response.read().decode()


def _visible_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*.parquet") if not any(part.startswith(".") for part in p.parts[len(root.parts) :])]


def test_kill_9_mid_batch_loses_nothing_acknowledged_and_shows_nothing_partial(sink_factory, trained_model, tmp_path):
    sink = sink_factory(flush=0.05)
    records = _records(trained_model, 50)
    acknowledged, stop = set(), threading.Event()

    def client(offset: int) -> None:
        i = offset
        while not stop.is_set():
            rid = f"r{i}"
            try:
                ok = sink.send(REQUEST, rid, {"instances": [records[i % 50]]})[0] == 200
                ok = ok and sink.send(RESPONSE, rid, {"predictions": ["UP"], "probabilities": [[0.4, 0.6]]})[0] == 200
            except OSError:  # the sink died under this request: not acknowledged
                return
            if ok:
                acknowledged.add(rid)
            i += 4

    threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    root = tmp_path / "capture"
    deadline = time.monotonic() + 60
    while (len(_visible_files(root)) < 3 or len(acknowledged) < 40) and time.monotonic() < deadline:
        time.sleep(0.05)  # several batches written, more on the way
    sink.kill()
    stop.set()
    for thread in threads:
        thread.join()
    assert len(acknowledged) >= 40
    for file in _visible_files(root):  # nothing partial: every visible file is a whole Parquet file
        pq.read_table(file)
    sink.start()  # resumes from the log
    table = wait_for_rows(str(root), acknowledged, timeout=60)
    ids = table["request_id"].to_pylist()
    assert acknowledged <= set(ids)
    assert len(ids) == len(set(ids)), "a row was written twice"
    assert {r["prediction"] for r in table.to_pylist() if r["request_id"] in acknowledged} == {"UP"}


def test_a_full_log_disk_is_answered_503(sink_factory, trained_model):
    def small_disk():  # the write-ahead log may not grow past 64 KiB: writes past it fail as on a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, 64 << 10))

    sink = sink_factory(flush=60, preexec=small_disk)
    records = _records(trained_model, 1)
    statuses = [sink.send(REQUEST, f"f{i}", {"instances": records})[0] for i in range(400)]
    assert statuses[0] == 200 and statuses[-1] == 503
    assert set(statuses) == {200, 503}
    stats = sink.stats()
    assert stats["refused_5xx"] >= 1 and not stats["healthy"] and "write-ahead log" in stats["error"]
    # what failed was cut back: the log holds exactly the acknowledged events, whole
    (segment,) = sink.wal.glob("wal-*.log")
    assert len(WriteAheadLog.read(str(segment))) == statuses.count(200)
    assert segment.stat().st_size == sum(8 + len(r) for r in WriteAheadLog.read(str(segment)))


def test_an_unreachable_store_is_answered_503(sink_factory, trained_model):
    dead = f"http://127.0.0.1:{free_port()}"
    env = {"AWS_ENDPOINT_URL": dead, "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s", "AWS_REGION": "us-east-1"}
    sink = sink_factory("s3://kfp-ct-nowhere/capture", env=env)
    status, body = sink.send(REQUEST, "u1", {"instances": _records(trained_model, 1)})
    assert status == 503 and "kfp-ct-nowhere" in body["error"]
    assert sink.stats()["refused_5xx"] == 1


@pytest.mark.parametrize("store", ["gs", "s3"])
def test_capture_on_an_object_store(store, request, sink_factory, trained_model):
    if store == "gs":
        uri, env = f"gs://{request.getfixturevalue('gcs_bucket').name}/capture", None
    else:
        uri, env = f"s3://{request.getfixturevalue('s3_bucket')}/capture", None
    sink = sink_factory(uri, env=env)
    records = _records(trained_model, 2)
    for i, record in enumerate(records):
        assert sink.send(REQUEST, f"o{i}", {"instances": [record]})[0] == 200
        assert sink.send(RESPONSE, f"o{i}", {"predictions": ["DOWN"], "probabilities": [[0.7, 0.3]]})[0] == 200
    table = wait_for_rows(uri, {"o0", "o1"})
    assert sorted(table["request_id"].to_pylist()) == ["o0", "o1"]
    assert all(f.startswith(f"{uri}/model={MODEL}/dt=") for f in capture.capture_files(uri, MODEL))
