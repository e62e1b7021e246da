"""The kfp-ct catalog. Importing it loads kfp and the component interfaces only, never the heavy libraries the
components use at run time (torch, tensorflow, evidently, mlflow, kserve, optuna)."""

from kfp_ct.components.evaluate import evaluate
from kfp_ct.components.featurize import featurize
from kfp_ct.components.ingest import ingest
from kfp_ct.components.monitor_drift import monitor_drift
from kfp_ct.components.push import push
from kfp_ct.components.reference_data import reference_data
from kfp_ct.components.train_keras import train_keras
from kfp_ct.components.train_sklearn import train_sklearn
from kfp_ct.components.train_torch import train_torch
from kfp_ct.components.tune import tune
from kfp_ct.components.validate import validate

# In the order of the loop, for the catalog's listing.
__all__ = [
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
