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


FORKER = """
import json, os, signal, sys, time
{preload}
print("ready", flush=True)
for line in sys.stdin:
    request = json.loads(line)
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the step: its prints go to stderr, away from the answers
        os.dup2(2, 1)
        try:
            exec(request["code"], dict(globals()))
        except BaseException:
            import traceback
            traceback.print_exc()
            os._exit(1)
        os._exit(0)
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if request["kill_after"] is not None and time.monotonic() - started >= request["kill_after"]:
            os.kill(pid, signal.SIGKILL)  # not yet reaped: the pid is still the step's
            done, status = os.waitpid(pid, 0)
            break
        time.sleep(0.002)
    print(json.dumps([time.monotonic() - started, os.waitstatus_to_exitcode(status)]), flush=True)
"""


class Forker:
    """A process that imports the step's modules once and forks a child for each run, which it SIGKILLs on request:
    a fresh interpreter per run would spend seconds on imports."""

    def __init__(self, preload: str):
        self.process = subprocess.Popen(
            [sys.executable, "-c", FORKER.format(preload=preload)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout.readline().strip() == "ready"

    def run(self, code: str, kill_after: float | None = None) -> tuple[float, int]:
        """(seconds, exit code: -9 when killed) of one run of `code`, killed after `kill_after` seconds if given."""
        self.process.stdin.write(json.dumps({"code": code, "kill_after": kill_after}) + "\n")
        self.process.stdin.flush()
        seconds, returncode = json.loads(self.process.stdout.readline())
        if kill_after is None:
            assert returncode == 0, "the step failed (its traceback is in the captured stderr)"
        return seconds, returncode

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=30)


def kill_repeatedly(preload: str, code, check, seed: int) -> int:
    """One full run to time the step, then KILLS runs killed at random points of that time, `check()` after each, then
    a full rerun. `code()` gives each run's code. Returns how many runs were killed before they ended."""
    forker = Forker(preload)
    try:
        duration, _ = forker.run(code())
        check()
        rng = random.Random(seed)
        killed = 0
        for _ in range(KILLS):
            _, returncode = forker.run(code(), kill_after=rng.uniform(0, duration * 1.1))
            killed += returncode == -signal.SIGKILL
            check()
        forker.run(code())  # the rerun: complete, and what the killed runs left is gone
        check()
    finally:
        forker.close()
    return killed


@pytest.fixture(scope="module")
def elec2_csv(shared_data, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("crash") / "elec2.csv"
    pd.read_csv(shared_data / "elec2" / "elec2.csv", nrows=ROWS).to_csv(path, index=False)
    return path


DATA_MODULES = "import pandas, pyarrow.parquet, sklearn\n"
TRAIN_MODULES = DATA_MODULES + "import mlflow, mlflow.tracking, skops.io, sqlalchemy\n"


def test_ingest_killed_leaves_a_complete_dataset_or_none(elec2_csv, tmp_path):
    output = tmp_path / "dataset.parquet"
    preload = DATA_MODULES + "from kfp_ct.components.ingest.core import ingest"

    def check():
        if output.exists():
            assert len(datasets.read_frame(output)) == ROWS

    killed = kill_repeatedly(
        preload, lambda: f"ingest(source_uri={str(elec2_csv)!r}, output_path={str(output)!r})", check, seed=1
    )
    assert killed >= 1
    assert output.exists() and partials(tmp_path) == []


def test_featurize_killed_never_pairs_a_split_with_another_runs_featurizer(elec2_csv, tmp_path):
    data = tmp_path / "data.parquet"
    datasets.write_frame(pd.read_csv(elec2_csv, nrows=8000), data, str(elec2_csv))
    out = tmp_path / "out"
    train, test, featurizer = out / "train.parquet", out / "test.parquet", out / "featurizer"
    seeds = iter(range(1000))

    def code() -> str:  # every run another seed: the splits of consecutive runs differ
        return (
            f"featurize(dataset_path={str(data)!r}, target_column='class', train_path={str(train)!r}, "
            f"test_path={str(test)!r}, featurizer_path={str(featurizer)!r}, seed={next(seeds)})"
        )

    def check():
        """A reader gets the train split together with the featurizer it was written with, or an error."""
        if not featurizer.exists():
            with pytest.raises(FileNotFoundError):
                load_train_data(str(train), str(featurizer))
            return
        assert train.exists() and test.exists()  # written before the featurizer
        spec = json.loads((featurizer / "featurizer.json").read_text())
        if datasets.read_tags(train) == {"split_id": spec["split_id"], "split": "train"}:
            data_ = load_train_data(str(train), str(featurizer))
            assert len(data_.y_fit) + len(data_.y_val) == len(datasets.read_frame(train))
        else:  # a killed later run replaced the split, not yet the featurizer
            with pytest.raises(ValueError, match="not the train split this featurizer was fitted with"):
                load_train_data(str(train), str(featurizer))

    preload = DATA_MODULES + "from kfp_ct.components.featurize.core import featurize"
    assert kill_repeatedly(preload, code, check, seed=2) >= 1
    spec = json.loads((featurizer / "featurizer.json").read_text())
    assert datasets.read_tags(train) == {"split_id": spec["split_id"], "split": "train"}
    assert datasets.read_tags(test) == {"split_id": spec["split_id"], "split": "test"}
    assert partials(out) == []


@pytest.fixture(scope="module")
def featurized(elec2_csv, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("featurized")
    datasets.write_frame(pd.read_csv(elec2_csv, nrows=5000), out / "data.parquet", "elec2")
    featurize(
        dataset_path=str(out / "data.parquet"),
        target_column="class",
        train_path=str(out / "train.parquet"),
        test_path=str(out / "test.parquet"),
        featurizer_path=str(out / "feat"),
    )
    return out


def test_a_split_of_another_featurize_run_is_refused(featurized, tmp_path):
    """A train split of other splits (or the test split) next to a featurizer is refused by name; data of one's own
    (no tags) is not checked."""
    other = tmp_path / "other"
    featurize(
        dataset_path=str(featurized / "data.parquet"),
        target_column="class",
        train_path=str(other / "train"),
        test_path=str(other / "test"),
        featurizer_path=str(other / "f"),
        seed=7,
    )
    for wrong in (other / "train", featurized / "test.parquet"):
        with pytest.raises(ValueError, match="not the train split this featurizer was fitted with"):
            load_train_data(str(wrong), str(featurized / "feat"))
    datasets.write_frame(datasets.read_frame(featurized / "train.parquet"), tmp_path / "own.parquet", "own")
    assert len(load_train_data(str(tmp_path / "own.parquet"), str(featurized / "feat")).y_val) > 0


def _train_code(featurized: Path, model: Path, uri: str) -> str:
    return (
        f"train_sklearn(train_path={str(featurized / 'train.parquet')!r}, "
        f"featurizer_path={str(featurized / 'feat')!r}, model_path={str(model)!r}, model_name='crash', "
        f"hyperparameters={{'max_iter': 30}}, tracking_uri={uri!r})"
    )


TRAINER = "from kfp_ct.components.train_sklearn.core import train_sklearn\n"


def test_train_killed_leaves_a_registered_model_or_none(featurized, tmp_path):
    from kfp_ct.components._common.model import load_model

    model, uri = tmp_path / "model", f"sqlite:///{tmp_path / 'mlflow.db'}"

    def check():
        if model.exists():  # complete, and registered from its run
            loaded = load_model(str(model))
            run_id = loaded.metadata["mlflow_run_id"]
            assert tracking.version_for_run("crash", run_id, uri) is not None
            assert tracking.client(uri).get_run(run_id).info.status == "FINISHED"

    killed = kill_repeatedly(TRAIN_MODULES + TRAINER, lambda: _train_code(featurized, model, uri), check, seed=3)
    assert killed >= 1
    assert model.exists() and partials(tmp_path) == []


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
    process = subprocess.Popen(
        [sys.executable, "-c", TRAINER + slow_logging + _train_code(featurized, model, uri)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = []
    for line in process.stdout:
        output.append(line)
        if line.strip() == "logging":
            process.send_signal(signal.SIGTERM)
            break
    output.append(process.communicate(timeout=120)[0])
    assert "logging\n" in output, "".join(output)
    assert process.returncode == 1, "".join(output)  # it raised, ended the run and exited on its own
    assert "Terminated: terminated by signal 15" in "".join(output)
    client = tracking.client(uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert [r.info.status for r in runs] == ["FAILED"]
    assert tracking.versions("crash", uri) == []
    assert not model.exists() and partials(tmp_path) == []
