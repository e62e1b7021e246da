"""continuous_training_pipeline: the recurring run that retrains, gates and redeploys when drift or decay is found.

preflight (every parameter checked before any side effect) -> reference data (the champion's training data) and the
current window -> if the window has rows: validate it against the reference schema -> monitor_drift (data drift,
performance decay, new-data volume) -> if triggered: featurize the window -> train -> evaluate against the champion
-> push with a canary if blessed; if it has none: monitor_drift records "no new data" and nothing else runs.

The window of a run is [as_of - window, as_of) (`window`, e.g. "7d"). A KFP 2.5 backend (and every newer one up to
2.15) gives a v2 pipeline no scheduled time: it expands neither the recurring-run macro `[[ScheduledTime]]` (the
scheduled-workflow controller formats only an Argo workflow's own parameters, and a v2 workflow carries its
parameters in the root driver's runtime config) nor `dsl.PIPELINE_JOB_SCHEDULE_TIME_UTC_PLACEHOLDER` (the driver
resolves only the job's name, resource name and uuid and the task's name and uuid). So an empty `as_of` is the time
ingest starts, rounded down to the window's unit: a recurring run's scheduled time when it starts within that unit
(a daily "0 0 0 * * *" schedule with a "7d" window), a one-off run's submission time rounded down. A value that a
backend did expand ([[ScheduledTime]] -> 20260107000000, UTC) is read as such; one left unexpanded is an error.
"""

from typing import Optional

from kfp import dsl

from kfp_ct.components import featurize, ingest, monitor_drift, preflight, reference_data, validate
from kfp_ct.pipelines.steps import RETRIES, step
from kfp_ct.pipelines.training import train_evaluate_push


@dsl.pipeline(
    name="continuous-training-pipeline",
    description="Compare a new data window with the champion's "
    "training data; on drift, decay or enough new data, retrain, evaluate and push with a canary.",
)
def continuous_training_pipeline(
    current_uri: str,
    target_column: str,
    model_name: str = "kfp-ct-model",
    reference_uri: Optional[str] = None,
    file_format: str = "auto",
    time_column: str = "",
    start: Optional[str] = None,
    end: Optional[str] = None,
    window: str = "",
    as_of: str = "",
    lookback: str = "",
    drift_share: float = 0.5,
    performance_trigger: bool = True,
    max_metric_drop: float = 0.05,
    min_new_rows: int = 0,
    task: str = "classification",
    framework: str = "sklearn",
    estimator: str = "hist_gradient_boosting",
    hyperparameters: dict = {},
    thresholds: dict = {},
    slices: list = [],
    sensitive_columns: list = [],
    min_slice_rows: int = 100,
    exclude_columns: list = [],
    test_fraction: float = 0.2,
    seed: int = 0,
    tracking_uri: str = "",
    push_target: str = "local",
    storage_uri: str = "file://models",
    namespace: str = "kubeflow-user-example-com",
    canary_traffic_percent: int = 10,
    canary_bake_s: int = 0,
    capture_url: str = "",
    labels_uri: str = "",
    label_id_column: str = "request_id",
    require_approval: bool = False,
):
    """Checks the window at `current_uri` against the reference and retrains when a trigger fires.

    With `require_approval=True` a blessed candidate only gets the `challenger` alias; nothing is deployed until
    `kfp-ct promote` (or `kfp-ct reject` turns it down).
    `canary_bake_s` and `capture_url` are push's (see training_pipeline). With `current_uri` a model's captured
    traffic (`<capture>/model=NAME/`, `time_column="time"`), its input columns are validated and compared, and
    `labels_uri` is the ground truth that arrived later, joined on `label_id_column`: the performance-decay trigger
    judges the served model's own predictions, and a retrain learns from the labelled rows of the window.

    A parameter that enters a branch has a value, never None (KFP 2.5 fails a branch on a null): an empty
    `time_column` means no time column, an empty `tracking_uri` MLFLOW_TRACKING_URI (else a sqlite file).
    `performance_trigger=False` turns the performance-decay trigger off, `min_new_rows=0` the new-data one.
    `window` ("7d", "24h"; needs `time_column`) reads the rows of [as_of - window, as_of) instead of start/end; an
    empty `as_of` is the time the run starts, rounded down to the window's unit (see the module docstring);
    `lookback` ("1d") also reads the rows of that long before the window, for rows that arrived late."""
    checked_parameters = step(
        preflight(
            data_uri=current_uri,
            target_column=target_column,
            model_name=model_name,
            task=task,
            framework=framework,
            thresholds=thresholds,
            reference_uri=reference_uri,
            push_target=push_target,
            storage_uri=storage_uri,
            tracking_uri=tracking_uri,
            registry_must_exist=True,
        ),
        retries=RETRIES,
    )
    reference = step(
        reference_data(model_name=model_name, reference_uri=reference_uri, tracking_uri=tracking_uri).after(
            checked_parameters
        ),
        retries=RETRIES,
    )
    reference_schema = step(
        validate(dataset=reference.outputs["reference"], target_column=target_column), retries=RETRIES
    )
    current = step(
        ingest(
            source_uri=current_uri,
            file_format=file_format,
            time_column=time_column,
            start=start,
            end=end,
            window=window,
            as_of=as_of,
            lookback=lookback,
        ).after(checked_parameters),
        retries=RETRIES,
    )

    def drift_check():
        return step(
            monitor_drift(
                reference=reference.outputs["reference"],
                current=current.outputs["dataset"],
                drift_share=drift_share,
                target_column=target_column,
                model_name=model_name,
                performance_trigger=performance_trigger,
                max_metric_drop=max_metric_drop,
                min_new_rows=min_new_rows,
                labels=labels_uri,
                label_id_column=label_id_column,
                tracking_uri=tracking_uri,
            ),
            retries=RETRIES,
        )

    with dsl.If(current.outputs["Output"] > 0, name="new-data"):
        checked = step(
            validate(
                dataset=current.outputs["dataset"],
                target_column=target_column,
                reference_schema=reference_schema.outputs["schema"],
            ),
            retries=RETRIES,
        )
        drift = drift_check().after(checked)
        with dsl.If(drift.outputs["Output"] == True, name="triggered"):  # noqa: E712 (a KFP condition)
            features = step(
                featurize(
                    dataset=current.outputs["dataset"],
                    target_column=target_column,
                    task=task,
                    exclude_columns=exclude_columns,
                    test_fraction=test_fraction,
                    seed=seed,
                    time_column=time_column,
                    labels_uri=labels_uri,
                    label_id_column=label_id_column,
                ),
                retries=RETRIES,
            )
            train_evaluate_push(
                train=features.outputs["train"],
                test=features.outputs["test"],
                featurizer=features.outputs["featurizer"],
                target_column=target_column,
                task=task,
                framework=framework,
                estimator=estimator,
                hyperparameters=hyperparameters,
                model_name=model_name,
                thresholds=thresholds,
                slices=slices,
                sensitive_columns=sensitive_columns,
                min_slice_rows=min_slice_rows,
                require_approval=require_approval,
                tracking_uri=tracking_uri,
                push_target=push_target,
                storage_uri=storage_uri,
                namespace=namespace,
                canary_traffic_percent=canary_traffic_percent,
                canary_bake_s=canary_bake_s,
                capture_url=capture_url,
                seed=seed,
            )
    with dsl.Else(name="no-new-data"):
        drift_check()  # an empty window: monitor_drift records "no new data" and triggers nothing
