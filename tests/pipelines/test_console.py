"""`kfp-ct run` as a person sees it when a task fails: a few lines, the task's own error and the log's path, not a
page of executor JSON; the run still gets its record and its report."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.local


def test_a_failed_task_prints_its_error_and_the_log(tmp_path):
    missing = tmp_path / "nowhere.csv"
    result = subprocess.run(
        [sys.executable, "-m", "kfp_ct.pipelines.cli", "run", "data_pipeline", "--root", "runs"]
        + ["--param", f"source_uri={missing}", "--param", "target_column=label"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=600,
    )
    lines = result.stdout.splitlines()
    assert result.returncode == 1, result.stdout
    assert len(lines) <= 6, result.stdout
    assert lines[0].startswith("data-pipeline: log runs/logs/data-pipeline-")
    assert lines[1].split()[:2] == ["ingest", "FAILED"]
    error = next(line for line in lines if "task ingest failed:" in line)
    assert "Error" in error and "nowhere.csv" in error, error  # the exception's own line
    log = tmp_path / lines[0].split(" log ")[1]
    assert "Executing task" in log.read_text() and "nowhere.csv" in log.read_text()
    (run_dir,) = (p for p in (tmp_path / "runs").iterdir() if p.name.startswith("data-pipeline-"))
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "failed" and record["error"] == error.split("task ingest failed: ")[1]
    assert [(t["name"], t["status"]) for t in record["tasks"]] == [("ingest", "failed")]
    page = (run_dir / "index.html").read_text()
    assert 'id="dag-status-ingest"' in page and ">failed<" in page and ">not run<" in page
    assert (tmp_path / "runs" / "index.html").is_file()
