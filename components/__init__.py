"""The kfp-ct catalog. Each component loads on first access (`from kfp_ct.components import ingest`), with kfp and
its interface only, never the heavy libraries the components use at run time (torch, tensorflow, evidently, mlflow,
kserve, optuna); importing a component's core (`from kfp_ct.components.ingest import core`) does not import kfp.

Inside KFP's executor (`_KFP_RUNTIME`), where every component's body starts by importing its core from here, the
step's credentials are read first from the mounted Secret (`_common/credentials.py`)."""

import os
import sys

from kfp_ct.components._catalog import Catalog

if os.environ.get("_KFP_RUNTIME") == "true":
    from kfp_ct.components._common import credentials

    credentials.load()

# In the order of the loop, for the catalog's listing.
__all__ = [
    "preflight",
    "ingest",
    "validate",
    "featurize",
    "train_sklearn",
    "train_torch",
    "train_keras",
    "tune",
    "evaluate",
    "push",
    "reference_data",
    "monitor_drift",
]

sys.modules[__name__].__class__ = Catalog
