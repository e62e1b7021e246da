from typing import Optional

from kfp_ct.components._image import component


@component
def preflight(
    data_uri: str,
    target_column: str,
    model_name: str,
    task: str = "classification",
    framework: str = "sklearn",
    thresholds: Optional[dict] = None,
    reference_uri: Optional[str] = None,
    push_target: str = "local",
    storage_uri: str = "kfp-ct-models",
    tracking_uri: Optional[str] = None,
    registry_must_exist: bool = False,
) -> str:
    """Checks a run's parameters before any step has a side effect; the pipeline's other steps run after it.

    It checks the thresholds' metrics against the task, the model name (a registered model's and an
    InferenceService's), the framework, the data and storage URIs' schemes, and that the MLflow registry exists and
    answers, and fails naming every problem found. Nothing is registered, published or moved by a run whose
    preflight fails.

    Args:
        data_uri: The data the run reads (a path, file://, gs://, s3://, minio://, http:// or https://).
        target_column: The column to predict (must not be empty).
        model_name: The registered model and InferenceService name: lowercase letters, digits and '-'.
        task: classification or regression.
        framework: The trainer: sklearn, torch or keras.
        thresholds: evaluate's thresholds, {metric: {min, max, max_drop, max_increase}}.
        reference_uri: Reference data to compare with, in place of the champion's training data.
        push_target: local or kserve.
        storage_uri: Where push publishes model versions (a path, file://, gs://, s3:// or minio://; kserve needs an
            object store).
        tracking_uri: MLflow tracking and registry URI; default MLFLOW_TRACKING_URI, else sqlite:///mlflow.db.
        registry_must_exist: True when the run only reads the registry first (continuous training); False lets a
            trainer create a missing sqlite file in an existing folder.

    Returns:
        Output: The checks that passed, comma-separated.
    """
    from kfp_ct.components.preflight.core import preflight as preflight_core

    result = preflight_core(
        data_uris={"data_uri": data_uri, "reference_uri": reference_uri},
        target_column=target_column,
        model_name=model_name,
        task=task,
        framework=framework,
        thresholds=thresholds,
        push_target=push_target,
        storage_uri=storage_uri,
        tracking_uri=tracking_uri,
        registry="existing" if registry_must_exist else "create",
    )
    return ", ".join(result.checked)
