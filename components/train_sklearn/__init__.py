from kfp_ct.components.train_sklearn.component import train_sklearn

__all__ = ["train_sklearn"]
