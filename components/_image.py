"""The one place that names the catalog's container images and the decorator every component uses.

The image tag is the package version, so one version bump moves the pip package, the images and the compiled YAML
together. An organisation that hosts the images names its registry in `KFP_CT_IMAGE_REGISTRY` (`make image push
REGISTRY=...` builds and pushes them there and bakes the name into them, for what a step starts at run time: Katib
trials, the predictor of a torch or Keras model; `kfp-ct compile --image-registry ...` compiles the YAML against it).
"""

import os

from kfp.dsl.component_decorator import component as kfp_component

from kfp_ct import __version__

REGISTRY = os.environ.get("KFP_CT_IMAGE_REGISTRY", "").rstrip("/") or "ghcr.io/kfp-ct"
IMAGE = f"{REGISTRY}/kfp-ct:{__version__}"
GPU_IMAGE = f"{REGISTRY}/kfp-ct-gpu:{__version__}"
SERVING_IMAGE = f"{REGISTRY}/kfp-ct-serving:{__version__}"


def component(func=None, *, gpu: bool = False):
    """Turns a function into a KFP component that runs in the catalog's image.

    The image already holds kfp and kfp-ct, so nothing is installed at run time. The decorator is imported from its
    module because `kfp.dsl` leaves it out inside a running component (_KFP_RUNTIME), where this module is imported
    again through `kfp_ct.components`.
    """
    decorate = kfp_component(base_image=GPU_IMAGE if gpu else IMAGE, install_kfp_package=False)
    return decorate if func is None else decorate(func)
