"""The one place that names the catalog's container images; it imports nothing heavy (no kfp), so what starts a
container at run time (Katib trials, the predictor of a torch or Keras model, the tracking server) reads the names
here, and `components/_image.py`'s decorator builds the components on them.

The image tag is the package version, so one version bump moves the pip package, the images and the compiled YAML
together. An organisation that hosts the images names its registry in `KFP_CT_IMAGE_REGISTRY` (`make image push
REGISTRY=...` builds and pushes them there and bakes the name into them; `kfp-ct compile --image-registry ...`
compiles the YAML against it). It is read once, when this module is imported.
"""

import os

from kfp_ct import __version__

REGISTRY = os.environ.get("KFP_CT_IMAGE_REGISTRY", "").rstrip("/") or "ghcr.io/kfp-ct"
IMAGE = f"{REGISTRY}/kfp-ct:{__version__}"
GPU_IMAGE = f"{REGISTRY}/kfp-ct-gpu:{__version__}"
SERVING_IMAGE = f"{REGISTRY}/kfp-ct-serving:{__version__}"
MLFLOW_IMAGE = f"{REGISTRY}/kfp-ct-mlflow:{__version__}"  # the tracking server of cluster/ (cluster/mlflow.Dockerfile)
