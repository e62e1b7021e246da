"""Captured traffic: what a served model received and answered, as time-partitioned Parquet.

Layout under a capture URI (a path, file://, gs://, s3:// or minio://):

    {uri}/model={name}/dt={YYYY-MM-DD}/hour={HH}/{file}.parquet

(UTC), one row per scored instance with the columns

- `request_id` (string): the request's id (KServe's CloudEvent id, which is the request's `Ce-Id` header or a uuid),
- `row` (int32): the instance's position in its request,
- `time` (timestamp[us, UTC]): when the request was received,
- `model_version` (string): the version that answered,
- every input column typed as the model's signature types it (double -> float64, float -> float32, long -> int64,
  integer -> int32, datetime -> timestamp[us], anything else -> string); a value that an integer column cannot
  hold exactly (1.5 in a `long` column, which the server scores as a number) is null,
- `prediction`: the label (typed like the model's classes) or the regression value (float64), null when the model
  never answered the request,
- `probabilities` (list<float64>, classification only): in the order of the model's classes, which the file's schema
  metadata names (`kfp_ct.classes`, JSON).

Files appear atomically: locally a file is written under a hidden temporary name (`.{file}.…partial`), fsync'd and
renamed into place; in an object store it is one upload of a finished file. Readers ignore hidden names.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np

CLASSES_KEY = b"kfp_ct.classes"
BASE_COLUMNS = ("request_id", "row", "time", "model_version")
_INPUT_TYPES = {"double": "float64", "float": "float32", "long": "int64", "integer": "int32"}


def partition(model_name: str, when: datetime) -> str:
    """The folder of the rows captured at `when` (UTC): `model=NAME/dt=YYYY-MM-DD/hour=HH`."""
    when = when.astimezone(UTC)
    return f"model={model_name}/dt={when:%Y-%m-%d}/hour={when:%H}"


def _arrow_type(mlflow_type: str):
    import pyarrow as pa

    if mlflow_type in _INPUT_TYPES:
        return pa.from_numpy_dtype(np.dtype(_INPUT_TYPES[mlflow_type]))
    if mlflow_type == "datetime":
        return pa.timestamp("us")
    return pa.string()


def _label_type(classes: list):
    import pyarrow as pa

    if all(isinstance(c, (int, np.integer)) and not isinstance(c, (bool, np.bool_)) for c in classes):
        return pa.int64()
    if all(isinstance(c, (int, float, np.number)) and not isinstance(c, bool) for c in classes):
        return pa.float64()
    return pa.string()


class CaptureSchema:
    """The capture table of one model: its Arrow schema, and how scored rows become a table of it."""

    def __init__(self, input_columns: list[tuple[str, str]], task: str, classes: list | None = None):
        import pyarrow as pa

        if not input_columns:
            raise ValueError("the model has no input signature: cannot type its captured inputs")
        clash = [name for name, _ in input_columns if name in (*BASE_COLUMNS, "prediction", "probabilities")]
        if clash:
            raise ValueError(f"input column(s) {', '.join(map(repr, clash))} clash with the capture's own columns")
        self.input_columns = list(input_columns)
        self.classification = task == "classification"
        self.classes = list(classes or []) if self.classification else None
        fields = [
            pa.field("request_id", pa.string(), nullable=False),
            pa.field("row", pa.int32(), nullable=False),
            pa.field("time", pa.timestamp("us", tz="UTC"), nullable=False),
            pa.field("model_version", pa.string()),
            *(pa.field(name, _arrow_type(kind)) for name, kind in input_columns),
            pa.field("prediction", _label_type(self.classes) if self.classification else pa.float64()),
        ]
        metadata = None
        if self.classification:
            fields.append(pa.field("probabilities", pa.list_(pa.float64())))
            metadata = {CLASSES_KEY: json.dumps([_plain(c) for c in self.classes]).encode()}
        self.schema = pa.schema(fields, metadata=metadata)

    def table(
        self,
        request_ids: list[str],
        rows: list[int],
        times: list[datetime],
        versions: list[str | None],
        columns: list,
        predictions: list | None,
        probabilities: list | None = None,
    ):
        """A table of the schema from per-row lists and one sequence (numpy array or list) per input column, in the
        signature's order; `predictions`/`probabilities` hold None for an unanswered row."""
        import pyarrow as pa

        n = len(request_ids)
        arrays = [
            pa.array(request_ids, pa.string()),
            pa.array(rows, pa.int32()),
            pa.array(times, pa.timestamp("us", tz="UTC")),
            pa.array(versions, pa.string()),
        ]
        for (name, kind), values in zip(self.input_columns, columns):
            arrays.append(_input_array(values, _arrow_type(kind), name))
        arrays.append(
            pa.array(predictions if predictions is not None else [None] * n, self.schema.field("prediction").type)
        )
        if self.classification:
            arrays.append(pa.array(probabilities if probabilities is not None else [None] * n, pa.list_(pa.float64())))
        return pa.Table.from_arrays(arrays, schema=self.schema)


class RowBuffer:
    """Scored requests collected for one capture table: `add` each request's columns and answers, then `table`."""

    def __init__(self, schema: CaptureSchema):
        self.schema = schema
        self.rows = 0
        self._ids, self._row, self._times, self._versions, self._parts = [], [], [], [], []
        self._predictions, self._probabilities = [], []

    def add(self, request_id: str, when: datetime, version: str | None, columns: list, predictions, probabilities=None):
        """One request: its input columns (numpy, the signature's order), and its predictions and probabilities
        (sequences of its rows, or None when unanswered)."""
        n = len(columns[0])
        self.extend([request_id] * n, range(n), [when] * n, [version] * n, columns, predictions, probabilities)

    def extend(self, request_ids: list, rows, times: list, versions: list, columns: list, predictions, probabilities):
        """Rows of any number of requests: per-row sequences, input columns as numpy arrays, predictions and
        probabilities per row (or None for all rows unanswered)."""
        n = len(columns[0])
        self._parts.append(columns)
        self._ids += request_ids
        self._row += rows
        self._times += times
        self._versions += versions
        self._predictions += [None] * n if predictions is None else _listed(predictions)
        if self.schema.classification:
            self._probabilities += [None] * n if probabilities is None else _listed(probabilities)
        self.rows += n

    def table(self):
        if not self._parts:
            return None
        columns = [np.concatenate([part[i] for part in self._parts]) for i in range(len(self._parts[0]))]
        return self.schema.table(
            self._ids,
            self._row,
            self._times,
            self._versions,
            columns,
            self._predictions,
            self._probabilities if self.schema.classification else None,
        )


def _listed(values) -> list:
    return values.tolist() if isinstance(values, np.ndarray) else list(values)


class BackgroundCapture:
    """A thread that writes what `add` hands it (see RowBuffer.add) every `flush_seconds`, or sooner once `max_rows`
    wait, as one file per hour partition named after its time; `close` writes the rest. A failed write is logged and
    counted (`failures`), never raised into the caller (the model server keeps serving)."""

    def __init__(self, writer: CaptureWriter, flush_seconds: float = 5.0, max_rows: int = 50_000):
        import threading

        self.writer, self.flush_seconds, self.max_rows = writer, flush_seconds, max_rows
        self.failures = 0
        self._buffer = RowBuffer(writer.schema)
        self._cond = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._loop, name="kfp-ct-capture", daemon=True)
        self._thread.start()

    def add(self, *args, **kwargs) -> None:
        with self._cond:
            self._buffer.add(*args, **kwargs)
            if self._buffer.rows >= self.max_rows:
                self._cond.notify()

    def _loop(self) -> None:
        import logging
        import secrets

        while True:
            with self._cond:
                if not self._closing:
                    self._cond.wait(self.flush_seconds)
                buffer, self._buffer = self._buffer, RowBuffer(self.writer.schema)
                closing = self._closing
            if buffer.rows:
                try:
                    name = f"{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{secrets.token_hex(4)}"
                    self.writer.write(buffer.table(), name)
                except Exception as err:
                    self.failures += 1
                    logging.getLogger(__name__).warning(
                        "kfp-ct: %d captured rows not written to %s: %s: %s",
                        buffer.rows,
                        self.writer.uri,
                        type(err).__name__,
                        err,
                    )
            if closing:
                return

    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join()


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def _input_array(values, arrow_type, name: str):
    import pyarrow as pa

    if pa.types.is_integer(arrow_type):
        floats = np.asarray([np.nan if v is None else v for v in values] if isinstance(values, list) else values, float)
        info = np.iinfo(arrow_type.to_pandas_dtype())
        exact = np.isfinite(floats) & (np.floor(floats) == floats) & (floats >= info.min) & (floats <= info.max)
        return pa.array(np.where(exact, floats, 0).astype(arrow_type.to_pandas_dtype()), arrow_type, mask=~exact)
    if pa.types.is_floating(arrow_type):
        if isinstance(values, list):
            values = np.asarray([np.nan if v is None else v for v in values], float)
        return pa.array(np.asarray(values, dtype=arrow_type.to_pandas_dtype()), arrow_type, from_pandas=True)
    if pa.types.is_timestamp(arrow_type):
        import pandas as pd

        return pa.array(pd.to_datetime(pd.Series(values), errors="coerce", format="ISO8601"), arrow_type)
    if isinstance(values, np.ndarray):
        values = values.tolist()
    try:
        return pa.array([None if v is None else str(v) for v in values], arrow_type)
    except pa.ArrowInvalid as err:
        raise ValueError(f"captured column '{name}': {err}") from None


class CaptureWriter:
    """Writes capture tables of one model under a capture URI, one atomic file per hour partition a table spans."""

    def __init__(self, uri: str, model_name: str, schema: CaptureSchema):
        from kfp_ct.components._common import storage

        if not model_name or "/" in model_name or model_name.startswith("."):
            raise ValueError(f"model name {model_name!r} must be a plain, non-hidden name (it names a folder)")
        self.scheme = storage.check_scheme(uri, "capture URI")
        self.uri = uri.rstrip("/")
        self.model_name = model_name
        self.schema = schema

    def write(self, table, name: str) -> list[str]:
        """Writes `table`'s rows as `{partition}/{name}.parquet` for each hour its `time` column spans and returns the
        URIs written. The same `name` and rows give the same files: writing them again replaces them whole."""
        import pyarrow.compute as pc

        if table.num_rows == 0:
            return []
        if "/" in name or name.startswith("."):
            raise ValueError(f"capture file name {name!r} must be a plain, non-hidden name")
        hours = pc.floor_temporal(table["time"], unit="hour")
        unique = pc.unique(hours).to_pylist()
        return [
            self._write_file(
                table if len(unique) == 1 else table.filter(pc.equal(hours, hour)),
                f"{partition(self.model_name, hour)}/{name}.parquet",
            )
            for hour in unique
        ]

    def _write_file(self, table, rel: str) -> str:
        import pyarrow.parquet as pq

        from kfp_ct.components._common import storage
        from kfp_ct.components._common.datasets import atomic_path

        if self.scheme == "":
            target = os.path.join(storage.split_uri(self.uri)[2], *rel.split("/"))
            with atomic_path(target) as tmp:
                pq.write_table(table, tmp)
                _fsync(tmp)
            _fsync(os.path.dirname(target))
            return target
        store, prefix = storage._bucket(self.uri)
        key = f"{prefix.strip('/')}/{rel}" if prefix.strip("/") else rel
        fd, tmp = tempfile.mkstemp(suffix=".parquet")
        os.close(fd)
        try:
            pq.write_table(table, tmp)
            with store.errors(f"{self.uri}/{rel}"):
                store.put_file(key, tmp)
        finally:
            os.remove(tmp)
        return f"{self.uri}/{rel}"


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- reading --------------------------------------------------------------------------------------------------------


def _hours(start: datetime, end: datetime) -> set[str]:
    hour = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    names = set()
    while hour < end:
        names.add(f"dt={hour:%Y-%m-%d}/hour={hour:%H}")
        hour += timedelta(hours=1)
    return names


def capture_files(uri: str, model_name: str, start: datetime | None = None, end: datetime | None = None) -> list[str]:
    """The capture files of `model_name` under `uri` (URIs, sorted), only those of the hours that meet [start, end)
    when both are given: the other partitions are never listed file by file nor opened."""
    from kfp_ct.components._common import storage

    scheme = storage.check_scheme(uri, "capture URI")
    base = f"{uri.rstrip('/')}/model={model_name}"
    wanted = _hours(start, end) if start is not None and end is not None else None
    found = []
    if scheme == "":
        root = storage.split_uri(base)[2]
        for day in sorted(os.listdir(root)) if os.path.isdir(root) else []:
            for hour in sorted(os.listdir(os.path.join(root, day))) if day.startswith("dt=") else []:
                if wanted is not None and f"{day}/{hour}" not in wanted:
                    continue
                folder = os.path.join(root, day, hour)
                found += [
                    os.path.join(folder, f)
                    for f in sorted(os.listdir(folder))
                    if _visible(f) and f.endswith(".parquet")
                ]
        return found
    store, prefix = storage._bucket(base)
    folders = sorted(wanted) if wanted is not None else [""]
    with store.errors(base):
        for folder in folders:
            for key in store.keys(f"{prefix}/{folder}"):
                rest = key[len(prefix) + 1 :]
                if rest.count("/") == 2 and _visible(rest.rsplit("/", 1)[1]) and rest.endswith(".parquet"):
                    found.append(f"{scheme}://{store.name}/{key}")
    return sorted(found)


def _visible(name: str) -> bool:
    return not name.startswith(".")


def _tables(files: list[str], columns: list[str] | None = None) -> Iterator:
    """Each capture file as an Arrow table (object-store files downloaded one at a time to a temporary folder)."""
    import pyarrow.parquet as pq

    from kfp_ct.components._common import storage

    with tempfile.TemporaryDirectory(prefix="kfp-ct-capture-") as tmp:
        for file in files:
            if storage.split_uri(file)[0]:
                local = os.path.join(tmp, "file.parquet")
                storage.download_file(file, local)
                file = local
            yield pq.read_table(file, columns=columns)


def read_capture(uri: str, model_name: str, start: datetime | None = None, end: datetime | None = None):
    """The captured rows of `model_name` under `uri` whose time is in [start, end) (all when no window), as one Arrow
    table, or None when nothing was captured (files of one model share its schema; a model whose signature changed
    between versions gives the union)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    tables = list(_tables(capture_files(uri, model_name, start, end)))
    if not tables:
        return None
    table = pa.concat_tables(tables, promote_options="default")
    if start is not None and end is not None:
        kind = pa.timestamp("us", tz="UTC")
        mask = pc.and_(
            pc.greater_equal(table["time"], pa.scalar(start.astimezone(UTC), kind)),
            pc.less(table["time"], pa.scalar(end.astimezone(UTC), kind)),
        )
        table = table.filter(mask)
    return table


def iter_request_ids(uri: str, model_name: str, start: datetime, end: datetime) -> Iterator[str]:
    """The request ids captured for `model_name` in the hours that meet [start, end) (for de-duplication)."""
    for table in _tables(capture_files(uri, model_name, start, end), ["request_id"]):
        yield from table["request_id"].to_pylist()


# --- captured traffic as a dataset ---------------------------------------------------------------------------------

ANSWER_COLUMNS = ("prediction", "probabilities")
ID_COLUMN = "request_id"
"""The column a labels source is joined on by default: the request id each captured row carries."""


def input_columns(names: list[str]) -> list[str] | None:
    """The model's input columns of a dataset read from captured traffic (every column but `BASE_COLUMNS` and the
    answer), or None when `names` are not a capture's columns (no request_id, row, time, model_version and
    prediction)."""
    if not all(c in names for c in (*BASE_COLUMNS, "prediction")):
        return None
    return [c for c in names if c not in BASE_COLUMNS and c not in ANSWER_COLUMNS]


def join_labels(captured, labels_uri: str, target_column: str, id_column: str = ID_COLUMN):
    """The captured rows (a pandas frame with `_common.capture`'s columns) that the model answered and that have a label
    in the labels source `labels_uri` (any source ingest reads: a file or a folder or prefix of files, Parquet, CSV, ...
    on a path, http(s)://, gs://, s3://), joined on `id_column` (and on `row` when the labels carry it, for requests of
    several rows). Returns (the joined frame, the counts it states): rows without a label, labels without a captured
    prediction, captured rows the model never answered, labels given more than once (the same label: kept once;
    different labels: that id is left out), captured rows repeated under one id (kept once)."""
    import pandas as pd

    from kfp_ct.components._common import datasets
    from kfp_ct.components._common.windows import read_dataset

    missing = [c for c in (id_column, "prediction") if c not in captured.columns]
    if missing:
        raise ValueError(
            f"labels need captured predictions in the data: it lacks {', '.join(map(repr, missing))} "
            "(it must be the model's captured traffic, see kfp-ct serve --capture / capture-sink)"
        )
    with tempfile.TemporaryDirectory(prefix="kfp-ct-labels-") as tmp:
        read_dataset(labels_uri, f"{tmp}/labels.parquet")
        labels = datasets.read_frame(f"{tmp}/labels.parquet")
    missing = [c for c in (id_column, target_column) if c not in labels.columns]
    if missing:
        raise ValueError(
            f"the labels source {labels_uri} lacks column(s) {', '.join(map(repr, missing))}; its columns are: "
            f"{', '.join(map(str, labels.columns))}"
        )
    keys = [id_column, "row"] if "row" in labels.columns and "row" in captured.columns else [id_column]
    labels = labels[keys + [target_column]].dropna(subset=[target_column])
    counts = labels.groupby(keys, dropna=False)[target_column].nunique()
    conflicting = counts[counts > 1].index
    repeated = int(len(labels) - labels.drop_duplicates(keys + [target_column]).shape[0])
    labels = labels.drop_duplicates(keys + [target_column])
    labels = labels[~labels.set_index(keys).index.isin(conflicting)]
    captured = captured.drop(columns=[target_column], errors="ignore")
    duplicated = int(captured.duplicated(keys).sum())
    captured = captured.drop_duplicates(keys)
    unanswered = int(captured["prediction"].isna().sum())
    answered = captured[captured["prediction"].notna()]
    joined = answered.merge(labels, on=keys, how="inner")
    stated = {
        "labels_source": labels_uri,
        "join_key": keys,
        "captured_rows": len(captured),
        "labelled_rows": len(joined),
        "unlabelled_rows": len(answered) - len(joined),
        "unanswered_rows": unanswered,
        "labels_without_prediction": len(labels) - len(joined),
        "repeated_labels": repeated,
        "conflicting_label_keys": len(conflicting),
        "repeated_captured_rows": duplicated,
    }
    return pd.DataFrame(joined), stated


def labelled_examples(captured, labels_uri: str, target_column: str, id_column: str = ID_COLUMN):
    """Training rows from captured traffic: the rows with a label (`join_labels`), holding the model's input
    columns, `time` and the target; returns (the frame, the counts `join_labels` states)."""
    joined, stated = join_labels(captured, labels_uri, target_column, id_column)
    inputs = input_columns(list(captured.columns)) or []
    return joined[[c for c in inputs if c != target_column] + ["time", target_column]], stated
