"""Object storage: one dispatch by URI scheme for reading, listing, publishing and withdrawing.

- a path or `file://`: the local filesystem;
- `gs://bucket/key`: google-cloud-storage (honours STORAGE_EMULATOR_HOST);
- `s3://bucket/key`: boto3 with the standard variables (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
  AWS_REGION), so AWS S3, MinIO, Ceph and other S3-compatible stores work alike;
- `minio://bucket/key`: an artifact of KFP's own MinIO, as KFP 2.5's launcher resolves it (backend/src/v2/config,
  objectstore): the endpoint `http://minio-service.kubeflow:9000` (or minio-service of the pod's namespace, from
  MINIO_SERVICE_SERVICE_HOST/PORT; KFP_CT_MINIO_ENDPOINT overrides both), path-style, and the keys of the Secret
  `mlpipeline-minio-artifact` (accesskey, secretkey): from MINIO_ACCESS_KEY/MINIO_SECRET_KEY, or from the Secret
  mounted as files in KFP_CT_MINIO_SECRET_DIR (default /etc/kfp-ct/mlpipeline-minio-artifact).

Every object-store error comes out as FileNotFoundError (bucket or object missing), PermissionError (keys missing or
refused) or ConnectionError (endpoint unreachable), with the URI in the message; S3 requests have connect and read
timeouts and a bounded number of retries, so a dead endpoint fails within seconds.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from datetime import UTC
from urllib.parse import urlparse

OBJECT_STORES = ("gs", "s3", "minio")
"""The schemes of the object stores this module reads and writes (besides paths and file://)."""

S3_SECRET = "kfp-ct-s3"
"""The Secret of a namespace holding the AWS_* variables for s3:// (push's ServiceAccount for KServe lists it, Katib
trials take their environment from it)."""
MINIO_SECRET = "mlpipeline-minio-artifact"
MINIO_DEFAULT_ENDPOINT = "http://minio-service.kubeflow:9000"
MINIO_SECRET_DIR = "/etc/kfp-ct/mlpipeline-minio-artifact"
S3_CONNECT_TIMEOUT_S = 5
S3_READ_TIMEOUT_S = 60
S3_MAX_ATTEMPTS = 3
DOWNLOAD_TIMEOUT_S = 600.0
DOWNLOAD_TIMEOUT_ENV = "KFP_CT_DOWNLOAD_TIMEOUT_S"
RESUMES = 3  # times an S3 download cut off mid-body resumes where it stopped


def split_uri(uri: str) -> tuple[str, str, str]:
    """(scheme, bucket or host, path) of a URI; a plain path has scheme ''."""
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file") or len(parsed.scheme) == 1:  # a Windows drive letter is a path
        return "", "", parsed.path if parsed.scheme == "file" else uri
    return parsed.scheme, parsed.netloc, parsed.path.lstrip("/")


def check_scheme(uri: str, what: str = "storage URI") -> str:
    """The scheme of `uri` ('' for a path) when this module can read and write it; a ValueError naming it if not."""
    scheme = split_uri(uri)[0]
    if scheme and scheme not in OBJECT_STORES:
        raise ValueError(
            f"unsupported {what} scheme '{scheme}' in {uri}: expected a path, file://, gs://, s3:// or minio://"
        )
    return scheme


# --- clients ------------------------------------------------------------------------------------------------------


def gcs_client():
    """A google-cloud-storage client; anonymous against an emulator named by STORAGE_EMULATOR_HOST."""
    from google.cloud import storage

    if os.environ.get("STORAGE_EMULATOR_HOST"):
        from google.auth.credentials import AnonymousCredentials

        return storage.Client(
            project=os.environ.get("GOOGLE_CLOUD_PROJECT", "local"), credentials=AnonymousCredentials()
        )
    return storage.Client()


def minio_endpoint() -> str:
    """The endpoint of KFP's MinIO, found as KFP 2.5's launcher finds it (KFP_CT_MINIO_ENDPOINT overrides)."""
    if os.environ.get("KFP_CT_MINIO_ENDPOINT"):
        return os.environ["KFP_CT_MINIO_ENDPOINT"]
    host, port = os.environ.get("MINIO_SERVICE_SERVICE_HOST"), os.environ.get("MINIO_SERVICE_SERVICE_PORT")
    return f"http://{host}:{port}" if host and port else MINIO_DEFAULT_ENDPOINT


def minio_credentials(uri: str) -> tuple[str, str]:
    """(access key, secret key) of KFP's MinIO: from the environment, or the Secret mounted as files."""
    access, secret = os.environ.get("MINIO_ACCESS_KEY"), os.environ.get("MINIO_SECRET_KEY")
    if access and secret:
        return access, secret
    directory = os.environ.get("KFP_CT_MINIO_SECRET_DIR", MINIO_SECRET_DIR)
    keys = []
    for name in ("accesskey", "secretkey"):
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            with open(path) as f:
                keys.append(f.read().strip())
    if len(keys) == 2 and all(keys):
        return keys[0], keys[1]
    raise PermissionError(
        f"no credentials for {uri}: minio:// URIs are read from KFP's MinIO with the keys of the Secret "
        f"'{MINIO_SECRET}' (accesskey, secretkey); mount that Secret as files in {directory} "
        "(or KFP_CT_MINIO_SECRET_DIR), or set MINIO_ACCESS_KEY and MINIO_SECRET_KEY from it"
    )


def s3_client(uri: str):
    """A boto3 S3 client for `uri` (s3:// or minio://), with connect/read timeouts and bounded retries."""
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=S3_CONNECT_TIMEOUT_S,
        read_timeout=S3_READ_TIMEOUT_S,
        retries={"max_attempts": S3_MAX_ATTEMPTS, "mode": "standard"},
        s3={"addressing_style": "path"} if split_uri(uri)[0] == "minio" else None,
    )
    if split_uri(uri)[0] == "minio":
        access, secret = minio_credentials(uri)
        return boto3.client(
            "s3",
            endpoint_url=minio_endpoint(),
            aws_access_key_id=access,
            aws_secret_access_key=secret,
            region_name=os.environ.get("KFP_CT_MINIO_REGION", "minio"),
            config=config,
        )
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")  # botocore reads only the second
    return boto3.client("s3", region_name=region, config=config)


# --- one interface over the object stores -------------------------------------------------------------------------


class _GcsBucket:
    def __init__(self, bucket: str):
        self.client = gcs_client()
        self.name = bucket
        self.bucket = self.client.bucket(bucket)

    @contextlib.contextmanager
    def errors(self, uri: str):
        from google.api_core import exceptions

        try:
            yield
        except exceptions.NotFound:
            if not self.bucket.exists():
                raise FileNotFoundError(f"bucket not found: gs://{self.name} (in {uri})") from None
            raise FileNotFoundError(f"object not found: {uri}") from None
        except exceptions.Forbidden as err:
            raise PermissionError(f"access denied to {uri}: {err.message}") from None

    def get(self, key: str, dest: str) -> None:
        with open(dest, "wb") as out:  # in place, in order: a reader of `dest` may follow the download
            self.bucket.blob(key).download_to_file(out)

    def put_file(self, key: str, path: str) -> None:
        self.bucket.blob(key).upload_from_filename(path)

    def put_bytes(self, key: str, data: bytes) -> None:
        self.bucket.blob(key).upload_from_string(data, content_type="application/json")

    def exists(self, key: str) -> bool:
        return self.bucket.get_blob(key) is not None

    def keys(self, prefix: str) -> Iterator[str]:
        return (blob.name for blob in self.client.list_blobs(self.name, prefix=prefix))

    def delete(self, key: str) -> None:
        self.bucket.blob(key).delete()


class _S3Bucket:
    def __init__(self, uri: str):
        self.scheme, self.name, _ = split_uri(uri)
        self.client = s3_client(uri)

    @contextlib.contextmanager
    def errors(self, uri: str):
        from boto3.exceptions import S3UploadFailedError
        from botocore.exceptions import ClientError, HTTPClientError, IncompleteReadError, NoCredentialsError
        from botocore.exceptions import ConnectionError as EndpointError

        try:
            yield
        except (ClientError, S3UploadFailedError) as err:
            cause = err if isinstance(err, ClientError) else err.__context__
            if not isinstance(cause, ClientError):
                raise
            code = str(cause.response.get("Error", {}).get("Code"))
            status = cause.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code == "NoSuchBucket":
                raise FileNotFoundError(f"bucket not found: {self.scheme}://{self.name} (in {uri})") from None
            if code in ("404", "NoSuchKey", "NotFound"):
                if not self._bucket_exists():
                    raise FileNotFoundError(f"bucket not found: {self.scheme}://{self.name} (in {uri})") from None
                raise FileNotFoundError(f"object not found: {uri}") from None
            if code == "PreconditionFailed":
                raise OSError(f"{uri} changed while it was being downloaded: read it again") from None
            if status == 403 or code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                reason = "403 Forbidden" if code == "403" else code  # a HEAD answer has no body to name the cause
                raise PermissionError(
                    f"access denied to {uri} by {self.client.meta.endpoint_url}: {reason} ({self._whose_keys()})"
                ) from None
            message = cause.response.get("Error", {}).get("Message", "")
            raise OSError(f"S3 request for {uri} failed at {self.client.meta.endpoint_url}: {code} {message}") from None
        except NoCredentialsError:
            raise PermissionError(f"no credentials for {uri}: {self._whose_keys()}") from None
        except (EndpointError, HTTPClientError, IncompleteReadError) as err:  # refused, DNS, timeouts, cut off
            raise ConnectionError(
                f"could not reach the S3 endpoint {self.client.meta.endpoint_url} for {uri}: {err}"
            ) from None

    def _whose_keys(self) -> str:
        if self.scheme == "minio":
            return f"check the keys of the Secret '{MINIO_SECRET}'"
        return "check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"

    def _bucket_exists(self) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_bucket(Bucket=self.name)
        except ClientError as err:
            if str(err.response.get("Error", {}).get("Code")) in ("404", "NoSuchBucket", "NotFound"):
                return False
            raise
        return True

    def get(self, key: str, dest: str) -> None:
        """One streaming GET written in place and in order, so that a reader of `dest` may follow it (s3transfer's
        ranged parts cost a request each: 10x slower from moto's S3 server). A body cut off mid-way resumes from the
        bytes already written (a Range GET of the same ETag), up to RESUMES times."""
        from botocore.exceptions import HTTPClientError, IncompleteReadError

        written, etag = 0, None
        with open(dest, "wb") as out:
            for attempt in range(RESUMES + 1):
                resume = {"Range": f"bytes={written}-", "IfMatch": etag} if etag else {}
                answer = self.client.get_object(Bucket=self.name, Key=key, **resume)
                etag = answer["ETag"]
                try:
                    for chunk in answer["Body"].iter_chunks(1 << 20):
                        out.write(chunk)
                        written += len(chunk)
                    return
                except (HTTPClientError, IncompleteReadError):
                    if attempt == RESUMES:
                        raise

    def put_file(self, key: str, path: str) -> None:
        self.client.upload_file(path, self.name, key)

    def put_bytes(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.name, Key=key, Body=data, ContentType="application/json")

    def exists(self, key: str) -> bool:
        found = self.client.list_objects_v2(Bucket=self.name, Prefix=key, MaxKeys=1).get("Contents", [])
        return bool(found) and found[0]["Key"] == key  # the key itself sorts first among the keys it prefixes

    def keys(self, prefix: str) -> Iterator[str]:
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.name, Prefix=prefix):
            for item in page.get("Contents", []):
                yield item["Key"]

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.name, Key=key)


def _bucket(uri: str):
    """(the object store bucket of `uri`, its key) for an object-store URI."""
    scheme, bucket, key = split_uri(uri)
    if scheme not in OBJECT_STORES:
        raise ValueError(f"not an object-store URI: {uri} (expected gs://, s3:// or minio://)")
    if not bucket:
        raise ValueError(f"no bucket in {uri}: expected {scheme}://BUCKET/KEY")
    store = _GcsBucket(bucket) if scheme == "gs" else _S3Bucket(uri)
    return store, key


def list_uris(prefix_uri: str) -> list[str]:
    """The URIs of the objects whose key starts with the key of `prefix_uri` (sorted)."""
    store, prefix = _bucket(prefix_uri)
    scheme, bucket, _ = split_uri(prefix_uri)
    with store.errors(prefix_uri):
        return sorted(f"{scheme}://{bucket}/{key}" for key in store.keys(prefix))


def download_timeout(timeout_s: float | None = None) -> float:
    """The total deadline of a download (http(s):// or an object store): `timeout_s`, else $KFP_CT_DOWNLOAD_TIMEOUT_S,
    else 600 s."""
    if timeout_s is None:
        text = os.environ.get(DOWNLOAD_TIMEOUT_ENV, "")
        try:
            timeout_s = float(text) if text else DOWNLOAD_TIMEOUT_S
        except ValueError:
            raise ValueError(f"{DOWNLOAD_TIMEOUT_ENV} must be a number of seconds, found {text!r}") from None
    if not timeout_s > 0:
        raise ValueError(f"the download timeout must be a positive number of seconds, found {timeout_s}")
    return float(timeout_s)


def _child(send, work) -> None:
    try:
        result = ("ok", work())
    except BaseException as err:  # noqa: BLE001 - handed to the parent, which raises it
        result = ("error", err)
    try:
        send.send(result)
    except Exception:  # an exception that does not pickle: its type and message
        send.send(("error", RuntimeError(f"{type(result[1]).__name__}: {result[1]}")))


class Download:
    """`work()` (a download) running within the total download deadline. The object-store clients bound each request
    (connect and read timeouts), not a whole download: a server that drips its answer would hold them for ever. So
    the work runs in a forked child, killed at the deadline (TimeoutError naming the URI); where there is no fork, it
    runs at once, here. `poll()` says whether it has ended (raising its error), `wait()` waits for its result."""

    def __init__(self, work, uri: str, timeout_s: float | None = None):
        import multiprocessing
        import time

        self.uri, self.seconds = uri, download_timeout(timeout_s)
        self._deadline = time.monotonic() + self.seconds
        self._child = self._outcome = None
        if "fork" not in multiprocessing.get_all_start_methods():
            self._outcome = ("ok", work())
            return
        context = multiprocessing.get_context("fork")
        self._receive, send = context.Pipe(duplex=False)
        self._child = context.Process(target=_child, args=(send, work), daemon=True)
        self._child.start()
        send.close()

    def poll(self, wait: float = 0) -> bool:
        """True once the download has ended well; raises its error, or TimeoutError past the deadline."""
        import time

        if self._outcome is None:
            if not self._receive.poll(max(0.0, min(wait, self._deadline - time.monotonic()))):
                if time.monotonic() < self._deadline:
                    return False
                self.close()
                raise TimeoutError(
                    f"no complete download of {self.uri} within the {self.seconds:g} s deadline "
                    f"(${DOWNLOAD_TIMEOUT_ENV} or the step's timeout_s)"
                )
            try:
                self._outcome = self._receive.recv()
            except EOFError:
                self._outcome = ("error", ConnectionError(f"the download of {self.uri} stopped: its process exited"))
            self.close()
        kind, value = self._outcome
        if kind == "error":
            raise value
        return True

    def wait(self):
        """The download's result, once it has ended (its error raised)."""
        while not self.poll(wait=0.5):
            pass
        return self._outcome[1]

    def close(self) -> None:
        """Stops the download if it still runs."""
        if self._child is not None:
            if self._child.is_alive():
                self._child.kill()
            self._child.join()
            self._child = None


def start_download(uri: str, dest: str, timeout_s: float | None = None) -> Download:
    """Starts downloading one object (gs://, s3:// or minio://) to the local file `dest` (created at once, growing
    as the bytes arrive) within the total deadline; see `Download`."""

    def work() -> None:
        store, key = _bucket(uri)
        with store.errors(uri):
            store.get(key, dest)

    open(dest, "wb").close()
    return Download(work, uri, timeout_s)


def download_file(uri: str, dest: str, timeout_s: float | None = None) -> None:
    """Downloads one object (gs://, s3:// or minio://) to the local file `dest` within the total deadline `timeout_s`
    (see `download_timeout`), naming what is missing when it fails; on failure nothing is left at `dest`."""
    try:
        start_download(uri, dest, timeout_s).wait()
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(dest)
        raise


def _safe_join(dest: str, rel: str, uri: str) -> str:
    """`dest/rel` for an object name `rel` under a downloaded prefix; refuses a name that would leave `dest`."""
    parts = rel.split("/")
    if rel.startswith("/") or "\\" in rel or any(p in ("", ".", "..") for p in parts) or ":" in parts[0]:
        raise ValueError(
            f"refusing to download the object '{rel}' under {uri}: its name is not a plain relative path "
            f"(it would be written outside {dest})"
        )
    path = os.path.join(dest, *parts)
    root = os.path.realpath(dest)
    if os.path.commonpath([root, os.path.realpath(path)]) != root:
        raise ValueError(f"refusing to download the object '{rel}' under {uri}: it would be written outside {dest}")
    return path


def download_prefix(uri: str, dest: str, timeout_s: float | None = None) -> list[str]:
    """Downloads every object under the prefix `uri` into the folder `dest` (keeping their relative names) within the
    total deadline `timeout_s` (see `download_timeout`) and returns those names. Every name is checked before anything
    is written: none may leave `dest`."""
    return Download(lambda: _download_prefix(uri, dest), uri, timeout_s).wait()


@contextlib.contextmanager
def local_copy(uri: str, *, directory: bool = False, published: bool = False, what: str = "URI") -> Iterator[str]:
    """A local path holding `uri` while the block runs: a path or file:// as it is; from gs://, s3:// or minio:// the
    object (with `directory`, every object under the prefix) downloaded into a temporary folder removed after the
    block. `published`: a model version push wrote, checked against its completion marker (see `verify_directory`).
    `what` names the URI in the error about an unsupported scheme."""
    import shutil
    import tempfile

    path = split_uri(uri)[2]
    if check_scheme(uri, what) == "":
        if not os.path.exists(path):
            raise FileNotFoundError(f"{'directory' if directory or published else 'file'} not found: {path}")
        if published:
            verify_directory(path)
        yield path
        return
    tmp = tempfile.mkdtemp(prefix="kfp-ct-copy-")
    try:
        if published:
            yield download_directory(uri, tmp)
        elif directory:
            download_prefix(uri, tmp)
            yield tmp
        else:
            dest = os.path.join(tmp, os.path.basename(path) or "data")
            download_file(uri, dest)
            yield dest
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _download_prefix(uri: str, dest: str) -> list[str]:
    store, prefix = _bucket(uri)
    prefix = prefix.rstrip("/") + "/" if prefix.strip("/") else ""
    with store.errors(uri):
        names = [key[len(prefix) :] for key in store.keys(prefix)]
        names = [n for n in names if n and not n.endswith("/")]  # folder placeholders hold no bytes
        if not names:
            raise FileNotFoundError(f"no objects under {uri}")
        paths = {rel: _safe_join(dest, rel, uri) for rel in names}
        for rel, path in paths.items():
            os.makedirs(os.path.dirname(path), exist_ok=True)
            store.get(prefix + rel, path)
    return names


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


def _join(prefix: str, name: str) -> str:
    return f"{prefix.strip('/')}/{name}" if prefix.strip("/") else name


def publish_directory(source: str, storage_uri: str, version: str | None = None) -> str:
    """Copies the directory `source` to `{storage_uri}/{version}` and returns that URI.

    Locally the copy is written under a hidden temporary name and renamed into place; in an object store every
    object is uploaded first and the marker last. Either way a reader never sees a half-written version, and on
    failure nothing that a reader would consider is left behind.
    """
    import json

    scheme = check_scheme(storage_uri)
    if not os.path.isdir(source):
        raise FileNotFoundError(f"model directory not found: {source}")
    files = _file_list(source)
    if not files:
        raise ValueError(f"model directory {source} is empty")
    version = version or new_version_name()
    if "/" in version or version.startswith("."):
        raise ValueError(f"version '{version}' must be a plain folder name")
    marker = json.dumps({"version": version, "files": files}, indent=1, sort_keys=True)
    if scheme == "":
        return _publish_local(source, split_uri(storage_uri)[2], version, files, marker)
    store, prefix = _bucket(storage_uri)
    base = _join(prefix, version)
    published = f"{scheme}://{store.name}/{base}"
    uploaded = []
    try:
        with store.errors(published):
            if store.exists(f"{base}/{MARKER}"):
                raise FileExistsError(f"model version already exists: {published}")
            for rel in files:
                uploaded.append(f"{base}/{rel}")
                store.put_file(f"{base}/{rel}", os.path.join(source, rel))
            store.put_bytes(f"{base}/{MARKER}", marker.encode())
    except BaseException:
        _delete_quietly(store, uploaded)
        raise
    return published


def _publish_local(source: str, prefix: str, version: str, files: dict, marker: str) -> str:
    import shutil
    import tempfile

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


def _delete_quietly(store, keys) -> None:
    for key in keys:
        try:
            store.delete(key)
        except Exception:  # best effort: without the marker no reader considers these objects anyway
            pass


def list_versions(storage_uri: str) -> list[str]:
    """URIs of the complete (marker-holding) versions under `storage_uri`, oldest first."""
    scheme = check_scheme(storage_uri)
    if scheme == "":
        prefix = split_uri(storage_uri)[2]
        if not os.path.isdir(prefix):
            return []
        names = sorted(
            n for n in os.listdir(prefix) if not n.startswith(".") and os.path.isfile(os.path.join(prefix, n, MARKER))
        )
        return [f"file://{os.path.abspath(os.path.join(prefix, n))}" for n in names]
    store, prefix = _bucket(storage_uri)
    base = _join(prefix, "")
    names = set()
    with store.errors(storage_uri):
        for key in store.keys(base):
            rest = key[len(base) :]
            if rest.count("/") == 1 and rest.endswith(f"/{MARKER}"):
                names.add(rest.split("/")[0])
    return [f"{scheme}://{store.name}/{base}{n}" for n in sorted(names)]


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
    """Downloads the published version `uri` (gs://, s3:// or minio://) into the local folder `dest` and returns
    `dest`, checked against its marker.

    Refuses a prefix without the completion marker: it is not a published version, or is still being written.
    """
    store, prefix = _bucket(uri)
    with store.errors(uri):
        if not store.exists(f"{prefix.rstrip('/')}/{MARKER}"):
            raise FileNotFoundError(
                f"no published model version at {uri}: {MARKER} is missing (not a version "
                "written by push, or one still being written)"
            )
    download_prefix(uri, dest)
    verify_directory(dest)
    return dest


def withdraw_version(uri: str) -> None:
    """Removes a published version: the marker goes first, so readers stop considering it at once."""
    import shutil
    import tempfile

    if check_scheme(uri) == "":
        path = split_uri(uri)[2]
        if not os.path.isdir(path):
            return
        parent, name = os.path.split(path.rstrip("/"))
        hidden = tempfile.mkdtemp(prefix=f".{name}.", suffix=".withdrawn", dir=parent)
        os.rename(path, os.path.join(hidden, name))
        shutil.rmtree(hidden, ignore_errors=True)
        return
    store, prefix = _bucket(uri)
    prefix = prefix.rstrip("/")
    with store.errors(uri):
        if store.exists(f"{prefix}/{MARKER}"):
            store.delete(f"{prefix}/{MARKER}")
        keys = list(store.keys(f"{prefix}/"))
    _delete_quietly(store, keys)
