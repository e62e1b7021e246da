"""The drift benchmark runs (--quick): monitor_drift and Evidently on the same 20k-row windows, side by side."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "drift.py"


def test_quick_run_compares_time_memory_and_verdicts_with_evidently(tmp_path):
    figures = tmp_path / "figures.json"
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--json", str(figures)], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert re.search(r"^  monitor_drift: +[\d.]+ s \(cpu +[\d.]+ s\)  peak +\d+ MB  drifted \d+/25", out, re.M), out
    assert re.search(r"^  evidently: +[\d.]+ s \(cpu +[\d.]+ s\)  peak +\d+ MB  drifted \d+/25", out, re.M), out
    assert re.search(r"^  speedup [\d.]+x \(cpu time [\d.]+x\); columns whose verdicts differ: 0$", out, re.M), out
    (result,) = json.loads(figures.read_text())
    assert result["rows"] == 20_000 and result["differing"] == 0
    ours, theirs = result["ours"], result["evidently"]
    assert ours["verdicts"] == theirs["verdicts"] and ours["tests"] == theirs["tests"]
    # the generated drift is found: the clear shifts, and the two columns placed just above/below the threshold
    assert {"num_0", "num_8", "num_16", "cat_0"} <= {c for c, drifted in ours["verdicts"].items() if drifted}
    assert not ours["verdicts"]["num_3"] and not ours["verdicts"]["num_19"]
    assert 0 < ours["peak_mb"] < 2048 and theirs["peak_mb"] > 0
