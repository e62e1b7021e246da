"""The reference data new data is compared with: a given URI, or the training data of the model in production."""

from __future__ import annotations

import tempfile

from kfp_ct.components._common.sources import read_dataset


def champion_training_data(model_name: str, tracking_uri: str | None = None) -> tuple[str, str]:
    """(version, URI of its train split) of the champion of `model_name`, from the model's metadata."""
    from kfp_ct.components._common import tracking
    from kfp_ct.components._common.model import read_metadata

    with tempfile.TemporaryDirectory(prefix="kfp-ct-champion-") as tmp:
        found = tracking.champion(model_name, tracking_uri, dst=tmp)
        if found is None:
            raise ValueError(
                f"model '{model_name}' has no champion at {tracking.resolve_uri(tracking_uri)} and no "
                "reference_uri was given: push a first model, or pass reference_uri"
            )
        version, path = found
        uri = read_metadata(path).get("train_data", {}).get("uri")
    if not uri:
        raise ValueError(
            f"the champion (version {version}) of '{model_name}' does not record where its training "
            "data is: pass reference_uri"
        )
    return version, uri


def fetch_reference(
    output_path: str, model_name: str, reference_uri: str | None = None, tracking_uri: str | None = None
) -> dict:
    """Writes the reference dataset at `output_path`; returns its metadata (with the champion version it came
    from, when it came from one)."""
    if reference_uri:
        return read_dataset(reference_uri, output_path)
    version, uri = champion_training_data(model_name, tracking_uri)
    return {**read_dataset(uri, output_path, file_format="parquet"), "champion_version": version}
