from typing import Optional

from kfp import dsl

from kfp_ct.components._image import component


@component
def ingest(
    source_uri: str,
    dataset: dsl.Output[dsl.Dataset],
    file_format: str = "auto",
    time_column: Optional[str] = None,
    start: Optional[str] = None,
    end: Optional[str] = None,
    window: str = "",
    as_of: str = "",
    lookback: str = "",
    encoding: str = "utf8",
    delimiter: str = "auto",
    keep_index: bool = False,
    timeout_s: float = 600.0,
) -> int:
    """Reads tabular data from a path, file://, gs://, s3://, minio:// or http(s):// URI into a Parquet dataset.

    CSV, Parquet and JSON lines, gzip'd or not, are read in bounded batches, so memory stays flat as rows grow. A
    source can also be a folder or prefix of such files, Hive-partitioned (dt=2026-11-29/part-0.parquet, also
    dt=.../hour=...) or not, or a URI template (gs://b/events/{date}/*.csv) expanded over the window's days. With a
    window, partitions outside it are never opened, and an empty window is not an error: the dataset has 0 rows.

    Args:
        source_uri: Where the data is: a local path, file://, gs://bucket/object (honours STORAGE_EMULATOR_HOST),
            s3://bucket/key (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION),
            minio://bucket/key (a KFP artifact in KFP's MinIO, with the mlpipeline-minio-artifact Secret's keys) or
            http(s):// URL.
        file_format: csv, parquet or jsonl; auto tells it from the name (a trailing .gz means gzip).
        time_column: Column holding each row's time (ISO 8601 text, a date or timestamp, or a number); with start and
            end it selects a window.
        start: Keep rows with time_column >= start (ISO 8601, or a number for a numeric column).
        end: Keep rows with time_column < end.
        window: The length of time a run reads ("7d", "24h", "90m"; units s, m, h, d, w): the rows with time_column
            in [as_of - window, as_of). Use it or start/end, not both; empty: none.
        as_of: The end of the window: ISO 8601 (an offset is converted to UTC; none means UTC), or the compact UTC
            form a KFP [[ScheduledTime]] macro expands to (20260107000000). Empty: the time the step starts, rounded
            down to the window's unit (a day for "7d", an hour for "24h"). Times without a zone in time_column are
            taken as UTC.
        lookback: Also read the rows of this long before the window ("2d"), to pick up rows that arrived late for
            an earlier window (each of those rows is read again, late or not); empty: none.
        encoding: Text encoding of a CSV source.
        delimiter: A CSV source's field delimiter; auto detects it from the first 64 KiB (comma, semicolon, tab or
            pipe: the one that splits every row into the same number of fields) and fails, naming what it saw, when
            several fit.
        keep_index: Keep the index that pandas stored in a Parquet source (the __index_level_0__ column of a
            filtered frame, or a named index) as columns named after it; by default it is dropped.
        timeout_s: Total seconds allowed to download a remote source (http(s)://, gs://, s3://, minio://: connecting,
            headers and body); a server that is silent or too slow fails, naming the URI.

    Returns:
        dataset: One Parquet file at {uri}; metadata: rows, columns, sha256 of the file (the data version) and
            source_uri; with a window, the window (time_column, start, end, as_of, window, lookback) and files_read.
        Output: The rows written (0 for an empty window).
    """
    from kfp_ct.components.ingest.core import ingest as ingest_core

    result = ingest_core(
        source_uri=source_uri,
        output_path=dataset.path,
        file_format=file_format,
        time_column=time_column,
        start=start,
        end=end,
        window=window,
        as_of=as_of,
        lookback=lookback,
        encoding=encoding,
        delimiter=delimiter,
        keep_index=keep_index,
        timeout_s=timeout_s,
    )
    dataset.metadata.update(result.metadata)
    return result.rows
