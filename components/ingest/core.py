"""Ingest's core: a user's source read into one Parquet dataset. The reading itself is `_common/sources.py` (one
file: formats, downloads, start/end) and `_common/windows.py` (a run's time window; folders, prefixes, Hive
partitions and URI templates), which reference_data shares."""

from __future__ import annotations

from dataclasses import dataclass

from kfp_ct.components._common import windows
from kfp_ct.components._common.results import Result


@dataclass
class IngestResult(Result):
    """`rows`: the rows written (0 for an empty window); `metadata`: the dataset's (rows, columns, sha256,
    source_uri, format; window and files_read for a windowed or multi-file source)."""

    rows: int


def ingest(
    *,
    source_uri: str,
    output_path: str,
    file_format: str = "auto",
    time_column: str | None = None,
    start: str | None = None,
    end: str | None = None,
    window: str = "",
    as_of: str = "",
    lookback: str = "",
    encoding: str = "utf8",
    delimiter: str = "auto",
    keep_index: bool = False,
    timeout_s: float | None = None,
) -> IngestResult:
    """Reads `source_uri` into the Parquet dataset `output_path`: the rows with start <= time_column < end, or with
    a `window` ("7d"), those of [as_of - window - lookback, as_of) (see `windows`; an empty as_of is now, rounded
    down to the window's unit). Empty values mean none. An empty window is not an error: `rows` is 0."""
    if (as_of or lookback) and not window:
        raise ValueError("as_of and lookback need a window (such as '7d'): the length of time each run reads")
    span = windows.resolve(window, as_of, lookback) if window else None
    metadata = windows.read_dataset(
        source_uri,
        output_path,
        window=span,
        time_column=time_column or None,
        start=start or None,
        end=end or None,
        file_format=file_format,
        encoding=encoding,
        delimiter=delimiter,
        keep_index=keep_index,
        timeout_s=timeout_s,
    )
    return IngestResult(rows=metadata["rows"], metadata=metadata)
