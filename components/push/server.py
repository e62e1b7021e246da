"""The catalog's model server: a `kserve.Model` that serves a kfp-ct model directory under `kserve.ModelServer`.

Protocols (KServe's own endpoints; this class only turns payloads into rows and rows into answers):

- V1 `POST /v1/models/NAME:predict` with `{"instances": [...]}`: records (`{"column": value, ...}`) or rows (lists of
  values in the signature's column order). Answer: `{"predictions": [...]}`, plus `"probabilities"` (n x classes, in
  the order of `"classes"` of `GET /v2/models/NAME`) for classification.
- Open Inference Protocol V2 `POST /v2/models/NAME/infer`: one named input per column (shape [n] or [n, 1];
  numbers as FP*/INT*/UINT*, text and dates as BYTES). Outputs `predictions` and, for classification,
  `probabilities` [n, classes].
- Health: `/v2/health/live`, `/v2/health/ready`, `/v2/models/NAME/ready`, `/v1/models/NAME`; metadata
  `/v2/models/NAME`; Prometheus metrics `/metrics`.

A request body larger than `--max_body_bytes` (default $KFP_CT_MAX_BODY_BYTES, else 32 MiB) is answered 413 and never
reaches the model: from its Content-Length, or as soon as a streamed body passes the limit. A client that waits for
`100 Continue` gets the 413 before it sends the body; from one that is already sending, the rest is read and dropped
(for up to `DRAIN_SECONDS`, in constant memory) before the answer, so that it can read the 413 (nginx's lingering
close) instead of a reset connection.

Every payload is checked against the model's signature before the model sees it: a missing or unknown column, a
value of the wrong type, an empty batch or a malformed body is answered 400 with a message that names the field, and
the server goes on serving. Payloads become one numpy column per feature, without a Python loop over values when
the types are right.

Run it: `python -m kfp_ct.components.push.server --model_uri PATH|file://|gs:// --model_name NAME [--http_port N]`
(the serving image's command; KServe passes `--model_name` and mounts the model at /mnt/models), or `serve(...)`.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import uuid
from datetime import UTC, datetime

import numpy as np

from kfp_ct.components._common import schema

MAX_ROWS = 100_000
MAX_BODY_BYTES = 32 << 20  # the default request body limit
DRAIN_SECONDS = 5.0  # how long the rest of a refused body is read and dropped before the 413
NUMERIC_V2 = {"FP16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"}
_log = logging.getLogger(__name__)


class PayloadError(ValueError):
    """A request that does not fit the model's signature; the message names the field."""


class Columns:
    """The model's input columns and how payload values are checked and converted for each."""

    def __init__(self, input_columns: list[tuple[str, str]]):
        if not input_columns:
            raise ValueError("the model has no input signature: cannot check payloads")
        self.names = [name for name, _ in input_columns]
        self.types = [mlflow_type for _, mlflow_type in input_columns]
        self.index = {name: i for i, name in enumerate(self.names)}
        self.numeric = [t in schema.NUMERIC_MLFLOW_TYPES for t in self.types]
        self.all_numeric = all(self.numeric)

    def describe(self) -> str:
        return ", ".join(f"{n} ({t})" for n, t in zip(self.names, self.types))

    # --- one column of values -> a numpy array, or a PayloadError naming the value --------------------------------
    def convert(self, i: int, values, where) -> np.ndarray:
        name, kind = self.names[i], self.types[i]
        if self.numeric[i]:
            try:
                array = values if isinstance(values, np.ndarray) else np.asarray(values)
            except ValueError:  # ragged nested lists
                array = None
            if (
                array is not None
                and array.ndim == 1
                and array.dtype.kind in "iuf"
                and (isinstance(values, np.ndarray) or not _has_bool(values))
            ):
                out = array.astype(np.float64, copy=False)
            else:
                listed = values.tolist() if isinstance(values, np.ndarray) else list(values)
                for row, value in enumerate(listed):  # find the value to blame
                    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                        raise PayloadError(
                            f"column '{name}' expects a number ({kind}), got {value!r} "
                            f"({type(value).__name__}) in {where(row)}"
                        )
                out = np.asarray([np.nan if v is None else v for v in listed], dtype=np.float64)
            infinite = np.isinf(out)
            if infinite.any():
                row = int(np.flatnonzero(infinite)[0])
                raise PayloadError(f"column '{name}' holds an infinite value ({out[row]}) in {where(row)}")
            return out
        array = np.asarray(values, dtype=object)
        for row, value in enumerate(array.tolist()):
            if value is not None and (
                isinstance(value, (bool, list, dict)) or not isinstance(value, (str, int, float))
            ):
                raise PayloadError(
                    f"column '{name}' expects text ({kind}), got {value!r} ({type(value).__name__}) in {where(row)}"
                )
        if kind == "datetime":
            import pandas as pd

            parsed = pd.to_datetime(pd.Series(array), errors="coerce", format="ISO8601")
            bad = parsed.isna() & pd.Series(array).notna()
            if bad.any():
                row = int(np.flatnonzero(bad.to_numpy())[0])
                raise PayloadError(f"column '{name}' expects an ISO 8601 date/time, got {array[row]!r} in {where(row)}")
            return parsed.to_numpy()
        # text as the model's own conform() makes it: str, with None for missing
        return np.asarray([v if v is None or isinstance(v, str) else str(v) for v in array.tolist()], dtype=object)

    # --- V1 ------------------------------------------------------------------------------------------------------
    def from_instances(self, instances) -> list[np.ndarray]:
        if not isinstance(instances, list):
            raise PayloadError(f"'instances' must be a list of records or rows, got {type(instances).__name__}")
        check_size(len(instances), "'instances'")
        first = instances[0]
        if isinstance(first, dict):
            return self._from_records(instances)
        if isinstance(first, list):
            return self._from_rows(instances)
        raise PayloadError(
            f"instance 0 must be a record (object of column: value) or a row (list of values in the "
            f"order {', '.join(self.names)}), got {type(first).__name__}"
        )

    def _from_records(self, records: list) -> list[np.ndarray]:
        expected = self.index.keys()
        for row, record in enumerate(records):
            if not isinstance(record, dict):
                raise PayloadError(
                    f"instance {row} is a {type(record).__name__}, but instance 0 is a record: send "
                    "all records or all rows"
                )
            if record.keys() != expected:
                missing = [n for n in self.names if n not in record]
                if missing:
                    raise PayloadError(
                        f"instance {row} lacks column(s) {', '.join(repr(m) for m in missing)}; the "
                        f"model takes: {self.describe()}"
                    )
                unknown = [k for k in record if k not in self.index]
                raise PayloadError(
                    f"instance {row} has unknown column(s) {', '.join(repr(u) for u in unknown)}; the "
                    f"model takes: {self.describe()}"
                )
        return [
            self.convert(i, [record[name] for record in records], lambda r: f"instance {r}")
            for i, name in enumerate(self.names)
        ]

    def _from_rows(self, rows: list) -> list[np.ndarray]:
        width = len(self.names)
        if self.all_numeric:  # the fast path: one conversion for the whole batch
            try:
                matrix = np.asarray(rows)
            except ValueError:
                matrix = None
            if (
                matrix is not None
                and matrix.ndim == 2
                and matrix.shape[1] == width
                and matrix.dtype.kind in "iuf"
                and not np.isinf(matrix).any()
                and not _has_bool(v for row in rows for v in row)  # numpy would take true/false as 1/0
            ):
                return [matrix[:, i].astype(np.float64) for i in range(width)]
        for row, values in enumerate(rows):
            if not isinstance(values, list):
                raise PayloadError(
                    f"instance {row} is a {type(values).__name__}, but instance 0 is a row: send all "
                    "records or all rows"
                )
            if len(values) != width:
                raise PayloadError(f"instance {row} has {len(values)} values, expected {width}: {self.describe()}")
        return [self.convert(i, [values[i] for values in rows], lambda r: f"instance {r}") for i in range(width)]

    # --- V2 ------------------------------------------------------------------------------------------------------
    def from_infer_request(self, request) -> list[np.ndarray]:
        by_name = {}
        for tensor in request.inputs:
            if tensor.name not in self.index:
                raise PayloadError(
                    f"unknown input '{tensor.name}'; the model takes one input per column: {self.describe()}"
                )
            if tensor.name in by_name:
                raise PayloadError(f"input '{tensor.name}' is given twice")
            by_name[tensor.name] = tensor
        missing = [n for n in self.names if n not in by_name]
        if missing:
            raise PayloadError(
                f"missing input(s) {', '.join(repr(m) for m in missing)}; the model takes one input "
                f"per column: {self.describe()}"
            )
        columns, rows = [], None
        for i, name in enumerate(self.names):
            tensor = by_name[name]
            shape = list(tensor.shape or [])
            if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1):
                raise PayloadError(f"input '{name}' has shape {shape}, expected [n] or [n, 1]")
            n = shape[0]
            check_size(n, f"input '{name}'")
            if rows is None:
                rows = n
            elif n != rows:
                raise PayloadError(f"input '{name}' has {n} rows, but input '{self.names[0]}' has {rows}")
            datatype = tensor.datatype
            if self.numeric[i] and datatype not in NUMERIC_V2:
                raise PayloadError(
                    f"input '{name}' has datatype {datatype}, expected a numeric one (FP64, FP32, "
                    "INT64, ...) for this column"
                )
            if not self.numeric[i] and datatype != "BYTES":
                raise PayloadError(
                    f"input '{name}' has datatype {datatype}, expected BYTES for this {self.types[i]} column"
                )
            try:
                if self.numeric[i]:
                    values = tensor.as_numpy().reshape(-1)
                else:
                    data = tensor.data if tensor._raw_data is None else tensor.as_numpy().reshape(-1).tolist()
                    values = [v.decode("utf-8") if isinstance(v, bytes) else v for v in _flatten(data)]
            except PayloadError:
                raise
            except Exception as err:
                raise PayloadError(
                    f"input '{name}': its data does not fit datatype {datatype} and shape {shape} ({err})"
                ) from None
            if len(values) != n:
                raise PayloadError(f"input '{name}' has {len(values)} values, but its shape {shape} says {n}")
            columns.append(self.convert(i, values, lambda r, name=name: f"row {r} of input '{name}'"))
        return columns


def _has_bool(values) -> bool:
    return any(v is True or v is False for v in values)


def _parse_json(body):
    import orjson

    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise PayloadError(f"the body is not valid JSON: {err}") from None


def _flatten(data) -> list:
    if data and isinstance(data[0], list):
        return [v for part in data for v in part]
    return list(data)


def check_size(n, what: str) -> None:
    """PayloadError naming `what` unless it holds 1 to MAX_ROWS rows (the server's and the capture sink's rule)."""
    if not isinstance(n, int) or n <= 0:
        raise PayloadError(f"{what} is empty: send at least one row")
    if n > MAX_ROWS:
        raise PayloadError(f"{what} has {n} rows, more than the {MAX_ROWS} one request may hold: split the batch")


def _kserve_model_class():
    import kserve

    return kserve.Model


class _Predictor:
    """Rows as numpy columns -> (labels or values, probabilities or None).

    The columns already have the types the model's `conform` gives (float64 numbers, str/None text, datetime64), so
    the model's scorer gets them directly: the same answers as `TabularModel.predict/predict_proba` (the tests check
    it) without converting every column a second time.
    """

    def __init__(self, model):
        import pandas as pd

        self.model = model
        self.names = [name for name, _ in model.input_columns]
        self.classification = model.task == "classification"
        self.classes = np.asarray(model.classes, dtype=object) if self.classification else None
        self._frame = pd.DataFrame
        self.compiled = None  # the fast path push proved for this model (fast_path.load), when it has one

    def __call__(self, columns: list[np.ndarray]):
        if self.compiled is not None:
            scores = self.compiled(columns)
        else:
            scores = np.asarray(self.model.scorer(self._frame(dict(zip(self.names, columns)), copy=False)))
        if self.classification:
            proba = scores.astype(np.float64, copy=False)
            if proba.ndim != 2 or proba.shape[1] != len(self.classes):
                raise RuntimeError(
                    f"the model's scorer returned shape {proba.shape}, expected (n, {len(self.classes)})"
                )
            return self.classes[np.argmax(proba, axis=1)], proba
        return scores.reshape(-1).astype(np.float64), None


def make_model_class():
    """The kserve.Model subclass (built on first use, so importing this module does not import kserve)."""
    from kserve.errors import InvalidInput
    from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

    class KfpCtModel(_kserve_model_class()):
        """Serves one kfp-ct model directory (see the module docstring)."""

        def __init__(self, name: str, model_uri: str):
            super().__init__(name)
            self.model_uri = model_uri
            self.version = model_uri.rstrip("/").rsplit("/", 1)[-1]  # a published version's folder name
            self.model = None
            self._copy = contextlib.ExitStack()
            self.capture = None

        def load(self) -> bool:
            from threadpoolctl import threadpool_limits

            from kfp_ct.components._common import fast_path
            from kfp_ct.components._common.model import load_model

            # One request is small and requests run concurrently: OpenMP threads inside one prediction cost far more
            # than they give (one elec2 row: ~0.25 ms with 1 thread, 9-30 ms with spinning threads on a busy host).
            threadpool_limits(limits=int(os.environ.get("KFP_CT_SERVER_THREADS", "1")), user_api="openmp")

            from kfp_ct.components._common.storage import local_copy

            with contextlib.ExitStack() as copy:  # an object-store model's copy: kept while it serves, else removed
                path = copy.enter_context(local_copy(self.model_uri, published=True, what="model URI"))
                self.model = load_model(path)
                self._copy = copy.pop_all()
            self.columns = Columns(self.model.input_columns)
            self.predictor = _Predictor(self.model)
            if os.environ.get("KFP_CT_SERVER_FAST_PATH", "1") != "0":
                self.predictor.compiled = fast_path.load(self.model)  # only with push's proof for these files
            _log.info(
                "kfp-ct: serving %s (%s) with %s",
                self.name,
                self.model.framework,
                "its proven numpy fast path" if self.predictor.compiled is not None else "the model itself",
            )
            self.classes = list(self.model.classes) if self.model.task == "classification" else None
            self.ready = True
            return self.ready

        def start_capture(self, capture_uri: str) -> None:
            """From now on, what the model scores is captured under `capture_uri` (in the background)."""
            from kfp_ct.components._common import capture

            schema = capture.CaptureSchema(self.model.input_columns, self.model.task, self.classes)
            self.capture = capture.BackgroundCapture(capture.CaptureWriter(capture_uri, self.name, schema))

        def stop(self):
            if self.capture is not None:
                self.capture.close()
            self._copy.close()
            super().stop()

        def get_input_types(self) -> list[dict]:
            return [
                {"name": n, "datatype": "FP64" if numeric else "BYTES", "shape": [-1]}
                for n, numeric in zip(self.columns.names, self.columns.numeric)
            ]

        def get_output_types(self) -> list[dict]:
            if self.classes is None:
                return [{"name": "predictions", "datatype": "FP64", "shape": [-1]}]
            return [
                {"name": "predictions", "datatype": _label_datatype(self.classes), "shape": [-1]},
                {"name": "probabilities", "datatype": "FP64", "shape": [-1, len(self.classes)]},
            ]

        def _run(self, columns):
            try:
                return self.predictor(columns)
            except (ValueError, TypeError) as err:  # the model refused these values: the caller's to fix
                raise InvalidInput(f"the model cannot score these rows: {err}") from None

        async def predict(self, payload, headers=None, response_headers=None):
            try:
                if isinstance(payload, (bytes, str)):  # a body sent without a JSON content-type
                    payload = _parse_json(payload)
                if isinstance(payload, InferRequest):
                    columns = self.columns.from_infer_request(payload)
                elif isinstance(payload, dict):
                    if "instances" not in payload:
                        raise PayloadError("the body lacks 'instances': send {\"instances\": [records or rows]}")
                    columns = self.columns.from_instances(payload["instances"])
                else:
                    raise PayloadError(f"the body must be a JSON object with 'instances', got {type(payload).__name__}")
            except PayloadError as err:
                raise InvalidInput(str(err)) from None
            predictions, proba = self._run(columns)
            if self.capture is not None:
                self._capture(payload, headers, columns, predictions, proba)
            if isinstance(payload, InferRequest):
                outputs = [_infer_output("predictions", predictions)]
                if proba is not None:
                    outputs.append(InferOutput("probabilities", list(proba.shape), "FP64", proba))
                return InferResponse(response_id=payload.id or "", model_name=self.name, infer_outputs=outputs)
            response = {"predictions": predictions.tolist()}
            if proba is not None:
                response["probabilities"] = proba  # the ORJSONResponse serializes numpy arrays natively
            return response

        def _capture(self, payload, headers, columns, predictions, proba) -> None:
            """Hands the scored rows to the capture thread, under the request's id: KServe's logger's (`ce-id`),
            the client's `x-request-id`, the V2 request's id, else a new one."""
            headers = headers or {}
            request_id = (
                headers.get("ce-id")
                or headers.get("x-request-id")
                or (payload.id if isinstance(payload, InferRequest) else None)
                or uuid.uuid4().hex
            )
            self.capture.add(request_id, datetime.now(UTC), self.version, columns, predictions, proba)

    return KfpCtModel


def _label_datatype(classes) -> str:
    if all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) for c in classes):
        return "INT64"
    if all(isinstance(c, (int, float, np.number)) and not isinstance(c, bool) for c in classes):
        return "FP64"
    return "BYTES"


def _infer_output(name: str, values: np.ndarray):
    from kserve.protocol.infer_type import InferOutput

    datatype = (
        _label_datatype(values.tolist())
        if values.dtype == object
        else ("INT64" if values.dtype.kind in "iu" else "FP64")
    )
    if datatype == "BYTES":
        return InferOutput(name, [len(values)], "BYTES", [str(v) for v in values.tolist()])
    return InferOutput(name, [len(values)], datatype, values.astype(np.int64 if datatype == "INT64" else np.float64))


def build_model(model_uri: str, model_name: str | None = None, capture_uri: str | None = None):
    """A loaded KfpCtModel (raises with a clear message when the model cannot be loaded); with `capture_uri` it
    captures what it scores there (`_common.capture`'s layout, written in the background).

    Without `model_name` it is named after the registered model in its metadata, else 'model'.
    """
    if capture_uri:
        from kfp_ct.components._common import storage

        storage.check_scheme(capture_uri, "capture URI")
    model = make_model_class()(model_name or "model", model_uri)
    model.load()
    if not model_name:
        model.name = str(model.model.metadata.get("model_name") or "model")
    if capture_uri:
        model.start_capture(capture_uri)
    return model


def max_body_bytes() -> int:
    """The request body limit: $KFP_CT_MAX_BODY_BYTES, else `MAX_BODY_BYTES`."""
    text = os.environ.get("KFP_CT_MAX_BODY_BYTES", "")
    try:
        limit = int(text) if text else MAX_BODY_BYTES
    except ValueError:
        raise ValueError(f"KFP_CT_MAX_BODY_BYTES must be a number of bytes, found {text!r}") from None
    if limit < 1:
        raise ValueError(f"the request body limit must be at least 1 byte, found {limit}")
    return limit


class BodyLimit:
    """ASGI middleware: a request whose body is over `max_bytes` is answered 413 (see the module docstring); the app
    behind it never sees that body, only a disconnect."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or ())
        length = headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_bytes:
            if headers.get(b"expect", b"").lower() != b"100-continue":
                await _drain(receive)
            return await self._refuse(send, f"{int(length)} bytes")
        state = {"received": 0, "started": False, "refused": False}

        async def limited_receive():
            if state["refused"]:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > self.max_bytes and not state["started"]:
                    state["refused"] = True
                    if message.get("more_body"):
                        await _drain(receive)
                    await self._refuse(send, f"more than {self.max_bytes} bytes (streamed)")
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message):
            if state["refused"]:
                return  # the 413 is the answer
            state["started"] = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not state["refused"]:
                raise

    async def _refuse(self, send, size: str) -> None:
        import json

        body = json.dumps(
            {
                "error": f"request body too large: {size}, over the server's limit of {self.max_bytes} bytes "
                "(--max_body_bytes or KFP_CT_MAX_BODY_BYTES): send fewer rows per request"
            }
        ).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers + [(b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


async def _drain(receive) -> None:
    """Reads and drops the rest of a request body, for at most DRAIN_SECONDS."""
    import asyncio

    loop = asyncio.get_running_loop()
    deadline = loop.time() + DRAIN_SECONDS
    while (left := deadline - loop.time()) > 0:
        try:
            message = await asyncio.wait_for(receive(), left)
        except TimeoutError:
            return
        if message["type"] != "http.request" or not message.get("more_body"):
            return


def __getattr__(name: str):
    """`limited_app`: KServe's FastAPI app behind `BodyLimit`, what uvicorn serves (in each worker process too)."""
    if name == "limited_app":
        from kserve import model_server

        return BodyLimit(model_server.app, max_body_bytes())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _model_server(host: str, max_body: int | None = None, **kwargs):
    import kserve
    from kserve import model_server

    if max_body is not None:
        os.environ["KFP_CT_MAX_BODY_BYTES"] = str(int(max_body))  # worker processes inherit it
    max_body_bytes()  # a bad limit fails before the server starts
    model_server.FASTAPI_APP_IMPORT_STRING = f"{__name__}:limited_app"  # uvicorn serves the app behind BodyLimit

    class LoopbackModelServer(kserve.ModelServer):
        """kserve.ModelServer binds 0.0.0.0; this one binds `host` (loopback by default)."""

        def setup_event_loop(self):
            if self._rest_server is not None:
                self._rest_server.config.host = host
            super().setup_event_loop()

    return LoopbackModelServer(**kwargs)


def serve(
    model_uri: str,
    model_name: str | None = None,
    port: int = 8080,
    host: str = "127.0.0.1",
    enable_latency_logging: bool = False,
    max_body: int | None = None,
    capture: str | None = None,
) -> None:
    """Serves the model at `model_uri` on http://{host}:{port} until interrupted (KServe V1 and V2 REST); a request
    body over `max_body` bytes (default $KFP_CT_MAX_BODY_BYTES, else 32 MiB) is answered 413. With `capture` (a path,
    gs://, s3:// or minio:// URI) every scored request is captured there (`_common.capture`'s layout).

    This is what `kfp-ct serve MODEL_URI [--port N] [--capture URI]` runs.
    """
    model = build_model(model_uri, model_name, capture)
    server = _model_server(
        host, max_body, http_port=port, enable_grpc=False, enable_latency_logging=enable_latency_logging
    )
    _quiet_per_request_logs()
    server.start([model])


def _quiet_per_request_logs() -> None:
    """KServe logs a line per request (timing middleware, access log) at INFO: costly under load. Keep warnings."""
    for name in ("kserve.trace", "uvicorn.access"):
        logging.getLogger(name).setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", os.environ.get("KFP_CT_SERVER_THREADS", "1"))
    from kserve import model_server

    parser = argparse.ArgumentParser(parents=[model_server.parser], description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model_uri",
        default=os.environ.get("STORAGE_URI", "/mnt/models"),
        help="The model: a path, file:// or gs:// (KServe mounts storageUri at /mnt/models).",
    )
    parser.add_argument("--host", default="0.0.0.0", help="The address to bind (in a pod: all interfaces).")
    parser.add_argument(
        "--max_body_bytes",
        type=int,
        default=None,
        help="Requests with a larger body are answered 413 (default $KFP_CT_MAX_BODY_BYTES, else 32 MiB).",
    )
    parser.add_argument(
        "--capture",
        default=os.environ.get("KFP_CT_CAPTURE_URI") or None,
        help="Capture every scored request under this URI (path, gs://, s3://, minio://); default $KFP_CT_CAPTURE_URI.",
    )
    parser.set_defaults(enable_grpc=False)  # the ServingRuntime exposes REST (V1 and V2) only
    args, _ = parser.parse_known_args(argv)
    model = build_model(args.model_uri, args.model_name, args.capture)
    server = _model_server(
        args.host,
        args.max_body_bytes,
        http_port=args.http_port,
        workers=args.workers,
        enable_grpc=args.enable_grpc,
        enable_latency_logging=args.enable_latency_logging,
    )
    if not args.enable_latency_logging:
        _quiet_per_request_logs()
    server.start([model])


if __name__ == "__main__":
    main()
