"""storage.local_copy: a local path holding a URI while a block runs (paths as they are, objects downloaded into a
temporary folder removed after the block), with the errors of bad input naming the URI."""

from __future__ import annotations

import os

import pytest

from kfp_ct.components._common import storage


def test_a_path_is_used_as_it_is(tmp_path):
    data = tmp_path / "train.parquet"
    data.write_bytes(b"rows")
    with storage.local_copy(str(data)) as path:
        assert path == str(data)
    with storage.local_copy(f"file://{data}") as path:
        assert path == str(data)
    assert data.read_bytes() == b"rows"  # never removed
    with pytest.raises(FileNotFoundError, match=f"file not found: {tmp_path / 'nope.parquet'}"):
        with storage.local_copy(str(tmp_path / "nope.parquet")):
            pass
    with pytest.raises(ValueError, match="unsupported model URI scheme 'ftp' in ftp://host/m"):
        with storage.local_copy("ftp://host/m", directory=True, what="model URI"):
            pass


def test_a_published_path_is_checked_against_its_marker(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "MLmodel").write_text("flavors: {}\n")
    published = storage.publish_directory(str(model), str(tmp_path / "store"), version="v1")  # a file:// URI
    with storage.local_copy(published, published=True) as path:
        assert path == str(tmp_path / "store" / "v1")
    with open(os.path.join(path, "MLmodel"), "a") as f:
        f.write("changed\n")
    with pytest.raises(ValueError, match="model file corrupted: MLmodel"):
        with storage.local_copy(published, published=True):
            pass


@pytest.mark.integration
def test_objects_are_downloaded_and_removed_after_the_block(s3_bucket, tmp_path):
    client = storage.s3_client(f"s3://{s3_bucket}")
    client.put_object(Bucket=s3_bucket, Key="data/train.parquet", Body=b"rows")
    client.put_object(Bucket=s3_bucket, Key="feat/featurizer.json", Body=b"{}")
    client.put_object(Bucket=s3_bucket, Key="feat/sub/a.skops", Body=b"a")
    with storage.local_copy(f"s3://{s3_bucket}/data/train.parquet") as path:
        assert os.path.basename(path) == "train.parquet" and open(path, "rb").read() == b"rows"
    assert not os.path.exists(path)
    with storage.local_copy(f"s3://{s3_bucket}/feat", directory=True) as folder:
        assert sorted(os.listdir(folder)) == ["featurizer.json", "sub"]
        assert open(os.path.join(folder, "sub", "a.skops"), "rb").read() == b"a"
    assert not os.path.exists(folder)
    with pytest.raises(FileNotFoundError, match=f"s3://{s3_bucket}/data/nope.parquet"):
        with storage.local_copy(f"s3://{s3_bucket}/data/nope.parquet"):
            pass
    with pytest.raises(FileNotFoundError, match="no published model version"):
        with storage.local_copy(f"s3://{s3_bucket}/feat", published=True):
            pass
