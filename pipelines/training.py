"""training_pipeline: preflight -> ingest -> validate -> featurize -> [tune] -> train -> evaluate -> push if blessed."""

from typing import Optional

from kfp import dsl

from kfp_ct.components import (
    evaluate,
    featurize,
    ingest,
    preflight,
    push,
    train_keras,
    train_sklearn,
    train_torch,
    tune,
    validate,
)
from kfp_ct.components._common.images import GPU_IMAGE
from kfp_ct.pipelines.steps import RETRIES, step

TRAINERS = {"sklearn": train_sklearn, "torch": train_torch, "keras": train_keras}
GPU_TRAINERS = {"torch", "keras"}


@dsl.pipeline(
    name="train-evaluate-push",
    description="Train with the chosen framework, evaluate against the "
    "champion, and push the model when it is blessed.",
)
def train_evaluate_push(
    train: dsl.Input[dsl.Dataset],
    test: dsl.Input[dsl.Dataset],
    featurizer: dsl.Input[dsl.Model],
    target_column: str,
    task: str,
    framework: str,
    estimator: str,
    hyperparameters: dict,
    model_name: str,
    thresholds: dict,
    slices: list,
    sensitive_columns: list,
    min_slice_rows: int,
    tracking_uri: str,
    push_target: str,
    storage_uri: str,
    namespace: str,
    canary_traffic_percent: int,
    canary_bake_s: int,
    capture_url: str,
    seed: int,
    require_approval: bool,
):
    """The training steps shared by the training and the continuous-training pipelines; one branch per framework.
    With `require_approval` a blessed candidate stays at the `challenger` alias and nothing is pushed (`kfp-ct
    promote` pushes it later)."""
    for name, trainer in TRAINERS.items():
        with dsl.If(framework == name, name=f"framework-{name}"):
            options = {"estimator": estimator} if name == "sklearn" else {}
            # evaluate and push load the model: a torch or Keras model needs the GPU image's libraries (on CPU)
            model_image = GPU_IMAGE if name in GPU_TRAINERS else None
            trained = step(
                trainer(
                    train=train,
                    featurizer=featurizer,
                    target_column=target_column,
                    task=task,
                    hyperparameters=hyperparameters,
                    model_name=model_name,
                    tracking_uri=tracking_uri,
                    seed=seed,
                    **options,
                ),
                gpu=name in GPU_TRAINERS,
                memory="16G" if name in GPU_TRAINERS else "8G",
            )
            verdict = step(
                evaluate(
                    model=trained.outputs["model"],
                    test=test,
                    target_column=target_column,
                    model_name=model_name,
                    thresholds=thresholds,
                    tracking_uri=tracking_uri,
                    slices=slices,
                    sensitive_columns=sensitive_columns,
                    min_slice_rows=min_slice_rows,
                ),
                image=model_image,
                retries=RETRIES,
            )
            with dsl.If(verdict.outputs["Output"] == True, name=f"blessed-{name}"):  # noqa: E712 (a KFP condition)
                with dsl.If(require_approval == False, name=f"no-approval-needed-{name}"):  # noqa: E712
                    step(
                        push(
                            model=trained.outputs["model"],
                            test=test,
                            model_name=model_name,
                            target=push_target,
                            storage_uri=storage_uri,
                            namespace=namespace,
                            canary_traffic_percent=canary_traffic_percent,
                            canary_bake_s=canary_bake_s,
                            capture_url=capture_url,
                            tracking_uri=tracking_uri,
                        ),
                        image=model_image,
                    )


@dsl.pipeline(
    name="training-pipeline",
    description="Ingest, validate and featurize data, optionally tune, train, "
    "evaluate against the champion and push the blessed model.",
)
def training_pipeline(
    source_uri: str,
    target_column: str,
    model_name: str = "kfp-ct-model",
    task: str = "classification",
    framework: str = "sklearn",
    estimator: str = "hist_gradient_boosting",
    hyperparameters: dict = {},
    thresholds: dict = {},
    slices: list = [],
    sensitive_columns: list = [],
    min_slice_rows: int = 100,
    file_format: str = "auto",
    time_column: Optional[str] = None,
    start: Optional[str] = None,
    end: Optional[str] = None,
    exclude_columns: Optional[list] = None,
    test_fraction: float = 0.2,
    seed: int = 0,
    tune_hyperparameters: bool = False,
    search_space: dict = {},
    tuning_algorithm: str = "tpe",
    tuning_objective: str = "validation-roc_auc",
    tuning_objective_type: str = "maximize",
    max_trial_count: int = 12,
    parallel_trial_count: int = 2,
    tracking_uri: str = "",
    push_target: str = "local",
    storage_uri: str = "file://models",
    namespace: str = "kubeflow-user-example-com",
    canary_traffic_percent: int = 10,
    canary_bake_s: int = 0,
    capture_url: str = "",
    require_approval: bool = False,
):
    """Trains a model on `source_uri` and pushes it when evaluate blesses it against the champion.

    With `require_approval=True` a blessed candidate only gets the `challenger` alias; nothing is deployed until
    `kfp-ct promote` (or `kfp-ct reject` turns it down).
    `canary_bake_s` > 0 has push replay test rows to the canary and the stable model for that long and promote only
    when the canary's error rate, latency and prediction shift are within push's bounds; `capture_url` (the capture
    sink's URL) puts KServe's logger on the InferenceService, so what it serves is captured.

    A parameter that enters a branch has a value, never None (KFP 2.5 fails a branch on a null): an empty
    `tracking_uri` means MLFLOW_TRACKING_URI (else a sqlite file), an empty `search_space` the trainer's default."""
    checked_parameters = step(
        preflight(
            data_uri=source_uri,
            target_column=target_column,
            model_name=model_name,
            task=task,
            framework=framework,
            thresholds=thresholds,
            push_target=push_target,
            storage_uri=storage_uri,
            tracking_uri=tracking_uri,
            registry_must_exist=False,
        ),
        retries=RETRIES,
    )
    data = step(
        ingest(source_uri=source_uri, file_format=file_format, time_column=time_column, start=start, end=end).after(
            checked_parameters
        ),
        retries=RETRIES,
    )
    checked = step(validate(dataset=data.outputs["dataset"], target_column=target_column), retries=RETRIES)
    features = step(
        featurize(
            dataset=data.outputs["dataset"],
            target_column=target_column,
            task=task,
            exclude_columns=exclude_columns,
            test_fraction=test_fraction,
            seed=seed,
            time_column=time_column,
        ).after(checked),
        retries=RETRIES,
    )
    shared = dict(
        train=features.outputs["train"],
        test=features.outputs["test"],
        featurizer=features.outputs["featurizer"],
        target_column=target_column,
        task=task,
        framework=framework,
        estimator=estimator,
        model_name=model_name,
        thresholds=thresholds,
        slices=slices,
        sensitive_columns=sensitive_columns,
        min_slice_rows=min_slice_rows,
        tracking_uri=tracking_uri,
        push_target=push_target,
        storage_uri=storage_uri,
        namespace=namespace,
        canary_traffic_percent=canary_traffic_percent,
        canary_bake_s=canary_bake_s,
        capture_url=capture_url,
        seed=seed,
        require_approval=require_approval,
    )
    tuning = dict(
        train=features.outputs["train"],
        featurizer=features.outputs["featurizer"],
        target_column=target_column,
        task=task,
        trainer=framework,
        estimator=estimator,
        hyperparameters=hyperparameters,
        search_space=search_space,
        algorithm=tuning_algorithm,
        objective_metric_name=tuning_objective,
        objective_type=tuning_objective_type,
        max_trial_count=max_trial_count,
        parallel_trial_count=parallel_trial_count,
        seed=seed,
    )
    with dsl.If(tune_hyperparameters == True, name="tuned"):  # noqa: E712 (a KFP condition)
        with dsl.If(framework == "sklearn", name="tuned-on-cpu"):
            tuned = step(tune(**tuning), memory="8G")
            train_evaluate_push(hyperparameters=tuned.outputs["Output"], **shared)
        with dsl.Else(name="tuned-on-gpu"):  # torch and Keras trials need the GPU image's libraries (and a GPU)
            tuned = step(tune(**tuning), gpu=True, image=GPU_IMAGE, memory="16G")
            train_evaluate_push(hyperparameters=tuned.outputs["Output"], **shared)
    with dsl.Else(name="given-hyperparameters"):
        train_evaluate_push(hyperparameters=hyperparameters, **shared)
