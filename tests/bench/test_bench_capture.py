"""The capture benchmark runs (--quick) and prints its figures: the sink's events/s, acknowledgement latency and CPU
per event, every acknowledged pair captured as a row, and `kfp-ct serve` with and without --capture side by side."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "capture.py"


def test_quick_run_prints_the_sink_and_the_serving_cost(tmp_path):
    figures = tmp_path / "figures.json"
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--json", str(figures)], capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert re.search(r"^    events acknowledged: [\d,]+ of [\d,]+ due", out, re.M), out  # at the goal's rate
    assert re.search(r"^    events/s: [\d,]+  \(goal >= 5,000\)$", out, re.M), out  # at its capacity
    assert len(re.findall(r"^    ack latency: p50 [\d.]+ ms  p99 [\d.]+ ms", out, re.M)) == 2, out
    assert re.search(r"^    sink CPU per event: \d+ us = [\d,]+ events/s per CPU core", out, re.M), out
    assert re.search(r"^  ratio with/without: [\d.]+  cost -?[\d.]+% \(goal <= 10%\): (met|NOT met)$", out, re.M), out
    result = json.loads(figures.read_text())
    paced, sink, plain, captured = (result[k] for k in ("paced", "sink", "plain", "captured"))
    # nothing acknowledged is missing, and no event was refused
    for run in (paced, sink):
        assert run["pairs_captured"] == run["pairs_acknowledged"] > 100
        assert set(run["statuses"]) == {"200"} and run["stats"]["malformed"] == 0
    assert paced["due"] == 15_000  # 3 s at 5,000 events/s
    assert plain["errors"] == 0 and captured["errors"] == 0
    assert captured["captured_rows"] == captured["answered"] > 0  # every answered request was captured
