from typing import Optional

from kfp import dsl

from kfp_ct.components._image import component


@component
def evaluate(
    model: dsl.Input[dsl.Model],
    test: dsl.Input[dsl.Dataset],
    target_column: str,
    model_name: str,
    metrics: dsl.Output[dsl.Metrics],
    classification_metrics: dsl.Output[dsl.ClassificationMetrics],
    model_card: dsl.Output[dsl.Markdown],
    thresholds: Optional[dict] = None,
    tracking_uri: Optional[str] = None,
    slices: Optional[list] = None,
    sensitive_columns: Optional[list] = None,
    min_slice_rows: int = 100,
) -> bool:
    """Scores a candidate model and the registry's champion on the same test split, and blesses the candidate or not.

    Blessed means: every threshold passes, absolute ({"roc_auc": {"min": 0.8}}, {"rmse": {"max": 90}}) and relative
    to the champion ({"roc_auc": {"max_drop": 0.01}}, {"rmse": {"max_increase": 2.5}}); without a champion only the
    absolute ones apply; without thresholds, no worse than the champion on the primary metric (roc_auc for
    classification, rmse for regression). A check marked "per_slice": true applies to every slice too: the candidate
    is blessed only if every slice with at least min_slice_rows rows passes. A blessed candidate's registered version
    gets the alias `challenger`.

    Args:
        model: The candidate model (a trainer's model output).
        test: The test split (featurize's test output).
        target_column: The column holding the true labels or values.
        model_name: Registered model whose `champion` alias is the model to beat.
        thresholds: Checks per metric (classification: accuracy, precision, recall, f1, roc_auc, log_loss, where
            precision, recall and f1 are macro averages over the classes; regression: rmse, mae, r2, mape), each a
            dict of min, max, max_drop, max_increase, and per_slice (true: the checks apply to each slice too); binary
            classification with sensitive_columns also demographic_parity_difference and equalized_odds_difference
            (e.g. {"equalized_odds_difference": {"max": 0.1}}; the largest over the sensitive columns).
        tracking_uri: MLflow tracking and registry URI; default MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the
            working folder.
        slices: Columns of the test split to slice by (each value a slice; numbers with more than 20 distinct values
            in 4 quantile bins), or "column=value" filters. The test split holds every column of the dataset, features
            or not.
        sensitive_columns: Columns whose groups should be treated alike (binary classification): fairlearn's
            demographic parity difference and equalized odds difference between their groups.
        min_slice_rows: Slices with fewer rows are not judged (the model card says so).

    Returns:
        metrics: The candidate's test metrics, the champion's as champion_<name>, each slice's rows and metrics as
            slice_<column>_<value>_<name>, each sensitive column's figures as fairness_<column>_<name>,
            failed_slices (a count) and blessed (1 or 0).
        classification_metrics: Confusion matrix and (binary classification) ROC curve of the candidate, at most
            101 points.
        model_card: Markdown: verdict (naming the failed slices) and the rule that decided, model, data, metrics
            beside the champion's, a table per slice (rows, metric, champion's, verdict), the fairness figures;
            metadata: blessed, version, champion_version, rule, failed_slices.
        Output: True when the candidate is blessed (drives dsl.If).
    """
    from pathlib import Path

    from kfp_ct.components._common.datasets import write_text_files
    from kfp_ct.components.evaluate.core import evaluate as evaluate_core

    result = evaluate_core(
        model_path=model.path,
        test_path=test.path,
        target_column=target_column,
        model_name=model_name,
        thresholds=thresholds,
        tracking_uri=tracking_uri,
        slices=slices,
        sensitive_columns=sensitive_columns,
        min_slice_rows=min_slice_rows,
        model_metadata=dict(model.metadata),
        test_metadata=dict(test.metadata),
    )
    result.log_metrics(metrics)
    if result.candidate.confusion_matrix is not None:
        classification_metrics.log_confusion_matrix(
            [str(c) for c in result.candidate.classes], result.candidate.confusion_matrix
        )
    if result.candidate.roc_curve is not None:
        roc = result.candidate.roc_curve
        classification_metrics.log_roc_curve(roc["fpr"], roc["tpr"], roc["threshold"])
    write_text_files(Path(model_card.path).parent, {Path(model_card.path).name: result.card})
    model_card.metadata.update(result.metadata)
    return result.blessed
