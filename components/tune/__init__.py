from kfp_ct.components.tune.component import tune

__all__ = ["tune"]
