"""The ingest + validate benchmark runs (--quick) and prints its figures, side by side with its baseline."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "ingest_validate.py"


def test_quick_run_prints_time_memory_and_the_ratio():
    done = subprocess.run([sys.executable, str(BENCH), "--quick"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert re.search(r"^rows\s+20,000\s+200,000$", out, re.M), out
    for label in ("ingest \\(s\\)", "validate \\(s\\)", "ingest \\+ validate \\(s\\)", "peak RSS \\(MB\\)"):
        match = re.search(rf"^{label}\s+([\d.]+)\s+([\d.]+)$", out, re.M)
        assert match, f"no '{label}' line in:\n{out}"
        assert float(match.group(1)) > 0 and float(match.group(2)) > 0
    peak = float(re.search(r"^peak RSS \(MB\)\s+[\d.]+\s+([\d.]+)$", out, re.M).group(1))
    assert 50 < peak < 4096
    ratio = re.search(r"^time ratio large/small: ([\d.]+) for 10x the rows \(goal <= 12\): (met|NOT met)$", out, re.M)
    assert ratio and float(ratio.group(1)) > 1, out
    assert re.search(r"^peak RSS large: \d+ MB \(goal < 4096 MB\): met$", out, re.M), out
    # the generated data passes a reference schema from the same generator: no blocking anomaly at either size
    assert re.search(r"^anomalies \(blocking\)\s+\d+ \(0\)\s+\d+ \(0\)$", out, re.M), out


def test_quick_s3_run_prints_local_and_s3_side_by_side():
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--source", "s3"], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert re.search(r"^\s+baseline \(local\)\s+s3 \(moto\)$", out, re.M), out
    assert re.search(r"^rows\s+200,000\s+200,000$", out, re.M), out
    assert re.search(r"^time ratio s3/local: [\d.]+ \(goal <= 1.5\): (met|NOT met); ingest ratio [\d.]+", out, re.M)
    assert re.search(r"^peak RSS s3: \d+ MB, local: \d+ MB, ratio [\d.]+ \(goal <= 1.25\)", out, re.M), out
    assert re.search(r"^anomalies \(blocking\)\s+\d+ \(0\)\s+\d+ \(0\)$", out, re.M), out
