"""The run report's parts without kfp.local: the DAG read from a compiled spec (with the branches not taken), the
console's lines, a failed task's error found in the log, and the verdicts."""

from __future__ import annotations

import pytest
from google.protobuf import json_format

from kfp_ct.pipelines import PIPELINES
from kfp_ct.pipelines.local_run import describe_figures, failure_message, task_line, verdict_text
from kfp_ct.pipelines.report import draw_dag, node_statuses, pipeline_graph

UPSTREAM = ("preflight", "reference-data", "validate", "ingest", "validate-2", "monitor-drift")


@pytest.fixture(scope="module")
def continuous():
    return pipeline_graph(json_format.MessageToDict(PIPELINES["continuous_training_pipeline"].pipeline_spec))


def _by_folder(nodes, status):
    return {node.folder: status[node_id] for node_id, node in nodes.items() if node.kind == "task"}


def test_the_graph_has_every_task_and_a_gate_per_branch(continuous):
    nodes, edges = continuous
    tasks = sorted(n.folder for n in nodes.values() if n.kind == "task")
    assert tasks == sorted(
        [*UPSTREAM, "featurize", "train-sklearn", "evaluate", "push", "train-torch", "evaluate-2", "push-2"]
        + ["train-keras", "evaluate-3", "push-3", "monitor-drift-2"]  # monitor-drift-2: the "no new data" branch
    )
    gates = {n.label: node_id for node_id, n in nodes.items() if n.kind == "gate"}
    assert "if monitor-drift-Output == true" in gates and "if framework == 'sklearn'" in gates
    retrain = gates["if monitor-drift-Output == true"]
    drift = next(node_id for node_id, n in nodes.items() if n.folder == "monitor-drift")
    assert (drift, retrain) in edges and (retrain, f"{retrain}/featurize") in edges
    push = next(node_id for node_id, n in nodes.items() if n.folder == "push")
    assert (
        retrain in nodes[push].gates and len(nodes[push].gates) == 5
    )  # new data, triggered, sklearn, blessed, no approval


def test_a_window_without_drift_skips_the_whole_branch(continuous):
    nodes, edges = continuous
    status = node_statuses(nodes, edges, dict.fromkeys(UPSTREAM, "succeeded"), "succeeded")
    by_folder = _by_folder(nodes, status)
    assert {by_folder[t] for t in UPSTREAM} == {"succeeded"}
    assert {s for t, s in by_folder.items() if t not in UPSTREAM} == {"skipped"}
    gates = {n.label: status[i] for i, n in nodes.items() if n.kind == "gate"}
    assert gates.pop("if int(ingest-Output) > 0") == "taken" and set(gates.values()) == {"skipped"}


def test_an_empty_window_takes_the_no_new_data_branch(continuous):
    nodes, edges = continuous
    ran = ("preflight", "reference-data", "validate", "ingest", "monitor-drift-2")
    status = node_statuses(nodes, edges, dict.fromkeys(ran, "succeeded"), "succeeded")
    by_folder = _by_folder(nodes, status)
    assert {t for t, s in by_folder.items() if s == "succeeded"} == set(ran)
    gates = {n.label: status[i] for i, n in nodes.items() if n.kind == "gate"}
    assert gates.pop("if !(int(ingest-Output) > 0)") == "taken" and set(gates.values()) == {"skipped"}


def test_a_retrain_takes_one_framework_branch(continuous):
    nodes, edges = continuous
    ran = dict.fromkeys([*UPSTREAM, "featurize", "train-sklearn", "evaluate", "push"], "succeeded")
    status = node_statuses(nodes, edges, ran, "succeeded")
    by_folder = _by_folder(nodes, status)
    assert by_folder["push"] == "succeeded"
    assert by_folder["train-keras"] == by_folder["push-2"] == "skipped"
    gates = {n.label: status[i] for i, n in nodes.items() if n.kind == "gate"}
    assert gates["if framework == 'sklearn'"] == gates["if monitor-drift-Output == true"] == "taken"
    assert gates["if framework == 'torch'"] == "skipped" and gates["if evaluate-2-Output == true"] == "skipped"


def test_a_failure_leaves_what_follows_not_run(continuous):
    nodes, edges = continuous
    ran = {**dict.fromkeys(UPSTREAM[:4], "succeeded"), "monitor-drift": "failed"}
    status = node_statuses(nodes, edges, ran, "failed")
    by_folder = _by_folder(nodes, status)
    assert by_folder["monitor-drift"] == "failed" and by_folder["featurize"] == "not run"
    gates = {n.label: status[i] for i, n in nodes.items() if n.kind == "gate"}
    assert gates.pop("if int(ingest-Output) > 0") == "taken" and gates.pop("if !(int(ingest-Output) > 0)") == "skipped"
    assert set(gates.values()) == {"not run"}


def test_the_training_pipeline_without_tuning_skips_tune():
    nodes, edges = pipeline_graph(json_format.MessageToDict(PIPELINES["training_pipeline"].pipeline_spec))
    given = ["train-sklearn-3", "evaluate-5", "push-5"]  # the given-hyperparameters branch's sklearn tasks
    ran = dict.fromkeys(["preflight", "ingest", "validate", "featurize", *given], "succeeded")
    by_folder = _by_folder(nodes, node_statuses(nodes, edges, ran, "succeeded"))
    assert {by_folder[t] for t in ("tune", "tune-2", "train-sklearn", "train-torch-3")} == {"skipped"}
    assert by_folder["push-5"] == "succeeded"


def test_the_dag_is_drawn_with_an_element_per_task(continuous):
    nodes, edges = continuous
    svg = draw_dag(nodes, edges, node_statuses(nodes, edges, dict.fromkeys(UPSTREAM, "succeeded"), "succeeded"))
    assert svg.startswith('<svg class="dag"')
    for folder in (*UPSTREAM, "push-3"):
        assert f'id="dag-{folder}"' in svg and f'id="dag-status-{folder}"' in svg
    assert ">monitor-drift<" in svg and ">if monitor-drift-Output == true<" in svg  # text stays text


def test_console_lines():
    assert (
        task_line("ingest", "succeeded", 4.64, "20000 rows") == "  ingest                 ok        4.6 s  20000 rows"
    )
    assert task_line("validate", "failed", 12.0) == "  validate               FAILED   12.0 s"
    assert describe_figures("ingest", {"rows": 20000}) == "20000 rows"
    drift = {"drifted_columns": 8.0, "columns": 11.0, "triggers_fired": ["data_drift"], "triggered": True}
    assert describe_figures("monitor-drift", drift) == "drift in 8 of 11 columns; fired: data_drift -> retrain"
    steady = {**drift, "drifted_columns": 0.0, "triggers_fired": [], "triggered": False}
    assert describe_figures("monitor-drift", steady) == "drift in 0 of 11 columns; no trigger fired"
    evaluate = {"roc_auc": 0.83456, "champion_roc_auc": 0.8, "blessed": True}
    assert describe_figures("evaluate-4", evaluate) == "roc_auc 0.8346 (champion 0.8000), blessed"
    assert describe_figures("train-sklearn-2", {"rmse": 3.5}) == "rmse 3.5000"
    assert describe_figures("push", {"pushed_version": "2", "previous_champion": "1"}) == "pushed version 2"


def test_verdicts_in_a_sentence():
    retrained = {"drifted_columns": 8, "columns": 11, "triggers_fired": ["data_drift"], "retrain": True}
    text = verdict_text({**retrained, "blessed": True, "pushed_version": "2"}, "succeeded")
    assert text == "drift in 8 of 11 columns, fired: data_drift: retrained, blessed, pushed and promoted version 2"
    steady = {**retrained, "drifted_columns": 1, "triggers_fired": [], "retrain": False}
    assert (
        verdict_text(steady, "succeeded")
        == "drift in 1 of 11 columns, no trigger fired: nothing retrained, the champion stays"
    )
    assert verdict_text({"blessed": False}, "succeeded") == "trained, not blessed: the champion stays"
    assert verdict_text({"blessed": True, "challenger": "3"}, "succeeded") == (
        "trained, blessed, awaiting approval: version 3 is the challenger, nothing deployed "
        "(kfp-ct promote deploys it, kfp-ct reject turns it down)"
    )
    assert verdict_text({}, "succeeded") == "every task succeeded"
    assert verdict_text(steady, "failed") == "the run failed"


def test_a_failed_tasks_error_is_its_last_exception_line_in_the_log():
    log = "\n".join(
        [
            "10:00:00.000 - INFO - Executing task \x1b[96m'ingest'\x1b[0m",
            "    Traceback (most recent call last):",
            "    ValueError: an earlier task's error",
            "10:00:01.000 - INFO - Task \x1b[96m'ingest'\x1b[0m finished with status \x1b[92mSUCCESS\x1b[0m",
            "10:00:01.100 - INFO - Executing task \x1b[96m'validate'\x1b[0m",
            "    Traceback (most recent call last):",
            '      File "core.py", line 3, in check',
            "    KeyError: 'x'",
            "    During handling of the above exception, another exception occurred:",
            "    kfp_ct.components.validate.core.ValidationError: 2 blocking anomalies: missing column 'class'",
            "10:00:02.000 - ERROR - Task \x1b[96m'validate'\x1b[0m finished with status \x1b[91mFAILURE\x1b[0m",
        ]
    )
    assert failure_message(log, "validate") == (
        "kfp_ct.components.validate.core.ValidationError: 2 blocking anomalies: missing column 'class'"
    )
    assert failure_message(log, "featurize") == "no exception in its log"


def test_a_terminal_sees_the_running_task_refreshed_in_place_and_a_pipe_sees_only_lines(tmp_path):
    import os
    import time

    from kfp_ct.pipelines.local_run import Console

    master, slave = os.openpty()
    with open(slave, "w", buffering=1) as terminal, Console(terminal) as console:
        console.running["train-sklearn"] = time.monotonic() - 3
        time.sleep(1.2)
        console.line("  ingest                 ok        4.6 s  20000 rows")
    shown = os.read(master, 4096).decode()
    assert "... running train-sklearn 4 s" in shown or "... running train-sklearn 3 s" in shown
    assert "\r\x1b[2K  ingest" in shown  # the progress line is cleared before a task's line

    with open(tmp_path / "piped.txt", "w") as piped, Console(piped) as console:
        console.running["train-sklearn"] = time.monotonic()
        time.sleep(1.2)
        console.line("done")
    assert (tmp_path / "piped.txt").read_text() == "done\n"
