from kfp_ct.components.featurize.component import featurize

__all__ = ["featurize"]
