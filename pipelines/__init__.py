"""Pipelines composed from the kfp-ct catalog."""
