"""evaluate: test metrics, the blessing rules, and the regression path end to end on a local tracking store."""

from __future__ import annotations

import numpy as np
import pytest

from kfp_ct.components._common import datasets, tracking
from kfp_ct.components._common.metrics import score
from kfp_ct.components._common.model import load_model
from kfp_ct.components.evaluate import core as ev
from kfp_ct.components.train_sklearn import core as sk

CANDIDATE = {"accuracy": 0.80, "roc_auc": 0.870, "log_loss": 0.45}
CHAMPION = {"accuracy": 0.82, "roc_auc": 0.875, "log_loss": 0.40}


def test_no_thresholds_compares_the_primary_metric():
    assert not ev.decide(CANDIDATE, CHAMPION, None, "classification").blessed
    assert ev.decide(CHAMPION, CANDIDATE, {}, "classification").blessed
    assert ev.decide(CHAMPION, CHAMPION, None, "classification").blessed  # no worse: equal passes
    verdict = ev.decide(CANDIDATE, None, None, "classification")
    assert verdict.blessed and "first model" in verdict.reasons[0]
    assert ev.decide({"rmse": 10.0}, {"rmse": 11.0}, None, "regression").blessed
    assert not ev.decide({"rmse": 12.0}, {"rmse": 11.0}, None, "regression").blessed
    # roc_auc missing (a class absent from the test rows): accuracy decides
    verdict = ev.decide({"accuracy": 0.9}, {"accuracy": 0.8}, None, "classification")
    assert verdict.blessed and "(accuracy)" in verdict.rule


def test_absolute_and_relative_thresholds():
    thresholds = {"roc_auc": {"min": 0.85, "max_drop": 0.01}, "log_loss": {"max": 0.5, "max_increase": 0.1}}
    verdict = ev.decide(CANDIDATE, CHAMPION, thresholds, "classification")
    assert verdict.blessed, verdict.reasons
    assert len(verdict.reasons) == 4 and all(r.startswith("PASS") for r in verdict.reasons)
    verdict = ev.decide(CANDIDATE, CHAMPION, {"roc_auc": {"max_drop": 0.001}}, "classification")
    assert not verdict.blessed and verdict.reasons[0].startswith("FAIL roc_auc drop vs champion = 0.005")
    assert not ev.decide(CANDIDATE, None, {"roc_auc": {"min": 0.9}}, "classification").blessed
    verdict = ev.decide(CANDIDATE, None, {"roc_auc": {"min": 0.8, "max_drop": 0.0}}, "classification")
    assert verdict.blessed and verdict.reasons[1].startswith("SKIP")
    assert not ev.decide(
        {"rmse": 12.0, "r2": 0.9}, {"rmse": 10.0, "r2": 0.9}, {"rmse": {"max_increase": 1.0}}, "regression"
    ).blessed
    assert ev.decide({"rmse": 10.5}, {"rmse": 10.0}, {"rmse": {"max_increase": 1.0}}, "regression").blessed
    verdict = ev.decide({"accuracy": 0.9}, CHAMPION, {"roc_auc": {"min": 0.5}}, "classification")
    assert not verdict.blessed and "could not be computed" in verdict.reasons[0]


@pytest.mark.parametrize(
    "thresholds, message",
    [
        ({"auc": {"min": 0.8}}, "unknown metric 'auc' for classification"),
        ({"roc_auc": {"minimum": 0.8}}, "unknown check\\(s\\) minimum on 'roc_auc'"),
        ({"roc_auc": {"max_increase": 0.1}}, "higher-is-better: bound its regression with max_drop"),
        ({"log_loss": {"max_drop": 0.1}}, "lower-is-better: bound its regression with max_increase"),
        ({"roc_auc": {"min": "high"}}, "must be a number"),
        ({"roc_auc": 0.8}, "must be a dict such as"),
        ({"roc_auc": {"max_drop": -0.1}}, "must be >= 0"),
    ],
)
def test_bad_thresholds_are_named(thresholds, message):
    with pytest.raises(ValueError, match=message):
        ev.decide(CANDIDATE, CHAMPION, thresholds, "classification")


def test_bounded_roc_curve():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 5000)
    scores = np.clip(y * 0.3 + rng.random(5000) * 0.7, 0, 1)
    roc = ev.bounded_roc_curve(y, scores)
    assert 50 < len(roc["fpr"]) <= ev.ROC_POINTS
    assert roc["fpr"][0] == 0.0 and roc["fpr"][-1] == roc["tpr"][-1] == 1.0
    assert all(0.0 <= t <= 1.0 for t in roc["threshold"])
    assert roc["fpr"] == sorted(roc["fpr"]) and roc["threshold"] == sorted(roc["threshold"], reverse=True)


def test_regression_gate_end_to_end(bike_split, sqlite_tracking, model_name, tmp_path):
    weak = sk.train_sklearn(
        train_path=bike_split["train"],
        featurizer_path=bike_split["featurizer"],
        model_path=str(tmp_path / "weak"),
        model_name=model_name,
        estimator="linear_regression",
        seed=0,
        tracking_uri=sqlite_tracking,
    )
    strong = sk.train_sklearn(
        train_path=bike_split["train"],
        featurizer_path=bike_split["featurizer"],
        model_path=str(tmp_path / "strong"),
        model_name=model_name,
        estimator="random_forest",
        hyperparameters={"n_estimators": 30},
        seed=0,
        tracking_uri=sqlite_tracking,
    )
    test = datasets.read_frame(bike_split["test"])
    metrics = score(load_model(strong.model_path), test, "cnt")
    assert set(metrics) == {"rmse", "mae", "r2", "mape"} and metrics["rmse"] > 0

    first = ev.evaluate(
        model_path=weak.model_path,
        test_path=bike_split["test"],
        target_column="cnt",
        model_name=model_name,
        tracking_uri=sqlite_tracking,
    )
    assert first.blessed and first.champion is None and first.candidate_version == weak.version
    tracking.promote(model_name, weak.version, tracking_uri=sqlite_tracking)
    with pytest.raises(ValueError, match="unknown metric 'roc_auc' for regression"):
        ev.evaluate(
            model_path=strong.model_path,
            test_path=bike_split["test"],
            target_column="cnt",
            model_name=model_name,
            thresholds={"roc_auc": {"min": 0.8}},
            tracking_uri=sqlite_tracking,
        )
    outcome = ev.evaluate(
        model_path=strong.model_path,
        test_path=bike_split["test"],
        target_column="cnt",
        model_name=model_name,
        thresholds={"rmse": {"max_increase": 0.0}, "r2": {"min": 0.5}},
        tracking_uri=sqlite_tracking,
    )
    assert outcome.blessed, outcome.verdict.reasons
    assert outcome.candidate.metrics["rmse"] < outcome.champion.metrics["rmse"]
    assert outcome.candidate.confusion_matrix is None and outcome.candidate.roc_curve is None
    assert tracking.get_alias(model_name, "challenger", sqlite_tracking) == strong.version
    assert "| rmse |" in outcome.card and "random_forest" in outcome.card
    # the weak one against the strong champion: not blessed, and the challenger alias stays where it was
    tracking.promote(model_name, strong.version, tracking_uri=sqlite_tracking)
    again = ev.evaluate(
        model_path=weak.model_path,
        test_path=bike_split["test"],
        target_column="cnt",
        model_name=model_name,
        tracking_uri=sqlite_tracking,
    )
    assert not again.blessed
    assert tracking.get_alias(model_name, "challenger", sqlite_tracking) == strong.version


def test_evaluate_names_a_wrong_target_or_missing_column(bike_split, sqlite_tracking, model_name, tmp_path):
    model = sk.train_sklearn(
        train_path=bike_split["train"],
        featurizer_path=bike_split["featurizer"],
        model_path=str(tmp_path / "m"),
        model_name=model_name,
        estimator="linear_regression",
        tracking_uri=sqlite_tracking,
    )
    with pytest.raises(ValueError, match="target column 'class' is not in the test data"):
        ev.evaluate(
            model_path=model.model_path,
            test_path=bike_split["test"],
            target_column="class",
            model_name=model_name,
            tracking_uri=sqlite_tracking,
        )
    datasets.write_frame(datasets.read_frame(bike_split["test"]).drop(columns=["dteday"]), tmp_path / "t.parquet", "")
    with pytest.raises(ValueError, match="lacks the feature column\\(s\\) dteday"):
        ev.evaluate(
            model_path=model.model_path,
            test_path=str(tmp_path / "t.parquet"),
            target_column="cnt",
            model_name=model_name,
            tracking_uri=sqlite_tracking,
        )
    assert tracking.get_alias(model_name, "challenger", sqlite_tracking) is None


def test_multiclass_with_a_rare_class(shared_data, sqlite_tracking, model_name, tmp_path):
    """bike hour.csv's weather situation (1-4) as a class: category 4 has 3 rows in 17,379."""
    import pyarrow.csv as pacsv

    from kfp_ct.components.featurize import core as featurize

    source = shared_data / "bike_sharing" / "hour.csv"
    datasets.write_table(pacsv.read_csv(source), tmp_path / "hour.parquet", str(source))
    split = featurize.featurize(
        dataset_path=str(tmp_path / "hour.parquet"),
        target_column="weathersit",
        train_path=str(tmp_path / "train.parquet"),
        test_path=str(tmp_path / "test.parquet"),
        featurizer_path=str(tmp_path / "featurizer"),
        exclude_columns=["instant"],
    )
    assert split.task == "classification" and split.classes == [1, 2, 3, 4]
    outcome = sk.train_sklearn(
        train_path=str(tmp_path / "train.parquet"),
        featurizer_path=str(tmp_path / "featurizer"),
        model_path=str(tmp_path / "model"),
        model_name=model_name,
        estimator="hist_gradient_boosting",
        hyperparameters={"max_iter": 30},
        tracking_uri=sqlite_tracking,
    )
    result = ev.evaluate(
        model_path=outcome.model_path,
        test_path=str(tmp_path / "test.parquet"),
        target_column="weathersit",
        model_name=model_name,
        thresholds=None,
        tracking_uri=sqlite_tracking,
    )
    assert np.array(result.candidate.confusion_matrix).shape == (4, 4)
    assert result.candidate.roc_curve is None  # a ROC curve is for binary classification
    assert result.candidate.metrics["accuracy"] > 0.5
    model = load_model(outcome.model_path)
    assert set(model.predict(datasets.read_frame(tmp_path / "test.parquet"))) <= {1, 2, 3, 4}
    assert model.predict_proba(datasets.read_frame(tmp_path / "test.parquet")).shape[1] == 4
