"""Object storage: `gs://` through google-cloud-storage (which honours STORAGE_EMULATOR_HOST), `file://` and paths."""

from __future__ import annotations

import os
from datetime import UTC
from urllib.parse import urlparse


def split_uri(uri: str) -> tuple[str, str, str]:
    """(scheme, bucket or host, path) of a URI; a plain path has scheme ''."""
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file") or len(parsed.scheme) == 1:  # a Windows drive letter is a path
        return "", "", parsed.path if parsed.scheme == "file" else uri
    return parsed.scheme, parsed.netloc, parsed.path.lstrip("/")


def gcs_client():
    """A google-cloud-storage client; anonymous against an emulator named by STORAGE_EMULATOR_HOST."""
    from google.cloud import storage

    if os.environ.get("STORAGE_EMULATOR_HOST"):
        from google.auth.credentials import AnonymousCredentials

        return storage.Client(
            project=os.environ.get("GOOGLE_CLOUD_PROJECT", "local"), credentials=AnonymousCredentials()
        )
    return storage.Client()


def download_gcs(uri: str, dest: str) -> None:
    """Downloads one `gs://bucket/object` to the local file `dest`, naming what is missing when it fails."""
    from google.api_core import exceptions

    _, bucket_name, name = split_uri(uri)
    client = gcs_client()
    try:
        client.bucket(bucket_name).blob(name).download_to_filename(dest)
    except exceptions.NotFound:
        if not client.bucket(bucket_name).exists():
            raise FileNotFoundError(f"bucket not found: gs://{bucket_name} (in {uri})") from None
        raise FileNotFoundError(f"object not found: {uri}") from None


# --- model versions: copy a directory to storage atomically, list and fetch published versions -------------------

MARKER = "_KFP_CT_COMPLETE.json"
"""Written last into a published version: its file list with sizes and sha256. Readers only consider versions that
have it, so a half-copied version is never seen."""


def _file_list(directory: str) -> dict[str, dict]:
    from kfp_ct.components._common.datasets import sha256_file

    files = {}
    for root, dirs, names in os.walk(directory):
        dirs.sort()
        for name in sorted(names):
            full = os.path.join(root, name)
            rel = os.path.relpath(full, directory).replace(os.sep, "/")
            if rel != MARKER:
                files[rel] = {"size": os.path.getsize(full), "sha256": sha256_file(full)}
    return files


def new_version_name() -> str:
    """A new version folder name that sorts by creation time: v20261126T071502123456Z-1a2b3c."""
    import secrets
    from datetime import datetime

    return f"v{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%fZ')}-{secrets.token_hex(3)}"


def publish_directory(source: str, storage_uri: str, version: str | None = None) -> str:
    """Copies the directory `source` to `{storage_uri}/{version}` and returns that URI.

    Locally the copy is written under a hidden temporary name and renamed into place; on GCS every object is uploaded
    first and the marker last. Either way a reader never sees a half-written version, and on failure nothing that a
    reader would consider is left behind.
    """
    import json
    import shutil
    import tempfile

    if not os.path.isdir(source):
        raise FileNotFoundError(f"model directory not found: {source}")
    files = _file_list(source)
    if not files:
        raise ValueError(f"model directory {source} is empty")
    version = version or new_version_name()
    if "/" in version or version.startswith("."):
        raise ValueError(f"version '{version}' must be a plain folder name")
    marker = json.dumps({"version": version, "files": files}, indent=1, sort_keys=True)
    scheme, bucket_name, prefix = split_uri(storage_uri)
    if scheme == "":
        target = os.path.join(prefix, version)
        if os.path.exists(target):
            raise FileExistsError(f"model version already exists: {target}")
        os.makedirs(prefix, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=f".{version}.", suffix=".partial", dir=prefix)
        try:
            for rel in files:
                dest = os.path.join(tmp, *rel.split("/"))
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                shutil.copyfile(os.path.join(source, rel), dest)
            with open(os.path.join(tmp, MARKER), "w") as f:
                f.write(marker)
            os.chmod(tmp, 0o755)
            os.rename(tmp, target)  # atomic on one filesystem; fails if target appeared meanwhile
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return f"file://{os.path.abspath(target)}"
    if scheme != "gs":
        raise ValueError(
            f"unsupported storage URI scheme '{scheme}' in {storage_uri}: expected a path, file:// or gs://"
        )
    from google.api_core import exceptions

    client = gcs_client()
    bucket = client.bucket(bucket_name)
    base = f"{prefix.rstrip('/')}/{version}" if prefix.strip("/") else version
    uploaded = []
    try:
        if bucket.get_blob(f"{base}/{MARKER}") is not None:
            raise FileExistsError(f"model version already exists: gs://{bucket_name}/{base}")
        for rel in files:
            blob = bucket.blob(f"{base}/{rel}")
            blob.upload_from_filename(os.path.join(source, rel))
            uploaded.append(blob)
        bucket.blob(f"{base}/{MARKER}").upload_from_string(marker, content_type="application/json")
    except exceptions.NotFound:
        _delete_quietly(uploaded)
        raise FileNotFoundError(f"bucket not found: gs://{bucket_name} (in {storage_uri})") from None
    except BaseException:
        _delete_quietly(uploaded)
        raise
    return f"gs://{bucket_name}/{base}"


def _delete_quietly(blobs) -> None:
    for blob in blobs:
        try:
            blob.delete()
        except Exception:  # best effort: without the marker no reader considers these objects anyway
            pass


def list_versions(storage_uri: str) -> list[str]:
    """URIs of the complete (marker-holding) versions under `storage_uri`, oldest first."""
    scheme, bucket_name, prefix = split_uri(storage_uri)
    if scheme == "":
        if not os.path.isdir(prefix):
            return []
        names = sorted(
            n for n in os.listdir(prefix) if not n.startswith(".") and os.path.isfile(os.path.join(prefix, n, MARKER))
        )
        return [f"file://{os.path.abspath(os.path.join(prefix, n))}" for n in names]
    if scheme != "gs":
        raise ValueError(
            f"unsupported storage URI scheme '{scheme}' in {storage_uri}: expected a path, file:// or gs://"
        )
    base = f"{prefix.rstrip('/')}/" if prefix.strip("/") else ""
    names = set()
    for blob in gcs_client().list_blobs(bucket_name, prefix=base):
        rest = blob.name[len(base) :]
        if rest.count("/") == 1 and rest.endswith(f"/{MARKER}"):
            names.add(rest.split("/")[0])
    return [f"gs://{bucket_name}/{base}{n}" for n in sorted(names)]


def verify_directory(directory: str) -> None:
    """Checks a local copy of a published version against its marker (sizes and sha256); no marker, no check."""
    import json

    from kfp_ct.components._common.datasets import sha256_file

    marker = os.path.join(directory, MARKER)
    if not os.path.isfile(marker):
        return
    with open(marker) as f:
        expected = json.load(f)["files"]
    for rel, info in expected.items():
        path = os.path.join(directory, rel)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"model file missing: {rel} (listed in {MARKER} of {directory})")
        if os.path.getsize(path) != info["size"] or sha256_file(path) != info["sha256"]:
            raise ValueError(f"model file corrupted: {rel} in {directory} does not match the sha256 in {MARKER}")


def download_directory(uri: str, dest: str) -> str:
    """Downloads the published version `gs://bucket/prefix` into the local folder `dest` and returns `dest`.

    Refuses a prefix without the completion marker: it is not a published version, or is still being written.
    """
    from google.api_core import exceptions

    _, bucket_name, prefix = split_uri(uri)
    prefix = prefix.rstrip("/")
    client = gcs_client()
    bucket = client.bucket(bucket_name)
    try:
        if bucket.get_blob(f"{prefix}/{MARKER}") is None:
            raise FileNotFoundError(
                f"no published model version at {uri}: {MARKER} is missing (not a version "
                "written by push, or one still being written)"
            )
        for blob in client.list_blobs(bucket_name, prefix=f"{prefix}/"):
            rel = blob.name[len(prefix) + 1 :]
            if not rel or rel.endswith("/"):
                continue
            path = os.path.join(dest, *rel.split("/"))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            blob.download_to_filename(path)
    except exceptions.NotFound:
        raise FileNotFoundError(f"bucket not found: gs://{bucket_name} (in {uri})") from None
    verify_directory(dest)
    return dest


def withdraw_version(uri: str) -> None:
    """Removes a published version: the marker goes first, so readers stop considering it at once."""
    import shutil
    import tempfile

    scheme, bucket_name, path = split_uri(uri)
    if scheme == "":
        if not os.path.isdir(path):
            return
        parent, name = os.path.split(path.rstrip("/"))
        hidden = tempfile.mkdtemp(prefix=f".{name}.", suffix=".withdrawn", dir=parent)
        os.rename(path, os.path.join(hidden, name))
        shutil.rmtree(hidden, ignore_errors=True)
        return
    if scheme != "gs":
        raise ValueError(f"unsupported storage URI scheme '{scheme}' in {uri}: expected a path, file:// or gs://")
    client = gcs_client()
    prefix = path.rstrip("/")
    marker = client.bucket(bucket_name).get_blob(f"{prefix}/{MARKER}")
    if marker is not None:
        marker.delete()
    _delete_quietly(list(client.list_blobs(bucket_name, prefix=f"{prefix}/")))
