"""Pipelines composed from the kfp-ct catalog."""

from kfp_ct.pipelines.continuous_training import continuous_training_pipeline
from kfp_ct.pipelines.data import data_pipeline
from kfp_ct.pipelines.training import training_pipeline

PIPELINES = {
    "data_pipeline": data_pipeline,
    "training_pipeline": training_pipeline,
    "continuous_training_pipeline": continuous_training_pipeline,
}

__all__ = ["PIPELINES", "continuous_training_pipeline", "data_pipeline", "training_pipeline"]
