"""A served elec2 model for the serving tests: train one (the catalog's trainer on an elec2 slice), start the catalog's
model server on it on loopback, stop it. A plain module, imported by name (`from elec2_serving import ...`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request

from loopback import free_port

ELEC2_ROWS = 3000
MODEL_NAME = "elec2"
WEEKDAYS = {1: "mon", 2: "tue", 3: "wed", 4: "thu", 5: "fri", 6: "sat", 7: "sun"}


def train_elec2(
    out,
    tracking_uri: str,
    registered: str,
    data_dir,
    seed: int = 0,
    estimator: str = "hist_gradient_boosting",
    hyperparameters: dict | None = None,
    flip_labels: bool = False,
) -> dict:
    """A kfp-ct model of an elec2 slice; a text column (weekday) is derived from `day` so text inputs are served too.
    `flip_labels` trains on the opposite labels (a model that disagrees with the others on almost every row)."""
    import pandas as pd

    from kfp_ct.components._common import datasets
    from kfp_ct.components.featurize.core import featurize
    from kfp_ct.components.train_sklearn.core import train_sklearn

    frame = pd.read_csv(data_dir / "elec2" / "elec2.csv", nrows=ELEC2_ROWS)
    frame["weekday"] = frame["day"].map(WEEKDAYS)
    if flip_labels:
        frame["class"] = frame["class"].map({"UP": "DOWN", "DOWN": "UP"})
    datasets.write_frame(frame, out / "data.parquet", "elec2.csv")
    featurize(
        dataset_path=str(out / "data.parquet"),
        target_column="class",
        train_path=str(out / "train.parquet"),
        test_path=str(out / "test.parquet"),
        featurizer_path=str(out / "featurizer"),
        seed=seed,
    )
    outcome = train_sklearn(
        train_path=str(out / "train.parquet"),
        featurizer_path=str(out / "featurizer"),
        model_path=str(out / "model"),
        model_name=registered,
        estimator=estimator,
        hyperparameters={"max_iter": 20} if hyperparameters is None else hyperparameters,
        seed=seed,
        tracking_uri=tracking_uri,
    )
    prove_fast_path(str(out / "model"), str(out / "test.parquet"))
    return {
        "path": str(out / "model"),
        "test": str(out / "test.parquet"),
        "tracking_uri": tracking_uri,
        "registered": registered,
        "version": outcome.version,
    }


def prove_fast_path(model_dir: str, test_path: str) -> None:
    """Writes the serving fast path's proof into `model_dir`, as push does into the version it publishes."""
    from kfp_ct.components._common import fast_path
    from kfp_ct.components._common.model import load_model

    fast_path.write_proof(fast_path.prove(load_model(model_dir), test_path), model_dir)


def start_model_server(model_uri: str, model_name: str, log_path, env=None, timeout: float = 120):
    """`python -m kfp_ct.components.push.server` on a free loopback port; returns (process, base URL)."""
    port = free_port()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kfp_ct.components.push.server",
                "--model_uri",
                model_uri,
                "--model_name",
                model_name,
                "--http_port",
                str(port),
                "--host",
                "127.0.0.1",
                "--enable_latency_logging",
                "false",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the model server exited with {process.returncode}:\n{open(log_path).read()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{base}/v2/models/{model_name}/ready", timeout=2):
                return process, base
        except OSError:
            time.sleep(0.3)
    process.kill()
    raise RuntimeError(f"the model server was not ready in {timeout} s:\n{open(log_path).read()[-3000:]}")


def stop_model_server(process) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
