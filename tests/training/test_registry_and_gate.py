"""Against a real MLflow server: versions registered, aliases moved, the champion found, and the evaluate gate."""

from __future__ import annotations

import uuid

import pytest

from kfp_ct.components._common import datasets, tracking
from kfp_ct.components._common.model import load_model
from kfp_ct.components.evaluate import core as ev
from kfp_ct.components.train_sklearn import core as sk

pytestmark = pytest.mark.integration

WEAK = {"max_iter": 1, "max_leaf_nodes": 2}  # a single stump: a deliberately worse model
STRONG = {"max_iter": 80}


@pytest.fixture(scope="module")
def trained(elec2_split, mlflow_server, tmp_path_factory):
    """A weak and a strong elec2 model, trained and registered on the server: {name: TrainSklearnResult}."""
    name = f"gate-{uuid.uuid4().hex[:8]}"
    out = tmp_path_factory.mktemp("gate")
    return {
        label: sk.train_sklearn(
            train_path=elec2_split["train"],
            featurizer_path=elec2_split["featurizer"],
            model_path=str(out / label),
            model_name=name,
            estimator="hist_gradient_boosting",
            hyperparameters=hp,
            seed=0,
            tracking_uri=mlflow_server,
            train_metadata=elec2_split["result"].train,
        )
        for label, hp in (("weak", WEAK), ("strong", STRONG))
    }


def _registered_under_fresh_name(trained, mlflow_server) -> tuple[str, dict[str, str]]:
    """The trained models registered again under a new name (so each test starts with no aliases)."""
    name = f"gate-{uuid.uuid4().hex[:8]}"
    versions = {
        label: tracking.register_version(name, outcome.model_uri, outcome.run_id, mlflow_server)
        for label, outcome in trained.items()
    }
    return name, versions


def test_versions_aliases_and_champion(trained, mlflow_server, tmp_path):
    weak, strong = trained["weak"], trained["strong"]
    name = load_model(weak.model_path).metadata["model_name"]
    assert tracking.versions(name, mlflow_server) == ["1", "2"] == [weak.version, strong.version]
    assert tracking.version_for_run(name, strong.run_id, mlflow_server) == "2"
    assert tracking.champion(name, mlflow_server) is None
    assert tracking.champion("no-such-model-" + uuid.uuid4().hex, mlflow_server) is None

    assert tracking.promote(name, weak.version, tracking_uri=mlflow_server) is None
    assert tracking.get_alias(name, "champion", mlflow_server) == "1"
    assert tracking.promote(name, strong.version, tracking_uri=mlflow_server) == "1"  # the alias moved
    version, path = tracking.champion(name, mlflow_server, dst=tmp_path / "champion")
    assert version == "2"
    champion = load_model(path)
    assert champion.metadata["mlflow_run_id"] == strong.run_id
    assert champion.metadata["hyperparameters"]["max_iter"] == 80
    with pytest.raises(Exception, match="(?i)not found|does not exist|RESOURCE_DOES_NOT_EXIST"):
        tracking.promote(name, "99", tracking_uri=mlflow_server)
    assert tracking.get_alias(name, "champion", mlflow_server) == "2"


def test_a_worse_challenger_is_not_blessed(trained, mlflow_server, elec2_split):
    name, versions = _registered_under_fresh_name(trained, mlflow_server)
    tracking.promote(name, versions["strong"], tracking_uri=mlflow_server)
    outcome = ev.evaluate(
        model_path=trained["weak"].model_path,
        test_path=elec2_split["test"],
        target_column="class",
        model_name=name,
        tracking_uri=mlflow_server,
    )
    assert not outcome.blessed
    assert outcome.candidate.metrics["roc_auc"] < outcome.champion.metrics["roc_auc"]
    assert outcome.candidate_version == versions["weak"] and outcome.champion_version == versions["strong"]
    assert "primary metric (roc_auc)" in outcome.verdict.rule and outcome.verdict.reasons[0].startswith("FAIL")
    assert tracking.get_alias(name, "challenger", mlflow_server) is None
    # with a tolerated drop far larger than the gap it would pass; with a small one it does not
    small = ev.evaluate(
        model_path=trained["weak"].model_path,
        test_path=elec2_split["test"],
        target_column="class",
        model_name=name,
        thresholds={"roc_auc": {"max_drop": 0.01}},
        tracking_uri=mlflow_server,
    )
    assert not small.blessed and "FAIL roc_auc drop" in small.verdict.reasons[0]
    assert tracking.get_alias(name, "challenger", mlflow_server) is None


def test_a_better_challenger_is_blessed(trained, mlflow_server, elec2_split, tmp_path):
    from kfp import dsl

    from kfp_ct.components.evaluate import evaluate

    name, versions = _registered_under_fresh_name(trained, mlflow_server)
    tracking.promote(name, versions["weak"], tracking_uri=mlflow_server)
    model = dsl.Model(uri=trained["strong"].model_path)  # its metadata names another model: found by run id
    test = dsl.Dataset(uri=elec2_split["test"], metadata=dict(elec2_split["result"].test))
    outputs = {
        "metrics": dsl.Metrics(uri=str(tmp_path / "metrics")),
        "classification_metrics": dsl.ClassificationMetrics(uri=str(tmp_path / "cm")),
        "model_card": dsl.Markdown(uri=str(tmp_path / "card.md")),
    }
    blessed = evaluate.python_func(
        model=model,
        test=test,
        target_column="class",
        model_name=name,
        thresholds={"roc_auc": {"min": 0.8, "max_drop": 0.0}, "log_loss": {"max": 0.6}},
        tracking_uri=mlflow_server,
        **outputs,
    )
    assert blessed is True
    assert tracking.get_alias(name, "challenger", mlflow_server) == versions["strong"]
    assert tracking.get_alias(name, "champion", mlflow_server) == versions["weak"]  # promotion is push's job
    metrics = outputs["metrics"].metadata
    assert metrics["blessed"] == 1.0 and metrics["roc_auc"] > metrics["champion_roc_auc"]
    cm = outputs["classification_metrics"].metadata
    assert cm["confusionMatrix"]["annotationSpecs"] == [{"displayName": "DOWN"}, {"displayName": "UP"}]
    assert sum(map(sum, (row["row"] for row in cm["confusionMatrix"]["rows"]))) == len(
        datasets.read_frame(elec2_split["test"])
    )
    assert 2 <= len(cm["confidenceMetrics"]) <= ev.ROC_POINTS
    card = open(outputs["model_card"].path).read()
    assert "**Verdict: BLESSED**" in card and "| roc_auc |" in card and f"Champion: version {versions['weak']}" in card
    assert "every threshold passes (absolute and relative to the champion)" in card
    assert elec2_split["result"].test["sha256"] in card
    assert outputs["model_card"].metadata["version"] == versions["strong"]


def test_no_champion_and_below_threshold_is_not_blessed(trained, mlflow_server, elec2_split):
    name, versions = _registered_under_fresh_name(trained, mlflow_server)
    outcome = ev.evaluate(
        model_path=trained["strong"].model_path,
        test_path=elec2_split["test"],
        target_column="class",
        model_name=name,
        thresholds={"roc_auc": {"min": 0.999, "max_drop": 0.0}},
        tracking_uri=mlflow_server,
    )
    assert not outcome.blessed and outcome.champion is None
    assert outcome.verdict.rule == "every threshold passes (absolute only: no champion)"
    assert outcome.verdict.reasons[0].startswith("FAIL roc_auc")
    assert outcome.verdict.reasons[1] == "SKIP roc_auc max_drop: no champion to compare with"
    assert "No champion: no comparison." in outcome.card and "NOT BLESSED" in outcome.card
    assert tracking.get_alias(name, "challenger", mlflow_server) is None
    # no champion and no thresholds: the first model is blessed
    first = ev.evaluate(
        model_path=trained["weak"].model_path,
        test_path=elec2_split["test"],
        target_column="class",
        model_name=name,
        thresholds=None,
        tracking_uri=mlflow_server,
    )
    assert first.blessed and tracking.get_alias(name, "challenger", mlflow_server) == versions["weak"]


def test_bad_input_registers_nothing_on_the_server(elec2_split, mlflow_server, tmp_path):
    import pandas as pd

    name = f"bad-{uuid.uuid4().hex[:8]}"
    with pytest.raises(ValueError, match="unknown hyperparameter\\(s\\) for random_forest: learning_rate"):
        sk.train_sklearn(
            train_path=elec2_split["train"],
            featurizer_path=elec2_split["featurizer"],
            model_path=str(tmp_path / "m"),
            model_name=name,
            estimator="random_forest",
            hyperparameters={"learning_rate": 0.1},
            tracking_uri=mlflow_server,
        )
    one_class = datasets.read_frame(elec2_split["train"])
    datasets.write_frame(one_class[one_class["class"] == "DOWN"], tmp_path / "down.parquet", "test")
    with pytest.raises(ValueError, match="single class \\('DOWN'\\)"):
        sk.train_sklearn(
            train_path=str(tmp_path / "down.parquet"),
            featurizer_path=elec2_split["featurizer"],
            model_path=str(tmp_path / "m"),
            model_name=name,
            tracking_uri=mlflow_server,
        )
    datasets.write_frame(pd.DataFrame(columns=one_class.columns), tmp_path / "empty.parquet", "test")
    with pytest.raises(ValueError, match="has no rows"):
        sk.train_sklearn(
            train_path=str(tmp_path / "empty.parquet"),
            featurizer_path=elec2_split["featurizer"],
            model_path=str(tmp_path / "m"),
            model_name=name,
            tracking_uri=mlflow_server,
        )
    assert tracking.versions(name, mlflow_server) == []
    assert not (tmp_path / "m").exists()


def test_a_champion_that_cannot_score_the_test_set_is_named(trained, mlflow_server, bike_split, tmp_path):
    name, versions = _registered_under_fresh_name(trained, mlflow_server)
    tracking.promote(name, versions["strong"], tracking_uri=mlflow_server)  # an elec2 classifier
    bike = sk.train_sklearn(
        train_path=bike_split["train"],
        featurizer_path=bike_split["featurizer"],
        model_path=str(tmp_path / "bike"),
        model_name=name,
        estimator="linear_regression",
        tracking_uri=mlflow_server,
    )
    with pytest.raises(
        ValueError,
        match=f"the champion \\(version {versions['strong']} of '{name}'\\) is a "
        "classification model; the candidate is a regression model",
    ):
        ev.evaluate(
            model_path=bike.model_path,
            test_path=bike_split["test"],
            target_column="cnt",
            model_name=name,
            tracking_uri=mlflow_server,
        )
    assert tracking.get_alias(name, "challenger", mlflow_server) is None
