from kfp_ct.components._catalog import export_component

__all__ = ["train_torch"]
__getattr__ = export_component(__name__, "train_torch")
