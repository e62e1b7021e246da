"""The catalog's pipelines, every task in the component image under kfp.local.DockerRunner, on real data; their
outputs are checked as the SubprocessRunner tests check them (tests/pipelines)."""

import shutil
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.containers
ELEC2_ROWS = 3000


def run_in_containers(pipeline, arguments: dict, root: Path):
    """Runs `pipeline` with the DockerRunner that `docker_local` set up, and summarizes what each task wrote."""
    from kfp_ct.pipelines import local_run

    local_run._read_unset_defaults_as_none()  # optional parameters left at None, as on a cluster
    before = set(root.iterdir())
    pipeline(**arguments)
    (run_dir,) = [p for p in set(root.iterdir()) - before if any(p.glob("*/executor_output.json"))]
    return local_run.summarize(pipeline, run_dir)


def elec2_slice(shared_data, root: Path, rows: int | None = None) -> Path:
    """elec2 (or its first `rows` rows) inside the pipeline root: the only host folder a task's container sees."""
    source = root / "inputs" / "elec2.csv"
    source.parent.mkdir(exist_ok=True)
    if rows is None:
        shutil.copy(shared_data / "elec2" / "elec2.csv", source)
    else:
        lines = (shared_data / "elec2" / "elec2.csv").read_text().splitlines()[: rows + 1]
        source.write_text("\n".join(lines) + "\n")
    return source


def test_data_pipeline_in_containers(docker_local, shared_data):
    from kfp_ct.pipelines.data import data_pipeline

    source = elec2_slice(shared_data, docker_local)
    summary = run_in_containers(data_pipeline, {"source_uri": str(source), "target_column": "class"}, docker_local)

    assert summary.task("ingest").artifacts["dataset"]["metadata"]["rows"] == 45312
    features = summary.task("featurize").artifacts
    train, test = pd.read_parquet(features["train"]["uri"]), pd.read_parquet(features["test"]["uri"])
    assert len(train) + len(test) == 45312
    assert abs((train["class"] == "UP").mean() - (test["class"] == "UP").mean()) < 0.01  # stratified
    assert Path(features["featurizer"]["uri"]).is_dir()
    assert Path(summary.task("validate").artifacts["schema"]["uri"]).is_file()


def test_training_pipeline_in_containers(docker_local, shared_data):
    from kfp_ct.components._common import tracking
    from kfp_ct.components._common.model import load_model
    from kfp_ct.pipelines.training import training_pipeline

    source = elec2_slice(shared_data, docker_local, ELEC2_ROWS)
    tracking_uri = f"sqlite:///{docker_local / 'mlflow.db'}"  # in the mounted root: every task's container sees it
    models = docker_local / "models"
    summary = run_in_containers(
        training_pipeline,
        {
            "source_uri": str(source),
            "target_column": "class",
            "model_name": "elec2-containers",
            "framework": "sklearn",
            "estimator": "hist_gradient_boosting",
            "hyperparameters": {"max_iter": 30},
            "thresholds": {"roc_auc": {"min": 0.6}},
            "tracking_uri": tracking_uri,
            "push_target": "local",
            "storage_uri": f"file://{models}",
        },
        docker_local,
    )

    trained = summary.task("train-sklearn").artifacts["model"]
    model = load_model(trained["uri"])
    assert model.metadata["estimator"] == "hist_gradient_boosting"
    assert model.metadata["train_data"]["source_uri"] == str(source)
    assert summary.task("evaluate").artifacts["metrics"]["metadata"]["roc_auc"] >= 0.6
    assert summary.task("evaluate").parameters["Output"] is True
    pushed = summary.task("push")
    assert pushed.parameters["Output"].endswith("/v1/models/elec2-containers:predict")
    assert list(models.rglob("MLmodel")), f"no model version published under {models}"
    assert tracking.get_alias("elec2-containers", tracking.CHAMPION, tracking_uri) == "1"
