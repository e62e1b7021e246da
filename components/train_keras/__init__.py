from kfp_ct.components.train_keras.component import train_keras

__all__ = ["train_keras"]
