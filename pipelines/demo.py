"""`make demo`: the whole continuous-training loop, locally, on the embedded loan data.

1. train on 2025H1 and push: champion v1;
2. serve the champion with the catalog's model server and score a few applications;
3. the continuous-training pipeline on 2025H2 (drift): drift found, retrained, blessed, pushed as v2 with a canary
   and promoted;
4. the continuous-training pipeline on 2026H1 (the same population as 2025H2): nothing retrained;
5. a summary: each period's verdict, the champion, and where the run reports and the history over runs are.

Each pipeline run prints one line per task; kfp.local's own output goes to a log file per run (`--verbose` shows it).
`<root>/demo.json` records which run folder is which period.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from kfp_ct.pipelines import sample_data

MODEL_NAME = "loan-default"


def _banner(text: str) -> None:
    print(f"\n== {text}", flush=True)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_and_score(model_uri: str, rows: list[dict]) -> dict:
    """Starts `kfp-ct serve` on a loopback port, sends `rows` through the V1 protocol, stops it."""
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "kfp_ct.pipelines.cli", "serve", model_uri, "--port", str(port), "--name", MODEL_NAME],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base}/v1/models/{MODEL_NAME}", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the model server did not start") from None
                time.sleep(0.5)
        request = urllib.request.Request(
            f"{base}/v1/models/{MODEL_NAME}:predict",
            data=json.dumps({"instances": rows}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())
    finally:
        server.terminate()
        server.wait(timeout=30)


def run_demo(root: str | Path = "runs/demo", verbose: bool = False) -> dict:
    from kfp_ct.components._common import tracking
    from kfp_ct.pipelines import PIPELINES
    from kfp_ct.pipelines.local_run import run_local, verdict_text

    root = Path(root).resolve()
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a page of progress bars otherwise
    data = sample_data.write_sample_data(root / "data")
    common = {
        "target_column": sample_data.TARGET,
        "time_column": sample_data.TIME_COLUMN,
        "model_name": MODEL_NAME,
        "storage_uri": (root / "models").as_uri(),
    }
    runs = {}

    _banner("1/4  Train on 2025H1 and push the first model (champion v1)")
    runs["train 2025H1"] = run_local(
        PIPELINES["training_pipeline"],
        {"source_uri": data["2025H1"], **common},
        root / "pipeline_root",
        verbose=verbose,
    )
    first, model_dir = tracking.champion(MODEL_NAME, dst=root / "serving")

    _banner(f"2/4  Serve champion v{first} with `kfp-ct serve` and score three 2025H2 applications")
    rows = sample_data.generate("2025H2", rows=3).drop(columns=[sample_data.TARGET]).to_dict(orient="records")
    scored = serve_and_score(model_dir, rows)
    for row, prediction in zip(rows, scored["predictions"]):
        application = f"income {row['annual_income']:>9.0f}, loan {row['loan_amount']:>8.0f}"
        print(f"  {application} -> {sample_data.TARGET}: {json.dumps(prediction)}")

    for label, period in (
        ("3/4  Continuous training on 2025H2 (the population drifted)", "2025H2"),
        ("4/4  Continuous training on 2026H1 (the same population as 2025H2)", "2026H1"),
    ):
        _banner(label)
        runs[f"continuous {period}"] = run_local(
            PIPELINES["continuous_training_pipeline"],
            {"current_uri": data[period], **common},
            root / "pipeline_root",
            verbose=verbose,
        )

    _banner("Summary")
    for name, summary in runs.items():
        record = summary.record
        print(f"  {name:<18} {verdict_text(record['verdicts'], record['status'])}")
        print(f"  {'':<18} {summary.index}")
    champion = tracking.get_alias(MODEL_NAME, tracking.CHAMPION)
    print(f"  champion of '{MODEL_NAME}': v{champion} (was v{first}); registry: {os.environ['MLFLOW_TRACKING_URI']}")
    print(f"  history over runs: {root / 'pipeline_root' / 'index.html'}")
    (root / "demo.json").write_text(
        json.dumps(
            {"runs": {name: str(s.run_dir) for name, s in runs.items()}, "first_champion": first, "champion": champion}
        )
    )
    return {"runs": runs, "first_champion": first, "champion": champion}
