"""The windowed-ingest benchmark runs (--quick): 365 daily partitions, a 7-day window reads 7 of them, timed against
ingesting those 7 alone."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "ingest_window.py"


def test_quick_run_reads_only_the_windows_partitions(tmp_path):
    figures = tmp_path / "figures.json"
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--json", str(figures)], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert re.search(r"^  windowed \(whole source\): +[\d.]+ s  files read 7 of 365, 3,500 rows$", out, re.M), out
    assert re.search(r"^  baseline \(7 partitions alone\): [\d.]+ s$", out, re.M), out
    assert re.search(r"^  ratio [\d.]+x \((meets|MISSES) the goal <= 1.5x\)$", out, re.M), out
    result = json.loads(figures.read_text())
    assert (result["partitions"], result["partitions_needed"], result["files_read"]) == (365, 7, 7)
    assert result["rows"] == 7 * 500 and result["ratio"] > 0
