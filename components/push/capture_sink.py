"""The capture sink (`kfp-ct capture-sink`): KServe's inference logger CloudEvents in, time-partitioned Parquet out.

KServe 0.21's logger (pkg/logger: handler.go, worker.go) sends, for each request to a predictor whose
`spec.predictor.logger` names this sink, a CloudEvent (spec 1.0, binary mode) of type
`org.kubeflow.serving.inference.request` with the request body, and, when the predictor answered 200, one of type
`org.kubeflow.serving.inference.response` with the answer. Both carry the same id: the request's `Ce-Id` header, or a
uuid. Extensions: `inferenceservicename`, `namespace`, `component`, `endpoint`, `metadata`. The logger sends each
event once and only logs a non-200 answer: a 5xx here makes the loss visible in the logger's log and in this sink's
counters rather than silent. Events are parsed with the `cloudevents` SDK (binary and structured modes).

Endpoints:
- `POST /models/NAME?model_uri=URI[&version=V]` (what `push` sets as the logger URL; `/` works when the event's
  `inferenceservicename` names a model given with `--model NAME=URI`): one CloudEvent. 200 once it is in the
  write-ahead log (fsync'd); 400 for a malformed event (counted); 503 when the log cannot be written (a full disk) or
  the capture store cannot be reached.
- `GET /metrics` (Prometheus text) and `GET /stats` (JSON): counters; `GET /healthz`.

Durability: accepted events go to an append-only write-ahead log (length + crc32 framed records, group commit: one
write and one fsync for all the events that arrived meanwhile, at most every `COMMIT_INTERVAL_S`, on the event loop).
Every `flush_seconds` the active log segment is sealed and handed to the flusher, a second process (so that its work
never holds up an acknowledgement: no shared interpreter lock or garbage collector). It pairs the segment's events by
id and writes them as Parquet (`_common.capture`: atomic files), records the ids it wrote in `WAL/written/`, keeps the
requests still waiting for their response in a carry file (`carry-{seq}.log`, written aside and renamed), and only then
deletes the segment. A request whose response has not come within `pair_timeout_s` is written without a prediction; a
response without its request is dropped (counted). A restart replays the newest carry and the segments after it; the
ids written within `dedupe_seconds` (and those in the files a flush of a replayed segment may have written before a
crash, read back) are not written again, so a repeated event is written once; an event repeated within
`dedupe_seconds` of the first is answered 200 and not logged again. The flusher dies with the sink, and a restarted
sink's flusher waits for the previous one to be gone (a lock in the log's folder).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import struct
import sys
import threading
import time
import uuid
import zlib
from collections import OrderedDict, deque
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs

import numpy as np
import orjson
from cloudevents.exceptions import GenericException
from cloudevents.http import from_http
from cloudevents.sdk import converters
from cloudevents.sdk.event import v1

from kfp_ct.components.push.server import MAX_ROWS, PayloadError, check_size

REQUEST = "org.kubeflow.serving.inference.request"
RESPONSE = "org.kubeflow.serving.inference.response"
FLUSH_SECONDS = 10.0
PAIR_TIMEOUT_S = 60.0
DEDUPE_SECONDS = 300.0
COMMIT_INTERVAL_S = 0.002  # commits start at most this often: fewer fsyncs (150 us of CPU each), bigger groups
MAX_BODY_BYTES = 32 << 20
_HEADER = struct.Struct("<II")  # record length, crc32
_log = logging.getLogger(__name__)


class Refused(Exception):
    """An event the sink does not accept: `status` (4xx: the event is at fault; 5xx: the sink cannot keep it now)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


# --- the write-ahead log ------------------------------------------------------------------------------------------


class LogFolder:
    """The write-ahead log's folder: segments `wal-{seq}.log` of framed records (length, crc32, payload) and
    `carry-{seq}.log`, the events the flusher still held unpaired once every segment up to `seq` was written."""

    def __init__(self, directory: str):
        self.directory = directory
        os.makedirs(directory, exist_ok=True)

    def path(self, seq: int, kind: str = "wal") -> str:
        return os.path.join(self.directory, f"{kind}-{seq:012d}.log")

    def segments(self) -> list[int]:
        return self._numbers("wal-")

    def carries(self) -> list[int]:
        return self._numbers("carry-")

    def _numbers(self, prefix: str) -> list[int]:
        return sorted(
            int(n[len(prefix) : -4]) for n in os.listdir(self.directory) if n.startswith(prefix) and n.endswith(".log")
        )

    @staticmethod
    def read(path: str) -> list[bytes]:
        """The records of a segment up to its first torn or corrupt one (which no one was acknowledged for)."""
        with open(path, "rb") as f:
            data = f.read()
        records, at = [], 0
        while at + _HEADER.size <= len(data):
            length, crc = _HEADER.unpack_from(data, at)
            payload = data[at + _HEADER.size : at + _HEADER.size + length]
            if len(payload) != length or zlib.crc32(payload) != crc:
                break
            records.append(payload)
            at += _HEADER.size + length
        return records

    def records(self, seq: int, kind: str = "wal") -> list[dict]:
        return [_decode(payload) for payload in self.read(self.path(seq, kind))]

    def replay(self, segments: list[int]) -> tuple[int, dict]:
        """(the newest carry's number or 0, the records by (id, type) of that carry and of the `segments` after it):
        what a previous run left to write."""
        carry = max(self.carries(), default=0)
        records = {}
        for record in (self.records(carry, "carry") if carry else []) + [
            r for seq in segments if seq > carry for r in self.records(seq)
        ]:
            records[(record["id"], record["type"])] = record
        return carry, records

    def write_carry(self, seq: int, records: list[dict]) -> None:
        """`carry-{seq}.log`, whole or not at all (written aside, fsync'd, renamed)."""
        path = self.path(seq, "carry")
        tmp = os.path.join(self.directory, f".{os.path.basename(path)}.tmp")
        with open(tmp, "wb") as f:
            f.write(_frame([_encode(r) for r in records]))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(self.directory)

    def delete(self, seq: int, kind: str = "wal") -> None:
        os.remove(self.path(seq, kind))


class WriteAheadLog(LogFolder):
    """The log the sink appends to (on its event loop): a new active segment after every sealed or carried one found."""

    def __init__(self, directory: str):
        super().__init__(directory)
        self.sealed = self.segments()
        self.seq = max(self.sealed + self.carries(), default=0) + 1
        self._file = None
        self.torn = False  # a failed append left bytes that could not be cut back: rotate before the next
        self._open()

    def _open(self) -> None:
        self._file = open(self.path(self.seq), "ab", buffering=0)  # noqa: SIM115 - held open while active
        _fsync_dir(self.directory)

    def append(self, payloads: list[bytes]) -> None:
        """Writes the records and fsyncs them; on failure the segment is cut back to where it was."""
        data = _frame(payloads)
        start = os.fstat(self._file.fileno()).st_size  # (not tell(): a truncate leaves the offset where it was)
        try:
            view = memoryview(data)
            while view:  # a short write (the disk filled up) is followed by one that raises
                view = view[os.write(self._file.fileno(), view) :]
            os.fsync(self._file.fileno())
        except OSError:
            try:
                self._file.truncate(start)
            except OSError:  # cannot even cut it back: the torn tail ends this segment (readers stop there)
                self.torn = True
            raise

    def rotate(self) -> int:
        """Seals the active segment and starts the next; returns the sealed segment's number."""
        sealed = self.seq
        self._file.close()
        self.seq += 1
        self._open()
        return sealed

    def close(self) -> None:
        self._file.close()


def _frame(payloads: list[bytes]) -> bytes:
    return b"".join(_HEADER.pack(len(p), zlib.crc32(p)) + p for p in payloads)


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- events -----------------------------------------------------------------------------------------------------------


def read_event(headers: dict, body: bytes) -> tuple[dict, object]:
    """(attributes, data decoded as JSON) of the CloudEvent an HTTP request carries (headers lower-case), read with the
    `cloudevents` SDK; GenericException (the SDK's) when it is not one. Binary mode 1.0, what KServe's logger sends,
    goes straight to the SDK's binary reader of a 1.0 event (`from_http` would find that out again for each event, and
    copy its attributes twice: half the sink's time on an event); other modes and versions go through `from_http`."""
    if headers.get("ce-specversion") == "1.0" and _BINARY.can_read(headers.get("content-type"), headers):
        event = _BINARY.read(v1.Event(), headers, body, orjson.loads)
        return {"id": event.EventID(), "type": event.EventType(), "time": event.EventTime(), **event.Extensions()}, (
            event.Data()
        )
    event = from_http(headers, body, data_unmarshaller=orjson.loads)
    return event.get_attributes(), event.get_data()


_BINARY = converters.binary.NewBinaryHTTPCloudEventConverter()


# --- models: their signature, read once per model URI ---------------------------------------------------------------


class _Model:
    """What the sink needs of a served model: its columns (the server's own payload checks) and capture schema."""

    def __init__(self, model_uri: str):
        from kfp_ct.components._common.capture import CaptureSchema
        from kfp_ct.components._common.model import read_signature
        from kfp_ct.components._common.storage import local_copy
        from kfp_ct.components.push.server import Columns

        with local_copy(model_uri, published=True, what="model URI") as path:  # the server's own way to a model
            inputs, meta = read_signature(path)
        self.columns = Columns(inputs)
        self.schema = CaptureSchema(inputs, meta.get("task", ""), meta.get("classes"))
        self.version = model_uri.rstrip("/").rsplit("/", 1)[-1]


def _start_up() -> None:
    """Imports what reading a model needs (scikit-learn and MLflow among them: seconds), so that neither the first
    events nor the first flush pay for it, and freezes what the process holds by then out of the garbage collector's
    passes (`gc.freeze`): it lives as long as the process, and each full collection would walk it all again (0.25 s of
    the flusher's CPU for 10,000 events; stalls of the acknowledgements)."""
    import gc

    import mlflow.models  # noqa: F401 - (what _common.model reads an MLmodel file with)

    from kfp_ct.components._common import capture, model, storage  # noqa: F401
    from kfp_ct.components.push import server  # noqa: F401

    gc.freeze()


def check_request(columns, data) -> None:
    """The shape of a request body, checked cheaply when its event arrives: V1 `instances` (records holding exactly
    the model's columns, or rows of its width) or V2 `inputs` (one per column); PayloadError naming what is wrong.
    The values' types are checked when the batch is written (`request_columns`, the model server's own checks)."""
    if not isinstance(data, dict):
        raise PayloadError(f"the request body must be a JSON object, got {type(data).__name__}")
    if "instances" in data:
        instances = data["instances"]
        if not isinstance(instances, list) or not instances or len(instances) > MAX_ROWS:
            raise PayloadError(f"'instances' must be a list of 1 to {MAX_ROWS} records or rows")
        names, width = columns.index.keys(), len(columns.names)
        for row, instance in enumerate(instances):
            if isinstance(instance, dict) and instance.keys() != names:
                missing = [n for n in columns.names if n not in instance]
                unknown = [k for k in instance if k not in columns.index]
                raise PayloadError(
                    f"instance {row} lacks {missing} / has unknown {unknown} columns; the model takes: "
                    f"{columns.describe()}"
                )
            if isinstance(instance, list) and len(instance) != width:
                raise PayloadError(f"instance {row} has {len(instance)} values, expected {width}: {columns.describe()}")
            if not isinstance(instance, (dict, list)):
                raise PayloadError(f"instance {row} is a {type(instance).__name__}, expected a record or a row")
        return
    inputs = data.get("inputs")
    if not isinstance(inputs, list) or {t.get("name") for t in inputs if isinstance(t, dict)} != set(columns.names):
        raise PayloadError(
            f"the request body needs 'instances' (V1) or 'inputs' (V2) naming each column: {columns.describe()}"
        )


def request_columns(columns, data) -> list[np.ndarray]:
    """A request body (V1 `instances` or V2 `inputs`, as JSON) as one numpy column per input; PayloadError if it
    does not fit."""
    if not isinstance(data, dict):
        raise PayloadError(f"the request body must be a JSON object, got {type(data).__name__}")
    if "instances" in data:
        return columns.from_instances(data["instances"])
    if not isinstance(data.get("inputs"), list):
        raise PayloadError("the request body has neither 'instances' (V1) nor 'inputs' (V2)")
    by_name = {t.get("name"): t for t in data["inputs"] if isinstance(t, dict)}
    missing = [n for n in columns.names if n not in by_name]
    if missing:
        raise PayloadError(f"missing input(s) {', '.join(map(repr, missing))}; the model takes: {columns.describe()}")
    out = []
    for i, name in enumerate(columns.names):
        values = by_name[name].get("data")
        if not isinstance(values, list):
            raise PayloadError(f"input '{name}' has no 'data' list")
        values = [v for part in values for v in part] if values and isinstance(values[0], list) else values
        check_size(len(values), f"input '{name}'")
        out.append(columns.convert(i, values, lambda r, name=name: f"row {r} of input '{name}'"))
    if len({len(c) for c in out}) != 1:
        raise PayloadError("the inputs have different numbers of rows")
    return out


def response_rows(data, n: int, classification: bool) -> tuple[list, list | None]:
    """(predictions, probabilities or None) of an answer (V1 or V2 JSON) to a request of `n` rows."""
    if not isinstance(data, dict):
        raise PayloadError(f"the response body must be a JSON object, got {type(data).__name__}")
    if "predictions" in data:
        predictions, proba = data["predictions"], data.get("probabilities")
    elif isinstance(data.get("outputs"), list):
        outputs = {o.get("name"): o for o in data["outputs"] if isinstance(o, dict)}
        predictions = (outputs.get("predictions") or {}).get("data")
        proba = (outputs.get("probabilities") or {}).get("data")
        if isinstance(proba, list) and proba and not isinstance(proba[0], list) and len(proba) % n == 0:
            width = len(proba) // n
            proba = [proba[i * width : (i + 1) * width] for i in range(n)]
    else:
        raise PayloadError("the response body has neither 'predictions' (V1) nor 'outputs' (V2)")
    if not isinstance(predictions, list) or len(predictions) != n:
        raise PayloadError(f"the response holds {len(predictions or [])} predictions for a request of {n} rows")
    if classification and (not isinstance(proba, list) or len(proba) != n):
        proba = None
    return predictions, proba if classification else None


# --- the sink: acknowledging (the event loop) ---------------------------------------------------------------------

ACK_COUNTS = ("accepted", "duplicates", "malformed", "refused_5xx")
FLUSH_COUNTS = (
    "rows_written",
    "files_written",
    "unanswered_rows",
    "orphan_responses",
    "invalid_pairs",
    "flush_failures",
)
FLUSHER_NICENESS = 5  # the flusher yields the CPU to the acknowledgements when both want it


class CaptureSink:
    """Accepts events (`accept`) and logs them durably (`_commit`), both on the event loop; the `Flusher`, a
    second process, pairs the logged events and writes Parquet. The flusher shares neither the interpreter lock nor
    the garbage collector with the acknowledgements: its work (150 ms of CPU for 10,000 events) and its many live
    events never hold one up."""

    def __init__(
        self,
        capture_uri: str,
        wal_dir: str,
        models: dict[str, str] | None = None,
        flush_seconds: float = FLUSH_SECONDS,
        pair_timeout_s: float = PAIR_TIMEOUT_S,
        dedupe_seconds: float = DEDUPE_SECONDS,
    ):
        from kfp_ct.components._common import storage

        storage.check_scheme(capture_uri, "capture URI")
        if not flush_seconds > 0 or not pair_timeout_s >= 0 or not dedupe_seconds >= 0:
            raise ValueError("flush_seconds must be positive; pair_timeout_s and dedupe_seconds at least 0")
        self.capture_uri = capture_uri
        self.defaults = dict(models or {})
        self.flush_seconds, self.dedupe_seconds = flush_seconds, dedupe_seconds
        self.counts = dict.fromkeys(ACK_COUNTS, 0)
        self.flushed: dict = {}  # the flusher's last report: its counts, pending_segments, unpaired
        self.store_error: str | None = None  # the flusher's, or that it stopped
        self.wal_error: str | None = None
        self._models: dict[str, _Model] = {}
        self._seen: OrderedDict = OrderedDict()  # (id, type) -> time accepted, or its waiters; loop thread only
        self._queue: list = []  # (payload, key) of the events the next commit logs
        self._loop = None  # the event loop that accepts events
        self._committing = None  # the next commit, scheduled on the loop
        self._committed = 0.0  # when the last commit started (time.monotonic)
        self._segment_started = time.monotonic()
        self._unsealed = False  # the active segment holds events
        self._stopping = False
        self.wal_dir = wal_dir
        _start_up()
        self.wal = WriteAheadLog(wal_dir)
        self.instance, self.boot = self._identity()
        self._recover()
        self._start_flusher(pair_timeout_s)
        self._reporting = threading.Thread(target=self._report_loop, name="capture-reports", daemon=True)
        self._reporting.start()

    # --- identity, recovery and the flusher --------------------------------------------------------------------------
    def _identity(self) -> tuple[str, int]:
        path = os.path.join(self.wal_dir, "instance")
        if not os.path.isfile(path):
            _write_durably(path, uuid.uuid4().hex[:12])
        with open(path) as f:
            instance = f.read().strip()
        boot_path = os.path.join(self.wal_dir, "boot")
        boot = 1
        if os.path.isfile(boot_path):
            with open(boot_path) as f:
                boot = int(f.read().strip() or 0) + 1
        _write_durably(boot_path, str(boot))
        return instance, boot

    def _recover(self) -> None:
        """Remembers the events a previous run wrote (within the dedupe window) or left in the log to write: repeated,
        they are answered as duplicates."""
        now = time.time()
        for rid, _ in _written_ids(self.wal_dir, self.dedupe_seconds):
            self._seen[(rid, REQUEST)] = self._seen[(rid, RESPONSE)] = now
        for key in self.wal.replay(self.wal.sealed)[1]:
            self._seen[key] = now

    def _start_flusher(self, pair_timeout_s: float) -> None:
        """Starts the flusher process and waits for its first report (after its recovery and its first look at the
        capture store). Started from the thread that lives as long as the sink: Linux kills the flusher when that
        thread ends (`_flusher_main`)."""
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        commands, self._commands = context.Pipe(duplex=False)
        self._reports, reports = context.Pipe(duplex=False)
        config = {
            "capture_uri": self.capture_uri,
            "wal_dir": self.wal_dir,
            "sealed": self.wal.sealed,
            "flush_seconds": self.flush_seconds,
            "pair_timeout_s": pair_timeout_s,
            "dedupe_seconds": self.dedupe_seconds,
            "instance": self.instance,
            "boot": self.boot,
            "parent": os.getpid(),
        }
        self._flusher = context.Process(
            target=_flusher_main, args=(config, commands, reports), name="capture-flush", daemon=True
        )
        self._flusher.start()
        commands.close()
        reports.close()
        try:
            self._report(self._reports.recv())
        except EOFError:
            self._flusher.join()
            raise RuntimeError(
                f"the capture sink's flusher process exited (code {self._flusher.exitcode}) before it was ready; "
                "its error is in the log above"
            ) from None

    def _report_loop(self) -> None:
        while True:
            try:
                report = self._reports.recv()
            except (EOFError, OSError):
                break
            self._report(report)
        if not self._stopping:  # crash-only: what was acknowledged is in the log, and a restart writes it
            self._flusher.join(5)
            _log.error(
                "kfp-ct capture sink: its flusher process stopped (exit code %s); the sink exits so that it is "
                "restarted (nothing acknowledged is lost: it is in the write-ahead log)",
                self._flusher.exitcode,
            )
            os._exit(1)

    def _report(self, report: dict) -> None:
        self.store_error = report.pop("store_error")
        self.flushed = report

    # --- accepting (event loop) ---------------------------------------------------------------------------------------
    def model(self, name: str, model_uri: str | None) -> _Model:
        uri = model_uri or self.defaults.get(name)
        if not uri:
            raise Refused(
                400,
                f"no model URI for model '{name}': give it in the logger URL (/models/{name}?model_uri=...) "
                "or start the sink with --model NAME=URI",
            )
        if uri not in self._models:
            try:
                self._models[uri] = _Model(uri)
            except (ValueError, FileNotFoundError) as err:
                raise Refused(400, f"cannot read the signature of model '{name}' at {uri}: {err}") from None
            except OSError as err:  # the model's store cannot be reached now (ConnectionError, TimeoutError, ...)
                raise Refused(503, f"cannot read the model '{name}' at {uri}: {type(err).__name__}: {err}") from None
        return self._models[uri]

    def parse(self, headers: dict, body: bytes, name: str | None, model_uri: str | None, version: str | None) -> dict:
        """The record of one HTTP request's CloudEvent; Refused(400) naming what is wrong with it."""
        try:
            event, data = read_event(headers, body)
        except GenericException as err:
            raise Refused(400, f"not a CloudEvent with JSON data: {err}") from None
        kind = event["type"]
        if kind not in (REQUEST, RESPONSE):
            raise Refused(400, f"event type '{kind}' is not KServe's inference request or response ({REQUEST})")
        name = name or event.get("inferenceservicename")
        if not name:
            raise Refused(400, "no model name: post to /models/NAME or send the 'inferenceservicename' extension")
        model = self.model(name, model_uri)
        try:
            if kind == REQUEST:
                check_request(model.columns, data)
            elif not isinstance(data, dict) or not ({"predictions", "outputs"} & data.keys()):
                raise PayloadError("the response body has neither 'predictions' (V1) nor 'outputs' (V2)")
        except PayloadError as err:
            raise Refused(400, f"event {event['id']} ({kind}) for model '{name}': {err}") from None
        when = event.get("time")
        return {
            "id": event["id"],
            "type": kind,
            "time": when or datetime.now(UTC).isoformat(),
            "model": name,
            "model_uri": model_uri or self.defaults[name],
            "version": version or model.version,
            "data": data,
            "received": time.time(),
        }

    def accept(self, headers: dict, body: bytes, name: str | None, query: str, reply) -> None:
        """Calls `reply(None)` once the event is durable (or was already accepted), `reply(Refused)` otherwise; on the
        event loop, which it never blocks (a new model's signature is read in a thread)."""
        if self.store_error:  # (a log that cannot be written is tried again for each event: the disk may free up)
            self.counts["refused_5xx"] += 1
            reply(Refused(503, f"the sink cannot keep events now: {self.store_error}"))
            return
        model_uri, version = _query(query)
        uri = model_uri or self.defaults.get(name or "")
        if name and uri and uri not in self._models:  # read a new model's signature off the event loop
            reading = asyncio.get_running_loop().run_in_executor(None, self.model, name, uri)
            reading.add_done_callback(lambda done: self._accept_read(done, headers, body, name, query, reply))
            return
        self._accept(headers, body, name, model_uri, version, reply)

    def _accept_read(self, reading, headers: dict, body: bytes, name: str, query: str, reply) -> None:
        error = reading.exception()
        if error is not None and not isinstance(error, Refused):
            error = Refused(503, f"cannot read the model '{name}': {type(error).__name__}: {error}")
        if error is not None:
            self._refused(error, reply)
        else:
            self._accept(headers, body, name, *_query(query), reply)

    def _refused(self, error: Refused, reply) -> None:
        self.counts["malformed" if error.status < 500 else "refused_5xx"] += 1
        reply(error)

    def _accept(self, headers: dict, body: bytes, name, model_uri, version, reply) -> None:
        try:
            record = self.parse(headers, body, name, model_uri, version)
        except Refused as err:
            self._refused(err, reply)
            return
        key = (record["id"], record["type"])
        previous = self._seen.get(key)
        if previous is not None:  # already accepted, or being logged (its waiters): answer as it is answered
            self.counts["duplicates"] += 1
            if isinstance(previous, list):
                previous.append(reply)
            else:
                reply(None)
            return
        self._seen[key] = [reply]
        self._queue.append((_encode(record), key))
        if self._committing is None:
            if self._loop is None:
                self._loop = asyncio.get_running_loop()
                self._loop.call_later(self.flush_seconds, self._tick)
            wait = self._committed + COMMIT_INTERVAL_S - time.monotonic()
            self._committing = self._loop.call_later(max(0.0, wait), self._commit)

    # --- committing (event loop): group commit and segment rotation ---------------------------------------------------
    def _commit(self) -> None:
        """Logs the queued events with one write and one fsync, then answers them. Commits start at most every
        `COMMIT_INTERVAL_S` (the events that arrive meanwhile share the next), and on the event loop, which waits for
        the fsync: the events it would read meanwhile could not be answered before the next fsync anyway, and a second
        thread would cost each event its share of the hand-overs of the interpreter lock."""
        self._committing = None
        self._committed = time.monotonic()
        batch, self._queue = self._queue, []
        try:
            self.wal.append([payload for payload, _ in batch])
            error = self.wal_error = None
            self._unsealed = True
        except OSError as err:
            error = err
            self.wal_error = f"the write-ahead log in {self.wal_dir} cannot be written: {type(err).__name__}: {err}"
            if self.wal.torn:
                self.wal.torn = False
                self._seal()
        self._logged([key for _, key in batch], error)
        if self._unsealed and self._committed - self._segment_started >= self.flush_seconds:
            self._seal()

    def _tick(self) -> None:
        """Every `flush_seconds`: seals the active segment if it holds events (when events stop coming too)."""
        if self._stopping:
            return
        if self._unsealed and time.monotonic() - self._segment_started >= self.flush_seconds:
            self._seal()
        self._loop.call_later(self.flush_seconds, self._tick)

    def _seal(self) -> None:
        """Starts the next segment and hands the sealed one to the flusher."""
        self._unsealed = False
        self._segment_started = time.monotonic()
        self._commands.send(("sealed", self.wal.rotate()))

    def _logged(self, keys: list, error: OSError | None) -> None:
        """Answers each logged event's waiters."""
        now = time.time()
        for key in keys:
            waiters = self._seen.pop(key)
            if error is None:
                self._seen[key] = now
                self.counts["accepted"] += 1
                answer = None
            else:
                self.counts["refused_5xx"] += 1
                answer = Refused(503, self.wal_error or str(error))
            for reply in waiters:
                reply(answer)
        self._expire_seen(now)

    def _expire_seen(self, now: float) -> None:
        horizon = now - self.dedupe_seconds
        while self._seen:
            key, when = next(iter(self._seen.items()))
            if isinstance(when, list) or when >= horizon:
                break
            self._seen.popitem(last=False)

    # --- the service's state -----------------------------------------------------------------------------------------
    def stats(self) -> dict:
        return {
            **self.counts,
            **self.flushed,
            "healthy": not (self.wal_error or self.store_error),
            "error": self.wal_error or self.store_error,
        }

    def metrics(self) -> str:
        lines = []
        for key, value in self.stats().items():
            if isinstance(value, bool):
                value = int(value)
            if isinstance(value, int):
                lines += [f"# TYPE kfp_ct_capture_{key} gauge", f"kfp_ct_capture_{key} {value}"]
        return "\n".join(lines) + "\n"

    def close(self) -> None:
        """Logs what is queued, lets the flusher write what is paired and keep what waits for its pair for the next
        start, and stops (on the event loop, or after it)."""
        self._stopping = True
        if self._committing is not None:
            self._committing.cancel()
        if self._queue:
            self._commit()
        if self._unsealed:
            self._seal()
        self._commands.send(("stop",))
        self._flusher.join()
        self._reporting.join()
        self.wal.close()


# --- the flusher process: pairing and Parquet ------------------------------------------------------------------------


def _flusher_main(config: dict, commands, reports) -> None:
    """The flusher process's start: it dies with the sink (on Linux the kernel kills it when the thread that started it
    ends, a kill -9 of the sink included; elsewhere the command pipe's end stops it), waits for a previous sink's
    flusher to be gone (a lock on the log's folder), and yields the CPU to the acknowledgements."""
    import fcntl
    import signal

    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != config["parent"]:  # the sink died before that took effect
        return
    with open(os.path.join(config["wal_dir"], "flusher.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        os.nice(FLUSHER_NICENESS)
        _start_up()
        Flusher(config, reports).run(commands)


class Flusher:
    """Takes the log segments the sink seals, pairs their events by id and writes them as Parquet
    (`_common.capture`: atomic files), records the ids it wrote, keeps the events that still wait for their pair in a
    carry file, and only then deletes the segments; reports its counts to the sink after each step."""

    def __init__(self, config: dict, reports):
        self.capture_uri = config["capture_uri"]
        self.flush_seconds = config["flush_seconds"]
        self.pair_timeout_s, self.dedupe_seconds = config["pair_timeout_s"], config["dedupe_seconds"]
        self.instance, self.boot = config["instance"], config["boot"]
        self.log = LogFolder(config["wal_dir"])
        self.written_dir = _written_dir(config["wal_dir"])
        self.counts = dict.fromkeys(FLUSH_COUNTS, 0)
        self.store_error: str | None = None
        self._reports = reports
        self._models: dict[str, _Model] = {}
        self._written: OrderedDict = OrderedDict()  # request id -> time written
        self._unpaired: dict = {}  # (id, type) -> record
        self._pending: list[int] = []  # sealed segments not yet written
        self._carry = 0  # the carry file that holds `_unpaired` (0: none)
        self._flushes = 0  # this boot's flushes: each names its files
        self._recover(config["sealed"])

    def _recover(self, sealed: list[int]) -> None:
        """Takes up what a previous run left: the ids it wrote (within the dedupe window), its newest carry file and
        the segments after it, and the ids that a flush of those wrote before a crash kept it from recording them."""
        self._expire_written(time.time())
        for rid, when in _written_ids(self.log.directory, self.dedupe_seconds):
            self._remember_written(rid, when)
        self._carry, records = self.log.replay(sealed)
        for seq in sealed:
            if seq <= self._carry:  # written, or held in the carry
                self.log.delete(seq)
        for seq in self.log.carries()[:-1]:
            self.log.delete(seq, "carry")
        self._pending = [seq for seq in sealed if seq > self._carry]
        if records:
            self._already_written(list(records.values()), ([self._carry] if self._carry else []) + self._pending)
        self._unpaired = {key: r for key, r in records.items() if r["id"] not in self._written}

    def _already_written(self, records: list[dict], segments: list[int]) -> None:
        """Ids that a flush of these segments (or of the carry) wrote before a crash kept it from recording them (its
        files are named after the first segment), read back from the capture store."""
        from kfp_ct.components._common import capture

        names = tuple(f"{self.instance}-{seq:012d}-" for seq in segments)
        by_model: dict[str, list[datetime]] = {}
        for record in records:
            by_model.setdefault(record["model"], []).append(_time(record))
        for model, times in by_model.items():
            end = max(times).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
            files = [
                f
                for f in capture.capture_files(self.capture_uri, model, min(times), end)
                if f.rsplit("/", 1)[-1].startswith(names)
            ]
            for table in capture._tables(files, ["request_id"]):
                for rid in table["request_id"].to_pylist():
                    self._remember_written(rid, time.time())

    def _remember_written(self, rid: str, when: float) -> None:
        self._written[rid] = when
        self._written.move_to_end(rid)

    def run(self, commands) -> None:
        """Flushes the segments the sink hands over (`("sealed", seq)`) until `("stop",)`; every `flush_seconds`
        without one, writes the requests whose response did not come in time."""
        self.probe_store()
        self._report()
        while True:
            wait = 1.0 if (self.store_error or self._pending) else (self.flush_seconds if self._unpaired else None)
            stopping, ready = False, commands.poll(wait)
            try:
                while ready:
                    command = commands.recv()
                    if command[0] == "stop":
                        stopping = True
                    else:
                        self._pending.append(command[1])
                    ready = commands.poll(0)
            except EOFError:  # the sink is gone without a word: what is not written stays in the log
                return
            if self._pending or self._unpaired:
                self._try_flush()
            elif self.store_error:  # nothing to write, but new events wait for the store: try it again
                self.probe_store()
            self._report()
            if stopping:  # what waits for its pair, or could not be written, stays for the next start
                return

    def _try_flush(self) -> None:
        batch = list(self._pending)
        try:
            self._flush(batch)
        except Exception as err:  # the store cannot be written: keep the segments, the sink refuses events, retry
            self.counts["flush_failures"] += 1
            self.store_error = f"the capture store {self.capture_uri} cannot be written: {type(err).__name__}: {err}"
            _log.warning("kfp-ct capture sink: %s", self.store_error)
            return
        self.store_error = None
        del self._pending[: len(batch)]

    def _flush(self, segments: list[int]) -> None:
        from kfp_ct.components._common.capture import CaptureWriter

        now = time.time()
        for seq in segments:
            for record in self.log.records(seq):
                if record["id"] not in self._written:
                    self._unpaired[(record["id"], record["type"])] = record
        rows: dict[str, list] = {}
        for (rid, kind), record in self._unpaired.items():
            if kind != REQUEST:
                continue
            response = self._unpaired.get((rid, RESPONSE))
            if response is None and now - record["received"] < self.pair_timeout_s:
                continue
            rows.setdefault(record["model"], []).append((record, response))
        orphans = [  # responses whose request never came
            key
            for key, record in self._unpaired.items()
            if key[1] == RESPONSE
            and (key[0], REQUEST) not in self._unpaired
            and now - record["received"] >= self.pair_timeout_s
        ]
        if not (segments or rows or orphans):  # (a turn of the clock with nothing due)
            return
        name = f"{self.instance}-{(segments[0] if segments else self._carry):012d}-{self.boot}-{self._flushes}"
        written = []
        for model_name, pairs in rows.items():
            for uri, group in _by_model_uri(pairs).items():
                model = self._model(uri)
                table = self._table(model, group)
                if table is not None:
                    files = CaptureWriter(self.capture_uri, model_name, model.schema).write(table, name)
                    self.counts["files_written"] += len(files)
                    self.counts["rows_written"] += table.num_rows
                    self._report()
            written += [record["id"] for record, _ in pairs]
        if written:
            _write_durably(os.path.join(self.written_dir, f"{name}.ids"), "\n".join(written))
        self._flushes += 1
        for rid in written:
            self._unpaired.pop((rid, REQUEST), None)
            self._unpaired.pop((rid, RESPONSE), None)
            self._remember_written(rid, now)
        for key in orphans:
            del self._unpaired[key]
            self.counts["orphan_responses"] += 1
        last = segments[-1] if segments else self._carry
        if self._unpaired:  # before the segments go
            self.log.write_carry(last, list(self._unpaired.values()))
        for seq in segments:
            self.log.delete(seq)
        if self._carry and (self._carry != last or not self._unpaired):
            self.log.delete(self._carry, "carry")
        self._carry = last if self._unpaired else 0
        self._expire_written(now)

    def _model(self, model_uri: str) -> _Model:
        if model_uri not in self._models:
            self._models[model_uri] = _Model(model_uri)
        return self._models[model_uri]

    def _expire_written(self, now: float) -> None:
        horizon = now - self.dedupe_seconds
        while self._written and next(iter(self._written.values())) < horizon:
            self._written.popitem(last=False)
        for name in os.listdir(self.written_dir):
            path = os.path.join(self.written_dir, name)
            if name.startswith(".") or os.path.getmtime(path) < horizon:  # (a dot file: a crash's half-written one)
                os.remove(path)

    def _table(self, model: _Model, pairs: list):
        """The capture table of request/response pairs (response None: unanswered). The V1 record requests are
        converted together (one conversion per column for the whole batch), the others one by one; a request whose
        values do not fit the signature is counted (`invalid_pairs`) and not written."""
        from kfp_ct.components._common.capture import RowBuffer

        buffer = RowBuffer(model.schema)
        records = [p for p in pairs if _records_form(p[0]["data"])]
        others = [p for p in pairs if not _records_form(p[0]["data"])]
        for start in range(0, len(records), MAX_ROWS // 10):
            chunk = records[start : start + MAX_ROWS // 10]
            try:
                columns = model.columns.from_instances([i for r, _ in chunk for i in r["data"]["instances"]])
            except PayloadError:  # one request's values are wrong: find it, one request at a time
                others += chunk
                continue
            self._extend(buffer, model, chunk, columns)
        for pair in others:
            try:
                columns = request_columns(model.columns, pair[0]["data"])
            except PayloadError as err:
                self.counts["invalid_pairs"] += 1
                _log.warning("kfp-ct capture sink: request %s not captured: %s", pair[0]["id"], err)
                continue
            self._extend(buffer, model, [pair], columns)
        return buffer.table()

    def _extend(self, buffer, model: _Model, pairs: list, columns: list) -> None:
        ids, rows, times, versions, predictions, probabilities = [], [], [], [], [], []
        at = 0
        for record, response in pairs:
            n = len(record["data"]["instances"]) if "instances" in record["data"] else len(columns[0]) - at
            answer = proba = None
            if response is None:
                self.counts["unanswered_rows"] += n
            else:
                try:
                    answer, proba = response_rows(response["data"], n, model.schema.classification)
                except PayloadError as err:
                    self.counts["invalid_pairs"] += 1
                    _log.warning("kfp-ct capture sink: response %s not captured: %s", record["id"], err)
            ids += [record["id"]] * n
            rows += range(n)
            times += [_time(record)] * n
            versions += [record["version"]] * n
            predictions += answer if answer is not None else [None] * n
            probabilities += proba if proba is not None else [None] * n
            at += n
        buffer.extend(ids, rows, times, versions, columns, predictions, probabilities)

    def _report(self) -> None:
        self._reports.send(
            {
                **self.counts,
                "pending_segments": len(self._pending),
                "unpaired": len(self._unpaired),
                "store_error": self.store_error,
            }
        )

    def probe_store(self) -> None:
        """Writes and removes a probe object in the capture store; sets the store error when it cannot."""
        from kfp_ct.components._common import storage

        scheme = storage.split_uri(self.capture_uri)[0]
        try:
            if scheme == "":
                root = storage.split_uri(self.capture_uri)[2]
                os.makedirs(root, exist_ok=True)
                probe = os.path.join(root, f".probe-{self.instance}")
                with open(probe, "w") as f:
                    f.write("probe")
                os.remove(probe)
            else:
                store, prefix = storage._bucket(self.capture_uri)
                key = f"{prefix.strip('/')}/.probe-{self.instance}".lstrip("/")
                with store.errors(self.capture_uri):
                    store.put_bytes(key, b"{}")
                    store.delete(key)
            self.store_error = None
        except Exception as err:
            self.store_error = f"the capture store {self.capture_uri} cannot be written: {type(err).__name__}: {err}"


def _written_dir(wal_dir: str) -> str:
    path = os.path.join(wal_dir, "written")
    os.makedirs(path, exist_ok=True)
    return path


def _written_ids(wal_dir: str, dedupe_seconds: float) -> list[tuple[str, float]]:
    """(request id, when written) of the requests the flusher wrote within the last `dedupe_seconds`, oldest first."""
    folder = _written_dir(wal_dir)
    horizon = time.time() - dedupe_seconds
    out = []
    for path in sorted(
        (os.path.join(folder, n) for n in os.listdir(folder) if not n.startswith(".")), key=os.path.getmtime
    ):
        when = os.path.getmtime(path)
        if when >= horizon:
            with open(path) as f:
                out += [(rid, when) for rid in f.read().split()]
    return out


@functools.lru_cache(maxsize=256)
def _query(query: str) -> tuple[str | None, str | None]:
    """(model_uri, version) of a logger URL's query (one per InferenceService: parsed once)."""
    parsed = parse_qs(query)
    return (parsed.get("model_uri") or [None])[0], (parsed.get("version") or [None])[0]


def _records_form(data: dict) -> bool:
    instances = data.get("instances")
    return isinstance(instances, list) and isinstance(instances[0], dict)


def _by_model_uri(pairs: list) -> dict[str, list]:
    groups: dict[str, list] = {}
    for record, response in pairs:
        groups.setdefault(record["model_uri"], []).append((record, response))
    return groups


def _time(record: dict) -> datetime:
    when = record["time"]
    parsed = when if isinstance(when, datetime) else datetime.fromisoformat(str(when).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _encode(record: dict) -> bytes:
    return orjson.dumps(record, default=str)


def _decode(payload: bytes) -> dict:
    return orjson.loads(payload)


def _write_durably(path: str, text: str) -> None:
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(os.path.dirname(path))


# --- HTTP ------------------------------------------------------------------------------------------------------------


class SinkApp:
    """The HTTP side of a CaptureSink (see the module docstring for the endpoints): one request in, `reply((status,
    body, content type))` once it is answered (at once, or when the write-ahead log holds its event)."""

    def __init__(self, sink: CaptureSink):
        self.sink = sink

    def handle(self, method: str, target: str, headers: dict, body: bytes, reply) -> None:
        path, _, query = target.partition("?")
        if method == "GET" and path == "/metrics":
            reply((200, self.sink.metrics().encode(), b"text/plain; version=0.0.4"))
            return
        if method == "GET" and path in ("/stats", "/healthz"):
            stats = self.sink.stats()
            reply((200 if path == "/stats" or stats["healthy"] else 503, json.dumps(stats).encode(), _JSON))
            return
        if method != "POST" or not (path in ("/", "") or path.startswith("/models/")):
            reply((404, b'{"error": "POST events to / or /models/NAME"}', _JSON))
            return
        name = path[len("/models/") :].strip("/") if path.startswith("/models/") else ""

        def answered(error: Refused | None) -> None:
            if error is None:
                reply((200, b'{"status": "accepted"}', _JSON))
            else:
                reply((error.status, json.dumps({"error": str(error)}).encode(), _JSON))

        self.sink.accept(headers, body, name or None, query, answered)


_JSON = b"application/json"
_REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 413: b"Payload Too Large", 503: b"Service Unavailable"}


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 keep-alive connection, parsed with httptools; its requests are handled one after another, in
    order (a pipelined request waits for the answers to those before it)."""

    def __init__(self, app: SinkApp):
        import httptools

        self.app = app
        self.parser = httptools.HttpRequestParser(self)
        self.transport = None
        self.pending: deque = deque()  # the requests not yet answered, in order: the first is being handled
        self._reset()

    def _reset(self) -> None:
        self.url, self.headers, self.body, self.size = b"", {}, [], 0

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        import httptools

        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._write(400, b'{"error": "malformed HTTP request"}', _JSON, close=True)

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size <= MAX_BODY_BYTES:
            self.body.append(body)

    def on_message_complete(self) -> None:
        self.pending.append((self.parser.get_method(), self.url, self.headers, self.body, self.size))
        self._reset()
        if len(self.pending) == 1:  # else it waits for the answers to those before it
            self._handle()

    def _handle(self) -> None:
        method, url, headers, body, size = self.pending[0]
        if size > MAX_BODY_BYTES:
            self._answer((413, b'{"error": "event larger than the sink accepts"}', _JSON))
        else:
            self.app.handle(method.decode(), url.decode("latin-1"), headers, b"".join(body), self._answer)

    def _answer(self, answer: tuple) -> None:
        self.pending.popleft()
        if self.transport.is_closing():
            self.pending.clear()
            return
        self._write(*answer)
        if self.pending:  # (a pipelined request: the next loop turn handles it, never a deeper call)
            asyncio.get_running_loop().call_soon(self._handle)

    def _write(self, status: int, body: bytes, content_type: bytes, close: bool = False) -> None:
        head = b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n" % (
            status,
            _REASONS.get(status, b"Error"),
            content_type,
            len(body),
        )
        self.transport.write(head + (b"connection: close\r\n\r\n" if close else b"\r\n") + body)
        if close:
            self.transport.close()


def run(
    capture_uri: str,
    wal_dir: str,
    host: str = "127.0.0.1",
    port: int = 8080,
    models: dict[str, str] | None = None,
    flush_seconds: float = FLUSH_SECONDS,
    pair_timeout_s: float = PAIR_TIMEOUT_S,
    dedupe_seconds: float = DEDUPE_SECONDS,
) -> None:
    """Runs the sink on http://{host}:{port} until SIGTERM or SIGINT, then writes what is paired and stops."""
    import signal

    import uvloop

    sink = CaptureSink(capture_uri, wal_dir, models, flush_seconds, pair_timeout_s, dedupe_seconds)
    for name, uri in (models or {}).items():  # a model given at start must be readable: fail now, not per event
        sink.model(name, uri)
    if sink.store_error:
        _log.warning("kfp-ct capture sink: %s (events are refused with 503 until it can)", sink.store_error)
    app = SinkApp(sink)

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        server = await loop.create_server(lambda: _Connection(app), host, port, backlog=1024)
        await stop.wait()
        server.close()
        sink.close()

    uvloop.run(serve())


def add_arguments(parser) -> None:
    """The sink's options (`kfp-ct capture-sink` and `python -m kfp_ct.components.push.capture_sink`)."""
    parser.add_argument("--capture", required=True, help="where the Parquet goes: a path, gs://, s3://, minio://")
    parser.add_argument("--wal", required=True, help="the write-ahead log's folder (a durable local disk)")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--host", default="127.0.0.1", help="the address to bind (in a pod: 0.0.0.0)")
    parser.add_argument(
        "--model", action="append", default=[], help="NAME=MODEL_URI for events whose URL names no model_uri"
    )
    parser.add_argument("--flush-seconds", type=float, default=FLUSH_SECONDS, help="how often Parquet is written")
    parser.add_argument(
        "--pair-timeout-s", type=float, default=PAIR_TIMEOUT_S, help="how long a request waits for its response"
    )
    parser.add_argument(
        "--dedupe-seconds", type=float, default=DEDUPE_SECONDS, help="how long an event id is remembered"
    )


def run_from_args(args) -> None:
    models = {}
    for item in args.model:
        name, sep, uri = item.partition("=")
        if not sep or not name or not uri:
            raise SystemExit(f"--model takes NAME=MODEL_URI, got {item!r}")
        models[name] = uri
    run(
        args.capture,
        args.wal,
        host=args.host,
        port=args.port,
        models=models,
        flush_seconds=args.flush_seconds,
        pair_timeout_s=args.pair_timeout_s,
        dedupe_seconds=args.dedupe_seconds,
    )


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="kfp-ct capture-sink", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    main()
