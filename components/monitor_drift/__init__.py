from kfp_ct.components._catalog import export_component

__all__ = ["monitor_drift"]
__getattr__ = export_component(__name__, "monitor_drift")
