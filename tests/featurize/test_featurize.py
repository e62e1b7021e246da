"""featurize: deterministic splits, a featurizer fitted on the train split only, clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from kfp_ct.components._common import datasets
from kfp_ct.components._common.featurizer import SPEC_FILE, load_featurizer
from kfp_ct.components.featurize import core


def _write(frame: pd.DataFrame, path) -> str:
    datasets.write_frame(frame, path, "test")
    return str(path)


def test_elec2_split_is_stratified_and_featurizer_round_trips(elec2_split, elec2_dataset):
    result = elec2_split["result"]
    assert result.task == "classification"
    assert result.classes == ["DOWN", "UP"]
    full = datasets.read_frame(elec2_dataset[0])
    train, test = datasets.read_frame(elec2_split["train"]), datasets.read_frame(elec2_split["test"])
    assert len(train) + len(test) == len(full)
    assert len(test) == pytest.approx(0.2 * len(full), abs=1)
    assert abs(train["class"].eq("UP").mean() - test["class"].eq("UP").mean()) < 0.01  # stratified
    assert result.train["sha256"] == datasets.sha256_file(elec2_split["train"])
    assert result.train["source_uri"].endswith("elec2.csv")

    featurizer = load_featurizer(elec2_split["featurizer"])
    assert featurizer.target_column == "class" and featurizer.task == "classification"
    assert featurizer.feature_names == [
        "date",
        "day",
        "period",
        "nswprice",
        "nswdemand",
        "vicprice",
        "vicdemand",
        "transfer",
    ]
    x_raw, y = featurizer.split_xy(test)
    assert list(x_raw.columns) == featurizer.feature_names
    assert y.dtype == np.int64 and set(np.unique(y)) == {0, 1}
    assert (featurizer.decode(y) == test["class"].to_numpy()).all()
    x = featurizer.transform(test)
    assert x.dtype == np.float32 and x.shape == (len(test), 8)
    # fitted on the train split only: standardized train columns have mean ~0, test columns do not exactly
    x_train = featurizer.transform(train)
    assert np.abs(x_train.mean(axis=0)).max() < 1e-3
    spec = json.loads(open(os.path.join(elec2_split["featurizer"], SPEC_FILE)).read())
    assert spec["feature_columns"][1] == {"name": "day", "kind": "numeric", "mlflow_type": "long", "dtype": "int64"}


def test_split_is_deterministic_and_seeded(elec2_dataset):
    frame = datasets.read_frame(elec2_dataset[0])
    a = core.split(frame, "class", "classification", 0.25, seed=3)
    b = core.split(frame, "class", "classification", 0.25, seed=3)
    c = core.split(frame, "class", "classification", 0.25, seed=4)
    pd.testing.assert_frame_equal(a[1], b[1])
    assert not a[1].equals(c[1])


def test_time_split_puts_the_latest_rows_in_test(bike_split, bike_dataset):
    train, test = datasets.read_frame(bike_split["train"]), datasets.read_frame(bike_split["test"])
    assert pd.to_datetime(train["dteday"]).max() < pd.to_datetime(test["dteday"]).min()
    assert bike_split["result"].task == "regression" and bike_split["result"].classes is None
    featurizer = load_featurizer(bike_split["featurizer"])
    assert "casual" not in featurizer.feature_names and "cnt" not in featurizer.feature_names
    kinds = {c["name"]: c["kind"] for c in featurizer.feature_columns}
    assert kinds["dteday"] == "datetime" and kinds["temp"] == "numeric"
    names = featurizer.spec()["output_features"]
    assert "datetime__dteday_month" in names and "datetime__dteday_dayofweek" in names
    x = featurizer.transform(test)
    assert x.dtype == np.float32 and np.isfinite(x).all()


def test_categories_missing_values_and_unseen_categories(tmp_path):
    rng = np.random.default_rng(0)
    n = 400
    frame = pd.DataFrame(
        {
            "color": rng.choice(["red", "green", "blue"], n),
            "city": [f"city{i % 40}" for i in range(n)],  # above MAX_ONE_HOT: ordinal
            "size": rng.normal(size=n),
            "when": pd.date_range("2024-01-01", periods=n, freq="h"),
            "flag": rng.choice([True, False], n),
            "label": rng.choice(["a", "b", "c"], n),
        }
    )
    frame.loc[::7, "size"] = np.nan
    frame.loc[::11, "color"] = None
    path = _write(frame, tmp_path / "data.parquet")
    result = core.featurize(
        dataset_path=path,
        target_column="label",
        train_path=str(tmp_path / "tr.parquet"),
        test_path=str(tmp_path / "te.parquet"),
        featurizer_path=str(tmp_path / "feat"),
        time_column="when",
    )
    assert result.task == "classification" and result.classes == ["a", "b", "c"]
    featurizer = load_featurizer(tmp_path / "feat")
    kinds = {c["name"]: (c["kind"], c["mlflow_type"]) for c in featurizer.feature_columns}
    assert kinds == {
        "color": ("categorical", "string"),
        "city": ("categorical", "string"),
        "size": ("numeric", "double"),
        "when": ("datetime", "datetime"),
        "flag": ("categorical", "boolean"),
    }
    names = featurizer.spec()["output_features"]
    assert "one_hot__color_red" in names and "ordinal__city" in names
    unseen = frame.head(3).assign(
        color=["purple", None, "red"],
        city=["nowhere", "city1", None],
        size=[np.nan, 1.0, 2.0],
        when=["2030-01-01T00:00:00", None, "garbage"],
    )
    x = featurizer.transform(unseen)
    assert x.shape[0] == 3 and np.isfinite(x).all()
    color = [i for i, name in enumerate(names) if name.startswith("one_hot__color_") and "__missing__" not in name]
    assert x[0, color].sum() == 0  # an unseen category is all zeros


def test_integer_target_with_few_values_is_classification(tmp_path):
    frame = pd.DataFrame({"x": np.arange(200.0), "y": np.arange(200) % 2})
    result = core.featurize(
        dataset_path=_write(frame, tmp_path / "d.parquet"),
        target_column="y",
        train_path=str(tmp_path / "a"),
        test_path=str(tmp_path / "b"),
        featurizer_path=str(tmp_path / "f"),
    )
    assert result.task == "classification" and result.classes == [0, 1]
    featurizer = load_featurizer(tmp_path / "f")
    assert featurizer.encode_target(pd.Series([1, 0, 1])).tolist() == [1, 0, 1]


@pytest.mark.parametrize(
    "frame, kwargs, message",
    [
        (pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0]}), {}, "target column 'y' is not in the dataset"),
        (pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "y": ["a", None, "b", "a"]}), {}, "1 null label"),
        (pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "y": ["a"] * 4}), {}, "single class ('a')"),
        (
            pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "y": ["a", "b"] * 2, "t": [1] * 4}),
            {"time_column": "t"},
            "train split is empty",
        ),
        (pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "y": ["a", "b"] * 2}), {"test_fraction": 1.5}, "test_fraction"),
        (pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "y": ["a", "b"] * 2}), {"task": "ranking"}, "unknown task"),
        (pd.DataFrame({"y": ["a", "b"] * 2}), {}, "no feature columns"),
        (pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "y": ["a", "b"] * 2}), {"exclude_columns": ["z"]}, "exclude_columns"),
        (
            pd.DataFrame({"x": [1.0, np.inf, 3.0, -np.inf], "z": [1.0, 2.0, 3.0, np.inf], "y": ["a", "b"] * 2}),
            {},
            "column(s) 'x' (2 of 4 rows), 'z' (1 of 4 rows) hold inf or -inf: fix the data, or pass "
            "impute_non_finite=True",
        ),
        (
            pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "y": [0.5, 1.5, np.inf, 2.5]}),
            {"impute_non_finite": True},
            "column(s) 'y' (1 of 4 rows) hold inf or -inf: a target must be a finite number",
        ),
        (
            pd.DataFrame(
                {"x": [1.0, 2.0, 3.0, 4.0], "y": ["a", "b"] * 2, "t": ["2024-01-05", "2024-01-06", "01/07/2024", None]}
            ),
            {"time_column": "t"},
            "time column 't' holds 1 value(s) that are not ISO 8601 times, e.g. '01/07/2024'",
        ),
    ],
)
def test_bad_input_fails_clearly_and_writes_nothing(tmp_path, frame, kwargs, message):
    path = _write(frame, tmp_path / "data.parquet")
    outputs = [tmp_path / "train.parquet", tmp_path / "test.parquet", tmp_path / "featurizer"]
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        core.featurize(
            dataset_path=path,
            target_column="y",
            train_path=str(outputs[0]),
            test_path=str(outputs[1]),
            featurizer_path=str(outputs[2]),
            **kwargs,
        )
    assert not any(p.exists() for p in outputs)
    assert sorted(os.listdir(tmp_path)) == ["data.parquet"]


def test_unseen_label_and_missing_column_are_named(elec2_split):
    featurizer = load_featurizer(elec2_split["featurizer"])
    test = datasets.read_frame(elec2_split["test"]).head(5)
    with pytest.raises(ValueError, match="label\\(s\\) SIDEWAYS"):
        featurizer.split_xy(test.assign(**{"class": "SIDEWAYS"}))
    with pytest.raises(ValueError, match="lacks the feature column\\(s\\) nswprice"):
        featurizer.transform(test.drop(columns=["nswprice"]))
    with pytest.raises(FileNotFoundError, match="featurizer.json"):
        load_featurizer(os.path.dirname(elec2_split["featurizer"]))


def test_loading_a_featurizer_does_not_import_torch(elec2_split):
    """skops' import walks every sklearn subpackage, which imports torch where it is installed (1.2 s here):
    `skops_io` keeps torch out of that import, and torch still imports afterwards."""
    pytest.importorskip("torch")
    code = (
        "import sys\n"
        "from kfp_ct.components._common.featurizer import load_featurizer\n"
        f"load_featurizer({elec2_split['featurizer']!r})\n"
        "assert 'torch' not in sys.modules, 'loading the featurizer imported torch'\n"
        "import torch\n"
        "assert torch.ones(2).sum().item() == 2\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def test_component_python_func(elec2_dataset, tmp_path):
    from kfp import dsl

    from kfp_ct.components.featurize import featurize

    path, meta = elec2_dataset
    dataset = dsl.Dataset(uri=path, metadata=dict(meta))
    outputs = {
        name: cls(uri=str(tmp_path / name))
        for name, cls in (("train", dsl.Dataset), ("test", dsl.Dataset), ("featurizer", dsl.Model))
    }
    featurize.python_func(dataset=dataset, target_column="class", test_fraction=0.3, seed=1, **outputs)
    assert outputs["train"].metadata["rows"] + outputs["test"].metadata["rows"] == meta["rows"]
    assert outputs["test"].metadata["split"] == "test"
    assert outputs["train"].metadata["source_uri"] == meta["source_uri"]
    assert outputs["featurizer"].metadata["classes"] == ["DOWN", "UP"]
    assert load_featurizer(outputs["featurizer"].path).task == "classification"


def test_a_mixed_format_time_column_is_refused_not_split_by_its_text(tmp_path):
    # as text "2024-01-10" < "2024-1-9"; a split by characters would put the wrong rows in test
    times = [f"2024-01-{d:02d}" for d in range(1, 10)] + ["Jan 10 2024"]
    frame = pd.DataFrame({"x": np.arange(10.0), "y": ["a", "b"] * 5, "t": times})
    outputs = [str(tmp_path / name) for name in ("tr.parquet", "te.parquet", "f")]
    with pytest.raises(ValueError, match=r"time column 't' holds 1 value\(s\) .* e.g. 'Jan 10 2024'"):
        core.featurize(
            dataset_path=_write(frame, tmp_path / "d.parquet"),
            target_column="y",
            train_path=outputs[0],
            test_path=outputs[1],
            featurizer_path=outputs[2],
            time_column="t",
        )
    iso = frame.assign(t=[f"2024-01-{d:02d}T{h:02d}:00:00+00:00" for d, h in zip(range(1, 11), range(10))])
    core.featurize(
        dataset_path=_write(iso, tmp_path / "iso.parquet"),
        target_column="y",
        train_path=outputs[0],
        test_path=outputs[1],
        featurizer_path=outputs[2],
        time_column="t",
        test_fraction=0.2,
    )
    assert pd.read_parquet(outputs[1])["x"].tolist() == [8.0, 9.0]


def test_impute_non_finite_imputes_inf_as_missing_in_training_and_serving(tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=200), "w": rng.normal(size=200), "y": ["a", "b"] * 100})
    frame.loc[::10, "x"] = np.inf
    frame.loc[5::10, "x"] = -np.inf
    outputs = [str(tmp_path / name) for name in ("tr.parquet", "te.parquet", "f")]
    core.featurize(
        dataset_path=_write(frame, tmp_path / "d.parquet"),
        target_column="y",
        train_path=outputs[0],
        test_path=outputs[1],
        featurizer_path=outputs[2],
        impute_non_finite=True,
    )
    featurizer = load_featurizer(outputs[2])
    assert featurizer.extra["impute_non_finite"] is True
    rows = frame.head(3).assign(x=[np.inf, np.nan, -np.inf])
    x = featurizer.transform(rows)
    assert np.isfinite(x).all() and x[0, 0] == x[1, 0] == x[2, 0]  # inf and -inf are imputed as a missing value
