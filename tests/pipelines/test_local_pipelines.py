"""Whole pipelines under kfp.local (SubprocessRunner, use_venv=False) on the real datasets."""

from pathlib import Path

import pandas as pd
import pytest
from kfp import components, dsl

from kfp_ct.pipelines import PIPELINES
from kfp_ct.pipelines.local_run import run_local

pytestmark = pytest.mark.local
COMPILED = Path(__file__).resolve().parents[2] / "compiled" / "components"
BIKE_LEAKS = ["instant", "casual", "registered"]  # cnt = casual + registered; instant is the row number


def _rows(artifact: dict) -> int:
    return artifact["metadata"]["rows"]


def test_data_pipeline_on_bike_sharing(kfp_local, shared_data):
    summary = run_local(
        PIPELINES["data_pipeline"],
        {
            "source_uri": str(shared_data / "bike_sharing" / "hour.csv"),
            "target_column": "cnt",
            "exclude_columns": BIKE_LEAKS,
            "time_column": "dteday",
        },
        kfp_local,
    )
    assert _rows(summary.task("ingest").artifacts["dataset"]) == 17379
    features = summary.task("featurize").artifacts
    assert _rows(features["train"]) + _rows(features["test"]) == 17379
    train, test = pd.read_parquet(features["train"]["uri"]), pd.read_parquet(features["test"]["uri"])
    assert train["dteday"].max() <= test["dteday"].min()  # split by time: the test split is the latest fifth
    assert Path(features["featurizer"]["uri"]).is_dir()
    assert summary.task("validate").artifacts["schema"]["uri"]
    assert summary.index.is_file()


def test_data_pipeline_on_elec2(kfp_local, shared_data):
    summary = run_local(
        PIPELINES["data_pipeline"],
        {"source_uri": str(shared_data / "elec2" / "elec2.csv"), "target_column": "class"},
        kfp_local,
    )
    features = summary.task("featurize").artifacts
    train, test = pd.read_parquet(features["train"]["uri"]), pd.read_parquet(features["test"]["uri"])
    assert len(train) + len(test) == 45312
    # stratified: both splits keep the class balance
    assert abs((train["class"] == "UP").mean() - (test["class"] == "UP").mean()) < 0.01


def test_a_users_pipeline_built_from_the_compiled_yaml(kfp_local, shared_data):
    ingest = components.load_component_from_file(str(COMPILED / "ingest.yaml"))
    validate = components.load_component_from_file(str(COMPILED / "validate.yaml"))
    featurize = components.load_component_from_file(str(COMPILED / "featurize.yaml"))

    @dsl.pipeline(name="users-pipeline")
    def users_pipeline(uri: str):
        data = ingest(source_uri=uri, time_column="day_index", start="0", end="200")
        validate(dataset=data.outputs["dataset"], target_column="class")
        featurize(dataset=data.outputs["dataset"], target_column="class", test_fraction=0.25)

    summary = run_local(users_pipeline, {"uri": str(shared_data / "elec2" / "elec2_enriched.csv.gz")}, kfp_local)
    features = summary.task("featurize").artifacts
    assert _rows(features["train"]) + _rows(features["test"]) == _rows(summary.task("ingest").artifacts["dataset"])


@pytest.mark.parametrize(
    "name,error",
    [
        ("missing_target.csv", "target column 'class'"),
        ("one_class.csv", "class"),
    ],
)
def test_bad_data_stops_the_pipeline_before_featurize(kfp_local, tmp_path, shared_data, name, error):
    frame = pd.read_csv(shared_data / "elec2" / "elec2.csv", nrows=2000)
    if name == "missing_target.csv":
        frame = frame.drop(columns=["class"])
    else:
        frame["class"] = "UP"
    source = tmp_path / name
    frame.to_csv(source, index=False)
    with pytest.raises(RuntimeError, match="validate"):
        run_local(PIPELINES["data_pipeline"], {"source_uri": str(source), "target_column": "class"}, kfp_local)
    assert not list(Path(kfp_local).rglob("featurize/train"))
    # the failed validation wrote its report (why it failed) and no schema
    reports = [p for p in Path(kfp_local).rglob("validate/report") if "FAILED" in p.read_text()]
    assert reports and not [p for p in Path(kfp_local).rglob("validate/schema") if p.parent == reports[0].parent]
