from kfp_ct.components.ingest.component import ingest

__all__ = ["ingest"]
