"""The kfp-ct catalog. Importing it loads kfp and the component interfaces only, never the heavy libraries the
components use at run time (torch, tensorflow, evidently, mlflow, kserve)."""

from kfp_ct.components.ingest import ingest

__all__ = ["ingest"]
