from typing import Optional

from kfp import dsl

from kfp_ct.components._image import component


@component(gpu=True)
def train_torch(
    train: dsl.Input[dsl.Dataset],
    featurizer: dsl.Input[dsl.Model],
    target_column: str,
    task: str,
    model: dsl.Output[dsl.Model],
    metrics: dsl.Output[dsl.Metrics],
    hyperparameters: Optional[dict] = None,
    model_name: str = "kfp-ct-model",
    tracking_uri: Optional[str] = None,
    seed: int = 0,
    max_classes: int = 100,
):
    """Trains a PyTorch MLP on the train split (on the GPU when there is one), logs it to MLflow and registers a new
    model version.

    A validation part of the train split is held out (the latest rows when the featurizer has a time column) for
    early stopping. On CUDA the data stays on the device, batches are drawn there, and training runs under bf16
    autocast with fused AdamW; on CPU the same code runs in float32. Each epoch prints name=value lines (epoch, loss,
    validation-loss, validation-accuracy and validation-roc_auc, or validation-rmse, validation-mae and
    validation-r2), then the final validation metrics are printed: what Katib's StdOut collector reads.

    Args:
        train: The train split (featurize's train output).
        featurizer: The featurizer fitted on it (featurize's featurizer output).
        target_column: The column to predict; must be the featurizer's.
        task: classification or regression; must be the featurizer's.
        hyperparameters: Any of hidden_sizes ([256, 256], or "256,256"), dropout (0.1), lr (0.001), weight_decay
            (0.0001), batch_size (None: from the row count, up to 8192 on a GPU), epochs (100), patience (10, epochs
            without a lower validation loss before stopping), class_weight ("balanced" or "none"), compile (false:
            torch.compile, falling back to eager if it fails); numbers may be given as text. An unknown name fails
            before any work, listing the allowed ones.
        model_name: Registered model to add a version to (also the MLflow experiment's name).
        tracking_uri: MLflow tracking and registry URI; default MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the
            working folder.
        seed: Seeds weight init, batch order, dropout and the validation split: same data and seed give the same
            metrics on CPU.
        max_classes: Most classes a classification target may have: more fail before fitting, naming the
            target column and its class count (fitting and saving that many classes takes minutes to hours).

    Returns:
        model: An MLflow model directory at {uri} (flavor python_function; the network's state dict in
            {uri}/data/weights.pt, read with torch.load(weights_only=True), and its architecture in
            {uri}/data/network.json; signature over the raw feature columns, input example, the featurizer in
            {uri}/featurizer); metadata: model_name, version, run_id, model_uri, framework, estimator, and the
            validation metrics.
        metrics: The validation metrics, computed as evaluate's test metrics (classification: accuracy, precision,
            recall, f1 (macro averages), roc_auc, log_loss; regression: rmse, mae, r2, mape).
    """
    from kfp_ct.components.train_torch.core import train_torch as train_core

    result = train_core(
        train_path=train.path,
        featurizer_path=featurizer.path,
        target_column=target_column,
        task=task,
        model_path=model.path,
        hyperparameters=hyperparameters,
        model_name=model_name,
        tracking_uri=tracking_uri,
        seed=seed,
        max_classes=max_classes,
        train_metadata=dict(train.metadata, uri=train.uri),
    )
    result.log_metrics(metrics)
    model.metadata.update(result.metadata)
