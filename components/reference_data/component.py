from typing import Optional

from kfp import dsl

from kfp_ct.components._image import component


@component
def reference_data(
    model_name: str,
    reference: dsl.Output[dsl.Dataset],
    reference_uri: Optional[str] = None,
    tracking_uri: Optional[str] = None,
):
    """Fetches the data new data is compared with: the training data of the model in production, or a given URI.

    Args:
        model_name: Registered model whose champion's training data is the reference (its URI is in the model's
            metadata).
        reference_uri: Data to use instead of the champion's (any source ingest reads).
        tracking_uri: MLflow tracking and registry URI; default MLFLOW_TRACKING_URI, else sqlite:///mlflow.db.

    Returns:
        reference: One Parquet file at {uri}; metadata: rows, columns, sha256, source_uri and champion_version
            when it is the champion's training data.
    """
    from kfp_ct.components.reference_data.core import fetch_reference

    reference.metadata.update(fetch_reference(reference.path, model_name, reference_uri, tracking_uri))
