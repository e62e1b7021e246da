"""Ingest: read CSV, Parquet or JSON lines (gzip'd or not) from a path, file://, gs://, s3://, minio:// or http(s)://
into one Parquet dataset, streaming in bounded batches so memory stays flat as rows grow."""

from __future__ import annotations

import contextlib
import gzip
import os
import re
import shutil
import tempfile
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


@contextlib.contextmanager
def local_file(uri: str) -> Iterator[str]:
    """A local path holding the bytes of `uri`; remote sources are downloaded to a temporary file first."""
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
            storage.download_file(uri, dest)
        else:
            try:
                with urllib.request.urlopen(uri, timeout=60) as response, open(dest, "wb") as out:
                    shutil.copyfileobj(response, out)
            except urllib.error.HTTPError as err:
                raise FileNotFoundError(f"could not download {uri}: HTTP {err.code} {err.reason}") from None
            except urllib.error.URLError as err:
                raise ConnectionError(f"could not reach {uri}: {err.reason}") from None
        yield dest


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


def _csv_batches(path: str, gzipped: bool, encoding: str, column_types: dict) -> Iterator[pa.RecordBatch]:
    stream = pa.input_stream(path, compression="gzip" if gzipped else None)
    with contextlib.closing(stream):
        reader = pacsv.open_csv(
            stream,
            read_options=pacsv.ReadOptions(block_size=BLOCK_BYTES, encoding=encoding),
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


def _parquet_batches(path: str, gzipped: bool) -> Iterator[pa.RecordBatch]:
    with contextlib.ExitStack() as stack:
        if gzipped:  # Parquet needs random access: inflate to a temporary file first
            tmp = stack.enter_context(tempfile.NamedTemporaryFile(suffix=".parquet"))
            with gzip.open(path, "rb") as src:
                shutil.copyfileobj(src, tmp)
            tmp.flush()
            path = tmp.name
        file = datasets.open_dataset(path)
        yield from _check_names(file.schema_arrow, file.iter_batches(batch_size=datasets.BATCH_ROWS))


def _jsonl_batches(path: str, gzipped: bool) -> Iterator[pa.RecordBatch]:
    stream = pa.input_stream(path, compression="gzip" if gzipped else None)
    with contextlib.closing(stream):
        reader = pajson.open_json(stream, read_options=pajson.ReadOptions(block_size=BLOCK_BYTES))
        yield from _check_names(reader.schema, reader)


def read_batches(
    path: str, file_format: str, gzipped: bool, encoding: str = "utf8", column_types: dict | None = None
) -> Iterator[pa.RecordBatch]:
    """Streams the record batches of a local file, with errors that say what is wrong with it.

    A CSV column whose later rows do not fit the type inferred from the first block raises TypeFoundLate; the caller
    reads again with that column's wider type in `column_types`.
    """
    if os.path.getsize(path) == 0:
        raise ValueError("the source file is empty (0 bytes)")
    try:
        if file_format == "csv":
            yield from _csv_batches(path, gzipped, encoding, column_types or {})
        elif file_format == "parquet":
            yield from _parquet_batches(path, gzipped)
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


def ingest(
    source_uri: str,
    output_path: str,
    file_format: str = "auto",
    time_column: str | None = None,
    start: str | None = None,
    end: str | None = None,
    encoding: str = "utf8",
) -> dict:
    """Reads `source_uri` into the Parquet dataset `output_path`, keeping rows with start <= time_column < end.

    Returns the dataset's metadata (rows, columns, sha256, source_uri). On any error nothing is left at
    `output_path`, and the message names the source and the problem.
    """
    file_format, gzipped = detect_format(source_uri, file_format)
    if (start is not None or end is not None) and not time_column:
        raise ValueError("start/end need time_column: the column that holds each row's time")
    try:
        with local_file(source_uri) as path, datasets.atomic_path(output_path) as tmp:
            column_types: dict[str, pa.DataType] = {}
            while True:
                try:
                    rows = _write(
                        read_batches(path, file_format, gzipped, encoding, column_types), tmp, time_column, start, end
                    )
                    break
                except TypeFoundLate as late:
                    column_types[late.column] = late.wider
            if rows == 0:
                window = f" in the window [{start}, {end}) of '{time_column}'" if time_column else ""
                raise ValueError(f"no data rows{window}")
    except (ValueError, FileNotFoundError, PermissionError, ConnectionError) as err:
        raise type(err)(f"{source_uri}: {err}") from None
    return {**datasets.describe(output_path, source_uri), "format": file_format}
