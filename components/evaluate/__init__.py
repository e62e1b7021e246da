from kfp_ct.components.evaluate.component import evaluate

__all__ = ["evaluate"]
