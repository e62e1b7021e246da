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

    The champion's training data is the data URI and the time window its model metadata records, so a retrained
    model's reference moves with it.

    Args:
        model_name: Registered model whose champion's training data is the reference (its URI, and the window it
            was trained on, are in the model's metadata).
        reference_uri: Data to use instead of the champion's (any source ingest reads).
        tracking_uri: MLflow tracking and registry URI; default MLFLOW_TRACKING_URI, else sqlite:///mlflow.db.

    Returns:
        reference: One Parquet file at {uri}; metadata: rows, columns, sha256, source_uri, and champion_version
            and the champion's window when it is the champion's training data.
    """
    from kfp_ct.components.reference_data.core import reference_data as reference_data_core

    result = reference_data_core(
        model_name=model_name, reference_path=reference.path, reference_uri=reference_uri, tracking_uri=tracking_uri
    )
    reference.metadata.update(result.metadata)
