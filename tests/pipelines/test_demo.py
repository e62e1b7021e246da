"""`make demo` end to end: train and push v1, serve it, retrain on drift and promote v2, then leave a window
without drift alone; and the per-run index.html renders in headless Chromium."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from kfp_ct.pipelines.demo import run_demo

pytestmark = [pytest.mark.local, pytest.mark.integration]


def _ran(summary, prefix: str) -> bool:
    return any(task.name.startswith(prefix) for task in summary.tasks)


@pytest.fixture(scope="module")
def demo(tmp_path_factory, monkeypatch_module):
    root = tmp_path_factory.mktemp("demo")
    monkeypatch_module.chdir(root)
    return run_demo(root)


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_the_loop_retrains_on_drift_and_only_then(demo):
    assert demo["first_champion"] == "1"
    drifted, steady = demo["runs"]["continuous 2025H2"], demo["runs"]["continuous 2026H1"]
    assert drifted.task("monitor-drift").parameters["Output"] is True
    assert _ran(drifted, "train-sklearn") and drifted.task("evaluate").parameters["Output"] is True
    assert _ran(drifted, "push")
    assert demo["champion"] == "2"
    assert steady.task("monitor-drift").parameters["Output"] is False
    assert not _ran(steady, "train-") and not _ran(steady, "push")


def test_index_renders_in_headless_chromium(demo, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (make test installs it where apt-get is available)")
    index = demo["runs"]["continuous 2025H2"].index
    dom = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path}",
            "--dump-dom",
            index.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert "<h1>continuous-training-pipeline</h1>" in dom
    assert 'class="roc"' in dom and 'class="confusion"' in dom and 'class="metrics"' in dom
    assert "reports/monitor-drift.report.html" in dom and "model_card" in dom
