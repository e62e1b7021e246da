"""ingest from s3:// and minio:// through moto's S3 server on loopback; bad input leaves nothing behind."""

from __future__ import annotations

import gzip
import shutil

import pyarrow.parquet as pq
import pytest

from kfp_ct.components._common import storage
from kfp_ct.components.ingest.core import ingest

pytestmark = pytest.mark.integration


@pytest.fixture
def elec2(shared_data):
    return shared_data / "elec2" / "elec2.csv"


def test_ingest_from_s3_csv_and_gzip(elec2, s3_bucket, tmp_path):
    client = storage.s3_client(f"s3://{s3_bucket}")
    client.upload_file(str(elec2), s3_bucket, "raw/elec2.csv")
    with open(elec2, "rb") as src, gzip.open(tmp_path / "elec2.csv.gz", "wb") as out:
        shutil.copyfileobj(src, out)
    client.upload_file(str(tmp_path / "elec2.csv.gz"), s3_bucket, "raw/elec2.csv.gz")

    local = ingest(source_uri=str(elec2), output_path=str(tmp_path / "local.parquet")).metadata
    remote = ingest(source_uri=f"s3://{s3_bucket}/raw/elec2.csv", output_path=str(tmp_path / "s3.parquet")).metadata
    gzipped = ingest(
        source_uri=f"s3://{s3_bucket}/raw/elec2.csv.gz", output_path=str(tmp_path / "s3gz.parquet")
    ).metadata
    assert remote["rows"] == local["rows"] == gzipped["rows"] == 45312
    assert remote["sha256"] == local["sha256"] == gzipped["sha256"]
    assert remote["source_uri"] == f"s3://{s3_bucket}/raw/elec2.csv"
    assert pq.read_table(tmp_path / "s3.parquet").equals(pq.read_table(tmp_path / "local.parquet"))


def test_ingest_from_a_kfp_artifact_in_minio(elec2, s3_server, s3_bucket, tmp_path, monkeypatch):
    local = ingest(source_uri=str(elec2), output_path=str(tmp_path / "local.parquet")).metadata
    key = "v2/artifacts/training/run-1/ingest/dataset"
    storage.s3_client(f"s3://{s3_bucket}").upload_file(str(tmp_path / "local.parquet"), s3_bucket, key)
    monkeypatch.setenv("KFP_CT_MINIO_ENDPOINT", s3_server)
    monkeypatch.setenv("MINIO_ACCESS_KEY", "minio")
    monkeypatch.setenv("MINIO_SECRET_KEY", "minio123")
    meta = ingest(
        source_uri=f"minio://{s3_bucket}/{key}", output_path=str(tmp_path / "out.parquet"), file_format="parquet"
    ).metadata
    assert meta["sha256"] == local["sha256"] and meta["rows"] == 45312


@pytest.mark.parametrize(
    "uri, error, message",
    [
        ("s3://no-such-bucket-kfp-ct/x.csv", FileNotFoundError, "bucket not found: s3://no-such-bucket-kfp-ct"),
        ("s3://{bucket}/nope.csv", FileNotFoundError, "object not found: s3://{bucket}/nope.csv"),
        ("minio://mlpipeline/v2/artifacts/x.csv", PermissionError, "Secret 'mlpipeline-minio-artifact'"),
    ],
)
def test_ingest_bad_s3_sources_leave_nothing(uri, error, message, s3_bucket, tmp_path, monkeypatch):
    monkeypatch.delenv("MINIO_ACCESS_KEY", raising=False)
    monkeypatch.setenv("KFP_CT_MINIO_SECRET_DIR", str(tmp_path / "no-secret"))
    uri = uri.format(bucket=s3_bucket)
    with pytest.raises(error, match=message.format(bucket=s3_bucket)) as raised:
        ingest(source_uri=uri, output_path=str(tmp_path / "out.parquet"))
    assert uri in str(raised.value)
    assert list(tmp_path.iterdir()) == []
