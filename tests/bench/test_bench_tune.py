"""The tune benchmark runs (--quick): three measurements with the same hyperparameters and scores, and its figures
printed beside the direct-fit baseline with the ratios and whether the goals are met."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "tune.py"


def test_quick_run_prints_times_ratios_and_goals():
    done = subprocess.run([sys.executable, str(BENCH), "--quick"], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    out = done.stdout
    assert re.search(r"^tune benchmark: 4 trials of a random forest \(3 trees\) on \d+ fit rows", out, re.M)
    for label in ("direct fits \\(baseline\\)", "tune, 1 parallel trial", "tune, 2 parallel trials"):
        match = re.search(rf"^  {label}\s+([\d.]+)\s+([\d.]+)", out, re.M)
        assert match and float(match.group(1)) > 0, f"no '{label}' line in:\n{out}"
    assert "same hyperparameters and scores in all three runs: True" in out
    assert re.search(
        r"^  tuning overhead \(1 parallel\) vs direct fits: [+-][\d.]+% \(goal < 10%\): (met|NOT met)$", out, re.M
    ), out
    assert re.search(r"^  2 parallel vs 1 parallel: [\d.]+x faster \(goal >= 1.6x\): (met|NOT met)$", out, re.M), out
