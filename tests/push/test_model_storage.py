"""Publishing model versions to storage atomically (paths, file:// and gs:// on the GCS emulator; s3:// in
tests/storage/test_s3.py)."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from kfp_ct.components._common import storage


@pytest.fixture
def model_dir(tmp_path):
    """A small directory tree standing in for a model's files (the copy logic does not read them)."""
    root = tmp_path / "model"
    (root / "featurizer").mkdir(parents=True)
    (root / "MLmodel").write_text("flavors: {}\n")
    (root / "featurizer" / "featurizer.json").write_text(json.dumps({"columns": ["a"]}))
    (root / "model.bin").write_bytes(os.urandom(200_000))
    return root


def test_local_publish_is_atomic_and_listed(model_dir, tmp_path):
    store = tmp_path / "store"
    first = storage.publish_directory(str(model_dir), f"file://{store}")
    second = storage.publish_directory(str(model_dir), str(store))
    assert first.startswith("file://") and first != second
    assert storage.list_versions(str(store)) == [first, second]
    path = storage.split_uri(second)[2]
    assert (tmp_path / "store" / os.path.basename(path) / "featurizer" / "featurizer.json").is_file()
    storage.verify_directory(path)
    marker = json.loads((store / os.path.basename(path) / storage.MARKER).read_text())
    assert set(marker["files"]) == {"MLmodel", "featurizer/featurizer.json", "model.bin"}


def test_failed_local_copy_leaves_nothing_visible(model_dir, tmp_path, monkeypatch):
    store = tmp_path / "store"
    real_copy = shutil.copyfile

    def failing_copy(src, dst, *args, **kwargs):
        if src.endswith("model.bin"):
            raise OSError("disk full")
        return real_copy(src, dst, *args, **kwargs)

    monkeypatch.setattr(shutil, "copyfile", failing_copy)
    with pytest.raises(OSError, match="disk full"):
        storage.publish_directory(str(model_dir), str(store))
    assert storage.list_versions(str(store)) == []
    assert os.listdir(store) == []  # the temporary copy is gone too


def test_half_written_versions_are_not_listed(model_dir, tmp_path):
    store = tmp_path / "store"
    published = storage.publish_directory(str(model_dir), str(store))
    (store / "v99999999T000000000000Z-abcdef").mkdir()  # a copy without its marker
    (store / ".v1.partial").mkdir()
    assert storage.list_versions(str(store)) == [published]


def test_corrupted_copy_is_detected(model_dir, tmp_path):
    published = storage.split_uri(storage.publish_directory(str(model_dir), str(tmp_path / "store")))[2]
    with open(os.path.join(published, "model.bin"), "r+b") as f:
        f.write(b"garbage")
    with pytest.raises(ValueError, match="model file corrupted: model.bin"):
        storage.verify_directory(published)
    os.remove(os.path.join(published, "model.bin"))
    with pytest.raises(FileNotFoundError, match="model file missing: model.bin"):
        storage.verify_directory(published)


def test_withdraw_local(model_dir, tmp_path):
    published = storage.publish_directory(str(model_dir), str(tmp_path / "store"))
    storage.withdraw_version(published)
    assert storage.list_versions(str(tmp_path / "store")) == []
    assert os.listdir(tmp_path / "store") == []


def test_bad_arguments(model_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="model directory not found"):
        storage.publish_directory(str(tmp_path / "nope"), str(tmp_path / "store"))
    with pytest.raises(ValueError, match="unsupported storage URI scheme 'ftp'"):
        storage.publish_directory(str(model_dir), "ftp://bucket/models")
    with pytest.raises(ValueError, match="plain folder name"):
        storage.publish_directory(str(model_dir), str(tmp_path / "store"), version="a/b")
    storage.publish_directory(str(model_dir), str(tmp_path / "store"), version="v1")
    with pytest.raises(FileExistsError, match="already exists"):
        storage.publish_directory(str(model_dir), str(tmp_path / "store"), version="v1")


@pytest.mark.integration
def test_gcs_publish_marker_last_and_download(model_dir, gcs_bucket, tmp_path):
    uri = f"gs://{gcs_bucket.name}/models/elec2"
    published = storage.publish_directory(str(model_dir), uri)
    assert storage.list_versions(uri) == [published]
    names = {blob.name for blob in gcs_bucket.client.list_blobs(gcs_bucket.name)}
    version = published.rsplit("/", 1)[-1]
    assert f"models/elec2/{version}/{storage.MARKER}" in names
    assert f"models/elec2/{version}/featurizer/featurizer.json" in names

    dest = storage.download_directory(published, str(tmp_path / "download"))
    assert (tmp_path / "download" / "model.bin").read_bytes() == (model_dir / "model.bin").read_bytes()

    # objects without the marker (a copy in progress, or one that failed) are not a version to readers
    gcs_bucket.blob("models/elec2/v2/MLmodel").upload_from_string("half")
    assert storage.list_versions(uri) == [published]
    with pytest.raises(FileNotFoundError, match=f"{storage.MARKER} is missing"):
        storage.download_directory(f"{uri}/v2", str(tmp_path / "half"))
    storage.withdraw_version(published)
    assert storage.list_versions(uri) == []
    assert not any(b.name.startswith(f"models/elec2/{version}/") for b in gcs_bucket.client.list_blobs(gcs_bucket.name))
    assert dest


@pytest.mark.integration
def test_gcs_failed_upload_leaves_no_version(model_dir, gcs_bucket, monkeypatch):
    from google.cloud.storage import Blob

    real_upload = Blob.upload_from_filename

    def failing_upload(self, filename, *args, **kwargs):
        if filename.endswith("model.bin"):
            raise ConnectionError("network down")
        return real_upload(self, filename, *args, **kwargs)

    monkeypatch.setattr(Blob, "upload_from_filename", failing_upload)
    uri = f"gs://{gcs_bucket.name}/models"
    with pytest.raises(ConnectionError, match="network down"):
        storage.publish_directory(str(model_dir), uri)
    assert storage.list_versions(uri) == []
    assert list(gcs_bucket.client.list_blobs(gcs_bucket.name)) == []


@pytest.mark.integration
def test_gcs_missing_bucket(model_dir, gcs_emulator):
    with pytest.raises(FileNotFoundError, match="bucket not found: gs://no-such-bucket-kfp-ct"):
        storage.publish_directory(str(model_dir), "gs://no-such-bucket-kfp-ct/models")
