"""Credentials for the steps of a pipeline on a cluster: the Kubernetes Secret `kfp-ct-credentials`, mounted through
kfp-kubernetes as an optional volume on every step, so that no secret is a pipeline parameter or lands in compiled
YAML. Each step sets the Secret's keys as its environment when it starts (`kfp_ct.components._common.credentials`).

The volume is optional and so is every key: KFP 2.5 (Kubeflow 1.10) honours `SecretAsVolume.optional`, where
`SecretAsEnv.optional` needs KFP 2.15 (2.5 to 2.14 drop it and then need the Secret with every key). Create it once
per namespace with the keys you need (the list: `KEYS` in that module):
    kubectl create secret generic kfp-ct-credentials --from-literal=MLFLOW_TRACKING_URI=http://mlflow:5000 ...
GCS access comes from the pod's service account (Workload Identity) or `GOOGLE_APPLICATION_CREDENTIALS`.

Every step also mounts KFP's own MinIO Secret `mlpipeline-minio-artifact` (optional, where `_common.storage` reads
it), so that a step reads `minio://` artifact URIs of earlier runs (the champion's training data) as KFP's launcher
does; a standard Kubeflow install has it in every profile namespace.
"""

from kfp import kubernetes

from kfp_ct.components._common.credentials import MOUNT_PATH, SECRET_NAME
from kfp_ct.components._common.storage import MINIO_SECRET, MINIO_SECRET_DIR


def use_credentials(task):
    """Mounts the Secret and KFP's MinIO Secret (both optional) where the step reads them; returns the task."""
    kubernetes.use_secret_as_volume(task, MINIO_SECRET, mount_path=MINIO_SECRET_DIR, optional=True)
    return kubernetes.use_secret_as_volume(task, SECRET_NAME, mount_path=MOUNT_PATH, optional=True)
