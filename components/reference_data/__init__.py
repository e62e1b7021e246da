from kfp_ct.components.reference_data.component import reference_data

__all__ = ["reference_data"]
