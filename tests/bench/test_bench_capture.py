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
    assert re.search(r"^  events/s: [\d,]+  \(goal >= 5,000\)$", out, re.M), out
    assert re.search(r"^  ack latency: p50 [\d.]+ ms  p99 [\d.]+ ms", out, re.M), out
    assert re.search(r"^  sink CPU per event: \d+ us = [\d,]+ events/s per CPU core", out, re.M), out
    assert re.search(r"^  ratio with/without: [\d.]+  cost -?[\d.]+% \(goal <= 10%\): (met|NOT met)$", out, re.M), out
    result = json.loads(figures.read_text())
    sink, plain, captured = result["sink"], result["plain"], result["captured"]
    # nothing acknowledged is missing, and no event was refused
    assert sink["pairs_captured"] == sink["pairs_acknowledged"] > 100
    assert set(sink["statuses"]) == {"200"} and sink["stats"]["malformed"] == 0
    assert plain["errors"] == 0 and captured["errors"] == 0
    assert captured["captured_rows"] == captured["answered"] > 0  # every answered request was captured
