"""The serving benchmark runs (--quick): kfp-ct serve, mlflow models serve and a bare kserve.Model on one model."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "serving.py"


@pytest.mark.integration
def test_quick_run_serves_the_same_model_three_ways(tmp_path):
    figures = tmp_path / "figures.json"
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--seconds", "2", "--json", str(figures)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    for label in ("kfp-ct serve", "mlflow models serve", "bare kserve.Model"):
        assert re.search(rf"^{re.escape(label)} +\d+ +[\d.]+ +[\d.]+ +0$", out, re.M), out
    assert re.search(r"^kfp-ct / mlflow: [\d.]+x \(goal >= 6x: (met|NOT met)\)$", out, re.M), out
    assert re.search(r"^kfp-ct / bare kserve.Model: [\d.]+x", out, re.M), out
    result = json.loads(figures.read_text())
    assert result["goals"]["errors"]  # every answer checked against the model's own, none failed
    assert all(f["requests"] > 0 and f["ok"] == f["requests"] for f in result["figures"].values())
    # the ordering is robust even on a busy machine: checking and featurizing a row costs far less than MLflow's
    # pandas scoring path
    assert result["vs_mlflow"] > 1.5, out
