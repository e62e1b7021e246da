from kfp_ct.components.train_torch.component import train_torch

__all__ = ["train_torch"]
