"""Dataset artifacts on disk: one Parquet file, written atomically, described by metadata.

A dataset artifact's file is `{uri}` itself (a single Parquet file). Its KFP metadata holds `rows`, `columns`,
`sha256` (of the file's bytes: the data version) and `source_uri`.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

BATCH_ROWS = 256_000


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


PARTIAL = ".partial"
_STARTED = time.time()  # partials older than this process were left by an earlier, killed writer


def _forked() -> None:
    global _STARTED
    _STARTED = time.time()  # a forked child is a process of its own: it starts now


os.register_at_fork(after_in_child=_forked)


def _prepare(target: Path) -> None:
    """Makes `target`'s folder and removes the partial copies of `target` that an earlier writer, killed before it
    could clean up (SIGKILL, a lost node), left there: hidden `.{name}.*.partial` files and folders from before this
    process started. A concurrent writer of the same target in a running process keeps its own."""
    target.parent.mkdir(parents=True, exist_ok=True)
    name = glob.escape(target.name)
    # `..{name}.*` too: the partial of an atomic write into a staging folder (model.save_model into the trainer's)
    for stale in [*target.parent.glob(f".{name}.*{PARTIAL}"), *target.parent.glob(f"..{name}.*{PARTIAL}")]:
        try:
            if stale.lstat().st_mtime >= _STARTED:
                continue
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)
        except FileNotFoundError:  # removed meanwhile by another process
            pass


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yields a temporary path beside `path`; moves it into place only if the block succeeds.

    A reader never sees a half-written file, and a failure leaves nothing behind; what a killed writer left behind is
    removed by the next writer of the same path.
    """
    target = Path(path)
    _prepare(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=PARTIAL, dir=target.parent)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Writes `text` at `path` atomically (see `atomic_path`), readable by all (a report, a manifest); returns it."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)
    os.chmod(path, 0o644)
    return Path(path)


def write_text_files(directory: str | os.PathLike, texts: dict[str, str]) -> list[Path]:
    """Writes each {name: text} into `directory`, each file with `write_text` (generated manifests); returns the
    paths."""
    return [write_text(Path(directory) / name, text) for name, text in texts.items()]


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[str]:
    """Yields a temporary directory beside `path`; renames it to `path` only if the block succeeds (as atomic_path,
    for a directory: KFP's empty output directory, or an earlier output, is replaced)."""
    target = Path(path)
    _prepare(target)
    tmp = tempfile.mkdtemp(prefix=f".{target.name}.", suffix=PARTIAL, dir=target.parent)
    try:
        yield tmp
        old = None
        if target.is_dir() and not target.is_symlink() and not any(target.iterdir()):
            target.rmdir()  # KFP may create an empty output directory
        elif target.exists() or target.is_symlink():
            old = f"{tmp}.old{PARTIAL}"  # moved aside, never half-removed in place; a later writer removes it if killed
            os.rename(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old) if os.path.isdir(old) and not os.path.islink(old) else os.unlink(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def describe(path: str | os.PathLike, source_uri: str) -> dict:
    """The metadata of a dataset artifact written at `path`."""
    meta = pq.ParquetFile(path).metadata
    return {
        "rows": meta.num_rows,
        "columns": meta.num_columns,
        "sha256": sha256_file(path),
        "source_uri": source_uri,
    }


TAG_PREFIX = "kfp_ct."


def write_table(table: pa.Table, path: str | os.PathLike, source_uri: str, tags: dict[str, str] | None = None) -> dict:
    """Writes `table` as the dataset artifact at `path` and returns its metadata. `tags` go into the Parquet file's
    own key-value metadata (see read_tags), so they travel with the file wherever it is copied."""
    if tags:
        table = table.replace_schema_metadata(
            {**(table.schema.metadata or {}), **{f"{TAG_PREFIX}{k}".encode(): str(v).encode() for k, v in tags.items()}}
        )
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return describe(path, source_uri)


def write_frame(frame, path: str | os.PathLike, source_uri: str, tags: dict[str, str] | None = None) -> dict:
    """Writes a pandas DataFrame as the dataset artifact at `path` and returns its metadata."""
    return write_table(pa.Table.from_pandas(frame, preserve_index=False), path, source_uri, tags)


def read_tags(path: str | os.PathLike) -> dict[str, str]:
    """The tags a dataset file was written with (from its footer only; the rows are not read)."""
    metadata = open_dataset(path).schema_arrow.metadata or {}
    return {
        key.decode()[len(TAG_PREFIX) :]: value.decode()
        for key, value in metadata.items()
        if key.decode(errors="replace").startswith(TAG_PREFIX)
    }


def open_dataset(path: str | os.PathLike) -> pq.ParquetFile:
    """Opens a dataset artifact, with an error that names the file when it is not Parquet.

    pre_buffer is off: with it on, Arrow keeps the bytes of every row group it has read, so streaming a large file
    would hold it all in memory.
    """
    try:
        return pq.ParquetFile(path, pre_buffer=False)
    except FileNotFoundError:
        raise FileNotFoundError(f"dataset file not found: {path}") from None
    except (pa.ArrowInvalid, OSError) as err:
        raise ValueError(f"{path} is not a readable Parquet file: {err}") from None


def iter_batches(path: str | os.PathLike, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
    """Streams a dataset artifact in bounded batches."""
    yield from open_dataset(path).iter_batches(batch_size=BATCH_ROWS, columns=columns)


def read_frame(path: str | os.PathLike, columns: list[str] | None = None):
    """Reads a whole dataset artifact into pandas (for steps that need it in memory: featurize, train)."""
    return open_dataset(path).read(columns=columns).to_pandas()
