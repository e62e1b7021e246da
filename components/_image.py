"""The decorator every component uses: the catalog's image (named in `_common/images.py`), nothing installed."""

from kfp.dsl.component_decorator import component as kfp_component

from kfp_ct.components._common.images import GPU_IMAGE, IMAGE


def component(func=None, *, gpu: bool = False):
    """Turns a function into a KFP component that runs in the catalog's image (the GPU image when `gpu`).

    The image already holds kfp and kfp-ct, so nothing is installed at run time. The decorator is imported from its
    module because `kfp.dsl` leaves it out inside a running component (_KFP_RUNTIME), where this module is imported
    again through `kfp_ct.components`.
    """
    decorate = kfp_component(base_image=GPU_IMAGE if gpu else IMAGE, install_kfp_package=False)
    return decorate if func is None else decorate(func)
