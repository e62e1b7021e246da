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
) -> bool:
    """Scores a candidate model and the registry's champion on the same test split, and blesses the candidate or not.

    Blessed means: every threshold passes, absolute ({"roc_auc": {"min": 0.8}}, {"rmse": {"max": 90}}) and relative
    to the champion ({"roc_auc": {"max_drop": 0.01}}, {"rmse": {"max_increase": 2.5}}); without a champion only the
    absolute ones apply; without thresholds, no worse than the champion on the primary metric (roc_auc for
    classification, rmse for regression). A blessed candidate's registered version gets the alias `challenger`.

    Args:
        model: The candidate model (a trainer's model output).
        test: The test split (featurize's test output).
        target_column: The column holding the true labels or values.
        model_name: Registered model whose `champion` alias is the model to beat.
        thresholds: Checks per metric (classification: accuracy, precision, recall, f1, roc_auc, log_loss;
            regression: rmse, mae, r2, mape), each a dict of min, max, max_drop, max_increase.
        tracking_uri: MLflow tracking and registry URI; default MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the
            working folder.

    Returns:
        metrics: The candidate's test metrics, the champion's as champion_<name>, and blessed (1 or 0).
        classification_metrics: Confusion matrix and (binary classification) ROC curve of the candidate, at most
            101 points.
        model_card: Markdown: verdict and the rule that decided, model, data, metrics beside the champion's.
        Output: True when the candidate is blessed (drives dsl.If).
    """
    from kfp_ct.components.evaluate.core import evaluate as evaluate_core
    from kfp_ct.components.evaluate.core import write_text_atomically

    outcome = evaluate_core(
        model.path,
        test.path,
        target_column,
        model_name,
        thresholds,
        tracking_uri,
        dict(model.metadata),
        dict(test.metadata),
    )
    for name, value in outcome.candidate.metrics.items():
        metrics.log_metric(name, value)
    for name, value in (outcome.champion.metrics if outcome.champion else {}).items():
        metrics.log_metric(f"champion_{name}", value)
    metrics.log_metric("blessed", 1.0 if outcome.blessed else 0.0)
    if outcome.candidate.confusion_matrix is not None:
        classification_metrics.log_confusion_matrix(
            [str(c) for c in outcome.candidate.classes], outcome.candidate.confusion_matrix
        )
    if outcome.candidate.roc_curve is not None:
        roc = outcome.candidate.roc_curve
        classification_metrics.log_roc_curve(roc["fpr"], roc["tpr"], roc["threshold"])
    write_text_atomically(model_card.path, outcome.card)
    model_card.metadata.update(
        {
            "blessed": outcome.blessed,
            "version": outcome.candidate_version or "",
            "champion_version": outcome.champion_version or "",
            "rule": outcome.verdict.rule,
        }
    )
    return outcome.blessed
