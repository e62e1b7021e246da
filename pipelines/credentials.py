"""Credentials for the steps of a pipeline on a cluster: environment variables from one Kubernetes Secret, set
through kfp-kubernetes, so that no secret is a pipeline parameter or lands in compiled YAML.

Create it once per namespace (every key is optional):
    kubectl create secret generic kfp-ct-credentials --from-literal=MLFLOW_TRACKING_URI=http://mlflow:5000 ...
GCS access comes from the pod's service account (Workload Identity) or `GOOGLE_APPLICATION_CREDENTIALS`.
"""

from kfp import kubernetes

SECRET_NAME = "kfp-ct-credentials"
SECRET_KEYS = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
    # an MLflow artifact store on S3 or MinIO, as Kubeflow installs it
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "MLFLOW_S3_ENDPOINT_URL",
)


def use_credentials(task):
    """Sets the Secret's keys as the task's environment (each optional); returns the task."""
    return kubernetes.use_secret_as_env(task, SECRET_NAME, {key: key for key in SECRET_KEYS}, optional=True)
