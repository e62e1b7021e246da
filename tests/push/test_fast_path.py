"""The serving fast path: proven on the whole test split at push time, published with the model, used by the server
only for a model whose files carry that proof; a featurizer change it does not mirror fails the proof."""

from __future__ import annotations

import asyncio
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from kfp_ct.components._common import fast_path
from kfp_ct.components._common.featurizer import CategoryStrings
from kfp_ct.components._common.model import load_model
from kfp_ct.components.push.core import push
from kfp_ct.components.push.server import build_model

pytestmark = pytest.mark.integration


def _bare_copy(trained_model, tmp_path) -> str:
    """The trained model without any proof (as train_sklearn writes it)."""
    copy = tmp_path / "model"
    shutil.copytree(trained_model["path"], copy, ignore=shutil.ignore_patterns(fast_path.PROOF_FILE))
    return str(copy)


def test_push_proves_the_fast_path_on_the_whole_test_split_and_the_server_uses_it(trained_model, tmp_path):
    logs = []
    model_dir = _bare_copy(trained_model, tmp_path)
    result = push(
        model_dir=model_dir,
        model_name="elec2",
        storage_uri=str(tmp_path / "store"),
        tracking_uri=trained_model["tracking_uri"],
        log=logs.append,
        test_path=trained_model["test"],
    )
    rows = len(pd.read_parquet(trained_model["test"]))
    proof = json.loads((tmp_path / "store" / result.storage_uri.rsplit("/", 1)[-1] / fast_path.PROOF_FILE).read_text())
    assert proof["test_rows"] == rows > 100
    assert f"serving fast path proven equal to the model on the {rows} rows of the test split" in logs
    assert not (tmp_path / "model" / fast_path.PROOF_FILE).exists()  # the input model folder is left as it was

    served = build_model(result.storage_uri, "elec2")
    assert isinstance(served.predictor.compiled, fast_path.CompiledSklearn)
    own = build_model(model_dir, "elec2")  # no proof: the model itself
    assert own.predictor.compiled is None
    frame = pd.read_parquet(trained_model["test"])[[name for name, _ in own.model.input_columns]]
    body = {"instances": json.loads(frame.to_json(orient="records"))}
    fast, slow = asyncio.run(served.predict(body)), asyncio.run(own.predict(body))
    assert fast["predictions"] == slow["predictions"] == load_model(model_dir).predict(frame).tolist()
    assert np.array_equal(fast["probabilities"], slow["probabilities"])

    # without the test split: no proof published, even when the model folder brings one along
    fast_path.write_proof(proof, model_dir)
    again = push(
        model_dir=model_dir,
        model_name="elec2",
        storage_uri=str(tmp_path / "store2"),
        tracking_uri=trained_model["tracking_uri"],
        log=logs.append,
    )
    assert not (tmp_path / "store2" / again.storage_uri.rsplit("/", 1)[-1] / fast_path.PROOF_FILE).exists()
    assert build_model(again.storage_uri, "elec2").predictor.compiled is None


def test_a_featurizer_change_the_fast_path_does_not_mirror_fails_the_proof(trained_model, monkeypatch):
    """The featurizer starts reading one weekday differently: the rows with that weekday (none of them among the
    input example's) score differently, and the proof fails on the first such row of the test split."""
    model = load_model(trained_model["path"])
    test = pd.read_parquet(trained_model["test"])
    example = json.loads(open(f"{trained_model['path']}/input_example.json").read())
    assert "sun" not in {row[example["columns"].index("weekday")] for row in example["data"]}
    assert fast_path.prove(model, trained_model["test"])["test_rows"] == len(test)

    original = CategoryStrings.transform

    def reads_sunday_as_missing(self, X):
        out = original(self, X)
        return np.where(out == "sun", "__missing__", out)

    monkeypatch.setattr(CategoryStrings, "transform", reads_sunday_as_missing)
    first_sunday = int(np.flatnonzero(test["weekday"].to_numpy() == "sun")[0])
    with pytest.raises(fast_path.FastPathMismatch, match=rf"features differ .* on row {first_sunday} of {len(test)}"):
        fast_path.prove(model, trained_model["test"])


def test_the_server_ignores_a_proof_for_other_files_or_another_version(trained_model, tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(trained_model["path"], model_dir)
    assert build_model(str(model_dir), "elec2").predictor.compiled is not None
    proof_file = model_dir / fast_path.PROOF_FILE
    proof = json.loads(proof_file.read_text())

    proof_file.write_text(json.dumps({**proof, "kfp_ct": "0.0.0"}))
    assert build_model(str(model_dir), "elec2").predictor.compiled is None

    proof_file.write_text(json.dumps(proof))
    spec = model_dir / "featurizer" / "featurizer.json"
    spec.write_text(spec.read_text() + "\n")  # any change to the model's files
    assert build_model(str(model_dir), "elec2").predictor.compiled is None


def test_a_structure_the_fast_path_does_not_mirror_gets_no_proof(sqlite_tracking, model_name, tmp_path):
    """impute_non_finite adds a step in front of the numeric imputer: no fast path, so no proof (the model serves
    itself)."""
    from kfp_ct.components._common import datasets
    from kfp_ct.components.featurize.core import featurize
    from kfp_ct.components.train_sklearn.core import train_sklearn

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=300), "c": rng.choice(["a", "b"], 300), "y": ["u", "v"] * 150})
    datasets.write_frame(frame, tmp_path / "d.parquet", "test")
    paths = [str(tmp_path / name) for name in ("train.parquet", "test.parquet", "featurizer")]
    featurize(
        dataset_path=str(tmp_path / "d.parquet"),
        target_column="y",
        train_path=paths[0],
        test_path=paths[1],
        featurizer_path=paths[2],
        impute_non_finite=True,
    )
    train_sklearn(
        train_path=paths[0],
        featurizer_path=paths[2],
        model_path=str(tmp_path / "model"),
        model_name=model_name,
        tracking_uri=sqlite_tracking,
    )
    model = load_model(tmp_path / "model")
    assert fast_path.CompiledSklearn.build(model) is None
    assert fast_path.prove(model, paths[1]) is None
