"""Object storage: `gs://` through google-cloud-storage (which honours STORAGE_EMULATOR_HOST), `file://` and paths."""

from __future__ import annotations

import os
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

        return storage.Client(project=os.environ.get("GOOGLE_CLOUD_PROJECT", "local"), credentials=AnonymousCredentials())
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
