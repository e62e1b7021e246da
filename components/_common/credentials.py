"""Credentials of a step on a cluster, read from the files of the Kubernetes Secret `kfp-ct-credentials`.

The pipelines mount that Secret as an optional volume at `MOUNT_PATH` on every step (`pipelines/credentials.py`):
a volume needs neither the Secret nor any of its keys to exist, which KFP 2.5 (Kubeflow 1.10) honours, where an
optional environment variable from a Secret needs KFP 2.15. Each key is a file there; when a component starts
(`import kfp_ct.components` inside KFP's executor), `load()` sets each known key as an environment variable, unless
the environment already sets it. Create the Secret once per namespace, with the keys you need:

    kubectl create secret generic kfp-ct-credentials \\
        --from-literal=MLFLOW_TRACKING_URI=http://mlflow.mlflow.svc:5000 \\
        --from-literal=AWS_ACCESS_KEY_ID=minio --from-literal=AWS_SECRET_ACCESS_KEY=minio123 \\
        --from-literal=AWS_ENDPOINT_URL=http://minio-service.kubeflow:9000 \\
        --from-literal=MLFLOW_S3_ENDPOINT_URL=http://minio-service.kubeflow:9000
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

SECRET_NAME = "kfp-ct-credentials"
MOUNT_PATH = "/var/run/secrets/kfp-ct"
KEYS = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
    # S3 and MinIO (Kubeflow's artifact store), read by boto3, pyarrow and MLflow's artifact store
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_ENDPOINT_URL",
    "AWS_REGION",
    "MLFLOW_S3_ENDPOINT_URL",
)


def load(folder: str | Path = MOUNT_PATH) -> list[str]:
    """Sets each of `KEYS` that has a file in `folder` as an environment variable, its value the file's text without
    surrounding whitespace, unless the environment already sets it; returns the names set (none without `folder`)."""
    loaded = []
    for key in KEYS:
        path = Path(folder, key)
        if key not in os.environ and path.is_file():
            os.environ[key] = path.read_text().strip()
            loaded.append(key)
    return loaded


@contextlib.contextmanager
def environment(variables: dict[str, str]):
    """Sets `variables` in this process's environment (and so its subprocesses') while the block runs, then puts
    back what was there."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
