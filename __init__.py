"""kfp-ct: reusable Kubeflow Pipelines (v2) components for continuous training."""

__version__ = "0.1.0"
