"""S3 and KFP's MinIO (minio://) through the real S3 API of moto's server on loopback: reading, publishing,
listing, withdrawing, and the errors of bad input (each naming the URI and the cause, within a bounded time)."""

from __future__ import annotations

import json
import os
import re
import socket
import time

import pytest

from kfp_ct.components._common import storage

pytestmark = pytest.mark.integration


@pytest.fixture
def model_dir(tmp_path):
    root = tmp_path / "model"
    (root / "featurizer").mkdir(parents=True)
    (root / "MLmodel").write_text("flavors: {}\n")
    (root / "featurizer" / "featurizer.json").write_text(json.dumps({"columns": ["a"]}))
    (root / "model.bin").write_bytes(os.urandom(9 << 20))  # above boto3's multipart threshold (8 MiB)
    return root


def _keys(bucket: str) -> list[str]:
    pages = storage.s3_client(f"s3://{bucket}").get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


def test_s3_publish_list_download_withdraw(model_dir, s3_bucket, tmp_path):
    uri = f"s3://{s3_bucket}/models/elec2"
    published = storage.publish_directory(str(model_dir), uri)
    assert published.startswith(f"{uri}/v")
    assert storage.list_versions(uri) == [published]
    version = published.rsplit("/", 1)[-1]
    assert f"models/elec2/{version}/{storage.MARKER}" in _keys(s3_bucket)

    dest = storage.download_directory(published, str(tmp_path / "download"))
    assert (tmp_path / "download" / "model.bin").read_bytes() == (model_dir / "model.bin").read_bytes()
    assert (tmp_path / "download" / "featurizer" / "featurizer.json").is_file()

    # objects without the marker are not a version to readers
    storage.s3_client(uri).put_object(Bucket=s3_bucket, Key="models/elec2/v2/MLmodel", Body=b"half")
    assert storage.list_versions(uri) == [published]
    with pytest.raises(FileNotFoundError, match=f"{storage.MARKER} is missing"):
        storage.download_directory(f"{uri}/v2", str(tmp_path / "half"))
    with pytest.raises(FileExistsError, match="already exists"):
        storage.publish_directory(str(model_dir), uri, version=version)
    storage.withdraw_version(published)
    assert storage.list_versions(uri) == []
    assert _keys(s3_bucket) == ["models/elec2/v2/MLmodel"]
    assert dest


def test_s3_failed_upload_leaves_no_version(model_dir, s3_bucket, monkeypatch):
    import boto3.s3.transfer

    real_upload = boto3.s3.transfer.S3Transfer.upload_file

    def failing_upload(self, filename, *args, **kwargs):
        if filename.endswith("model.bin"):
            raise ConnectionError("network down")
        return real_upload(self, filename, *args, **kwargs)

    monkeypatch.setattr(boto3.s3.transfer.S3Transfer, "upload_file", failing_upload)
    uri = f"s3://{s3_bucket}/models"
    with pytest.raises(ConnectionError, match="network down"):
        storage.publish_directory(str(model_dir), uri)
    assert storage.list_versions(uri) == []
    assert _keys(s3_bucket) == []


def test_s3_missing_bucket_and_object(model_dir, s3_server, s3_bucket, tmp_path):
    with pytest.raises(FileNotFoundError, match="bucket not found: s3://no-such-bucket-kfp-ct"):
        storage.publish_directory(str(model_dir), "s3://no-such-bucket-kfp-ct/models")
    with pytest.raises(FileNotFoundError, match="bucket not found: s3://no-such-bucket-kfp-ct"):
        storage.download_file("s3://no-such-bucket-kfp-ct/a.csv", str(tmp_path / "a.csv"))
    with pytest.raises(FileNotFoundError, match=f"object not found: s3://{s3_bucket}/nope.csv"):
        storage.download_file(f"s3://{s3_bucket}/nope.csv", str(tmp_path / "a.csv"))
    with pytest.raises(FileNotFoundError, match="bucket not found: s3://no-such-bucket-kfp-ct"):
        storage.list_versions("s3://no-such-bucket-kfp-ct/models")
    assert os.listdir(tmp_path) == ["model"]  # no partial download left


def test_s3_unreachable_endpoint_fails_fast(s3_bucket, monkeypatch, tmp_path):
    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", dead)
    start = time.monotonic()
    with pytest.raises(ConnectionError, match=f"could not reach the S3 endpoint {dead} for s3://{s3_bucket}/a.csv"):
        storage.download_file(f"s3://{s3_bucket}/a.csv", str(tmp_path / "a.csv"))
    assert time.monotonic() - start < 30
    assert not (tmp_path / "a.csv").exists()


def test_s3_wrong_keys_are_refused(start_s3_server, tmp_path, monkeypatch):
    """A moto server that checks signatures (INITIAL_NO_AUTH_ACTION_COUNT=0) refuses keys it does not know."""
    url = start_s3_server({"INITIAL_NO_AUTH_ACTION_COUNT": "0"})
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAWRONGWRONGWRONG0")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    with pytest.raises(PermissionError, match=r"access denied to s3://kfp-ct-auth/data.csv .*InvalidAccessKeyId"):
        storage.download_file("s3://kfp-ct-auth/data.csv", str(tmp_path / "data.csv"))
    with pytest.raises(PermissionError, match=r"access denied to s3://kfp-ct-auth/models .*InvalidAccessKeyId"):
        storage.list_versions("s3://kfp-ct-auth/models")
    assert list(tmp_path.iterdir()) == []


def test_minio_uri_reads_kfp_minio_with_the_secret(s3_server, s3_bucket, tmp_path, monkeypatch):
    """minio://BUCKET/KEY goes to KFP's MinIO endpoint (here moto, via KFP_CT_MINIO_ENDPOINT) with the keys of the
    mlpipeline-minio-artifact Secret, mounted as files, not the AWS_* ones."""
    storage.s3_client(f"s3://{s3_bucket}").put_object(Bucket=s3_bucket, Key="v2/artifacts/run/x.csv", Body=b"a\n1\n")
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "accesskey").write_text("minio\n")
    (secret / "secretkey").write_text("minio123\n")
    monkeypatch.setenv("KFP_CT_MINIO_ENDPOINT", s3_server)
    monkeypatch.setenv("KFP_CT_MINIO_SECRET_DIR", str(secret))
    monkeypatch.delenv("AWS_ENDPOINT_URL")  # minio:// never uses the S3 endpoint
    storage.download_file(f"minio://{s3_bucket}/v2/artifacts/run/x.csv", str(tmp_path / "x.csv"))
    assert (tmp_path / "x.csv").read_bytes() == b"a\n1\n"
    client = storage.s3_client(f"minio://{s3_bucket}/x")
    assert client.meta.endpoint_url == s3_server
    assert client._request_signer._credentials.access_key == "minio"


def test_minio_endpoint_as_kfp_finds_it(monkeypatch):
    for name in ("KFP_CT_MINIO_ENDPOINT", "MINIO_SERVICE_SERVICE_HOST", "MINIO_SERVICE_SERVICE_PORT"):
        monkeypatch.delenv(name, raising=False)
    assert storage.minio_endpoint() == "http://minio-service.kubeflow:9000"
    monkeypatch.setenv("MINIO_SERVICE_SERVICE_HOST", "10.0.0.7")
    monkeypatch.setenv("MINIO_SERVICE_SERVICE_PORT", "9000")
    assert storage.minio_endpoint() == "http://10.0.0.7:9000"
    monkeypatch.setenv("KFP_CT_MINIO_ENDPOINT", "https://minio.example:443")
    assert storage.minio_endpoint() == "https://minio.example:443"


def test_minio_uri_without_the_secret(monkeypatch, tmp_path):
    for name in ("MINIO_ACCESS_KEY", "MINIO_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KFP_CT_MINIO_SECRET_DIR", str(tmp_path / "absent"))
    uri = "minio://mlpipeline/v2/artifacts/train/data.parquet"
    with pytest.raises(PermissionError, match=f"no credentials for {uri}: .*'mlpipeline-minio-artifact'"):
        storage.download_file(uri, str(tmp_path / "data.parquet"))
    assert os.listdir(tmp_path) == []


def test_unsupported_scheme():
    with pytest.raises(ValueError, match="unsupported storage URI scheme 'ftp'.*s3:// or minio://"):
        storage.list_versions("ftp://host/models")


@pytest.mark.parametrize("name", ["v1/../../escaped.txt", "/abs.txt", "a/./b", "a//b", "..\\x"])
def test_s3_download_refuses_names_that_leave_the_folder(name, s3_bucket, tmp_path):
    client = storage.s3_client(f"s3://{s3_bucket}")
    client.put_object(Bucket=s3_bucket, Key="models/v1/MLmodel", Body=b"ok")
    client.put_object(Bucket=s3_bucket, Key=f"models/v1/{name}", Body=b"evil")
    dest = tmp_path / "a" / "b" / "dest"
    with pytest.raises(ValueError, match=f"refusing to download the object '{re.escape(name)}'"):
        storage.download_prefix(f"s3://{s3_bucket}/models/v1", str(dest))
    assert not (tmp_path / "a").exists()  # checked before anything is written


@pytest.mark.parametrize("scheme", ["s3", "gs"])
@pytest.mark.parametrize("head", [None, b'HTTP/1.1 200 OK\r\nContent-Length: 4000\r\nETag: "x"\r\n\r\n'])
def test_object_store_downloads_have_a_total_deadline(tmp_path, monkeypatch, scheme, head):
    """A store that never answers, or drips its answer, holds no download past the deadline: the clients bound each
    request, not a whole download."""
    from loopback import SlowServer

    server = SlowServer(head, b"x" * 4000, interval=0.05)
    endpoint = server.url.rsplit("/", 1)[0]
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", endpoint)
    monkeypatch.setenv("KFP_CT_DOWNLOAD_TIMEOUT_S", "1.5")
    uri = f"{scheme}://slow-bucket/data/train.parquet"
    try:
        started = time.monotonic()
        with pytest.raises(TimeoutError, match=re.escape(uri) + r" within the 1.5 s deadline"):
            storage.download_file(uri, str(tmp_path / "train.parquet"))
        with pytest.raises(TimeoutError, match=re.escape(f"{uri}/") + r" within the 1.5 s deadline"):
            storage.download_prefix(f"{uri}/", str(tmp_path / "folder"))
        assert time.monotonic() - started < 8
        assert not (tmp_path / "train.parquet").exists()
    finally:
        server.close()


class _CuttingProxy:
    """A loopback HTTP proxy in front of the S3 server that cuts the body of the first `cuts` GETs of `key` half-way
    (the full Content-Length announced, half the bytes sent, the connection closed), and may call `between` before
    answering a resumed (Range) GET."""

    def __init__(self, upstream: str, key: str, cuts: int, between=None):
        import http.client
        import http.server
        import threading
        import urllib.parse

        proxy, target = self, urllib.parse.urlsplit(upstream)
        self.ranges: list[str] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _forward(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if self.headers.get("Range"):
                    proxy.ranges.append(self.headers["Range"])
                    if between is not None:
                        between()
                upstream_conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
                upstream_conn.request(self.command, self.path, body=body, headers=dict(self.headers))
                answer = upstream_conn.getresponse()
                data = answer.read()
                cut = self.command == "GET" and self.path.split("?")[0].endswith(key) and answer.status in (200, 206)
                cut = cut and proxy.cuts_left > 0
                self.send_response(answer.status)
                for name, value in answer.getheaders():
                    if name.lower() not in ("transfer-encoding", "connection"):
                        self.send_header(name, value)
                self.end_headers()
                if cut:
                    proxy.cuts_left -= 1
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(data)

            do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _forward

        self.cuts_left = cuts
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_s3_download_cut_off_resumes_where_it_stopped(s3_server, s3_bucket, tmp_path, monkeypatch):
    data = os.urandom(3 << 20)
    storage.s3_client(f"s3://{s3_bucket}").put_object(Bucket=s3_bucket, Key="raw/blob.bin", Body=data)
    proxy = _CuttingProxy(s3_server, "raw/blob.bin", cuts=2)
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    try:
        storage.download_file(f"s3://{s3_bucket}/raw/blob.bin", str(tmp_path / "blob.bin"))
        assert (tmp_path / "blob.bin").read_bytes() == data
        half, quarter = len(data) // 2, (len(data) - len(data) // 2) // 2
        assert proxy.ranges == [f"bytes={half}-", f"bytes={half + quarter}-"]  # resumed where it stopped, twice

        proxy.cuts_left = storage.RESUMES + 1  # cut every time: fails, naming the URI, leaving nothing
        with pytest.raises(ConnectionError, match=f"s3://{s3_bucket}/raw/blob.bin"):
            storage.download_file(f"s3://{s3_bucket}/raw/blob.bin", str(tmp_path / "never.bin"))
        assert not (tmp_path / "never.bin").exists()
    finally:
        proxy.close()


def test_s3_object_replaced_mid_download_fails_instead_of_mixing(s3_server, s3_bucket, tmp_path, monkeypatch):
    client = storage.s3_client(f"s3://{s3_bucket}")
    client.put_object(Bucket=s3_bucket, Key="raw/moving.bin", Body=b"a" * (1 << 20))
    replace = lambda: client.put_object(Bucket=s3_bucket, Key="raw/moving.bin", Body=b"b" * (1 << 20))  # noqa: E731
    proxy = _CuttingProxy(s3_server, "raw/moving.bin", cuts=1, between=replace)
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    try:
        with pytest.raises(OSError, match="changed while it was being downloaded"):
            storage.download_file(f"s3://{s3_bucket}/raw/moving.bin", str(tmp_path / "moving.bin"))
        assert not (tmp_path / "moving.bin").exists()
    finally:
        proxy.close()
