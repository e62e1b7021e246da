from kfp_ct.components.monitor_drift.component import monitor_drift

__all__ = ["monitor_drift"]
