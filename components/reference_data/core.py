"""The reference data new data is compared with: a given URI, or what the model in production was trained on (the
data URI and the window its training recorded), so that a retrained model's reference moves with it."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from typing import Optional

from kfp_ct.components._common import windows
from kfp_ct.components._common.results import Result


@dataclass
class ReferenceDataResult(Result):
    """`champion_version`: the version whose training data the reference is (None for a given URI); `metadata`: the
    dataset's (rows, columns, sha256, source_uri), with champion_version and the champion's window when recorded."""

    champion_version: Optional[str]


def champion_training_data(model_name: str, tracking_uri: str | None = None) -> tuple[str, dict]:
    """(version, the `train_data` record of its model metadata: uri, source_uri, window, ...) of the champion of
    `model_name`."""
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
        record = read_metadata(path).get("train_data") or {}
    if not record.get("uri"):
        raise ValueError(
            f"the champion (version {version}) of '{model_name}' does not record where its training "
            "data is: pass reference_uri"
        )
    return version, record


def reference_data(
    *,
    model_name: str,
    reference_path: str,
    reference_uri: str | None = None,
    tracking_uri: str | None = None,
) -> ReferenceDataResult:
    """Writes the reference dataset at `reference_path`: `reference_uri` when given, else the champion's training
    data (its recorded URI, restricted to its recorded window when there is one)."""
    if reference_uri:
        metadata = windows.read_dataset(reference_uri, reference_path)
        return ReferenceDataResult(champion_version=None, metadata=metadata)
    version, record = champion_training_data(model_name, tracking_uri)
    recorded = record.get("window")
    window = windows.Window.from_metadata(recorded) if recorded else None
    metadata = windows.read_dataset(
        record["uri"],
        reference_path,
        window=window,
        time_column=recorded["time_column"] if recorded else None,
        file_format="parquet",
    )
    return ReferenceDataResult(champion_version=version, metadata={**metadata, "champion_version": version})
