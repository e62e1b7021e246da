"""ingest: every source scheme and format, time windows, streaming, and a corpus of bad inputs."""

from __future__ import annotations

import functools
import gzip
import http.server
import shutil
import threading
import time

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from loopback import SlowServer

from kfp_ct.components._common import sources, storage
from kfp_ct.components.ingest import core

ROWS = pd.DataFrame(
    {"a": [1, 2, 3, 4], "b": ["x", "y", None, "x"], "t": ["2024-01-01", "2024-02-01", "2024-03-01", "2024-04-01"]}
)


@pytest.fixture
def elec2(shared_data):
    return shared_data / "elec2" / "elec2.csv"


def write_source(directory, name: str, frame: pd.DataFrame = ROWS):
    path = directory / name
    plain = name.removesuffix(".gz")
    if plain.endswith(".csv"):
        data = frame.to_csv(index=False).encode()
    elif plain.endswith(".jsonl"):
        data = frame.to_json(orient="records", lines=True).encode()
    else:
        sink = pa.BufferOutputStream()
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), sink)
        data = sink.getvalue().to_pybytes()
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    return path


@pytest.mark.parametrize("name", ["d.csv", "d.csv.gz", "d.parquet", "d.parquet.gz", "d.jsonl", "d.jsonl.gz"])
def test_every_format_gives_the_same_rows(tmp_path, name):
    source = write_source(tmp_path, name)
    meta = core.ingest(source_uri=str(source), output_path=str(tmp_path / "out")).metadata
    assert (meta["rows"], meta["columns"], meta["source_uri"]) == (4, 3, str(source))
    frame = pd.read_parquet(tmp_path / "out")
    assert frame["a"].tolist() == [1, 2, 3, 4]
    assert frame["b"].tolist() == ["x", "y", None, "x"]


def test_file_uri_and_explicit_format(tmp_path):
    source = write_source(tmp_path, "data.txt.gz", ROWS)
    shutil.copy(write_source(tmp_path, "d.csv.gz"), source)
    meta = core.ingest(source_uri=f"file://{source}", output_path=str(tmp_path / "out"), file_format="csv").metadata
    assert meta["rows"] == 4 and meta["format"] == "csv"


def test_sha256_versions_the_data(tmp_path, elec2):
    first = core.ingest(source_uri=str(elec2), output_path=str(tmp_path / "one")).metadata
    again = core.ingest(source_uri=str(elec2), output_path=str(tmp_path / "two")).metadata
    other = core.ingest(
        source_uri=str(elec2), output_path=str(tmp_path / "three"), time_column="date", end="0.5"
    ).metadata
    assert first["sha256"] == again["sha256"] != other["sha256"]
    assert (first["rows"], first["columns"]) == (45312, 9)


def test_time_window_on_dates_and_numbers(tmp_path, shared_data):
    hours = shared_data / "bike_sharing" / "hour.csv"
    meta = core.ingest(
        source_uri=str(hours), output_path=str(tmp_path / "y2012"), time_column="dteday", start="2012-01-01"
    ).metadata
    frame = pd.read_parquet(tmp_path / "y2012")
    assert meta["rows"] == len(frame) == (pd.read_csv(hours)["yr"] == 1).sum()
    enriched = shared_data / "elec2" / "elec2_enriched.csv.gz"
    core.ingest(
        source_uri=str(enriched), output_path=str(tmp_path / "first"), time_column="day_index", start="0", end="365"
    )
    days = pd.read_parquet(tmp_path / "first")["day_index"]
    assert days.min() >= 0 and days.max() < 365


def test_streams_in_blocks_and_widens_a_type_found_late(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "BLOCK_BYTES", 1 << 10)
    frame = pd.DataFrame({"n": [str(i) for i in range(5000)], "s": ["k"] * 5000})
    frame.loc[4000, "n"] = "4000.5"
    source = tmp_path / "late.csv"
    frame.to_csv(source, index=False)
    with pytest.raises(sources.TypeFoundLate, match="column .n. needs double"):
        list(sources.read_batches(str(source), "csv", False))
    batches = list(sources.read_batches(str(source), "csv", False, column_types={"n": pa.float64()}))
    assert len(batches) > 10
    core.ingest(source_uri=str(source), output_path=str(tmp_path / "out"))
    out = pd.read_parquet(tmp_path / "out")
    assert out["n"].dtype == "float64" and out["n"][4000] == 4000.5 and len(out) == 5000


def test_http_source(tmp_path, elec2):
    shutil.copy(elec2, tmp_path / "elec2.csv")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        assert core.ingest(source_uri=f"{base}/elec2.csv", output_path=str(tmp_path / "out")).rows == 45312
        with pytest.raises(FileNotFoundError, match="HTTP 404"):
            core.ingest(source_uri=f"{base}/missing.csv", output_path=str(tmp_path / "missing"))
        assert not (tmp_path / "missing").exists()
    finally:
        server.shutdown()


@pytest.mark.integration
def test_gcs_source_and_missing_bucket_or_object(tmp_path, gcs_bucket, elec2):
    gcs_bucket.blob("raw/elec2.csv").upload_from_filename(str(elec2))
    meta = core.ingest(source_uri=f"gs://{gcs_bucket.name}/raw/elec2.csv", output_path=str(tmp_path / "out")).metadata
    assert meta["rows"] == 45312 and meta["source_uri"].startswith("gs://")
    with pytest.raises(FileNotFoundError, match="object not found"):
        core.ingest(source_uri=f"gs://{gcs_bucket.name}/raw/nope.csv", output_path=str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="bucket not found: gs://no-such-bucket-kfp-ct"):
        core.ingest(source_uri="gs://no-such-bucket-kfp-ct/x.csv", output_path=str(tmp_path / "nope"))
    assert not (tmp_path / "nope").exists()


def _bad(name: str, content: bytes):
    return pytest.param(name, content, id=name)


BAD_SOURCES = [
    ("empty.csv", b"", {}, "empty"),
    ("header_only.csv", b"a,b,c\n", {}, "no data rows"),
    ("latin1.csv", "name,city\nJos\u00e9,M\u00fcnchen\n".encode("latin-1"), {}, "not valid utf8 text"),
    ("duplicate.csv", b"a,b,a\n1,2,3\n", {}, "duplicate column names: a"),
    ("truncated.parquet", None, {}, "not a readable Parquet file"),
    (
        "truncated.csv.gz",
        gzip.compress(b"a,b\n" + b"".join(b"%d,%d\n" % (i, i * i) for i in range(5000)))[:9000],
        {},
        "gzip stream is truncated",
    ),
    ("broken.jsonl", b'{"a": 1}\n{"a": \n', {}, "cannot parse it as jsonl"),
    ("data.xlsx", b"PK\x03\x04", {}, "cannot tell the format"),
    ("ragged.csv", b"a,b\n1,2\n3,4,5\n", {}, "cannot parse it as csv"),
    ("window.csv", b"t,v\n2024-01-01,1\n", {"time_column": "t", "start": "2030-01-01"}, "no data rows in the window"),
    ("nocol.csv", b"t,v\n2024-01-01,1\n", {"time_column": "when", "start": "2030-01-01"}, "time column 'when'"),
    ("nowindowcol.csv", b"t,v\n2024-01-01,1\n", {"start": "2030-01-01"}, "need time_column"),
    ("format.csv", b"t,v\n1,1\n", {"file_format": "xml"}, "unknown file_format 'xml'"),
]


@pytest.mark.parametrize("name,content,kwargs,message", BAD_SOURCES, ids=[b[0] for b in BAD_SOURCES])
def test_bad_sources_fail_clearly_and_leave_nothing(tmp_path, name, content, kwargs, message):
    source = tmp_path / "in" / name
    source.parent.mkdir()
    if content is None:  # a real Parquet file cut in half
        write_source(source.parent, name, pd.DataFrame({"a": range(1000)}))
        source.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
    else:
        source.write_bytes(content)
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=message) as error:
        core.ingest(source_uri=str(source), output_path=str(out / "dataset"), **kwargs)
    # a problem of the data names the file; a problem of the arguments names the argument
    assert str(source) in str(error.value) or any(argument in str(error.value) for argument in kwargs)
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize(
    "uri,error,message",
    [
        ("/no/such/file.csv", FileNotFoundError, "source file not found: /no/such/file.csv"),
        ("hdfs://namenode/data.csv", ValueError, "unsupported URI scheme 'hdfs'"),
        ("ftp://host/data.csv", ValueError, "unsupported URI scheme 'ftp'"),
    ],
)
def test_missing_files_and_unknown_schemes(tmp_path, uri, error, message):
    with pytest.raises(error, match=message):
        core.ingest(source_uri=uri, output_path=str(tmp_path / "out"))
    assert not any(tmp_path.iterdir())


# ---- bounded HTTP reads ------------------------------------------------------------------------------------------


CSV_BODY = b"a,b\n" + b"".join(b"%d,%d\n" % (i, i) for i in range(50))


@pytest.mark.parametrize(
    "head",
    [
        pytest.param(None, id="silent"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(CSV_BODY), id="drips-the-body"),
        pytest.param(b"HTTP/1.1 200 OK\r\nX-Slow: " + b"y" * 200 + b"\r\n\r\n", id="drips-the-headers"),
    ],
)
def test_http_reads_have_a_total_deadline_and_name_the_uri(tmp_path, head):
    server = SlowServer(head, CSV_BODY, interval=0.05)
    if head is not None and b"X-Slow" in head:
        server.head, server.body = b"", head + CSV_BODY  # every byte, headers included, is dripped
    try:
        started = time.monotonic()
        with pytest.raises(TimeoutError, match=r"no complete answer .*within the 1 s deadline") as error:
            core.ingest(source_uri=server.url, output_path=str(tmp_path / "out"), timeout_s=1.0)
        assert time.monotonic() - started < 4
        assert server.url in str(error.value)
        assert not (tmp_path / "out").exists()
    finally:
        server.close()


def test_http_deadline_from_the_environment_and_a_body_cut_short(tmp_path, monkeypatch):
    monkeypatch.setenv("KFP_CT_DOWNLOAD_TIMEOUT_S", "0.5")
    assert storage.download_timeout(None) == 0.5 and storage.download_timeout(3) == 3.0
    server = SlowServer(None)
    try:
        with pytest.raises(TimeoutError, match=r"0.5 s deadline"):
            core.ingest(source_uri=server.url, output_path=str(tmp_path / "out"))
    finally:
        server.close()
    monkeypatch.setenv("KFP_CT_DOWNLOAD_TIMEOUT_S", "soon")
    with pytest.raises(ValueError, match="KFP_CT_DOWNLOAD_TIMEOUT_S must be a number of seconds, found 'soon'"):
        core.ingest(source_uri="http://127.0.0.1:9/x.csv", output_path=str(tmp_path / "out"))
    monkeypatch.delenv("KFP_CT_DOWNLOAD_TIMEOUT_S")
    # the server announces more bytes than it sends, then closes: an error, not a silently shorter dataset
    cut = SlowServer(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (len(CSV_BODY) + 100), CSV_BODY, 0)
    try:
        with pytest.raises(ConnectionError, match=r"closed 100 bytes before the end") as error:
            core.ingest(source_uri=cut.url, output_path=str(tmp_path / "out"), timeout_s=10)
        assert cut.url in str(error.value)
    finally:
        cut.close()


# ---- CSV delimiters ----------------------------------------------------------------------------------------------

DELIMITED = pd.DataFrame({"id": [1, 2, 3], "city": ["Lyon", "Köln", "Porto"], "price": [1.5, 2.25, 3.0]})


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"], ids=["comma", "semicolon", "tab", "pipe"])
@pytest.mark.parametrize("name", ["d.csv", "d.csv.gz"])
def test_the_csv_delimiter_is_detected(tmp_path, delimiter, name):
    data = DELIMITED.to_csv(index=False, sep=delimiter).encode()
    source = tmp_path / name
    source.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    core.ingest(source_uri=str(source), output_path=str(tmp_path / "out"))
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "out"), DELIMITED)


def test_quoted_delimiters_and_a_single_column_are_not_mistaken(tmp_path):
    quoted = tmp_path / "quoted.csv"
    quoted.write_text('name;note\n"a;b";"x, y, z"\nc;"1|2"\n')
    core.ingest(source_uri=str(quoted), output_path=str(tmp_path / "out"))
    assert pd.read_parquet(tmp_path / "out").to_dict("list") == {"name": ["a;b", "c"], "note": ["x, y, z", "1|2"]}
    single = tmp_path / "single.csv"
    single.write_text("value\n1\n2\n")
    core.ingest(source_uri=str(single), output_path=str(tmp_path / "single"))
    assert pd.read_parquet(tmp_path / "single").columns.tolist() == ["value"]


def test_an_ambiguous_delimiter_fails_naming_the_file_or_takes_the_explicit_one(tmp_path):
    source = tmp_path / "ambiguous.csv"
    source.write_text("a,b;c\n1,2;3\n4,5;6\n")  # two columns on ';', two columns on ','
    with pytest.raises(ValueError, match=r"cannot tell the CSV delimiter.*',' gives 2 fields.*';' gives 2 fields"):
        core.ingest(source_uri=str(source), output_path=str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()
    core.ingest(source_uri=str(source), output_path=str(tmp_path / "out"), delimiter=";")
    assert pd.read_parquet(tmp_path / "out").to_dict("list") == {"a,b": ["1,2", "4,5"], "c": [3, 6]}
    with pytest.raises(ValueError, match="delimiter must be one character or 'auto', found ';;'"):
        core.ingest(source_uri=str(source), output_path=str(tmp_path / "other"), delimiter=";;")


# ---- the pandas index in Parquet ---------------------------------------------------------------------------------


def test_a_pandas_index_in_parquet_is_not_a_column_unless_asked(tmp_path):
    frame = pd.DataFrame({"a": [1, 2, 3, 4], "b": list("wxyz")})
    frame[frame["a"] > 1].to_parquet(tmp_path / "filtered.parquet")  # stores __index_level_0__
    frame.set_index("b").to_parquet(tmp_path / "named.parquet")  # stores the index 'b'
    assert "__index_level_0__" in pq.ParquetFile(tmp_path / "filtered.parquet").schema_arrow.names
    core.ingest(source_uri=str(tmp_path / "filtered.parquet"), output_path=str(tmp_path / "out"))
    out = pd.read_parquet(tmp_path / "out")
    assert out.columns.tolist() == ["a", "b"] and out["a"].tolist() == [2, 3, 4]
    assert pq.ParquetFile(tmp_path / "out").schema_arrow.names == ["a", "b"]
    core.ingest(source_uri=str(tmp_path / "named.parquet"), output_path=str(tmp_path / "named"))
    assert pd.read_parquet(tmp_path / "named").columns.tolist() == ["a"]
    core.ingest(source_uri=str(tmp_path / "filtered.parquet"), output_path=str(tmp_path / "kept"), keep_index=True)
    assert pd.read_parquet(tmp_path / "kept").to_dict("list") == {"a": [2, 3, 4], "b": list("xyz"), "index": [1, 2, 3]}
    core.ingest(source_uri=str(tmp_path / "named.parquet"), output_path=str(tmp_path / "named_kept"), keep_index=True)
    assert pd.read_parquet(tmp_path / "named_kept").to_dict("list") == {"a": [1, 2, 3, 4], "b": list("wxyz")}
