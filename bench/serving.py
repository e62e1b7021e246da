"""Benchmark: the catalog's model server against `mlflow models serve` and a bare kserve.Model, same model.

The model is a scikit-learn HistGradientBoosting classifier trained with train_sklearn's core on elec2 (a kfp-ct
model directory: featurizer + estimator, raw rows in). It is served three ways, one after the other, each in its own
subprocess on a free loopback port, each with one OpenMP thread (OMP_NUM_THREADS=1, the same for all three):

- kfp-ct:   `kfp-ct serve MODEL` (push.server.serve): V1 `{"instances": [raw record]}`, checked against the
            signature, featurized, answered with the label and the class probabilities;
- mlflow:   `mlflow models serve -m MODEL --env-manager local -w 1`: `{"dataframe_split": ...}` of the same raw row;
- bare:     a kserve.Model under the same kserve.ModelServer settings whose predict is only
            `estimator.predict_proba(np.asarray(instances, dtype=np.float32))`, sent the row already featurized
            (no checks, no featurizer: the floor of what a kserve.Model can do with this estimator).

A bounded load generator in its own process keeps 8 keep-alive connections busy (threads, http.client), one row per
request, and records each request's latency; answers are checked against the model's own predictions.

    python bench/serving.py           # full elec2, 15 s per server
    python bench/serving.py --quick   # a 5000-row slice, 3 s per server: the smoke run tests/bench calls

Goals: kfp-ct >= 6x mlflow's requests/s, >= 0.9x the bare kserve.Model's, p99 < 50 ms, zero errors.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
ELEC2 = REPO.parent / "shared" / "data" / "elec2" / "elec2.csv"
CONNECTIONS = 8
GOAL_VS_MLFLOW = 6.0
GOAL_VS_BARE = 0.9
GOAL_P99_MS = 50.0
NAME = "elec2"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the model ---------------------------------------------------------------------------------------------------


def train(workdir: Path, rows: int | None, max_iter: int) -> dict:
    import pandas as pd

    from kfp_ct.components._common import datasets, fast_path
    from kfp_ct.components._common.model import load_model
    from kfp_ct.components.featurize.core import featurize
    from kfp_ct.components.train_sklearn.core import train_sklearn

    frame = pd.read_csv(ELEC2, nrows=rows)
    datasets.write_frame(frame, workdir / "elec2.parquet", str(ELEC2))
    featurize(
        dataset_path=str(workdir / "elec2.parquet"),
        target_column="class",
        train_path=str(workdir / "train.parquet"),
        test_path=str(workdir / "test.parquet"),
        featurizer_path=str(workdir / "featurizer"),
    )
    train_sklearn(
        train_path=str(workdir / "train.parquet"),
        featurizer_path=str(workdir / "featurizer"),
        model_path=str(workdir / "model"),
        model_name=NAME,
        hyperparameters={"max_iter": max_iter},
        tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}",
    )
    model = load_model(workdir / "model")
    # the proof push publishes with a model (the fast path equals the model on the whole test split)
    fast_path.write_proof(fast_path.prove(model, workdir / "test.parquet"), workdir / "model")
    names = [name for name, _ in model.input_columns]
    test = pd.read_parquet(workdir / "test.parquet").head(500)[names]
    records = json.loads(test.to_json(orient="records"))
    return {
        "path": str(workdir / "model"),
        "names": names,
        "records": records,
        "features": model.featurizer.transform(test).astype(float).tolist(),
        "labels": model.predict(test).tolist(),
        "proba": model.predict_proba(test).tolist(),
    }


# --- the bare kserve.Model (run in its own process: `python bench/serving.py --bare MODEL PORT`) ----------------


def bare_server(model_path: str, port: int) -> None:
    import kserve
    from kfp_ct.components._common.model import load_model
    from kfp_ct.components.push.server import _model_server, _quiet_per_request_logs

    estimator = load_model(model_path).scorer.pipeline.steps[-1][1]  # the fitted estimator alone, read from skops

    class BareModel(kserve.Model):
        def __init__(self, name):
            super().__init__(name)
            self.ready = True

        async def predict(self, payload, headers=None, response_headers=None):
            return {"probabilities": estimator.predict_proba(np.asarray(payload["instances"], dtype=np.float32))}

    server = _model_server("127.0.0.1", http_port=port, enable_grpc=False, enable_latency_logging=False)
    _quiet_per_request_logs()
    server.start([BareModel(NAME)])


# --- servers -----------------------------------------------------------------------------------------------------


def start(kind: str, model_path: str, port: int, log_path: Path, extra: tuple[str, ...] = ()) -> subprocess.Popen:
    bin_dir = Path(sys.executable).parent  # mlflow starts `uvicorn` from PATH
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    if kind == "kfp-ct":
        cli = bin_dir / "kfp-ct"
        args = [str(cli)] if cli.exists() else [sys.executable, "-m", "kfp_ct.pipelines.cli"]
        args += ["serve", model_path, "--port", str(port), "--host", "127.0.0.1", "--name", NAME, *extra]
    elif kind == "mlflow":
        args = [
            sys.executable,
            "-m",
            "mlflow",
            "models",
            "serve",
            "-m",
            model_path,
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-w",
            "1",
        ]
    else:
        args = [sys.executable, __file__, "--bare", model_path, str(port)]
    with open(log_path, "wb") as log:
        return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def wait_ready(url: str, process: subprocess.Popen, log_path: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer in {timeout} s:\n{log_path.read_text()[-3000:]}")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


# --- load generator (its own process) ------------------------------------------------------------------------------


def _load(port: int, path: str, bodies: list[bytes], duration: float, queue) -> None:
    import http.client
    import threading

    latencies, errors, statuses = [], [], {}
    lock = threading.Lock()
    deadline = time.perf_counter() + duration

    def worker(offset: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        local, i = [], offset
        while time.perf_counter() < deadline:
            body = bodies[i % len(bodies)]
            i += CONNECTIONS
            start_time = time.perf_counter()
            try:
                connection.request("POST", path, body, {"content-type": "application/json"})
                response = connection.getresponse()
                response.read()
            except Exception as err:
                with lock:
                    errors.append(f"{type(err).__name__}: {err}")
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                continue
            local.append(time.perf_counter() - start_time)
            with lock:
                statuses[response.status] = statuses.get(response.status, 0) + 1
        connection.close()
        with lock:
            latencies.extend(local)

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(w,)) for w in range(CONNECTIONS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    queue.put(
        {
            "latencies": latencies,
            "errors": errors[:5],
            "n_errors": len(errors),
            "statuses": statuses,
            "elapsed": elapsed,
        }
    )


def run_load(port: int, path: str, bodies: list[bytes], duration: float) -> dict:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_load, args=(port, path, bodies, duration, queue))
    process.start()
    result = queue.get(timeout=duration + 120)
    process.join(timeout=30)
    lat = np.asarray(result["latencies"]) * 1000
    ok = result["statuses"].get(200, 0)
    bad = sum(n for status, n in result["statuses"].items() if status != 200) + result["n_errors"]
    return {
        "requests": len(lat),
        "rps": len(lat) / result["elapsed"],
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
        "ok": ok,
        "errors": bad,
        "statuses": result["statuses"],
        "error_samples": result["errors"],
    }


# --- correctness of each server's answers ------------------------------------------------------------------------


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def check(kind: str, base: str, model: dict, n: int = 50) -> None:
    if kind == "kfp-ct":
        answer = post(f"{base}/v1/models/{NAME}:predict", {"instances": model["records"][:n]})
        assert answer["predictions"] == model["labels"][:n], "kfp-ct labels differ from the model's"
        assert np.allclose(answer["probabilities"], model["proba"][:n], atol=1e-9), "kfp-ct probabilities differ"
    elif kind == "mlflow":
        rows = [[r[c] for c in model["names"]] for r in model["records"][:n]]
        answer = post(f"{base}/invocations", {"dataframe_split": {"columns": model["names"], "data": rows}})
        assert answer["predictions"] == model["labels"][:n], "mlflow labels differ from the model's"
    else:
        answer = post(f"{base}/v1/models/{NAME}:predict", {"instances": model["features"][:n]})
        assert np.allclose(answer["probabilities"], model["proba"][:n], atol=1e-6), "bare probabilities differ"


def bodies_for(kind: str, model: dict) -> tuple[str, list[bytes]]:
    if kind == "kfp-ct":
        return f"/v1/models/{NAME}:predict", [json.dumps({"instances": [r]}).encode() for r in model["records"]]
    if kind == "mlflow":
        return "/invocations", [
            json.dumps(
                {"dataframe_split": {"columns": model["names"], "data": [[r[c] for c in model["names"]]]}}
            ).encode()
            for r in model["records"]
        ]
    return f"/v1/models/{NAME}:predict", [json.dumps({"instances": [f]}).encode() for f in model["features"]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small smoke run (5000 rows, 3 s per server)")
    parser.add_argument("--seconds", type=float, default=None, help="load duration per server")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--bare", nargs=2, metavar=("MODEL", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare:
        bare_server(args.bare[0], int(args.bare[1]))
        return 0
    seconds = args.seconds or (3.0 if args.quick else 15.0)
    workdir = Path(tempfile.mkdtemp(prefix="kfp-ct-bench-serving-"))
    try:
        print(f"training HistGradientBoosting on elec2 ({'5000 rows' if args.quick else 'all rows'}) ...", flush=True)
        model = train(workdir, 5000 if args.quick else None, 50 if args.quick else 200)
        figures = {}
        for kind in ("kfp-ct", "mlflow", "bare"):
            port = free_port()
            log = workdir / f"{kind}.log"
            process = start(kind, model["path"], port, log)
            try:
                health = f"http://127.0.0.1:{port}" + ("/health" if kind == "mlflow" else f"/v2/models/{NAME}/ready")
                wait_ready(health, process, log)
                check(kind, f"http://127.0.0.1:{port}", model)
                path, bodies = bodies_for(kind, model)
                run_load(port, path, bodies, min(seconds, 2.0))  # warm-up
                figures[kind] = run_load(port, path, bodies, seconds)
            finally:
                stop(process)
            f = figures[kind]
            print(
                f"  {kind}: {f['rps']:.0f} req/s  p50 {f['p50_ms']:.2f} ms  p99 {f['p99_ms']:.2f} ms  "
                f"errors {f['errors']}",
                flush=True,
            )
        ours, mlflow_, bare = figures["kfp-ct"], figures["mlflow"], figures["bare"]
        vs_mlflow, vs_bare = ours["rps"] / mlflow_["rps"], ours["rps"] / bare["rps"]
        print(f"\n{CONNECTIONS} connections, one row per request, {seconds:g} s per server, OMP_NUM_THREADS=1\n")
        print(f"{'server':<28}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}")
        for kind, label in (
            ("kfp-ct", "kfp-ct serve"),
            ("mlflow", "mlflow models serve"),
            ("bare", "bare kserve.Model"),
        ):
            f = figures[kind]
            print(f"{label:<28}{f['rps']:>10.0f}{f['p50_ms']:>10.2f}{f['p99_ms']:>10.2f}{f['errors']:>8}")
        goals = {
            "vs_mlflow": vs_mlflow >= GOAL_VS_MLFLOW,
            "vs_bare": vs_bare >= GOAL_VS_BARE,
            "p99": ours["p99_ms"] < GOAL_P99_MS,
            "errors": all(f["errors"] == 0 for f in figures.values()),
        }
        print(
            f"\nkfp-ct / mlflow: {vs_mlflow:.1f}x (goal >= {GOAL_VS_MLFLOW:g}x: "
            f"{'met' if goals['vs_mlflow'] else 'NOT met'})"
        )
        print(
            f"kfp-ct / bare kserve.Model: {vs_bare:.2f}x (goal >= {GOAL_VS_BARE:g}x: "
            f"{'met' if goals['vs_bare'] else 'NOT met'})"
        )
        print(
            f"kfp-ct p99: {ours['p99_ms']:.2f} ms (goal < {GOAL_P99_MS:g} ms: {'met' if goals['p99'] else 'NOT met'})"
        )
        print(
            f"errors: {sum(f['errors'] for f in figures.values())} (goal 0: {'met' if goals['errors'] else 'NOT met'})"
        )
        if args.json:
            Path(args.json).write_text(
                json.dumps(
                    {
                        "figures": figures,
                        "vs_mlflow": vs_mlflow,
                        "vs_bare": vs_bare,
                        "goals": goals,
                        "seconds": seconds,
                        "quick": args.quick,
                    }
                )
            )
        return 0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
