"""Sources: read CSV, Parquet or JSON lines (gzip'd or not) from a path, file://, gs://, s3://, minio:// or
http(s):// into one Parquet dataset, streaming in bounded batches so memory stays flat as rows grow. Shared by ingest
(a user's source) and reference_data (a champion's training data)."""

from __future__ import annotations

import contextlib
import csv
import gzip
import http.client
import io
import os
import re
import shutil
import socket
import tempfile
import threading
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from kfp_ct.components._common import datasets, storage

FORMATS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}
BLOCK_BYTES = 16 << 20
DELIMITERS = (",", ";", "\t", "|")
SNIFF_BYTES = 64 << 10  # the sample the CSV delimiter is told from
_CSV_CONVERSION = re.compile(r"In CSV column #(\d+): .*CSV conversion error to (\w+)")


def detect_format(uri: str, file_format: str = "auto") -> tuple[str, bool]:
    """(format, gzipped) of a source, from its name when `file_format` is 'auto'."""
    name = storage.split_uri(uri)[2].lower()
    gzipped = name.endswith(".gz")
    if gzipped:
        name = name[: -len(".gz")]
    if file_format != "auto":
        if file_format not in set(FORMATS.values()):
            raise ValueError(f"unknown file_format '{file_format}': expected auto, csv, parquet or jsonl")
        return file_format, gzipped
    ext = os.path.splitext(name)[1]
    if ext not in FORMATS:
        raise ValueError(f"cannot tell the format of {uri} from its name: pass file_format='csv', 'parquet' or 'jsonl'")
    return FORMATS[ext], gzipped


class GrowingFile:
    """A local file that a download is still writing: its readers wait for the bytes (or the download's end, raising
    its error), so that parsing overlaps the download."""

    def __init__(self, path: str, download):
        self.path, self.download = path, download

    def complete(self) -> str:
        """The path, once the whole file is there (for readers that need random access: Parquet)."""
        self.download.wait()
        return self.path

    def open(self):
        return io.BufferedReader(_GrowingReader(self.path, self.download), BLOCK_BYTES)


class _GrowingReader(io.RawIOBase):
    def __init__(self, path: str, download):
        self._file, self._download = open(path, "rb"), download

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while True:
            n = self._file.readinto(buffer)
            if n or self._download.poll(wait=0.002):  # the end of the file is the end only once the download ended
                return n or self._file.readinto(buffer)

    def close(self) -> None:
        self._file.close()
        super().close()


def _open(source, gzipped: bool = False):
    """A binary file object over a source: a local path, or a GrowingFile."""
    raw = source.open() if isinstance(source, GrowingFile) else open(source, "rb")
    return gzip.GzipFile(fileobj=raw, mode="rb") if gzipped else raw


@contextlib.contextmanager
def local_file(uri: str, timeout_s: float | None = None) -> Iterator[str | GrowingFile]:
    """The bytes of `uri`: a local path, or for a remote source a temporary file, downloaded within the total deadline
    `timeout_s` (see `storage.download_timeout`); an object-store download goes on while the caller reads (a
    GrowingFile)."""
    scheme, host, path = storage.split_uri(uri)
    if scheme == "":
        if not os.path.isfile(path):
            raise FileNotFoundError(f"source file not found: {path}")
        yield path
        return
    if scheme not in (*storage.OBJECT_STORES, "http", "https"):
        raise ValueError(
            f"unsupported URI scheme '{scheme}' in {uri}: expected a local path, file://, gs://, s3://, minio://, "
            "http:// or https://"
        )
    with tempfile.TemporaryDirectory(prefix="kfp-ct-ingest-") as tmp:
        dest = os.path.join(tmp, os.path.basename(path) or "source")
        if scheme in storage.OBJECT_STORES:
            download = storage.start_download(uri, dest, timeout_s)
            try:
                yield GrowingFile(dest, download)
            finally:
                download.close()
        else:
            download_http(uri, dest, timeout_s)
            yield dest


class _Deadline:
    """A total deadline over every socket of one download: when it passes, the sockets are shut down, so a read
    blocked on a server that answers slowly (or not at all) returns at once."""

    def __init__(self, seconds: float):
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self.expire)
        self._timer.daemon = True

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self._timer.cancel()

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            if self.expired:
                self._shut(sock)

    def expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                self._shut(sock)

    @staticmethod
    def _shut(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the raw socket's shutdown, for TLS sockets too


def _watched(connection_class, deadline: _Deadline):
    class WatchedConnection(connection_class):
        def connect(self):
            super().connect()
            deadline.watch(self.sock)

    return WatchedConnection


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, deadline: _Deadline):
        super().__init__()
        self.deadline = deadline

    def http_open(self, req):
        return self.do_open(_watched(http.client.HTTPConnection, self.deadline), req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, deadline: _Deadline):
        super().__init__()
        self.deadline = deadline

    def https_open(self, req):
        return self.do_open(_watched(http.client.HTTPSConnection, self.deadline), req, context=self._context)


def download_http(uri: str, dest: str, timeout_s: float | None = None) -> None:
    """Downloads `uri` to `dest` within a total deadline (connecting, the headers and the whole body): a server that
    is silent, or drips its answer, fails with TimeoutError; a body cut short fails with ConnectionError."""
    seconds = storage.download_timeout(timeout_s)
    hint = f"within the {seconds:g} s deadline (the timeout_s parameter or ${storage.DOWNLOAD_TIMEOUT_ENV})"
    with _Deadline(seconds) as deadline:
        opener = urllib.request.build_opener(_HTTPHandler(deadline), _HTTPSHandler(deadline))
        try:
            with opener.open(uri, timeout=seconds) as response, open(dest, "wb") as out:
                shutil.copyfileobj(response, out)
                left = response.length  # bytes the server announced and did not send
        except urllib.error.HTTPError as err:
            raise FileNotFoundError(f"could not download {uri}: HTTP {err.code} {err.reason}") from None
        except (OSError, http.client.HTTPException) as err:
            reason = err.reason if isinstance(err, urllib.error.URLError) else err
            if deadline.expired or isinstance(reason, TimeoutError):
                raise TimeoutError(f"no complete answer from {uri} {hint}") from None
            if isinstance(err, urllib.error.URLError):
                raise ConnectionError(f"could not reach {uri}: {reason}") from None
            raise ConnectionError(f"could not download {uri}: {type(err).__name__}: {err}") from None
        if deadline.expired:
            raise TimeoutError(f"no complete answer from {uri} {hint}")
        if left:
            raise ConnectionError(f"could not download {uri}: the connection closed {left} bytes before the end")


class TypeFoundLate(Exception):
    """A CSV column's later rows do not fit the type inferred from the first block: read again, wider."""

    def __init__(self, column: str, wider: pa.DataType):
        super().__init__(f"column '{column}' needs {wider}")
        self.column, self.wider = column, wider


def _not_text(column: str, encoding: str) -> ValueError:
    return ValueError(
        f"column '{column}' holds bytes that are not valid {encoding} text: pass the file's encoding "
        "(for example encoding='latin-1')"
    )


def _field_counts(sample: str, delimiter: str) -> list[int]:
    """Fields per non-blank row of `sample` split on `delimiter`, quotes respected."""
    return [len(row) for row in csv.reader(io.StringIO(sample), delimiter=delimiter) if row]


def detect_delimiter(path: str, gzipped: bool, encoding: str) -> str:
    """The delimiter (`DELIMITERS`) of a CSV file, told from its first `SNIFF_BYTES`: the one that splits every row
    of the sample into the same number (> 1) of fields. A file none of them splits is one column. Raises ValueError
    when several fit (or none fits, and several occur in the header): the caller passes `delimiter`."""
    with _open(path, gzipped) as f:
        raw = f.read(SNIFF_BYTES + 1)
    sample = raw[:SNIFF_BYTES].decode(encoding, errors="replace")
    if len(raw) > SNIFF_BYTES and "\n" in sample:  # a row cut by the sample's end is not counted
        sample = sample[: sample.rindex("\n")]
    counts = {d: _field_counts(sample, d) for d in DELIMITERS}
    fitting = [d for d, n in counts.items() if n and n[0] > 1 and len(set(n)) == 1]
    in_header = [d for d, n in counts.items() if n and n[0] > 1]
    candidates = fitting or in_header
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        return ","
    seen = "; ".join(
        f"{d!r} gives {min(counts[d])}"
        + (f" to {max(counts[d])}" if min(counts[d]) != max(counts[d]) else "")
        + " fields per row"
        for d in candidates
    )
    raise ValueError(
        f"cannot tell the CSV delimiter from the first rows: {seen}; pass delimiter (one of "
        f"{', '.join(map(repr, DELIMITERS))} or any single character)"
    )


def _csv_batches(
    path: str, gzipped: bool, encoding: str, column_types: dict, delimiter: str
) -> Iterator[pa.RecordBatch]:
    if delimiter == "auto":
        delimiter = detect_delimiter(path, gzipped, encoding)
    stream = _open(path)
    stream = pa.input_stream(stream, compression="gzip") if gzipped else stream
    with contextlib.closing(stream):
        reader = pacsv.open_csv(
            stream,
            read_options=pacsv.ReadOptions(block_size=BLOCK_BYTES, encoding=encoding),
            parse_options=pacsv.ParseOptions(delimiter=delimiter),
            convert_options=pacsv.ConvertOptions(column_types=column_types, strings_can_be_null=True),
        )
        undecodable = [f.name for f in reader.schema if pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type)]
        if undecodable:
            raise _not_text(undecodable[0], encoding)
        try:
            yield from _check_names(reader.schema, reader)
        except pa.ArrowInvalid as err:
            match = _CSV_CONVERSION.search(str(err))
            if not match:
                raise
            column = reader.schema.names[int(match.group(1))]
            if match.group(2) in ("string", "binary"):
                raise _not_text(column, encoding) from None
            wider = pa.float64() if match.group(2) == "int64" else pa.string()
            if column_types.get(column) == wider:
                raise
            raise TypeFoundLate(column, wider) from None


def _check_names(schema: pa.Schema, batches) -> Iterator[pa.RecordBatch]:
    duplicated = [name for name, count in Counter(schema.names).items() if count > 1]
    if duplicated:
        raise ValueError(f"duplicate column names: {', '.join(duplicated)}")
    yield from batches


def _parquet_batches(path, gzipped: bool, keep_index: bool) -> Iterator[pa.RecordBatch]:
    if isinstance(path, GrowingFile):
        path = path.complete()
    with contextlib.ExitStack() as stack:
        if gzipped:  # Parquet needs random access: inflate to a temporary file first
            tmp = stack.enter_context(tempfile.NamedTemporaryFile(suffix=".parquet"))
            with gzip.open(path, "rb") as src:
                shutil.copyfileobj(src, tmp)
            tmp.flush()
            path = tmp.name
        file = datasets.open_dataset(path)
        schema = file.schema_arrow
        index = pandas_index_columns(schema)
        if not index:
            yield from _check_names(schema, file.iter_batches(batch_size=datasets.BATCH_ROWS))
            return
        # pandas stored the frame's index as columns: drop them, or keep them as columns named after the index
        metadata = {k: v for k, v in (schema.metadata or {}).items() if k != b"pandas"} or None
        columns = schema.names if keep_index else [name for name in schema.names if name not in index]
        names = [index.get(name, name) if keep_index else name for name in columns]
        batches = (
            pa.RecordBatch.from_arrays(batch.columns, names=names).replace_schema_metadata(metadata)
            for batch in file.iter_batches(batch_size=datasets.BATCH_ROWS, columns=columns)
        )
        yield from _check_names(pa.schema([(n, schema.field(c).type) for n, c in zip(names, columns)]), batches)


def pandas_index_columns(schema: pa.Schema) -> dict[str, str]:
    """The columns in which pandas stored a frame's index ({stored name: the index's name, or "index" / "level_N"
    when unnamed}), from the pandas metadata of a Parquet file; a RangeIndex is stored as metadata only."""
    stored = [c for c in (schema.pandas_metadata or {}).get("index_columns", []) if isinstance(c, str)]
    names = {c.get("field_name"): c.get("name") for c in schema.pandas_metadata.get("columns", [])} if stored else {}
    unnamed = "index" if len(stored) == 1 else "level_{}"
    return {c: names.get(c) or unnamed.format(i) for i, c in enumerate(stored)}


def _jsonl_batches(path: str, gzipped: bool) -> Iterator[pa.RecordBatch]:
    stream = _open(path)
    stream = pa.input_stream(stream, compression="gzip") if gzipped else stream
    with contextlib.closing(stream):
        reader = pajson.open_json(stream, read_options=pajson.ReadOptions(block_size=BLOCK_BYTES))
        yield from _check_names(reader.schema, reader)


def read_batches(
    path: str | GrowingFile,
    file_format: str,
    gzipped: bool,
    encoding: str = "utf8",
    column_types: dict | None = None,
    *,
    delimiter: str = "auto",
    keep_index: bool = False,
) -> Iterator[pa.RecordBatch]:
    """Streams the record batches of a local file (or one still being downloaded), with errors that say what is wrong
    with it.

    A CSV file's delimiter is `delimiter`, or detected (`detect_delimiter`) when it is "auto". A Parquet file's
    pandas index columns are dropped unless `keep_index`. A CSV column whose later rows do not fit the type inferred
    from the first block raises TypeFoundLate; the caller reads again with that column's wider type in
    `column_types`.
    """
    with _open(path) as f:
        if not f.read(1):
            raise ValueError("the source file is empty (0 bytes)")
    try:
        if file_format == "csv":
            yield from _csv_batches(path, gzipped, encoding, column_types or {}, delimiter)
        elif file_format == "parquet":
            yield from _parquet_batches(path, gzipped, keep_index)
        else:
            yield from _jsonl_batches(path, gzipped)
    except (EOFError, gzip.BadGzipFile) as err:
        raise ValueError(f"the gzip stream is truncated or corrupted: {err}") from None
    except OSError as err:
        if "compressed" not in str(err).lower():
            raise
        raise ValueError(f"the gzip stream is truncated or corrupted: {err}") from None
    except pa.ArrowInvalid as err:
        if "Empty CSV file" in str(err):
            raise ValueError("the source file has no header and no rows") from None
        raise ValueError(f"cannot parse it as {file_format}: {err}") from None


def _window_bound(value: str, column_type: pa.DataType):
    if pa.types.is_integer(column_type) or pa.types.is_floating(column_type):
        return pa.scalar(float(value))
    return pa.scalar(datetime.fromisoformat(value), type=pa.timestamp("us"))


def _window_mask(batch: pa.RecordBatch, time_column: str, start: str | None, end: str | None):
    column = batch.column(time_column)
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        try:
            column = pc.cast(column, pa.timestamp("us"))
        except pa.ArrowInvalid as err:
            raise ValueError(f"time column '{time_column}' holds values that are not ISO 8601 times: {err}") from None
    elif pa.types.is_date(column.type) or pa.types.is_timestamp(column.type):
        column = pc.cast(column, pa.timestamp("us"))
    mask = None
    for bound, compare in ((start, pc.greater_equal), (end, pc.less)):
        if bound is not None:
            part = compare(column, _window_bound(bound, column.type))
            mask = part if mask is None else pc.and_(mask, part)
    return mask


def _write(
    batches: Iterator[pa.RecordBatch], path: str, time_column: str | None, start: str | None, end: str | None
) -> int:
    """Writes the batches (filtered to the time window) as one Parquet file; returns the rows written."""
    writer, rows = None, 0
    try:
        for batch in batches:
            if writer is None:
                if time_column and time_column not in batch.schema.names:
                    raise ValueError(
                        f"time column '{time_column}' is not in the data; its columns are: "
                        f"{', '.join(batch.schema.names)}"
                    )
                writer = pq.ParquetWriter(path, batch.schema)
            if start is not None or end is not None:
                batch = batch.filter(_window_mask(batch, time_column, start, end))
            writer.write_batch(batch)
            rows += batch.num_rows
    finally:
        if writer is not None:
            writer.close()
    return rows


def read_dataset(
    source_uri: str,
    output_path: str,
    *,
    file_format: str = "auto",
    time_column: str | None = None,
    start: str | None = None,
    end: str | None = None,
    encoding: str = "utf8",
    delimiter: str = "auto",
    keep_index: bool = False,
    timeout_s: float | None = None,
) -> dict:
    """Reads `source_uri` into the Parquet dataset `output_path`, keeping rows with start <= time_column < end.

    `delimiter` is a CSV source's field delimiter ("auto": detected), `keep_index` keeps the pandas index stored in a
    Parquet source as columns, `timeout_s` is a download's total deadline (http(s)://, gs://, s3://, minio://; default
    $KFP_CT_DOWNLOAD_TIMEOUT_S, else 600 s). Returns the dataset's metadata (rows, columns, sha256, source_uri). On
    any error nothing is left at `output_path`, and the message names the source and the problem.
    """
    file_format, gzipped = detect_format(source_uri, file_format)
    if (start is not None or end is not None) and not time_column:
        raise ValueError("start/end need time_column: the column that holds each row's time")
    if delimiter != "auto" and len(delimiter) != 1:
        raise ValueError(f"delimiter must be one character or 'auto', found {delimiter!r}")
    storage.download_timeout(timeout_s)
    try:
        with local_file(source_uri, timeout_s) as path, datasets.atomic_path(output_path) as tmp:
            column_types: dict[str, pa.DataType] = {}
            while True:
                try:
                    batches = read_batches(
                        path, file_format, gzipped, encoding, column_types, delimiter=delimiter, keep_index=keep_index
                    )
                    rows = _write(batches, tmp, time_column, start, end)
                    break
                except TypeFoundLate as late:
                    column_types[late.column] = late.wider
            if rows == 0:
                window = f" in the window [{start}, {end}) of '{time_column}'" if time_column else ""
                raise ValueError(f"no data rows{window}")
    except (ValueError, FileNotFoundError, PermissionError, ConnectionError, TimeoutError) as err:
        raise type(err)(f"{source_uri}: {err}") from None
    return {**datasets.describe(output_path, source_uri), "format": file_format}
