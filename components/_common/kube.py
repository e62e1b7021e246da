"""The Kubernetes API the catalog talks to (KServe InferenceServices for push, Katib Experiments for tune)."""

from __future__ import annotations


def custom_objects_api():
    """A `kubernetes.client.CustomObjectsApi` from the in-cluster service account, else the local kubeconfig."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.CustomObjectsApi()
