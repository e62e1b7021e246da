from kfp_ct.components._catalog import export_component

__all__ = ["reference_data"]
__getattr__ = export_component(__name__, "reference_data")
