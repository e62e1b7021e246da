"""The trainers refuse a target with more classes than max_classes, before any fitting, naming the column."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from kfp_ct.components._common import datasets, tracking
from kfp_ct.components.featurize import core as featurize


@pytest.fixture(scope="module")
def many_classes(tmp_path_factory):
    """A train split and featurizer whose string target 'label' has 150 classes (two rows each)."""
    root = tmp_path_factory.mktemp("many")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=600), "label": [f"class{i % 150}" for i in range(600)]})
    datasets.write_frame(frame, root / "data.parquet", "test")
    featurize.featurize(
        dataset_path=str(root / "data.parquet"),
        target_column="label",
        train_path=str(root / "train"),
        test_path=str(root / "test"),
        featurizer_path=str(root / "featurizer"),
    )
    return {"train": str(root / "train"), "featurizer": str(root / "featurizer")}


def _trainer(framework: str):
    if framework == "sklearn":
        from kfp_ct.components.train_sklearn.core import train_sklearn

        return train_sklearn
    if framework == "torch":
        from kfp_ct.components.train_torch.core import train_torch

        return train_torch
    from kfp_ct.components.train_keras.core import train_keras

    return train_keras


@pytest.mark.parametrize("framework", ["sklearn", "torch", "keras"])
def test_too_many_classes_are_refused_before_fitting(many_classes, sqlite_tracking, model_name, tmp_path, framework):
    train = _trainer(framework)
    started = time.monotonic()
    with pytest.raises(ValueError, match=r"target column 'label' has 150 classes, more than max_classes=100"):
        train(
            train_path=many_classes["train"],
            featurizer_path=many_classes["featurizer"],
            model_path=str(tmp_path / "m"),
            model_name=model_name,
            tracking_uri=sqlite_tracking,
        )
    with pytest.raises(ValueError, match=r"target column 'label' has 150 classes, more than max_classes=149"):
        train(
            train_path=many_classes["train"],
            featurizer_path=many_classes["featurizer"],
            model_path=str(tmp_path / "m"),
            model_name=model_name,
            tracking_uri=sqlite_tracking,
            max_classes=149,
        )
    assert time.monotonic() - started < 30  # refused before any fitting
    assert not (tmp_path / "m").exists() and tracking.versions(model_name, sqlite_tracking) == []
    assert tracking.client(sqlite_tracking).get_experiment_by_name(model_name) is None  # no run was started


def test_the_limit_can_be_raised(many_classes, sqlite_tracking, model_name, tmp_path):
    from kfp_ct.components.train_sklearn.core import train_sklearn

    outcome = train_sklearn(
        train_path=many_classes["train"],
        featurizer_path=many_classes["featurizer"],
        model_path=str(tmp_path / "m"),
        model_name=model_name,
        estimator="logistic_regression",
        tracking_uri=sqlite_tracking,
        max_classes=150,
    )
    assert outcome.version and (tmp_path / "m").is_dir()
