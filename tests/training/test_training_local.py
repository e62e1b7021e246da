"""featurize, train_sklearn and evaluate under kfp.local: the same executor code that runs in a KFP pod."""

# no `from __future__ import annotations`: kfp reads the pipeline's annotations as types, not strings
from typing import NamedTuple

import pytest
from kfp import dsl

from kfp_ct.components._common import tracking
from kfp_ct.components._common.model import load_model

pytestmark = pytest.mark.local


def test_featurize_train_evaluate_under_kfp_local(kfp_local, shared_data, tmp_path, monkeypatch):
    from kfp_ct.components.evaluate import evaluate
    from kfp_ct.components.featurize import featurize
    from kfp_ct.components.ingest import ingest
    from kfp_ct.components.train_sklearn import train_sklearn

    lines = (shared_data / "elec2" / "elec2.csv").read_text().splitlines()[:3001]
    source = tmp_path / "elec2_slice.csv"
    source.write_text("\n".join(lines) + "\n")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # the default the components fall back on

    class Outputs(NamedTuple):
        train: dsl.Dataset
        featurizer: dsl.Model
        model: dsl.Model
        metrics: dsl.Metrics
        card: dsl.Markdown
        blessed: bool

    @dsl.pipeline
    def featurize_train_evaluate(source_uri: str, model_name: str) -> Outputs:
        data = ingest(source_uri=source_uri)
        features = featurize(
            dataset=data.outputs["dataset"], target_column="class", time_column="date", exclude_columns=["date"]
        )
        trained = train_sklearn(
            train=features.outputs["train"],
            featurizer=features.outputs["featurizer"],
            target_column="class",
            task="classification",
            estimator="random_forest",
            hyperparameters={"n_estimators": 40},
            model_name=model_name,
        )
        verdict = evaluate(
            model=trained.outputs["model"],
            test=features.outputs["test"],
            target_column="class",
            model_name=model_name,
            thresholds={"roc_auc": {"min": 0.6}},
            slices=["day", "date=0"],  # date: not a feature, yet in the test split (the latest rows: none is 0)
            sensitive_columns=["day"],
        )
        return Outputs(
            train=features.outputs["train"],
            featurizer=features.outputs["featurizer"],
            model=trained.outputs["model"],
            metrics=verdict.outputs["metrics"],
            card=verdict.outputs["model_card"],
            blessed=verdict.outputs["Output"],
        )

    run = featurize_train_evaluate(source_uri=str(source), model_name="local-elec2")
    assert run.outputs["train"].metadata["rows"] == 2400
    assert run.outputs["featurizer"].metadata["classes"] == ["DOWN", "UP"]
    model = load_model(run.outputs["model"].path)
    assert model.metadata["estimator"] == "random_forest" and "date" not in model.featurizer.feature_names
    assert model.metadata["train_data"]["source_uri"] == str(source)
    assert run.outputs["model"].metadata["version"] == "1"
    assert run.outputs["blessed"] is True
    assert run.outputs["metrics"].metadata["roc_auc"] >= 0.6
    metrics = run.outputs["metrics"].metadata
    assert {f"slice_day_{day}_roc_auc" for day in range(1, 8)} <= set(metrics) and metrics["failed_slices"] == 0
    assert metrics["slice_date_0_rows"] == 0  # a filter matching no row: shown, skipped
    assert 0 <= metrics["fairness_day_equalized_odds_difference"] == metrics["equalized_odds_difference"] <= 1
    with open(run.outputs["card"].path) as f:
        card = f.read()
    assert "**Verdict: BLESSED**" in card and "### `day`" in card and "## Fairness" in card
    assert run.outputs["card"].metadata["failed_slices"] == []
    assert tracking.versions("local-elec2", uri) == ["1"]
    assert tracking.get_alias("local-elec2", "challenger", uri) == "1"
