from kfp_ct.components._catalog import export_component

__all__ = ["validate"]
__getattr__ = export_component(__name__, "validate")
