"""Train a scikit-learn estimator on featurized data: logistic/linear regression, random forest, or histogram
gradient boosting. The model is a Pipeline(featurizer, estimator) saved with mlflow.sklearn in the skops format,
trusting exactly the types it holds."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kfp_ct.components._common.model import FEATURIZER_TRUSTED_TYPES
from kfp_ct.components._common.schema import CLASSIFICATION
from kfp_ct.components._common.training import MAX_CLASSES, FitResult, TrainingResult, validation_metrics

# Each estimator's hyperparameters and their defaults; anything else is refused by name.
HYPERPARAMETERS: dict[str, dict[str, object]] = {
    "logistic_regression": {"C": 1.0, "max_iter": 1000, "class_weight": None},
    "linear_regression": {"alpha": 1e-6},  # ridge penalty; ~0 is ordinary least squares, kept for stability
    "random_forest": {
        "n_estimators": 200,
        "max_depth": None,
        "min_samples_leaf": 1,
        "max_features": "sqrt",
        "class_weight": None,
        "n_jobs": None,
    },
    "hist_gradient_boosting": {
        "learning_rate": 0.1,
        "max_iter": 200,
        "max_leaf_nodes": 31,
        "max_depth": None,
        "min_samples_leaf": 20,
        "l2_regularization": 0.0,
        "max_bins": 255,
        "early_stopping": False,
        "class_weight": None,
    },
}
ESTIMATORS = tuple(HYPERPARAMETERS)
TASKS = {"logistic_regression": (CLASSIFICATION,), "linear_regression": ("regression",)}


def hyperparameters_for(estimator: str) -> dict[str, object]:
    """The hyperparameters `estimator` accepts, with their defaults."""
    if estimator not in HYPERPARAMETERS:
        raise ValueError(f"unknown estimator '{estimator}': expected one of {', '.join(ESTIMATORS)}")
    return dict(HYPERPARAMETERS[estimator])


def make_estimator(estimator: str, task: str, hyperparameters: dict, seed: int):
    """The unfitted scikit-learn estimator for a name, a task and (checked) hyperparameters."""
    from sklearn import ensemble, linear_model

    hyperparameters_for(estimator)
    if task not in TASKS.get(estimator, (CLASSIFICATION, "regression")):
        raise ValueError(f"estimator '{estimator}' is for {TASKS[estimator][0]}, but the task is {task}")
    hp = dict(hyperparameters)
    classify = task == CLASSIFICATION
    if estimator == "logistic_regression":
        return linear_model.LogisticRegression(random_state=seed, **hp)
    if estimator == "linear_regression":
        return linear_model.Ridge(**hp)
    if estimator == "random_forest":
        if classify:
            return ensemble.RandomForestClassifier(random_state=seed, **hp)
        hp.pop("class_weight")
        if hp["max_features"] == "sqrt":
            hp["max_features"] = 1.0
        return ensemble.RandomForestRegressor(random_state=seed, **hp)
    if classify:
        return ensemble.HistGradientBoostingClassifier(random_state=seed, **hp)
    hp.pop("class_weight")
    return ensemble.HistGradientBoostingRegressor(random_state=seed, **hp)


def fit(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    task: str,
    n_classes: int | None,
    hyperparameters: dict,
    seed: int = 0,
    estimator: str = "hist_gradient_boosting",
) -> FitResult:
    """Fits `estimator` (see kfp_ct.components._common.training for the contract) and scores the validation rows.

    For classification the estimator is fitted on class indices, so predict_proba's columns are the featurizer's
    classes in order.
    """
    from threadpoolctl import threadpool_limits

    from kfp_ct.components._common.training import check_hyperparameters, cpu_threads

    hp = check_hyperparameters(hyperparameters, hyperparameters_for(estimator), estimator)
    model = make_estimator(estimator, task, hp, seed)
    with threadpool_limits(limits=cpu_threads()):
        model.fit(x_train, y_train)
        scores = scores_of(model, x_val, task, n_classes)
    history = []
    if getattr(model, "n_iter_", None) is not None:  # iterations run (HistGradientBoosting, LogisticRegression)
        history.append({"n_iter": float(np.max(model.n_iter_))})
    return FitResult(estimator=model, metrics=validation_metrics(task, y_val, scores), history=history)


def scores_of(model, x: np.ndarray, task: str, n_classes: int | None) -> np.ndarray:
    """Probabilities (n, n_classes) for classification (zeros for a class absent from the fit rows), values for
    regression."""
    if task != CLASSIFICATION:
        return np.asarray(model.predict(x), dtype=np.float64)
    proba = model.predict_proba(x)
    out = np.zeros((len(x), n_classes), dtype=np.float64)
    out[:, np.asarray(model.classes_, dtype=np.int64)] = proba
    return out


# Exactly the types a saved Pipeline(featurizer, estimator) holds beyond skops' defaults: the featurizer's, and the
# fitted trees of the random forests and histogram gradient boosting. Saving a pipeline that needs anything else
# fails, so every model the trainer writes loads with this list.
TRUSTED_TYPES = sorted(
    [
        *FEATURIZER_TRUSTED_TYPES,
        "sklearn.tree._tree.Tree",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    ]
)
MODEL_FILE = "model.skops"  # where mlflow.sklearn.save_model writes a skops model


class SklearnScorer:
    """Raw rows -> probabilities (n, n_classes) or values (n,), with the loaded Pipeline(featurizer, estimator)."""

    def __init__(self, pipeline, featurizer):
        from threadpoolctl import threadpool_limits

        from kfp_ct.components._common.training import cpu_threads

        self._threadpool_limits = threadpool_limits
        self.pipeline = pipeline
        self.feature_names = featurizer.feature_names
        self.n_classes = featurizer.n_classes if featurizer.task == CLASSIFICATION else None
        self.threads = cpu_threads()

    def __call__(self, frame):
        x = frame[self.feature_names]
        with self._threadpool_limits(limits=self.threads):
            if self.n_classes is not None:
                proba = self.pipeline.predict_proba(x)
                out = np.zeros((len(x), self.n_classes), dtype=np.float64)
                out[:, np.asarray(self.pipeline.classes_, dtype=np.int64)] = proba
                return out
            return np.asarray(self.pipeline.predict(x), dtype=np.float64)


class SklearnAdapter:
    """Saves Pipeline(featurizer, estimator) with mlflow.sklearn in the skops format, and loads it with skops
    trusting exactly `TRUSTED_TYPES` (never MLflow's loader, which would follow the folder's MLmodel)."""

    framework = "sklearn"
    libraries = ("scikit-learn", "skops")

    def pipeline(self, estimator, featurizer):
        from sklearn.pipeline import Pipeline

        return Pipeline([("featurizer", featurizer.transformer), ("estimator", estimator)])

    def save(self, estimator, featurizer, path: str, mlflow_model) -> None:
        import os

        import mlflow.sklearn

        from kfp_ct.components._common.featurizer import skops_io
        from kfp_ct.components._common.model import pip_requirements

        pipeline = self.pipeline(estimator, featurizer)
        probe = path + ".types.skops"  # the types this pipeline holds, checked against TRUSTED_TYPES
        try:
            skops_io().dump(pipeline, probe)
            refused = sorted(set(skops_io().get_untrusted_types(file=probe)) - set(TRUSTED_TYPES))
        finally:
            if os.path.exists(probe):
                os.remove(probe)
        if refused:
            raise ValueError(
                f"the fitted pipeline holds types the catalog does not trust, so it could not be loaded: "
                f"{', '.join(refused)}"
            )
        mlflow.sklearn.save_model(
            pipeline,
            path,
            mlflow_model=mlflow_model,
            serialization_format="skops",
            skops_trusted_types=TRUSTED_TYPES,
            pip_requirements=pip_requirements(self.libraries),
        )

    def load(self, path: str, featurizer) -> SklearnScorer:
        import os

        from kfp_ct.components._common.model import load_skops

        return SklearnScorer(load_skops(os.path.join(path, MODEL_FILE), TRUSTED_TYPES), featurizer)


@dataclass
class TrainSklearnResult(TrainingResult):
    """What `train_sklearn` did (see training.TrainingResult)."""


def train_sklearn(
    *,
    train_path: str,
    featurizer_path: str,
    target_column: str | None = None,
    task: str | None = None,
    model_path: str,
    estimator: str = "hist_gradient_boosting",
    hyperparameters: dict | None = None,
    model_name: str,
    tracking_uri: str | None = None,
    seed: int = 0,
    max_classes: int = MAX_CLASSES,
    train_metadata: dict | None = None,
) -> TrainSklearnResult:
    """Trains `estimator` on the train split, then saves, logs and registers the model (training.train).

    `target_column` and `task`, when given, must be the featurizer's; `train_metadata` is the train dataset
    artifact's metadata and uri (recorded in the model). The estimator and its hyperparameters are checked before
    any data is read.
    """
    from kfp_ct.components._common import training
    from kfp_ct.components._common.featurizer import load_featurizer

    allowed = hyperparameters_for(estimator)
    training.check_hyperparameters(hyperparameters, allowed, estimator)
    featurizer_task = load_featurizer(featurizer_path).task
    if featurizer_task not in TASKS.get(estimator, (featurizer_task,)):
        raise ValueError(
            f"estimator '{estimator}' is for {TASKS[estimator][0]}, but the featurizer's task is {featurizer_task}"
        )
    return training.train(
        fit,
        SklearnAdapter(),
        train_path=train_path,
        featurizer_path=featurizer_path,
        model_path=model_path,
        model_name=model_name,
        hyperparameters=hyperparameters,
        allowed_hyperparameters=allowed,
        estimator_name=estimator,
        seed=seed,
        tracking_uri=tracking_uri,
        train_metadata=train_metadata,
        target_column=target_column,
        task=task,
        fit_options={"estimator": estimator},
        max_classes=max_classes,
        result_type=TrainSklearnResult,
    )
