"""Retraining from the served model's own traffic: featurize learns from the captured rows that have a label (their
input columns and the target; the capture's time kept for the split, not a feature), and refuses captured traffic
without labels, and labels for data that is not captured traffic."""

from __future__ import annotations

import pytest

from kfp_ct.components._common import datasets
from kfp_ct.components._common.featurizer import load_featurizer
from kfp_ct.components.featurize.core import featurize


def _outputs(tmp_path) -> dict:
    return {
        "train_path": str(tmp_path / "train.parquet"),
        "test_path": str(tmp_path / "test.parquet"),
        "featurizer_path": str(tmp_path / "featurizer"),
    }


def test_the_labelled_captured_rows_are_learnt_from(elec2_capture, tmp_path):
    result = featurize(
        dataset_path=elec2_capture["path"],
        target_column="class",
        time_column="time",
        labels_uri=elec2_capture["labels"],
        **_outputs(tmp_path),
    )
    train, test = (datasets.read_frame(tmp_path / f"{split}.parquet") for split in ("train", "test"))
    assert len(train) + len(test) == elec2_capture["labelled"]
    assert set(train.columns) == {*elec2_capture["inputs"], "time", "class"}
    assert train["time"].max() <= test["time"].min()  # split by the capture's time
    labels = result.metadata["labels"]
    assert labels["labelled_rows"] == elec2_capture["labelled"]
    assert labels["unlabelled_rows"] == elec2_capture["rows"] - elec2_capture["labelled"]
    features = [c["name"] for c in load_featurizer(tmp_path / "featurizer").feature_columns]
    assert features == elec2_capture["inputs"]  # not time, request_id, prediction, ...


def test_captured_traffic_without_labels_and_labels_without_captured_traffic_are_refused(
    elec2_capture, elec2_split, tmp_path
):
    with pytest.raises(ValueError, match="is captured traffic, which holds no 'class': pass labels_uri"):
        featurize(dataset_path=elec2_capture["path"], target_column="class", **_outputs(tmp_path))
    with pytest.raises(ValueError, match="labels_uri is for captured traffic.*has no captured predictions"):
        featurize(
            dataset_path=elec2_split["test"],
            target_column="class",
            labels_uri=elec2_capture["labels"],
            **_outputs(tmp_path),
        )
    elsewhere = tmp_path / "elsewhere.csv"
    elsewhere.write_text("request_id,class\nnever-captured,UP\n")
    with pytest.raises(ValueError, match="no captured row .* has a label in .*elsewhere.csv"):
        featurize(
            dataset_path=elec2_capture["path"], target_column="class", labels_uri=str(elsewhere), **_outputs(tmp_path)
        )
    assert not list(tmp_path.glob("train*")) and not (tmp_path / "featurizer").exists()  # nothing left behind
