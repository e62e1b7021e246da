from kfp_ct.components.push.component import push

__all__ = ["push"]
