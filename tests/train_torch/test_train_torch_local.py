"""ingest, featurize and train_torch under kfp.local: the same executor code that runs in a KFP pod (here on CPU)."""

# no `from __future__ import annotations`: kfp reads the pipeline's annotations as types, not strings
import pytest
from kfp import dsl

from kfp_ct.components._common import model as model_format
from kfp_ct.components._common import tracking

pytestmark = pytest.mark.local


def test_ingest_featurize_train_torch_under_kfp_local(kfp_local, shared_data, tmp_path, monkeypatch):
    from kfp_ct.components.featurize import featurize
    from kfp_ct.components.ingest import ingest
    from kfp_ct.components.train_torch import train_torch

    lines = (shared_data / "elec2" / "elec2.csv").read_text().splitlines()[:2001]
    source = tmp_path / "elec2_slice.csv"
    source.write_text("\n".join(lines) + "\n")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # the default the component falls back on
    monkeypatch.setenv("KFP_CT_THREADS", "1")  # a small shared test machine

    @dsl.pipeline
    def ingest_featurize_train(source_uri: str) -> dsl.Model:
        data = ingest(source_uri=source_uri)
        features = featurize(dataset=data.outputs["dataset"], target_column="class")
        return train_torch(
            train=features.outputs["train"],
            featurizer=features.outputs["featurizer"],
            target_column="class",
            task="classification",
            hyperparameters={"epochs": 3, "hidden_sizes": [64, 64]},
            model_name="local-torch",
        ).outputs["model"]

    run = ingest_featurize_train(source_uri=str(source))
    model = run.outputs["Output"]
    assert model.metadata["framework"] == "torch" and model.metadata["version"] == "1"
    assert model.metadata["roc_auc"] > 0.75
    loaded = model_format.load_model(model.path)
    assert loaded.metadata["train_data"]["source_uri"] == str(source)
    assert tracking.versions("local-torch", uri) == ["1"]
