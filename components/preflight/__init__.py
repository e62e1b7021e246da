from kfp_ct.components._catalog import export_component

__all__ = ["preflight"]
__getattr__ = export_component(__name__, "preflight")
