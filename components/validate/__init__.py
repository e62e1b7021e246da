from kfp_ct.components.validate.component import validate

__all__ = ["validate"]
