"""Fail closed, against a real MLflow server: a run's bad parameters, a mistyped or unreachable registry and a push
that fails after publishing leave the registry (models, versions, aliases, experiments, runs) and the model storage
exactly as they were."""

from __future__ import annotations

import os

import pytest
from elec2_serving import train_elec2
from loopback import free_port

from kfp_ct.components._common import tracking
from kfp_ct.components.preflight.core import preflight
from kfp_ct.components.push.core import push
from kfp_ct.components.train_sklearn.core import train_sklearn

pytestmark = pytest.mark.integration


def _quiet(message: str) -> None:
    pass


def registry_state(uri: str) -> dict:
    """Everything a run could change in the registry: models with their aliases, versions, experiments and runs."""
    client = tracking.client(uri)
    models = {m.name: dict(m.aliases) for m in client.search_registered_models()}
    versions = sorted((v.name, v.version, v.source, v.run_id) for v in client.search_model_versions())
    experiments = client.search_experiments()
    runs = sorted(
        (r.info.run_id, r.info.status)
        for r in client.search_runs([e.experiment_id for e in experiments], max_results=1000)
    )
    return {"models": models, "versions": versions, "experiments": sorted(e.name for e in experiments), "runs": runs}


def storage_listing(folder) -> list[str]:
    """Every file and folder under `folder`, hidden ones too."""
    found = []
    for root, dirs, files in os.walk(folder):
        found += [os.path.relpath(os.path.join(root, name), folder) for name in dirs + files]
    return sorted(found)


@pytest.fixture(scope="module")
def served(mlflow_server, shared_data, tmp_path_factory) -> dict:
    """A model trained against the real server, pushed once (so a champion and a published version exist)."""
    out = tmp_path_factory.mktemp("fail_closed")
    model = train_elec2(out, mlflow_server, "elec2-fail-closed", shared_data)
    store = out / "store"
    push(
        model_dir=model["path"],
        model_name="elec2-fail-closed",
        storage_uri=str(store),
        tracking_uri=mlflow_server,
        log=_quiet,
    )
    return {**model, "store": store}


BAD_RUNS = {
    "unknown threshold metric": ({"thresholds": {"rmse": {"max": 1.0}}}, "unknown metric 'rmse' for classification"),
    "path-like model name": ({"model_name": "../../etc"}, "'../../etc' cannot name an InferenceService"),
    "invalid model name": ({"model_name": "Model_Name!"}, "'Model_Name!' cannot name an InferenceService"),
    "bad data scheme": ({"data_uris": {"source_uri": "ftp://host/data.csv"}}, "unsupported scheme 'ftp'"),
    "bad storage scheme": ({"storage_uri": "http://host/models"}, "storage_uri 'http://host/models'"),
    "kserve on a path": ({"push_target": "kserve", "storage_uri": "models"}, "expected gs://, s3://, minio://"),
    "unknown framework": ({"framework": "xgboost"}, "unknown framework 'xgboost'"),
}


@pytest.mark.parametrize("case", sorted(BAD_RUNS))
def test_preflight_refuses_a_bad_run_and_changes_nothing(served, mlflow_server, case):
    change, message = BAD_RUNS[case]
    arguments = {
        "data_uris": {"source_uri": "gs://bucket/data.csv"},
        "target_column": "class",
        "task": "classification",
        "framework": "sklearn",
        "model_name": "elec2-fail-closed",
        "thresholds": {"roc_auc": {"min": 0.5}},
        "push_target": "local",
        "storage_uri": str(served["store"]),
        "tracking_uri": mlflow_server,
        "registry": "existing",
    }
    assert preflight(**arguments).checked  # the unchanged arguments pass
    before = registry_state(mlflow_server), storage_listing(served["store"])
    with pytest.raises(ValueError, match="preflight found 1 problem") as err:
        preflight(**{**arguments, **change})
    assert message in str(err.value)
    assert (registry_state(mlflow_server), storage_listing(served["store"])) == before


def test_preflight_names_every_problem_at_once(tmp_path):
    with pytest.raises(ValueError) as err:
        preflight(
            task="classification",
            model_name="../../etc",
            thresholds={"rmse": {"max": 1}},
            tracking_uri=f"sqlite:///{tmp_path}/mistyped/mlflow.db",
            registry="create",
        )
    text = str(err.value)
    assert "3 problem(s)" in text and "'../../etc'" in text and "'rmse'" in text and "does not exist" in text


@pytest.mark.parametrize("kind", ["missing sqlite file", "server that does not answer"])
def test_a_mistyped_or_unreachable_registry_is_an_error_not_a_new_registry(tmp_path, kind):
    if kind == "missing sqlite file":
        uri, expected = f"sqlite:///{tmp_path / 'mlfow.db'}", FileNotFoundError
    else:
        uri, expected = f"http://127.0.0.1:{free_port()}", ConnectionError
    with pytest.raises(expected, match="MLflow registry"):
        tracking.check_registry(uri)
    with pytest.raises(ValueError, match="does not answer|does not exist"):
        preflight(tracking_uri=uri, registry="existing")
    assert storage_listing(tmp_path) == []


@pytest.mark.parametrize("kind", ["missing sqlite file", "server that does not answer", "another registry"])
def test_push_to_a_wrong_registry_publishes_and_registers_nothing(served, mlflow_server, tmp_path, kind):
    if kind == "missing sqlite file":
        uri, expected = f"sqlite:///{tmp_path / 'mlfow.db'}", "does not exist"
    elif kind == "server that does not answer":
        uri, expected = f"http://127.0.0.1:{free_port()}", "does not answer"
    else:  # a real, empty registry: it does not know the model's training run
        uri, expected = f"sqlite:///{tmp_path / 'other.db'}", "is not known to the registry"
        tracking.client(uri).search_registered_models()  # creates it
    listing = storage_listing(tmp_path)
    before = registry_state(mlflow_server), storage_listing(served["store"])
    with pytest.raises((FileNotFoundError, ConnectionError, LookupError), match=expected):
        push(
            model_dir=served["path"],
            model_name="elec2-fail-closed",
            storage_uri=str(served["store"]),
            tracking_uri=uri,
            log=_quiet,
        )
    assert storage_listing(tmp_path) == listing  # no sqlite file was created
    assert (registry_state(mlflow_server), storage_listing(served["store"])) == before


def test_push_with_an_invalid_name_changes_nothing(served, mlflow_server):
    before = registry_state(mlflow_server), storage_listing(served["store"])
    for name in ("../../etc", "Model_Name!"):
        with pytest.raises(ValueError, match="cannot name an InferenceService"):
            push(
                model_dir=served["path"],
                model_name=name,
                storage_uri=str(served["store"]),
                tracking_uri=mlflow_server,
                log=_quiet,
            )
    assert (registry_state(mlflow_server), storage_listing(served["store"])) == before


def test_push_failing_after_publishing_withdraws_the_published_version(served, mlflow_server):
    """The registry refuses to promote (the version named in the model artifact does not exist) after the version
    was published and validated: the published copy is withdrawn, and no alias moved."""
    before = registry_state(mlflow_server), storage_listing(served["store"])
    logged = []
    with pytest.raises(Exception, match="999"):
        push(
            model_dir=served["path"],
            model_name="elec2-fail-closed",
            storage_uri=str(served["store"]),
            tracking_uri=mlflow_server,
            registered_version="999",
            log=logged.append,
        )
    assert any(line.startswith("published ") for line in logged)  # it failed after publishing
    assert any("withdrew" in line for line in logged)
    assert (registry_state(mlflow_server), storage_listing(served["store"])) == before


def test_a_trainer_refuses_a_path_like_model_name_before_any_run(served, mlflow_server, tmp_path):
    before = registry_state(mlflow_server)
    out = os.path.dirname(served["path"])
    for name in ("../../etc", "a/b", "x:y", ""):
        with pytest.raises(ValueError, match="cannot name a registered model"):
            train_sklearn(
                train_path=os.path.join(out, "train.parquet"),
                featurizer_path=os.path.join(out, "featurizer"),
                model_path=str(tmp_path / "model"),
                model_name=name,
                hyperparameters={"max_iter": 5},
                tracking_uri=mlflow_server,
            )
    assert registry_state(mlflow_server) == before
    assert not (tmp_path / "model").exists()
