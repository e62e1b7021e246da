"""Pipelines composed from the kfp-ct catalog."""

from kfp_ct.pipelines.data import data_pipeline

PIPELINES = {"data_pipeline": data_pipeline}

__all__ = ["PIPELINES", "data_pipeline"]
