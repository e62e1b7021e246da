"""The push component: its Python function with KFP artifacts, and under kfp.local (the executor of a KFP pod)."""

# no `from __future__ import annotations`: kfp reads the pipeline's annotations as types, not strings
import pytest
import yaml
from kfp import dsl

from kfp_ct.components._common import storage, tracking
from kfp_ct.components.push import manifests


@pytest.mark.integration
def test_component_python_func(trained_model, tmp_path):
    from kfp_ct.components.push import push

    model = dsl.Model(uri=trained_model["path"], metadata={"version": trained_model["version"]})
    manifest = dsl.Artifact(uri=str(tmp_path / "manifest.yaml"))
    report = dsl.HTML(uri=str(tmp_path / "canary.html"))
    metrics = dsl.Metrics(uri=str(tmp_path / "metrics"))
    url = push.python_func(
        model=model,
        model_name="elec2-component",
        manifest=manifest,
        canary_report=report,
        metrics=metrics,
        storage_uri=str(tmp_path / "store"),
        tracking_uri=trained_model["tracking_uri"],
        deployment_mode="RawDeployment",
        gpu_count=1,
        memory_limit="3Gi",
    )
    assert (
        url == "http://elec2-component-predictor.kubeflow-user-example-com.svc.cluster.local/v1/models/"
        "elec2-component:predict"
    )
    applied = yaml.safe_load((tmp_path / "manifest.yaml").read_text())
    assert manifests.crd_errors(applied) == []
    assert applied["spec"]["predictor"]["model"]["resources"]["limits"] == {
        "cpu": "2",
        "memory": "3Gi",
        "nvidia.com/gpu": "1",
    }
    assert manifest.metadata["url"] == url and manifest.metadata["target"] == "local"
    assert manifest.metadata["canary_analysis"] == {"skipped": "canary_bake_s is 0: no canary analysis"}
    assert "No canary analysis" in (tmp_path / "canary.html").read_text()
    assert manifest.metadata["storage_uri"] in storage.list_versions(str(tmp_path / "store"))
    assert (
        tracking.get_alias(trained_model["registered"], "champion", trained_model["tracking_uri"])
        == trained_model["version"]
    )


@pytest.mark.local
def test_push_under_kfp_local(kfp_local, trained_model, tmp_path, monkeypatch):
    from kfp_ct.components.push import push

    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained_model["tracking_uri"])
    store = str(tmp_path / "store")

    @dsl.pipeline
    def push_model(model_uri: str, store: str) -> str:
        imported = dsl.importer(artifact_uri=model_uri, artifact_class=dsl.Model, reimport=False)
        pushed = push(model=imported.output, model_name="elec2-local", storage_uri=store)
        return pushed.outputs["Output"]

    task = push_model(model_uri=trained_model["path"], store=store)
    assert task.output == "http://elec2-local.kubeflow-user-example-com.svc.cluster.local/v1/models/elec2-local:predict"
    assert len(storage.list_versions(store)) == 1
    assert (
        tracking.get_alias(trained_model["registered"], "champion", trained_model["tracking_uri"])
        == trained_model["version"]
    )
