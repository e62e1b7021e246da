"""A continuous run on a standard Kubeflow install, on loopback: the trainer logs its model to an MLflow server whose
artifact root is s3:// (moto), recording its train split as a minio:// KFP artifact; the champion round-trips from
S3, and reference_data reads the champion's training data from "KFP's MinIO" (the same moto server, reached through
KFP_CT_MINIO_ENDPOINT with the mlpipeline-minio-artifact Secret's keys mounted as files)."""

from __future__ import annotations

import filecmp
import os

import pandas as pd
import pyarrow.parquet as pq
import pytest

from kfp_ct.components._common import storage, tracking
from kfp_ct.components._common.model import load_model

pytestmark = pytest.mark.integration
REGISTERED = "elec2-s3"
ROWS = 3000


@pytest.fixture(scope="module")
def s3_champion(s3_mlflow_server, shared_data, tmp_path_factory):
    """A model trained with the S3-backed MLflow server, its train split stored as a KFP artifact in the bucket."""
    from kfp_ct.components._common import datasets
    from kfp_ct.components.featurize.core import featurize
    from kfp_ct.components.train_sklearn.core import train_sklearn

    tracking_uri, artifact_root = s3_mlflow_server
    bucket = storage.split_uri(artifact_root)[1]
    out = tmp_path_factory.mktemp("s3-champion")
    frame = pd.read_csv(shared_data / "elec2" / "elec2.csv", nrows=ROWS)
    datasets.write_frame(frame, out / "data.parquet", "elec2.csv")
    featurize(
        dataset_path=str(out / "data.parquet"),
        target_column="class",
        train_path=str(out / "train.parquet"),
        test_path=str(out / "test.parquet"),
        featurizer_path=str(out / "f"),
    )
    key = "v2/artifacts/training/run-7/featurize/train"
    storage.s3_client(artifact_root).upload_file(str(out / "train.parquet"), bucket, key)
    outcome = train_sklearn(
        train_path=str(out / "train.parquet"),
        featurizer_path=str(out / "f"),
        model_path=str(out / "model"),
        model_name=REGISTERED,
        hyperparameters={"max_iter": 20},
        tracking_uri=tracking_uri,
        train_metadata={"uri": f"minio://{bucket}/{key}"},
    )
    tracking.promote(REGISTERED, outcome.version, tracking.CHAMPION, tracking_uri)
    return {"tracking_uri": tracking_uri, "root": artifact_root, "out": out, "version": outcome.version, "key": key}


def test_model_logged_to_s3_artifact_store_round_trips(s3_champion, tmp_path):
    bucket, prefix = storage.split_uri(s3_champion["root"])[1:]
    pages = storage.s3_client(s3_champion["root"]).get_paginator("list_objects_v2").paginate(Bucket=bucket)
    keys = [item["Key"] for page in pages for item in page.get("Contents", [])]
    assert any(k.startswith(f"{prefix}/") and k.endswith("/MLmodel") for k in keys), keys  # MLflow wrote to S3

    version, path = tracking.champion(REGISTERED, s3_champion["tracking_uri"], dst=tmp_path)
    assert version == s3_champion["version"]
    saved = s3_champion["out"] / "model"
    assert not filecmp.dircmp(saved, path).diff_files
    original, downloaded = load_model(saved), load_model(path)
    test = pd.read_parquet(s3_champion["out"] / "test.parquet")
    assert downloaded.predict(test).tolist() == original.predict(test).tolist()


@pytest.fixture
def minio_secret(s3_server, tmp_path, monkeypatch):
    """KFP's MinIO (here the moto server) and its Secret mounted as files."""
    secret = tmp_path / "mlpipeline-minio-artifact"
    secret.mkdir()
    (secret / "accesskey").write_text("minio")
    (secret / "secretkey").write_text("minio123")
    monkeypatch.setenv("KFP_CT_MINIO_ENDPOINT", s3_server)
    monkeypatch.setenv("KFP_CT_MINIO_SECRET_DIR", str(secret))
    for name in ("MINIO_ACCESS_KEY", "MINIO_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    return secret


def test_reference_data_reads_the_champions_minio_artifact(s3_champion, minio_secret, tmp_path):
    from kfp_ct.components.reference_data.core import reference_data

    meta = reference_data(
        model_name=REGISTERED,
        reference_path=str(tmp_path / "reference.parquet"),
        tracking_uri=s3_champion["tracking_uri"],
    ).metadata
    assert meta["champion_version"] == s3_champion["version"]
    assert meta["source_uri"].startswith("minio://") and meta["source_uri"].endswith(s3_champion["key"])
    expected = pq.read_table(s3_champion["out"] / "train.parquet")
    assert pq.read_table(tmp_path / "reference.parquet").equals(expected)


def test_reference_data_without_the_minio_secret_names_it(s3_champion, minio_secret, tmp_path):
    from kfp_ct.components.reference_data.core import reference_data

    for name in os.listdir(minio_secret):
        os.remove(minio_secret / name)
    with pytest.raises(PermissionError, match=r"minio://\S+/featurize/train: .*'mlpipeline-minio-artifact'"):
        reference_data(
            model_name=REGISTERED,
            reference_path=str(tmp_path / "out" / "ref.parquet"),
            tracking_uri=s3_champion["tracking_uri"],
        )
    assert not (tmp_path / "out").exists() or not os.listdir(tmp_path / "out")
