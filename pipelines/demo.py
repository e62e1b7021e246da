"""`make demo`: the whole continuous-training loop over time, locally, on the embedded loan data.

1. train on 2025H1 and push: champion v1;
2. a year of loan applications (2025-04-01 to 2026-03-31) arrives as traffic, a quarter (91 days) at a time, and
   the continuous-training pipeline runs as a recurring run would have, once per quarter (`kfp-ct backfill`,
   window "91d"). Before each run that quarter's applications are scored by the champion of the time on the
   catalog's model server (`kfp-ct serve`; a day's applications in one request), every request and answer is
   captured into time-partitioned Parquet by `kfp-ct capture-sink` (sent as KServe's logger sends them: a
   CloudEvent pair per request, with the time of the day's last application), and the ground truth of 70% of them
   arrives later as a labels file. Each run reads its quarter
   of captured traffic, compares it with the champion's training data, judges the served model's own predictions
   on the labelled rows and, when a trigger fires, retrains on them:
   - 2025Q2 (the population of 2025H1): quiet;
   - 2025Q3 (the population drifted and defaults follow other causes): drift and decay found, retrained on the
     quarter's labelled traffic, blessed against v1, pushed and promoted (v2, which serves from then on);
   - 2025Q4 and 2026Q1 (the same population as 2025Q3): quiet, against v2's training data;
3. a summary: each period's verdict, the champion, and where the run reports and the history over runs are.

Each pipeline run prints one line per task; kfp.local's own output goes to a log file per run (`--verbose` shows it).
`<root>/demo.json` records which run folder is which period.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

from kfp_ct.pipelines import sample_data

MODEL_NAME = "loan-default"
WINDOW = "91d"
FIRST, LAST = "2025-04-01T00:00:00Z", "2026-03-31T00:00:00Z"
TRAFFIC_ROWS = 12_000
"""Applications per half-year of traffic (a new draw: seed 1; the training data is seed 0)."""
LABELLED = 0.7
"""The share of applications whose outcome is known by the next run."""
QUARTERS = {"2025-07-01": "2025Q2", "2025-09-30": "2025Q3", "2025-12-30": "2025Q4", "2026-03-31": "2026Q1"}
REQUEST = "org.kubeflow.serving.inference.request"
RESPONSE = "org.kubeflow.serving.inference.response"


def _banner(text: str) -> None:
    print(f"\n== {text}", flush=True)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(command: list[str], ready_path: str) -> tuple[subprocess.Popen, str]:
    """Starts `kfp-ct COMMAND --port P` and waits until GET `ready_path` answers; (process, base URL)."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "kfp_ct.pipelines.cli", *command, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(base + ready_path, timeout=2):
                return process, base
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"kfp-ct {command[0]} did not start") from None
            time.sleep(0.3)


def _stop(process: subprocess.Popen) -> None:
    process.terminate()  # the sink writes what it holds, then exits
    if process.wait(timeout=120) not in (0, -15):
        raise RuntimeError(f"{process.args[3]} exited with {process.returncode}")


def _post(url: str, body: bytes, headers: dict) -> bytes:
    request = urllib.request.Request(url, data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.read()
    except urllib.error.HTTPError as err:
        raise RuntimeError(f"{url} answered {err.code}: {err.read().decode(errors='replace')[:500]}") from None


class Traffic:
    """A year of applications served by the champion of the time and captured as KServe's logger would send it."""

    def __init__(self, root: Path):
        import pandas as pd

        self.root = root
        frames = [sample_data.generate(period, TRAFFIC_ROWS, seed=1) for period in sample_data.PERIODS]
        self.applications = pd.concat(frames, ignore_index=True)
        self.times = pd.to_datetime(self.applications[sample_data.TIME_COLUMN], utc=True)
        self.inputs = [c for c in self.applications.columns if c != sample_data.TARGET]
        self.server, self.version, self.model_dir = None, None, None
        (root / "labels").mkdir(parents=True, exist_ok=True)

    def close(self) -> None:
        if self.server is not None:
            _stop(self.server)

    def _serve_champion(self) -> None:
        from kfp_ct.components._common import tracking

        if tracking.get_alias(MODEL_NAME, tracking.CHAMPION) == self.version:
            return
        self.close()
        version, model_dir = tracking.champion(MODEL_NAME, dst=self.root / "serving" / f"after-v{self.version}")
        self.model_dir = str(model_dir)
        self.server, self.base = _start(["serve", self.model_dir, "--name", MODEL_NAME], f"/v1/models/{MODEL_NAME}")
        self.version = version

    def __call__(self, start: datetime, end: datetime) -> None:
        """Serves and captures the applications of [start, end), then writes the labels that arrive later."""
        import numpy as np
        import pandas as pd
        from cloudevents.conversion import to_binary
        from cloudevents.http import CloudEvent

        self._serve_champion()
        sink, sink_base = _start(
            ["capture-sink", "--capture", str(self.root / "capture"), "--wal", str(self.root / "wal")], "/healthz"
        )
        quarter = self.applications[(self.times >= start) & (self.times < end)]
        days = self.times[quarter.index].dt.floor("D")
        query = urllib.parse.urlencode({"model_uri": self.model_dir, "version": self.version})
        logger_url = f"{sink_base}/models/{MODEL_NAME}?{query}"

        def send(group: pd.DataFrame) -> list[dict]:
            """One request (the applications of one day) to the server; its request and answer to the sink."""
            request_id = f"{MODEL_NAME}-{days[group.index[0]]:%Y%m%d}"
            rows = group[self.inputs].astype(object).where(group[self.inputs].notna(), None).to_dict("records")
            request = {"instances": rows}
            answer = _post(
                f"{self.base}/v1/models/{MODEL_NAME}:predict",
                json.dumps(request).encode(),
                {"Content-Type": "application/json"},
            )
            when = self.times[group.index[-1]].isoformat().replace("+00:00", "Z")
            for kind, data in ((REQUEST, request), (RESPONSE, json.loads(answer))):
                event = CloudEvent(
                    {"type": kind, "source": "http://localhost:9081/", "id": request_id, "time": when}, data
                )
                headers, payload = to_binary(event)
                _post(logger_url, payload, headers)
            return [
                {"request_id": request_id, "row": i, sample_data.TARGET: y}
                for i, y in enumerate(group[sample_data.TARGET])
            ]

        try:
            with ThreadPoolExecutor(8) as pool:  # several requests in flight, as a server sees them
                outcomes = [row for rows in pool.map(send, (g for _, g in quarter.groupby(days))) for row in rows]
        finally:
            _stop(sink)
        known = pd.DataFrame(outcomes).sample(frac=LABELLED, random_state=np.random.default_rng(start.toordinal()))
        known.to_csv(self.root / "labels" / f"{start:%Y-%m-%d}.csv", index=False)
        print(
            f"  served {len(quarter)} applications of [{start:%Y-%m-%d}, {end:%Y-%m-%d}) with champion v{self.version}"
            f" ({quarter.groupby(days).ngroups} requests, captured by kfp-ct capture-sink); {len(known)} labelled"
            " later",
            flush=True,
        )


def run_demo(root: str | Path = "runs/demo", verbose: bool = False) -> dict:
    from kfp_ct.components._common import tracking
    from kfp_ct.pipelines import PIPELINES
    from kfp_ct.pipelines.backfill import backfill
    from kfp_ct.pipelines.local_run import load_run, run_local, verdict_text

    root = Path(root).resolve()
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a page of progress bars otherwise
    data = sample_data.write_sample_data(root / "data")
    common = {
        "target_column": sample_data.TARGET,
        "model_name": MODEL_NAME,
        "storage_uri": (root / "models").as_uri(),
    }

    _banner("1/2  Train on 2025H1 and push the first model (champion v1)")
    trained = run_local(
        PIPELINES["training_pipeline"],
        {"source_uri": data["2025H1"], "time_column": sample_data.TIME_COLUMN, **common},
        root / "pipeline_root",
        verbose=verbose,
    )
    first = tracking.get_alias(MODEL_NAME, tracking.CHAMPION)
    runs = {"train 2025H1": trained.run_dir}

    _banner(
        f"2/2  A year of traffic served and captured, a continuous-training run per quarter ({WINDOW} windows): "
        f"kfp-ct backfill --from {FIRST} --to {LAST} --every {WINDOW}"
    )
    traffic = Traffic(root)
    try:
        periods = backfill(
            PIPELINES["continuous_training_pipeline"],
            {
                "current_uri": str(root / "capture" / f"model={MODEL_NAME}"),
                "time_column": "time",
                "labels_uri": str(root / "labels"),
                **common,
            },
            FIRST,
            LAST,
            WINDOW,
            root / "pipeline_root",
            verbose=verbose,
            before_run=traffic,
        )
    finally:
        traffic.close()
    for period in periods:
        runs[f"continuous {QUARTERS[period['end'][:10]]}"] = Path(period["run_dir"])

    _banner("Summary")
    for name, run_dir in runs.items():
        summary = load_run(run_dir)
        print(f"  {name:<18} {verdict_text(summary.record['verdicts'], summary.record['status'])}")
        print(f"  {'':<18} {summary.index}")
    champion = tracking.get_alias(MODEL_NAME, tracking.CHAMPION)
    print(f"  champion of '{MODEL_NAME}': v{champion} (was v{first}); registry: {os.environ['MLFLOW_TRACKING_URI']}")
    print(f"  captured traffic: {root / 'capture'}; labels: {root / 'labels'}")
    print(f"  history over runs: {root / 'pipeline_root' / 'index.html'}")
    (root / "demo.json").write_text(
        json.dumps(
            {"runs": {name: str(path) for name, path in runs.items()}, "first_champion": first, "champion": champion}
        )
    )
    return {"runs": runs, "first_champion": first, "champion": champion}
