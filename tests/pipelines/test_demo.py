"""`make demo` end to end, run as a person runs it (`kfp-ct demo` in a subprocess, once per session): train and push
v1, then a year of traffic served by the champion of the time and captured by the capture sink, labelled later, with
a continuous-training run per quarter (backfill): the drifted quarter retrains on its labelled traffic and promotes
v2, which serves from then on; the quarters without drift are left alone. The console tells that story in under 150
lines; the run report and the history over runs render in headless Chromium (the system's, driven by playwright;
never a downloaded browser), with the DAG, a ROC curve and the charts drawn and no console error."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from kfp_ct.pipelines.local_run import load_run

pytestmark = [pytest.mark.local, pytest.mark.integration]

QUIET = ("continuous 2025Q2", "continuous 2025Q4", "continuous 2026Q1")
PERIODS = ("train 2025H1", "continuous 2025Q3", *QUIET)


def _ran(summary, prefix: str) -> bool:
    return any(task.name.startswith(prefix) for task in summary.tasks)


@pytest.fixture(scope="session")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    result = subprocess.run(
        [sys.executable, "-m", "kfp_ct.pipelines.cli", "demo", "--root", str(root)],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=1800,
    )
    (root / "console.txt").write_text(result.stdout)  # to read beside the screenshots the tests take
    assert result.returncode == 0, f"kfp-ct demo failed; its output:\n{result.stdout[-5000:]}"
    record = json.loads((root / "demo.json").read_text())
    return {
        "root": root,
        "console": result.stdout,
        "runs": {name: load_run(path) for name, path in record["runs"].items()},
        "first_champion": record["first_champion"],
        "champion": record["champion"],
    }


def test_the_loop_retrains_on_drift_and_only_then(demo):
    assert demo["first_champion"] == "1"
    drifted = demo["runs"]["continuous 2025Q3"]
    assert drifted.task("monitor-drift").parameters["Output"] is True
    assert _ran(drifted, "train-sklearn") and drifted.task("evaluate").parameters["Output"] is True
    assert _ran(drifted, "push")
    assert demo["champion"] == "2"
    for name in QUIET:
        steady = demo["runs"][name]
        assert steady.task("monitor-drift").parameters["Output"] is False, name
        assert not _ran(steady, "train-") and not _ran(steady, "push"), name


def test_the_runs_read_the_captured_traffic_of_their_quarter_and_judge_the_served_predictions(demo):
    """Each quarter's window holds the traffic captured in it, answered by v1 until v2 was promoted and by v2 after;
    the drifted quarter's decay is judged on the served model's own labelled predictions, and its retrain learns from
    those labelled rows."""
    from kfp_ct.components._common import capture, windows

    captured = capture.read_capture(str(demo["root"] / "capture"), "loan-default")
    served = list(zip(captured["time"].to_pylist(), captured["model_version"].to_pylist()))
    for name, version in (("continuous 2025Q2", "1"), ("continuous 2025Q3", "1"), ("continuous 2025Q4", "2")):
        dataset = demo["runs"][name].task("ingest").artifacts["dataset"]["metadata"]
        start, end = (windows.parse_time(dataset["window"][k], "window") for k in ("start", "end"))
        in_window = [v for t, v in served if start <= t < end]
        assert dataset["rows"] == len(in_window) > 5000 and set(in_window) == {version}, name
    drifted = demo["runs"]["continuous 2025Q3"]
    assert "performance_decay" in drifted.task("monitor-drift").artifacts["drift_table"]["metadata"]["triggers"]
    featurize = drifted.task("featurize").artifacts
    labels = featurize["featurizer"]["metadata"]["labels"]
    assert labels["labelled_rows"] == sum(featurize[s]["metadata"]["rows"] for s in ("train", "test"))
    assert 0.6 < labels["labelled_rows"] / labels["captured_rows"] < 0.8


def test_the_console_tells_the_story_in_under_150_lines(demo):
    lines = demo["console"].splitlines()
    assert len(lines) < 150, f"{len(lines)} lines:\n{demo['console']}"
    assert not [line for line in lines if line.lstrip().startswith(('"', "{", "}"))], "executor JSON on the console"
    for name in PERIODS:
        for task in demo["runs"][name].tasks:  # one line per task, with its status
            assert any(line.split()[:2] == [task.name, "ok"] for line in lines), f"no line for {task.name}"
    assert sum(line.lstrip().startswith("served ") and "captured by kfp-ct capture-sink" in line for line in lines) == 4
    summary = demo["console"].split("== Summary")[1]
    assert "train 2025H1" in summary and "pushed and promoted version 1" in summary
    assert "continuous 2025Q3" in summary and "retrained, blessed, pushed and promoted version 2" in summary
    for name in QUIET:
        assert next(line for line in summary.splitlines() if name in line).endswith(
            "nothing retrained, the champion stays"
        )
    drifted = next(line for line in lines if line.split()[:1] == ["monitor-drift"] and "retrain" in line)
    assert "drift in" in drifted and "data_drift" in drifted


def _render(url: str, screenshot, selectors: list[str], texts: list[str], profile) -> dict:
    """Opens `url` in headless Chromium with an empty profile; a full-page screenshot, each selector's first
    element's bounding box, each text selector's text, and the page's console errors."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (make test installs it where apt-get is available)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=chromium,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
            viewport={"width": 1400, "height": 1000},
        )
        try:
            page = context.new_page()
            errors = []
            page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("requestfailed", lambda request: errors.append(f"request failed: {request.url}"))
            page.goto(url, wait_until="load")
            page.screenshot(path=str(screenshot), full_page=True)
            boxes = {selector: page.locator(selector).first.bounding_box() for selector in selectors}
            shown = {selector: (page.locator(selector).first.text_content() or "").strip() for selector in texts}
        finally:
            context.close()
    return {"boxes": boxes, "texts": shown, "errors": errors}


def _drawn(boxes: dict) -> list[str]:
    """The selectors whose element is missing or has no area."""
    return [s for s, box in boxes.items() if not box or box["width"] <= 0 or box["height"] <= 0]


def test_the_run_report_draws_the_dag_and_the_roc_curve(demo, tmp_path):
    run = demo["runs"]["continuous 2025Q3"]
    tasks = ["reference-data", "ingest", "validate-2", "monitor-drift", "featurize", "train-sklearn", "push"]
    page = _render(
        run.index.as_uri(),
        demo["root"] / "run-report.png",
        [
            *(f"#dag-{t}" for t in tasks),
            "#dag-train-keras",
            "#dag-gate-1",
            '[id^="roc-evaluate"]',
            '[id^="confusion-"]',
        ],
        ["#dag-status-push", "#dag-status-train-keras", "#dag-status-push-2", "#dag-status-evaluate-3"],
        tmp_path / "profile",
    )
    assert page["errors"] == []
    assert _drawn(page["boxes"]) == []
    assert page["texts"]["#dag-status-push"] == "succeeded"
    assert {page["texts"][s] for s in page["texts"] if s != "#dag-status-push"} == {"skipped"}


def test_a_run_without_drift_shows_the_branch_skipped(demo, tmp_path):
    page = _render(
        demo["runs"]["continuous 2026Q1"].index.as_uri(),
        demo["root"] / "run-report-steady.png",
        ["#dag-monitor-drift", "#dag-featurize"],
        ["#dag-status-monitor-drift", "#dag-status-featurize", "#dag-status-push"],
        tmp_path / "profile",
    )
    assert page["errors"] == [] and _drawn(page["boxes"]) == []
    assert page["texts"] == {
        "#dag-status-monitor-drift": "succeeded",
        "#dag-status-featurize": "skipped",
        "#dag-status-push": "skipped",
    }


def test_the_history_charts_drift_triggers_and_the_champion_over_runs(demo, tmp_path):
    history = demo["root"] / "pipeline_root" / "index.html"
    page = _render(
        history.as_uri(),
        demo["root"] / "history.png",
        [
            "#history-drift-3",  # the drifted window's bar (runs: train, 2025Q2, 2025Q3, ...)
            "#history-trigger-data_drift",
            "#history-trigger-performance_decay",
            "#history-champion-recorded",
            "#history-champion-current",
            "#history-candidate",
            "table.runs",
        ],
        ["table.runs"],
        tmp_path / "profile",
    )
    assert page["errors"] == [] and _drawn(page["boxes"]) == []
    for name in PERIODS:
        assert demo["runs"][name].run_dir.name in page["texts"]["table.runs"]


def test_kfp_ct_report_rebuilds_every_page(demo):
    root = demo["root"] / "pipeline_root"
    pages = [root / "index.html", *(demo["runs"][name].index for name in PERIODS)]
    before = {page: page.read_text() for page in pages}
    for page in pages:
        page.unlink()
    subprocess.run([sys.executable, "-m", "kfp_ct.pipelines.cli", "report", "--root", str(root)], check=True)
    assert {page: page.read_text() for page in pages} == before
