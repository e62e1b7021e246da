"""Pipelines composed from the kfp-ct catalog, built on first access (`from kfp_ct.pipelines import PIPELINES`), so
that the CLI can set what compilation takes from the environment (image registry, GPU placement) before they are."""

import importlib

MODULES = {
    "data_pipeline": "kfp_ct.pipelines.data",
    "training_pipeline": "kfp_ct.pipelines.training",
    "continuous_training_pipeline": "kfp_ct.pipelines.continuous_training",
}

__all__ = ["PIPELINES", *MODULES]


def __getattr__(name: str):
    if name == "PIPELINES":
        return {pipeline: __getattr__(pipeline) for pipeline in MODULES}
    if name in MODULES:
        return getattr(importlib.import_module(MODULES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
