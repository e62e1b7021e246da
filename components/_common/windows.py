"""Time windows over sources: the window of a scheduled run, and the sources a window reads (a file, a folder or
prefix of files, Hive-partitioned or not, or a URI template), on a path, gs://, s3:// or minio://.

The window of a run is [as_of - window, as_of). `as_of` is a time in UTC: an ISO 8601 text with an offset is
converted to UTC, one without is UTC, and the compact form a KFP recurring-run macro expands to
(`[[ScheduledTime]]` -> 20260107000000) is read as UTC too. An empty `as_of` is the time the step starts, rounded
down to the window's unit (a whole day for "7d" or "2w", a whole hour for "24h"), so a run that starts a few
minutes after its scheduled time reads the same window as one on time (see the README's "Windows and scheduling"
section for why a KFP 2.5 backend gives a v2 pipeline no scheduled time).

Rows are kept when start <= time_column < end. A time column holding dates or times without a zone is taken as UTC;
one with a zone (a timestamp type, or ISO 8601 text with offsets) is compared as the instants it holds.

A collection of files is every file under a folder, or under a prefix on an object store (a URI that ends with
"/"); names starting with `_` or `.`, such as `_SUCCESS`, are not data. Each `KEY=VALUE` segment of a file's path
whose value is a date (`dt=2026-11-29`) or a time makes it a partition that covers that day, or that hour with an
`hour=H` segment below it (`dt=2026-11-29/hour=7/`), in UTC; a partition that does not meet the window is never
opened. The rows of the partitions read are then filtered on the
time column. A URI template holds `{date}` (and optionally `{hour}`), expanded over the window's days (hours) into
prefixes, or glob patterns when a segment holds `*`.

Late rows: rows whose time falls in an earlier window are not read again, unless `lookback` asks for it: a run with
`lookback="2d"` also reads the rows of the 2 days before its window (every one of them: a source without an arrival
time cannot tell a late row from one the previous run read already).
"""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from kfp_ct.components._common import datasets, sources, storage

UNITS = {
    "s": timedelta(seconds=1),
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
    "w": timedelta(weeks=1),
}
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_MACRO_TIME = re.compile(r"^\d{14}$")  # [[ScheduledTime]]'s default Go layout 20060102150405, in UTC
_UNEXPANDED = re.compile(r"\[\[.*\]\]|\{\{\$\..*\}\}")
_PARTITION = re.compile(r"^([A-Za-z_][\w-]*)=(.+)$")
_HOUR_KEYS = ("hour", "hr", "h")
TEMPLATE_FIELDS = ("{date}", "{hour}")


def parse_duration(text: str, what: str = "window") -> timedelta:
    """'7d', '24h', '90m', '30s' or '2w' -> a timedelta > 0."""
    match = _DURATION.match(text or "")
    if not match or int(match.group(1)) == 0:
        raise ValueError(
            f"{what} must be a positive whole number and a unit (s, m, h, d or w), such as '7d' or '24h'; got {text!r}"
        )
    return int(match.group(1)) * UNITS[match.group(2)]


def _rounding(window: str) -> timedelta:
    """What an empty as_of is rounded down to: the window's unit, a day for a window in weeks."""
    return min(UNITS[_DURATION.match(window).group(2)], UNITS["d"])


def parse_time(text: str, what: str = "as_of") -> datetime:
    """An instant in UTC (an aware datetime) from ISO 8601 (an offset is converted, none means UTC) or the compact
    UTC form of KFP's [[ScheduledTime]] macro (20260107000000)."""
    text = (text or "").strip()
    if _UNEXPANDED.search(text):
        raise ValueError(
            f"{what} is {text!r}: a placeholder the KFP backend did not expand (a KFP 2.5 backend expands none for v2 "
            f"pipelines); leave {what} empty to use the time the run starts"
        )
    try:
        if _MACRO_TIME.match(text):
            return datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=UTC)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{what} must be an ISO 8601 time such as 2026-01-07T00:00:00Z (an offset is converted to UTC, none "
            f"means UTC); got {text!r}"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Window:
    """[start, end) in UTC, the rows a run reads; `as_of` and `length` as the run was given them."""

    start: datetime
    end: datetime
    as_of: str = ""
    length: str = ""
    lookback: str = ""

    def covers(self, first: datetime, last: datetime) -> bool:
        """Whether [first, last) meets the window."""
        return first < self.end and last > self.start

    def steps(self, step: timedelta) -> list[datetime]:
        """The starts of the `step`-long periods (aligned to UTC midnight) that meet the window."""
        moment = datetime.combine(self.start.date(), datetime.min.time(), UTC)
        moment += ((self.start - moment) // step) * step
        out = []
        while moment < self.end:
            out.append(moment)
            moment += step
        return out

    def to_metadata(self, time_column: str) -> dict:
        """What a dataset (and a model trained on it) records of the window."""
        return {
            "time_column": time_column,
            "start": _iso(self.start),
            "end": _iso(self.end),
            "as_of": self.as_of,
            "window": self.length,
            "lookback": self.lookback,
        }

    @classmethod
    def from_metadata(cls, record: dict) -> Window:
        return cls(
            parse_time(record["start"], "the recorded window's start"),
            parse_time(record["end"], "the recorded window's end"),
            record.get("as_of", ""),
            record.get("window", ""),
            record.get("lookback", ""),
        )


def resolve(window: str, as_of: str = "", lookback: str = "", now: datetime | None = None) -> Window:
    """The window [as_of - window - lookback, as_of) of a run; an empty `as_of` is `now` (default: the current time)
    rounded down to the window's unit (a day for a window in weeks)."""
    length = parse_duration(window, "window")
    back = parse_duration(lookback, "lookback") if lookback else timedelta(0)
    if as_of:
        end = parse_time(as_of)
    else:
        now = (now or datetime.now(UTC)).astimezone(UTC)
        unit = _rounding(window)
        end = datetime(1970, 1, 1, tzinfo=UTC) + ((now - datetime(1970, 1, 1, tzinfo=UTC)) // unit) * unit
    return Window(end - length - back, end, _iso(end), window, lookback)


# --- which files a window reads --------------------------------------------------------------------------------------


def is_template(uri: str) -> bool:
    return any(field in uri for field in TEMPLATE_FIELDS)


def _is_data(name: str) -> bool:
    return bool(name) and not name.startswith(("_", "."))


def list_files(uri: str, window: Window | None = None) -> list[str]:
    """The data files under a folder or prefix (sorted), or [uri] for a single file; hidden and marker files
    (`_SUCCESS`, `.crc`) left out. Under a local folder, partition folders outside `window` are not even listed."""
    scheme, _, path = storage.split_uri(uri)
    if scheme == "":
        if os.path.isfile(path):
            return [path]
        if not os.path.isdir(path):
            return []
        found = []
        for folder, dirs, files in os.walk(path):
            above = folder[len(path) :].strip("/")
            dirs[:] = sorted(
                d for d in dirs if _is_data(d) and _may_meet(f"{above}/{d}/" if above else f"{d}/", window)
            )
            found += [os.path.join(folder, f) for f in sorted(files) if _is_data(f)]
        return found
    if scheme not in storage.OBJECT_STORES:
        return [uri]  # http(s)://: one file, which cannot be listed
    prefix = uri if uri.endswith("/") else uri + "/"
    keys = storage.list_uris(prefix)
    if not keys and uri in storage.list_uris(uri):
        return [uri]  # a single object
    return [k for k in keys if all(_is_data(part) for part in k[len(prefix) :].split("/"))]


def _may_meet(relative_folder: str, window: Window | None) -> bool:
    """Whether files under `relative_folder` (a path relative to the source, ending with "/") can hold rows of the
    window."""
    span = partition_span(relative_folder) if window is not None else None
    return span is None or window.covers(*span)


def _partition_time(value: str) -> tuple[datetime, timedelta] | None:
    try:
        day = date.fromisoformat(value)
        return datetime.combine(day, datetime.min.time(), UTC), timedelta(days=1)
    except ValueError:
        pass
    try:
        return parse_time(value.replace("%3A", ":"), "partition"), timedelta(hours=1)
    except ValueError:
        return None


def partition_span(relative_path: str) -> tuple[datetime, datetime] | None:
    """[first, last) of the time a Hive-partitioned file's path covers (`dt=2026-11-29/` is that UTC day,
    `dt=2026-11-29/hour=7/` that hour), or None when its path names no time."""
    span = None
    for segment in relative_path.split("/")[:-1]:
        match = _PARTITION.match(segment)
        if not match:
            continue
        key, value = match.groups()
        if span is not None and key.lower() in _HOUR_KEYS and value.isdigit() and int(value) < 24:
            first = span[0] + timedelta(hours=int(value))
            span = (first, first + timedelta(hours=1))
        elif span is None and (found := _partition_time(value)) is not None:
            span = (found[0], found[0] + found[1])
    return span


def expand_template(template: str, window: Window) -> list[str]:
    """The prefixes (or glob patterns) of a URI template over the window's days, or hours with `{hour}`."""
    hourly = "{hour}" in template
    step = timedelta(hours=1) if hourly else timedelta(days=1)
    out = []
    for moment in window.steps(step):
        uri = template.replace("{date}", moment.strftime("%Y-%m-%d")).replace("{hour}", moment.strftime("%H"))
        if uri not in out:
            out.append(uri)
    return out


def _glob_base(pattern: str) -> str:
    """The folder or prefix above the first segment of `pattern` holding a wildcard."""
    head = pattern[: min(i for i in (pattern.find("*"), pattern.find("?"), pattern.find("[")) if i >= 0)]
    return head[: head.rfind("/") + 1]


def window_files(source_uri: str, window: Window | None) -> list[str]:
    """The files a window reads from a source: a template's expansions, or the files under a folder or prefix whose
    partition meets the window (every file that names no time)."""
    if is_template(source_uri):
        if window is None:
            raise ValueError(f"{source_uri} is a URI template ({{date}}): it needs a window to expand over")
        files = []
        for uri in expand_template(source_uri, window):
            if "*" in uri or "?" in uri:
                scheme, _, path = storage.split_uri(uri)
                pattern = path if scheme == "" else uri  # local files are listed as paths
                files += [f for f in list_files(_glob_base(uri)) if fnmatch.fnmatchcase(f, pattern)]
            else:
                files += list_files(uri)
        return files
    files = list_files(source_uri, window)
    scheme, _, path = storage.split_uri(source_uri)
    if not files and not (scheme == "" and os.path.isdir(path)):  # a folder pruned to nothing is an empty window
        raise FileNotFoundError(f"no file, folder or prefix at {source_uri}")
    if window is None:
        return files
    scheme, _, path = storage.split_uri(source_uri)
    base = (path if scheme == "" else source_uri).rstrip("/") + "/"
    kept = []
    for uri in files:
        span = partition_span(uri[len(base) :]) if uri.startswith(base) else None
        if span is None or window.covers(*span):
            kept.append(uri)
    return kept


# --- reading them ----------------------------------------------------------------------------------------------------


def _as_utc_naive(column: pa.ChunkedArray | pa.Array, time_column: str):
    """A time column as naive timestamps in UTC (naive input is taken as UTC)."""
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        try:
            return pc.cast(column, pa.timestamp("us"))
        except pa.ArrowInvalid:
            pass
        try:
            return pc.cast(pc.cast(column, pa.timestamp("us", tz="UTC")), pa.timestamp("us"))
        except pa.ArrowInvalid as err:
            raise ValueError(
                f"time column '{time_column}' holds values that are not ISO 8601 times (or mixes times with and "
                f"without a zone offset): {err}"
            ) from None
    if pa.types.is_date(column.type) or pa.types.is_timestamp(column.type):
        return pc.cast(column, pa.timestamp("us"))  # an aware timestamp's values are UTC already
    raise ValueError(
        f"time column '{time_column}' is {column.type}: a window (window/as_of) needs dates or times (a timestamp, a "
        "date or ISO 8601 text); use start and end for a numeric time column"
    )


def window_mask(batch: pa.RecordBatch, time_column: str, window: Window):
    column = _as_utc_naive(batch.column(time_column), time_column)
    start = pa.scalar(window.start.replace(tzinfo=None), pa.timestamp("us"))
    end = pa.scalar(window.end.replace(tzinfo=None), pa.timestamp("us"))
    return pc.and_(pc.greater_equal(column, start), pc.less(column, end))


def _file_batches(uri: str, opts: dict) -> tuple[pa.Schema | None, list[pa.RecordBatch]]:
    """The batches of one file (a partition: bounded), retried with a wider type when a CSV column needs one."""
    file_format, gzipped = sources.detect_format(uri, opts["file_format"])
    column_types: dict = {}
    with sources.local_file(uri, opts["timeout_s"]) as path:
        while True:
            try:
                batches = list(
                    sources.read_batches(
                        path,
                        file_format,
                        gzipped,
                        opts["encoding"],
                        column_types,
                        delimiter=opts["delimiter"],
                        keep_index=opts["keep_index"],
                    )
                )
                break
            except sources.TypeFoundLate as late:
                column_types[late.column] = late.wider
    return (batches[0].schema if batches else None), batches


def _conform(batch: pa.RecordBatch, schema: pa.Schema, uri: str) -> pa.RecordBatch:
    if batch.schema.names != schema.names:
        raise ValueError(f"{uri} has the columns {batch.schema.names}, the files before it {schema.names}")
    if batch.schema.equals(schema):
        return batch
    try:
        return batch.cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
        raise ValueError(f"{uri} does not have the column types of the files before it: {err}") from None


def _naming(uri: str, err: Exception) -> str:
    """The error's message, led by `uri` unless it names a path or URI under it already."""
    message = str(err)
    local = storage.split_uri(uri)[2] if storage.split_uri(uri)[0] == "" else uri
    return message if local.rstrip("/") in message else f"{uri}: {message}"


def read_window(
    source_uri: str,
    output_path: str,
    *,
    window: Window | None = None,
    time_column: str | None = None,
    file_format: str = "auto",
    encoding: str = "utf8",
    delimiter: str = "auto",
    keep_index: bool = False,
    timeout_s: float | None = None,
) -> dict:
    """Reads the rows of `window` (every row without one) from the files of `source_uri` (see `window_files`) into
    the Parquet dataset `output_path`. An empty window is not an error: the dataset has the source's columns when a
    file was read, none otherwise, and 0 rows. Returns the dataset's metadata, with `window` and `files_read`."""
    if window is not None and not time_column:
        raise ValueError("a window needs time_column: the column that holds each row's time")
    opts = {
        "file_format": file_format,
        "encoding": encoding,
        "delimiter": delimiter,
        "keep_index": keep_index,
        "timeout_s": timeout_s,
    }
    storage.download_timeout(timeout_s)
    try:
        files = window_files(source_uri, window)
        if not files and window is None:
            raise FileNotFoundError(f"no data files under {source_uri}")
        with datasets.atomic_path(output_path) as tmp:
            writer, schema = None, None
            try:
                for uri in files:
                    try:
                        file_schema, batches = _file_batches(uri, opts)
                    except (ValueError, FileNotFoundError, PermissionError) as err:
                        raise type(err)(_naming(uri, err)) from None
                    if file_schema is None:
                        continue
                    if writer is None:
                        if time_column and time_column not in file_schema.names:
                            raise ValueError(
                                f"time column '{time_column}' is not in {uri}; its columns are: "
                                f"{', '.join(file_schema.names)}"
                            )
                        schema = file_schema
                        writer = pq.ParquetWriter(tmp, schema)
                    for batch in batches:
                        batch = _conform(batch, schema, uri)
                        if window is not None:
                            batch = batch.filter(window_mask(batch, time_column, window))
                        if batch.num_rows:
                            writer.write_batch(batch)
                if writer is None:  # nothing read: an empty dataset, without columns
                    pq.write_table(pa.table({}), tmp)
            finally:
                if writer is not None:
                    writer.close()
    except (ValueError, FileNotFoundError, PermissionError, ConnectionError, TimeoutError) as err:
        raise type(err)(_naming(source_uri, err)) from None
    meta = {**datasets.describe(output_path, source_uri), "files_read": len(files)}
    if window is not None:
        meta["window"] = window.to_metadata(time_column)
    return meta


def read_dataset(
    source_uri: str,
    output_path: str,
    *,
    window: Window | None = None,
    time_column: str | None = None,
    start: str | None = None,
    end: str | None = None,
    **options,
) -> dict:
    """A source into a Parquet dataset: one file without a window as `sources.read_dataset` reads it (rows between
    `start` and `end`), anything else (a window, a folder or prefix, a template) with `read_window`."""
    if window is not None and (start or end):
        raise ValueError("pass either a window (window and as_of) or start/end, not both")
    single = not is_template(source_uri) and _is_single_file(source_uri)
    if window is None and single:
        return sources.read_dataset(source_uri, output_path, time_column=time_column, start=start, end=end, **options)
    if start or end:
        raise ValueError(f"{source_uri} is a folder, prefix or template: select rows with a window, not start/end")
    return read_window(source_uri, output_path, window=window, time_column=time_column, **options)


def _is_single_file(uri: str) -> bool:
    """A local path that is not a folder, or a remote URI that does not end with "/" (a prefix does)."""
    scheme, _, path = storage.split_uri(uri)
    return not os.path.isdir(path) if scheme == "" else not uri.endswith("/")
