from typing import Optional

from kfp import dsl

from kfp_ct.components._image import component


@component
def train_sklearn(
    train: dsl.Input[dsl.Dataset],
    featurizer: dsl.Input[dsl.Model],
    target_column: str,
    task: str,
    model: dsl.Output[dsl.Model],
    metrics: dsl.Output[dsl.Metrics],
    estimator: str = "hist_gradient_boosting",
    hyperparameters: Optional[dict] = None,
    model_name: str = "kfp-ct-model",
    tracking_uri: Optional[str] = None,
    seed: int = 0,
    max_classes: int = 100,
):
    """Trains a scikit-learn estimator on the train split, logs it to MLflow and registers a new model version.

    A validation part of the train split is held out (the latest rows when the featurizer has a time column) and
    its metrics are printed as validation-<name>=<value> lines (what Katib reads). The model is
    Pipeline(featurizer, estimator), so it takes raw rows.

    Args:
        train: The train split (featurize's train output).
        featurizer: The featurizer fitted on it (featurize's featurizer output).
        target_column: The column to predict; must be the featurizer's.
        task: classification or regression; must be the featurizer's.
        estimator: logistic_regression, linear_regression, random_forest or hist_gradient_boosting.
        hyperparameters: The estimator's hyperparameters (scikit-learn names, e.g. {"learning_rate": 0.05}); an
            unknown name fails before any work, listing the allowed ones.
        model_name: Registered model to add a version to (also the MLflow experiment's name).
        tracking_uri: MLflow tracking and registry URI; default MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the
            working folder.
        seed: Seeds the estimator and the validation split: same data and seed give the same model and metrics.
        max_classes: Most classes a classification target may have: more fail before fitting, naming the
            target column and its class count (fitting and saving that many classes takes minutes to hours).

    Returns:
        model: An MLflow model directory at {uri} (flavors sklearn and python_function, signature over the raw
            feature columns, input example, the featurizer in {uri}/featurizer); metadata: model_name, version,
            run_id, framework, estimator, and the validation metrics.
        metrics: The validation metrics, computed as evaluate's test metrics (classification: accuracy, precision,
            recall, f1 (macro averages), roc_auc, log_loss; regression: rmse, mae, r2, mape).
    """
    from kfp_ct.components.train_sklearn.core import train_sklearn as train_core

    result = train_core(
        train_path=train.path,
        featurizer_path=featurizer.path,
        target_column=target_column,
        task=task,
        model_path=model.path,
        estimator=estimator,
        hyperparameters=hyperparameters,
        model_name=model_name,
        tracking_uri=tracking_uri,
        seed=seed,
        max_classes=max_classes,
        train_metadata=dict(train.metadata, uri=train.uri),
    )
    result.log_metrics(metrics)
    model.metadata.update(result.metadata)
