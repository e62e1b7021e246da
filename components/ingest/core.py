"""Ingest's core: a user's source read into one Parquet dataset. The reading itself (formats, downloads, the time
window) is `_common/sources.py`, which reference_data shares."""

from __future__ import annotations

from kfp_ct.components._common import sources


def ingest(
    *,
    source_uri: str,
    output_path: str,
    file_format: str = "auto",
    time_column: str | None = None,
    start: str | None = None,
    end: str | None = None,
    encoding: str = "utf8",
    delimiter: str = "auto",
    keep_index: bool = False,
    timeout_s: float | None = None,
) -> dict:
    """Reads `source_uri` into the Parquet dataset `output_path`, keeping rows with start <= time_column < end (an
    empty time_column, start or end means none). Returns the dataset's metadata; see `sources.read_dataset`."""
    return sources.read_dataset(
        source_uri,
        output_path,
        file_format=file_format,
        time_column=time_column or None,
        start=start or None,
        end=end or None,
        encoding=encoding,
        delimiter=delimiter,
        keep_index=keep_index,
        timeout_s=timeout_s,
    )
