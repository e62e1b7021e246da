from kfp_ct.components._catalog import export_component

__all__ = ["push"]
__getattr__ = export_component(__name__, "push")
