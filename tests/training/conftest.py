"""Small real slices of the shared datasets, featurized once per session, and a local sqlite tracking store."""

from __future__ import annotations

import uuid

import pytest

ELEC2_ROWS = 4000  # ~83 days of half-hours
BIKE_ROWS = 3000
BIKE_LEAKS = ["casual", "registered", "instant"]  # cnt = casual + registered; instant is a row id


def _write_slice(source, rows, path):
    import pyarrow.csv as pacsv

    from kfp_ct.components._common import datasets

    table = pacsv.read_csv(source)
    table = table.slice(0, rows) if rows else table
    return datasets.write_table(table, path, str(source))


@pytest.fixture(scope="session")
def elec2_dataset(shared_data, tmp_path_factory):
    """The first ELEC2_ROWS rows of elec2.csv as a Parquet dataset artifact: (path, metadata)."""
    path = tmp_path_factory.mktemp("elec2") / "elec2.parquet"
    return str(path), _write_slice(shared_data / "elec2" / "elec2.csv", ELEC2_ROWS, path)


@pytest.fixture(scope="session")
def bike_dataset(shared_data, tmp_path_factory):
    """The first BIKE_ROWS rows of bike_sharing hour.csv as a Parquet dataset artifact: (path, metadata)."""
    path = tmp_path_factory.mktemp("bike") / "hour.parquet"
    return str(path), _write_slice(shared_data / "bike_sharing" / "hour.csv", BIKE_ROWS, path)


def _featurize(dataset, target, out, **kwargs):
    from kfp_ct.components.featurize.core import featurize

    path, meta = dataset
    result = featurize(
        path,
        target,
        str(out / "train.parquet"),
        str(out / "test.parquet"),
        str(out / "featurizer"),
        source_uri=meta["source_uri"],
        **kwargs,
    )
    return {
        "train": str(out / "train.parquet"),
        "test": str(out / "test.parquet"),
        "featurizer": str(out / "featurizer"),
        "result": result,
    }


@pytest.fixture(scope="session")
def elec2_split(elec2_dataset, tmp_path_factory):
    """elec2 slice featurized (stratified split, target `class`)."""
    return _featurize(elec2_dataset, "class", tmp_path_factory.mktemp("elec2_split"))


@pytest.fixture(scope="session")
def bike_split(bike_dataset, tmp_path_factory):
    """bike slice featurized (split by time on `dteday`, target `cnt`, leaking columns excluded)."""
    return _featurize(
        bike_dataset, "cnt", tmp_path_factory.mktemp("bike_split"), time_column="dteday", exclude_columns=BIKE_LEAKS
    )


@pytest.fixture(scope="session")
def sqlite_tracking(tmp_path_factory) -> str:
    """A local MLflow tracking store (sqlite file, artifacts beside it): the catalog's default kind of URI."""
    from kfp_ct.components._common import tracking

    uri = f"sqlite:///{tmp_path_factory.mktemp('tracking') / 'mlflow.db'}"
    tracking.client(uri).search_experiments()  # creates the tables once
    return uri


@pytest.fixture
def model_name() -> str:
    """A registered model name no other test uses."""
    return f"test-{uuid.uuid4().hex[:10]}"


@pytest.fixture(autouse=True)
def one_thread_per_trainer(monkeypatch):
    """One OpenMP/BLAS thread per trainer: on a shared 2-core machine, spinning threads make HistGradientBoosting ~25x
    slower (kfp.local tasks inherit it too)."""
    monkeypatch.setenv("KFP_CT_THREADS", "1")
