"""Inside a pod (KUBERNETES_SERVICE_HOST set) each pipeline step is a pod of its own: a registry in a local file would
die with the step. A local or missing tracking URI fails the first registry step before anything is fitted or
written, naming the `tracking_uri` parameter and the Secret key that set it."""

from __future__ import annotations

import re

import pytest

from kfp_ct.components._common import tracking
from kfp_ct.components._common.credentials import SECRET_NAME
from kfp_ct.components.evaluate import core as ev
from kfp_ct.components.train_sklearn import core as sk


@pytest.fixture
def pod(tmp_path, monkeypatch):
    """A pod-like working folder: the Kubernetes service env, no MLFLOW_TRACKING_URI; yields the folder."""
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv(tracking.LOCAL_RUN, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_a_local_run_in_a_pod_keeps_its_local_registry(pod, monkeypatch):
    """kfp-ct run or demo in a Kubeflow notebook server: every step on this machine, one sqlite file for all."""
    monkeypatch.setenv(tracking.LOCAL_RUN, "1")
    assert tracking.resolve_uri() == f"sqlite:///{pod / tracking.DEFAULT_DB}"
    monkeypatch.delenv(tracking.LOCAL_RUN)
    with pytest.raises(ValueError, match=_refused("no tracking URI is set")):
        tracking.resolve_uri()


def _refused(reason: str) -> str:
    return (
        re.escape(reason) + r".*inside a Kubernetes pod.*parameter `tracking_uri`.*"
        r"MLFLOW_TRACKING_URI of the Secret `" + re.escape(SECRET_NAME) + "`"
    )


def test_training_in_a_pod_without_tracking_uri_fails_before_anything_is_written(pod, elec2_split, model_name):
    model = pod / "outputs" / "model"
    with pytest.raises(ValueError, match=_refused("no tracking URI is set")):
        sk.train_sklearn(
            train_path=elec2_split["train"],
            featurizer_path=elec2_split["featurizer"],
            model_path=str(model),
            model_name=model_name,
            train_metadata={"uri": "x"},
        )
    assert sorted(p.name for p in pod.iterdir()) == [], "the failed step left files behind"


@pytest.mark.parametrize(
    "uri", ["sqlite:///mlflow.db", "sqlite:////mnt/registry/mlflow.db", "file:///tmp/mlruns", "mlruns"]
)
def test_a_local_tracking_uri_is_refused_in_a_pod(pod, uri, elec2_split, model_name):
    with pytest.raises(ValueError, match=_refused(f"the tracking URI {uri} is a local file")):
        sk.train_sklearn(
            train_path=elec2_split["train"],
            featurizer_path=elec2_split["featurizer"],
            model_path=str(pod / "model"),
            model_name=model_name,
            tracking_uri=uri,
        )
    assert list(pod.iterdir()) == []


def test_the_secrets_tracking_uri_is_honoured_in_a_pod(pod, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.kubeflow.svc.cluster.local:5000")
    assert tracking.resolve_uri() == "http://mlflow.kubeflow.svc.cluster.local:5000"
    assert tracking.resolve_uri("https://mlflow.example.com") == "https://mlflow.example.com"


def test_evaluate_in_a_pod_without_tracking_uri_fails_naming_the_parameter(
    pod, elec2_split, sqlite_tracking, model_name
):
    """A model trained elsewhere (a local registry), evaluated in a pod with no tracking URI: the registry step
    refuses instead of finding no champion in an empty per-pod registry."""
    with pytest.MonkeyPatch.context() as outside:
        outside.delenv("KUBERNETES_SERVICE_HOST")
        outcome = sk.train_sklearn(
            train_path=elec2_split["train"],
            featurizer_path=elec2_split["featurizer"],
            model_path=str(pod.parent / f"{pod.name}-model"),
            model_name=model_name,
            hyperparameters={"max_iter": 5},
            tracking_uri=sqlite_tracking,
        )
    with pytest.raises(ValueError, match=_refused("no tracking URI is set")):
        ev.evaluate(
            model_path=outcome.model_path, test_path=elec2_split["test"], target_column="class", model_name=model_name
        )
    assert list(pod.iterdir()) == []


def test_outside_a_pod_the_default_is_a_sqlite_file_in_the_working_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    assert tracking.resolve_uri() == f"sqlite:///{tmp_path / 'mlflow.db'}"
