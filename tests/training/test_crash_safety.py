"""Crash safety of the writing steps: ingest, featurize and train_sklearn (their cores, in a subprocess) are killed with
SIGKILL at random points, ten times each. After every kill a reader sees the step's complete outputs or none (never a
half-written file, never a train split without the featurizer it was written with, never an unregistered model), and
a rerun to the same place succeeds and removes the partial files the killed runs left. SIGTERM ends a training run
FAILED in MLflow."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from kfp_ct.components._common import datasets, tracking
from kfp_ct.components._common.training import load_train_data
from kfp_ct.components.featurize.core import featurize

KILLS = 10
ROWS = 20_000


def partials(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(datasets.PARTIAL))


def run_step(code: str, *, kill_after: float | None = None, sig: int = signal.SIGKILL, wait_for: str = "ready"):
    """Runs `code` in a fresh interpreter; with `kill_after`, sends `sig` that long after it printed `wait_for`.
    Returns (seconds from `wait_for` to the end, return code)."""
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.strip() == wait_for:
            break
    else:
        process.wait()
        raise AssertionError(f"the step ended before '{wait_for}':\n{''.join(lines)[-3000:]}")
    started = time.monotonic()
    if kill_after is not None:
        try:
            process.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            process.send_signal(sig)
    rest = process.communicate()[0]
    if kill_after is None:
        assert process.returncode == 0, "".join(lines) + rest
    return time.monotonic() - started, process.returncode


def kill_repeatedly(code: str, check, seed: int) -> int:
    """One full run to time the step, then KILLS runs killed at random points of that time; `check()` after each.
    Returns how many runs were killed before they ended."""
    duration, _ = run_step(code)
    check()
    rng = random.Random(seed)
    killed = 0
    for _ in range(KILLS):
        _, code_ = run_step(code, kill_after=rng.uniform(0, duration * 1.1))
        killed += code_ == -signal.SIGKILL
        check()
    return killed


def python(statement: str) -> str:
    return f"print('ready', flush=True)\n{statement}\n"


@pytest.fixture(scope="module")
def elec2_csv(shared_data, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("crash") / "elec2.csv"
    pd.read_csv(shared_data / "elec2" / "elec2.csv", nrows=ROWS).to_csv(path, index=False)
    return path


def test_ingest_killed_leaves_a_complete_dataset_or_none(elec2_csv, tmp_path):
    output = tmp_path / "dataset.parquet"
    code = "from kfp_ct.components.ingest.core import ingest\n" + python(f"ingest({str(elec2_csv)!r}, {str(output)!r})")

    def check():
        if output.exists():
            assert len(datasets.read_frame(output)) == ROWS

    killed = kill_repeatedly(code, check, seed=1)
    assert killed >= 1
    run_step(code)  # the rerun: complete, and what killed runs left is gone
    check()
    assert partials(tmp_path) == []


def test_featurize_killed_never_pairs_a_split_with_another_runs_featurizer(elec2_csv, tmp_path):
    data = tmp_path / "data.parquet"
    datasets.write_frame(pd.read_csv(elec2_csv), data, str(elec2_csv))
    out = tmp_path / "out"
    train, test, featurizer = out / "train.parquet", out / "test.parquet", out / "featurizer"
    seeds = iter(range(1000))

    def code() -> str:  # every run another seed: the splits of consecutive runs differ
        return "from kfp_ct.components.featurize.core import featurize\n" + python(
            f"featurize({str(data)!r}, 'class', {str(train)!r}, {str(test)!r}, {str(featurizer)!r}, seed={next(seeds)})"
        )

    def check():
        """A reader gets the train split together with the featurizer it was written with, or an error."""
        if not featurizer.exists():
            with pytest.raises(FileNotFoundError):
                load_train_data(str(train), str(featurizer))
            return
        assert train.exists() and test.exists()  # written before the featurizer
        spec = json.loads((featurizer / "featurizer.json").read_text())
        if datasets.sha256_file(train) == spec["splits"]["train"]:
            data_ = load_train_data(str(train), str(featurizer))
            assert len(data_.y_fit) + len(data_.y_val) == len(datasets.read_frame(train))
        else:  # a killed later run replaced the split, not yet the featurizer
            with pytest.raises(ValueError, match="not the train split this featurizer was fitted with"):
                load_train_data(str(train), str(featurizer))

    duration, _ = run_step(code())
    check()
    rng = random.Random(2)
    killed = 0
    for _ in range(KILLS):
        _, returncode = run_step(code(), kill_after=rng.uniform(0, duration * 1.1))
        killed += returncode == -signal.SIGKILL
        check()
    assert killed >= 1
    run_step(code())
    check()
    spec = json.loads((featurizer / "featurizer.json").read_text())
    assert spec["splits"] == {"train": datasets.sha256_file(train), "test": datasets.sha256_file(test)}
    assert partials(out) == []


@pytest.fixture(scope="module")
def featurized(elec2_csv, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("featurized")
    datasets.write_frame(pd.read_csv(elec2_csv, nrows=5000), out / "data.parquet", "elec2")
    featurize(
        str(out / "data.parquet"), "class", str(out / "train.parquet"), str(out / "test.parquet"), str(out / "feat")
    )
    return out


def _train_code(featurized: Path, model: Path, uri: str, before: str = "") -> str:
    return (
        "from kfp_ct.components.train_sklearn.core import train_sklearn\n"
        + before
        + python(
            f"train_sklearn({str(featurized / 'train.parquet')!r}, {str(featurized / 'feat')!r}, {str(model)!r}, "
            f"'crash', hyperparameters={{'max_iter': 30}}, tracking_uri={uri!r})"
        )
    )


def test_train_killed_leaves_a_registered_model_or_none(featurized, tmp_path):
    from kfp_ct.components._common.model import load_model

    model, uri = tmp_path / "model", f"sqlite:///{tmp_path / 'mlflow.db'}"
    code = _train_code(featurized, model, uri)

    def check():
        if model.exists():  # complete, and registered from its run
            loaded = load_model(str(model))
            run_id = loaded.metadata["mlflow_run_id"]
            assert tracking.version_for_run("crash", run_id, uri) is not None
            assert tracking.client(uri).get_run(run_id).info.status == "FINISHED"

    killed = kill_repeatedly(code, check, seed=3)
    assert killed >= 1
    before = {p.name for p in tmp_path.iterdir()}
    run_step(code)
    check()
    assert partials(tmp_path) == []
    assert {p.name for p in tmp_path.iterdir()} <= before | {"model"}


def test_sigterm_ends_the_training_run_failed(featurized, tmp_path):
    """SIGTERM (a pod being stopped) while the model is logged: the run ends FAILED, nothing is registered, and no
    model or partial is left."""
    model, uri = tmp_path / "model", f"sqlite:///{tmp_path / 'mlflow.db'}"
    slow_logging = (
        "import time\n"
        "from mlflow.tracking import MlflowClient\n"
        "_log = MlflowClient.log_artifacts\n"
        "def log_artifacts(self, *args, **kwargs):\n"
        "    print('logging', flush=True)\n"
        "    time.sleep(60)\n"
        "    return _log(self, *args, **kwargs)\n"
        "MlflowClient.log_artifacts = log_artifacts\n"
    )
    _, returncode = run_step(
        _train_code(featurized, model, uri, slow_logging), kill_after=0, sig=signal.SIGTERM, wait_for="logging"
    )
    assert returncode not in (0, -signal.SIGTERM)  # it raised, cleaned up and exited on its own
    client = tracking.client(uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert [r.info.status for r in runs] == ["FAILED"]
    assert tracking.versions("crash", uri) == []
    assert not model.exists() and partials(tmp_path) == []
