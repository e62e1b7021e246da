from typing import Optional

from kfp import dsl

from kfp_ct.components._image import component


@component
def monitor_drift(
    reference: dsl.Input[dsl.Dataset],
    current: dsl.Input[dsl.Dataset],
    report: dsl.Output[dsl.HTML],
    metrics: dsl.Output[dsl.Metrics],
    drift_table: dsl.Output[dsl.Artifact],
    drift_share: float = 0.5,
    columns: Optional[list] = None,
    column_tests: Optional[dict] = None,
    target_column: Optional[str] = None,
    model_name: Optional[str] = None,
    performance_trigger: bool = False,
    max_metric_drop: float = 0.05,
    min_new_rows: int = 0,
    tracking_uri: Optional[str] = None,
    report_sample_rows: int = 5000,
    labels: str = "",
    label_id_column: str = "request_id",
) -> bool:
    """Compares a current window of data with a reference one, column by column, and says whether to retrain.

    Each column gets the test Evidently's DataDriftPreset picks for its type and size (K-S, chi-squared or Z-test
    up to 1000 reference values; normed Wasserstein distance or Jensen-Shannon distance above), with the same
    thresholds and verdicts, computed on all rows in bounded memory. The dataset drifts when the share of drifted
    columns reaches drift_share. Retraining triggers: data drift; performance decay (the registry's champion scored
    on the labelled current rows, its primary metric compared with the value recorded for it); new-data volume. An
    empty current window is "no new data": nothing is compared, nothing triggers, and the metrics and report say so.

    Args:
        reference: The reference window (e.g. the training data), a Parquet dataset.
        current: The current window, with the same columns.
        drift_share: Share of drifted columns (among those with enough rows to judge) at which the dataset counts as
            drifted.
        columns: Columns to test; default every numerical and categorical column except target_column.
        column_tests: Per-column test and/or threshold, with Evidently's test names (ks, chisquare, z,
            jensenshannon, wasserstein, psi, kl_div): {"col": {"test": "psi", "threshold": 0.2}}.
        target_column: The label column: left out of the drift tests, and used for the performance-decay trigger.
        model_name: Registered model whose `champion` alias is scored on the current rows (performance decay).
        performance_trigger: Turns on the performance-decay trigger (needs target_column and model_name): it fires
            when the champion's primary metric (roc_auc, else accuracy; rmse for regression) on the labelled current
            rows is worse than the value recorded for it by more than max_metric_drop.
        max_metric_drop: The performance-decay trigger's tolerance, in the metric's own units.
        min_new_rows: New-data trigger: fires when the current window has at least this many rows; 0 turns it off.
        tracking_uri: MLflow tracking and registry URI; default MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the
            working folder.
        report_sample_rows: Rows of each window sampled at random to render the Evidently dashboard.
        labels: Ground truth that arrived later, for a current window of captured traffic (kfp-ct serve --capture,
            kfp-ct capture-sink): a labels source (Parquet, CSV, ... on a path, http(s)://, gs://, s3://) with
            label_id_column and target_column. The performance-decay trigger then judges the served model's own captured
            predictions on the rows that have a label (no re-scoring); the drift table states how many had one,
            labels without a prediction, and repeated or conflicting labels.
        label_id_column: The column that joins labels to captured rows (the capture's request_id; also `row` when the
            labels carry it).

    Returns:
        report: Self-contained HTML: the verdicts on all rows, the triggers, then Evidently's DataDriftPreset
            dashboard on the sampled rows.
        metrics: dataset_drift, share_of_drifted_columns, number_of_drifted_columns, number_of_not_judged_columns
            (too few rows for their test: 20 values in each window for K-S, 30 for the others),
            drift_score_<column> and drifted_<column> per judged column, trigger_<name> per trigger checked,
            triggered; for an empty current window: no_new_data (1), current_rows (0), reference_rows, triggered (0).
        drift_table: JSON at {uri}: per column the test, score (p-value or distance), threshold, verdict and column
            type (a column with too few rows: judged false, "not enough rows" in its note); the share among judged
            columns and dataset_drift; the triggers that fired, with their details (no_new_data: true for an empty
            current window); metadata: no_new_data, dataset_drift, triggers, drifted_columns, the current window.
        Output: True when any retraining trigger fired (drives dsl.If).
    """
    from kfp_ct.components.monitor_drift.core import monitor_drift as monitor_drift_core

    result = monitor_drift_core(
        reference_path=reference.path,
        current_path=current.path,
        report_path=report.path,
        table_path=drift_table.path,
        drift_share=drift_share,
        columns=columns,
        column_tests=column_tests,
        target_column=target_column,
        model_name=model_name,
        performance_trigger=performance_trigger,
        max_metric_drop=max_metric_drop,
        min_new_rows=min_new_rows,
        tracking_uri=tracking_uri,
        report_sample_rows=report_sample_rows,
        current_window=current.metadata.get("window"),
        labels=labels,
        label_id_column=label_id_column,
    )
    result.log_metrics(metrics)
    drift_table.metadata.update(result.metadata)
    return result.triggered
