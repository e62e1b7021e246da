"""reference_data: a given URI; the champion's training data (its recorded URI and window), which moves when a
retrained model becomes champion; a champion that records no data; no champion."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import yaml

from kfp_ct.components._common import model as model_format
from kfp_ct.components._common import tracking
from kfp_ct.components.featurize.core import featurize
from kfp_ct.components.ingest.core import ingest
from kfp_ct.components.reference_data.core import reference_data
from kfp_ct.components.train_sklearn.core import train_sklearn


@pytest.fixture(scope="module")
def events(tmp_path_factory):
    """Daily Hive partitions of January 2026: 48 rows a day, x shifting with the day, a label from x."""
    root = tmp_path_factory.mktemp("events")
    rng = np.random.default_rng(0)
    for day in pd.date_range("2026-01-01", periods=31, freq="D"):
        times = pd.date_range(day, periods=48, freq="30min")
        x = rng.normal(day.day, 1.0, len(times))
        frame = pd.DataFrame({"time": times, "x": x, "z": rng.normal(0, 1, len(times))})
        frame["label"] = np.where(x + frame["z"] > day.day, "up", "down")
        (root / f"dt={day:%Y-%m-%d}").mkdir()
        frame.to_parquet(root / f"dt={day:%Y-%m-%d}" / "part-0.parquet", index=False)
    return root


def train_on_window(events, folder, name, tracking_uri, as_of):
    """What the continuous-training pipeline does on a trigger: ingest the window, featurize it (the component
    carries the window onto the train split's metadata), train and promote."""
    folder.mkdir()
    window = ingest(
        source_uri=str(events), output_path=str(folder / "window.parquet"), time_column="time", window="7d", as_of=as_of
    )
    split = featurize(
        dataset_path=str(folder / "window.parquet"),
        target_column="label",
        train_path=str(folder / "train.parquet"),
        test_path=str(folder / "test.parquet"),
        featurizer_path=str(folder / "featurizer"),
        time_column="time",
        source_uri=str(events),
    )
    outcome = train_sklearn(
        train_path=str(folder / "train.parquet"),
        featurizer_path=str(folder / "featurizer"),
        model_path=str(folder / "model"),
        model_name=name,
        estimator="logistic_regression",
        tracking_uri=tracking_uri,
        train_metadata={**split.train, "uri": str(folder / "train.parquet"), "window": window.metadata["window"]},
    )
    tracking.promote(name, outcome.version, tracking_uri=tracking_uri)
    return outcome


def test_the_reference_is_the_champions_window_and_moves_with_it(events, tmp_path, sqlite_tracking, model_name):
    first = train_on_window(events, tmp_path / "first", model_name, sqlite_tracking, "2026-01-08T00:00:00Z")
    result = reference_data(
        model_name=model_name, reference_path=str(tmp_path / "ref1.parquet"), tracking_uri=sqlite_tracking
    )
    rows = pd.read_parquet(tmp_path / "ref1.parquet")
    assert result.champion_version == first.version == result.metadata["champion_version"]
    assert result.metadata["window"]["start"] == "2026-01-01T00:00:00Z"
    assert result.metadata["window"]["end"] == "2026-01-08T00:00:00Z"
    assert rows.equals(pd.read_parquet(tmp_path / "first" / "train.parquet"))
    assert rows["time"].min() >= pd.Timestamp("2026-01-01") and rows["time"].max() < pd.Timestamp("2026-01-08")

    second = train_on_window(events, tmp_path / "second", model_name, sqlite_tracking, "2026-01-22T00:00:00Z")
    moved = reference_data(
        model_name=model_name, reference_path=str(tmp_path / "ref2.parquet"), tracking_uri=sqlite_tracking
    )
    assert moved.champion_version == second.version != first.version
    assert (moved.metadata["window"]["start"], moved.metadata["window"]["end"]) == (
        "2026-01-15T00:00:00Z",
        "2026-01-22T00:00:00Z",
    )
    later = pd.read_parquet(tmp_path / "ref2.parquet")["time"]
    assert later.min() >= pd.Timestamp("2026-01-15") and later.max() < pd.Timestamp("2026-01-22")

    # the old champion back: its reference comes back with it
    tracking.promote(model_name, first.version, tracking_uri=sqlite_tracking)
    back = reference_data(
        model_name=model_name, reference_path=str(tmp_path / "ref3.parquet"), tracking_uri=sqlite_tracking
    )
    assert back.metadata["sha256"] == result.metadata["sha256"]


def test_a_given_uri_is_the_reference(events, tmp_path, model_name):
    result = reference_data(
        model_name=model_name, reference_path=str(tmp_path / "ref.parquet"), reference_uri=str(events / "dt=2026-01-03")
    )
    assert result.champion_version is None and result.metadata["rows"] == 48
    assert "champion_version" not in result.metadata


def test_no_champion_is_named(tmp_path, sqlite_tracking, model_name):
    with pytest.raises(ValueError, match=f"model '{model_name}' has no champion .* pass reference_uri"):
        reference_data(
            model_name=model_name, reference_path=str(tmp_path / "ref.parquet"), tracking_uri=sqlite_tracking
        )
    assert not (tmp_path / "ref.parquet").exists()


def test_a_champion_that_records_no_data_is_named(events, tmp_path, sqlite_tracking, model_name):
    trained = train_on_window(events, tmp_path / "trained", model_name, sqlite_tracking, "2026-01-08T00:00:00Z")
    copy = tmp_path / "no-data-model"
    shutil.copytree(trained.model_path, copy)
    mlmodel = yaml.safe_load((copy / "MLmodel").read_text())
    del mlmodel["metadata"][model_format.METADATA_KEY]["train_data"]
    (copy / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    version = tracking.register_version(model_name, str(copy), tracking_uri=sqlite_tracking)
    tracking.promote(model_name, version, tracking_uri=sqlite_tracking)
    with pytest.raises(ValueError, match=f"champion \\(version {version}\\) of '{model_name}' does not record where"):
        reference_data(
            model_name=model_name, reference_path=str(tmp_path / "ref.parquet"), tracking_uri=sqlite_tracking
        )
    assert not (tmp_path / "ref.parquet").exists()
