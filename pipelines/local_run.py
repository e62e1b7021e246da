"""Runs a pipeline under kfp.local (SubprocessRunner, use_venv=False), tells the story on the console, and records
what each task wrote.

The console gets one line per task as it finishes (name, status, seconds, the figure that matters), a refreshed
progress line while a task runs (on a terminal only) and a closing summary. kfp.local's own output and the task
subprocesses' output go to a log file per run (`<root>/logs/`), shown live with `verbose`. Each run folder gets a
`run.json` record, the compiled `pipeline_spec.json`, and an `index.html` (pipelines/report.py) that draws them.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ANSI = re.compile(r"\x1b\[[0-9;]*m")
STARTED = re.compile(r"Executing task '([^']+)'")
FINISHED = re.compile(r"Task '([^']+)' finished with status (SUCCESS|FAILURE)")
EXCEPTION_LINE = re.compile(r"^\s*((?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*(?:Error|Exception|Exit|Interrupt|Warning)):(.*)$")
STATUS = {"SUCCESS": "succeeded", "FAILURE": "failed"}


@dataclass
class TaskOutputs:
    name: str
    parameters: dict = field(default_factory=dict)
    artifacts: dict = field(default_factory=dict)  # output name -> {"uri", "type", "metadata"}
    status: str = "succeeded"
    seconds: float | None = None


@dataclass
class RunSummary:
    pipeline: str
    run_dir: Path
    tasks: list[TaskOutputs]

    def task(self, name: str) -> TaskOutputs:
        """The task called `name`, or the only task whose name starts with it (kfp.local suffixes repeats: -2)."""
        matches = [t for t in self.tasks if t.name == name] or [t for t in self.tasks if t.name.startswith(name)]
        if len(matches) != 1:
            raise KeyError(f"no single task '{name}' in run {self.run_dir.name}: {[t.name for t in self.tasks]}")
        return matches[0]

    @property
    def index(self) -> Path:
        return self.run_dir / "index.html"

    @property
    def record(self) -> dict:
        return json.loads((self.run_dir / "run.json").read_text())


# --- the figures that matter -----------------------------------------------------------------------------------------


def component_of(task_name: str) -> str:
    """The catalog component a task runs: kfp.local names a repeated task `<name>-2`, `<name>-3`, ..."""
    return re.sub(r"-\d+$", "", task_name)


def _metadata(task: TaskOutputs, output: str) -> dict:
    return (task.artifacts.get(output) or {}).get("metadata", {})


def key_figures(task: TaskOutputs) -> dict:
    """The figures a person looks at first, per component: rows read, drifted columns and the triggers that fired,
    validation or test metric, blessed, the pushed version."""
    kind = component_of(task.name)
    output = task.parameters.get("Output")
    if kind in ("ingest", "reference-data"):
        meta = _metadata(task, "dataset" if kind == "ingest" else "reference")
        return {"rows": meta.get("rows")}
    if kind == "validate":
        meta = _metadata(task, "metrics")
        return {"anomalies": meta.get("anomalies"), "blocking": meta.get("blocking")}
    if kind == "featurize":
        return {"train_rows": _metadata(task, "train").get("rows"), "test_rows": _metadata(task, "test").get("rows")}
    if kind == "monitor-drift":
        metrics, table = _metadata(task, "metrics"), _metadata(task, "drift_table")
        if table.get("no_new_data"):
            return {"no_new_data": True, "triggers_fired": [], "triggered": output}
        figures = {
            "drifted_columns": metrics.get("number_of_drifted_columns"),
            "columns": metrics.get("number_of_columns"),
            "share_of_drifted_columns": metrics.get("share_of_drifted_columns"),
            "triggers_fired": table.get("triggers", []),
            "triggered": output,
        }
        figures.update({k: v for k, v in metrics.items() if k.startswith(("trigger_", "champion_"))})
        return figures
    if kind.startswith("train-") or kind == "evaluate":
        metrics = _metadata(task, "metrics")
        figures = {k: metrics[k] for k in ("roc_auc", "rmse") if k in metrics}
        figures = figures or {k: metrics[k] for k in ("accuracy", "r2") if k in metrics}
        if kind == "evaluate":
            figures.update(
                {f"champion_{k}": metrics[f"champion_{k}"] for k in list(figures) if f"champion_{k}" in metrics}
            )
            figures["blessed"] = output
        return figures
    if kind == "push":
        meta = _metadata(task, "manifest")
        return {"pushed_version": meta.get("version"), "previous_champion": meta.get("previous_champion")}
    if kind == "tune":
        return {k: v for k, v in _metadata(task, "metrics").items() if k.startswith("best_") or k == "trials"}
    return {}


def _number(value) -> str:
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.4f}"
    return f"{int(value)}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def describe_figures(task_name: str, figures: dict) -> str:
    """The figures of `key_figures` as a few words for the console."""
    kind = component_of(task_name)
    if not figures:
        return ""
    if kind in ("ingest", "reference-data") and figures.get("rows") is not None:
        return f"{_number(figures['rows'])} rows"
    if kind == "validate" and figures.get("anomalies") is not None:
        found = "1 anomaly" if figures["anomalies"] == 1 else f"{_number(figures['anomalies'])} anomalies"
        return f"{found}, {_number(figures['blocking'])} blocking"
    if kind == "featurize":
        return f"train {_number(figures['train_rows'])} rows, test {_number(figures['test_rows'])} rows"
    if kind == "monitor-drift":
        if figures.get("no_new_data"):
            return "no new data in the window: nothing compared, no trigger"
        text = f"drift in {_number(figures['drifted_columns'])} of {_number(figures['columns'])} columns"
        fired = figures.get("triggers_fired") or []
        return text + (f"; fired: {', '.join(fired)} -> retrain" if fired else "; no trigger fired")
    if kind == "push":
        return f"pushed version {figures['pushed_version']}" if figures.get("pushed_version") else ""
    parts = []
    for name, value in figures.items():
        if name == "blessed":
            parts.append("blessed" if value else "NOT blessed")
        elif not name.startswith("champion_"):
            champion = figures.get(f"champion_{name}")
            parts.append(
                f"{name} {_number(value)}" + (f" (champion {_number(champion)})" if champion is not None else "")
            )
    return ", ".join(parts)


def task_line(name: str, status: str, seconds: float | None, figures: str = "") -> str:
    """One console line for a finished task."""
    mark = {"succeeded": "ok", "failed": "FAILED"}.get(status, status)
    took = f"{seconds:6.1f} s" if seconds is not None else "      -"
    return f"  {name:<22} {mark:<6} {took}  {figures}".rstrip()


def verdicts(tasks: list[TaskOutputs]) -> dict:
    """What the run decided: the drift check's verdict, the candidate's, what was pushed."""
    out = {}
    for task in tasks:
        kind, figures = component_of(task.name), key_figures(task)
        if kind == "monitor-drift" and figures.get("no_new_data"):
            out.update(no_new_data=True, retrain=False)
        elif kind == "monitor-drift":
            out.update(
                drifted_columns=figures["drifted_columns"],
                columns=figures["columns"],
                triggers_fired=figures["triggers_fired"],
                retrain=bool(figures["triggered"]),
            )
        elif kind == "evaluate":
            out["blessed"] = bool(figures["blessed"])
            out.update({k: v for k, v in figures.items() if k != "blessed"})
            if out["blessed"]:
                out["challenger"] = _metadata(task, "model_card").get("version")
        elif kind == "push" and task.status == "succeeded":
            out["pushed_version"] = figures["pushed_version"]
    return out


def verdict_text(verdict: dict, status: str) -> str:
    """The run's verdict in one sentence."""
    if status != "succeeded":
        return "the run failed"
    if not verdict:
        return "every task succeeded"
    parts = []
    if verdict.get("no_new_data"):
        return "no new data in the window: nothing compared, nothing retrained, the champion stays"
    if "retrain" in verdict:
        drifted = f"drift in {_number(verdict['drifted_columns'])} of {_number(verdict['columns'])} columns"
        if not verdict["retrain"]:
            return f"{drifted}, no trigger fired: nothing retrained, the champion stays"
        parts.append(f"{drifted}, fired: {', '.join(verdict['triggers_fired'])}: retrained")
    else:
        parts.append("trained")
    if "blessed" in verdict:
        parts.append("blessed" if verdict["blessed"] else "not blessed: the champion stays")
    if verdict.get("pushed_version"):
        parts.append(f"pushed and promoted version {verdict['pushed_version']}")
    elif verdict.get("blessed"):  # a succeeded run skips push only with require_approval
        parts.append(
            f"awaiting approval: version {verdict.get('challenger')} is the challenger, nothing deployed "
            "(kfp-ct promote deploys it, kfp-ct reject turns it down)"
        )
    return ", ".join(parts)


# --- the console -----------------------------------------------------------------------------------------------------


class Console:
    """Lines for a person: written to the real stdout, with a progress line refreshed in place on a terminal."""

    def __init__(self, stream) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.lock = threading.Lock()
        self.running: dict[str, float] = {}
        self._shown = False
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def line(self, text: str) -> None:
        with self.lock:
            self._clear()
            self.stream.write(text + "\n")
            self.stream.flush()

    def _clear(self) -> None:
        if self._shown:
            self.stream.write("\r\x1b[2K")
            self._shown = False

    def _tick(self) -> None:
        while not self._stop.wait(0.5):
            with self.lock:
                if not self.running:
                    continue
                now = time.monotonic()
                text = ", ".join(f"{name} {now - start:.0f} s" for name, start in self.running.items())
                self._clear()
                self.stream.write(f"  ... running {text}")
                self.stream.flush()
                self._shown = True

    def __enter__(self) -> Console:
        if self.tty:
            self._ticker = threading.Thread(target=self._tick, daemon=True)
            self._ticker.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._ticker:
            self._ticker.join()
        with self.lock:
            self._clear()
            self.stream.flush()


class _Follower(logging.Filter):
    """Follows kfp.local's log records (it logs through the root logger): when each task starts and finishes."""

    def __init__(self, run: _Run) -> None:
        super().__init__()
        self.run = run

    def filter(self, record: logging.LogRecord) -> bool:
        message = ANSI.sub("", str(record.getMessage()))
        if started := STARTED.search(message):
            self.run.started(started.group(1))
        elif finished := FINISHED.search(message):
            self.run.finished(finished.group(1), STATUS[finished.group(2)])
        return True


class _Run:
    def __init__(self, console: Console, root: Path) -> None:
        self.console, self.root = console, root
        self.starts: dict[str, float] = {}
        self.seconds: dict[str, float] = {}
        self.status: dict[str, str] = {}

    def started(self, name: str) -> None:
        self.starts[name] = time.monotonic()
        with self.console.lock:
            self.console.running[name] = self.starts[name]

    def finished(self, name: str, status: str) -> None:
        self.seconds[name] = time.monotonic() - self.starts.get(name, time.monotonic())
        self.status[name] = status
        with self.console.lock:
            self.console.running.pop(name, None)
        figures = ""
        outputs = list(self.root.glob(f"*/{name}/executor_output.json"))  # the newest is this run's
        if status == "succeeded" and outputs:
            figures = describe_figures(name, key_figures(_read_task(max(outputs, key=_mtime), {})))
        self.console.line(task_line(name, status, self.seconds[name], figures))


def _mtime(path: Path) -> float:
    return path.stat().st_mtime


@contextlib.contextmanager
def _output_to(log_path: Path, verbose: bool):
    """Sends fds 1 and 2 (this process's and the task subprocesses') to `log_path`, or through `tee` to the log and
    the terminal with `verbose`; yields a Console on a duplicate of the real stdout."""
    sys.stdout.flush()
    sys.stderr.flush()
    real_stdout, real_stderr = os.dup(1), os.dup(2)
    log = open(log_path, "ab", buffering=0)  # noqa: SIM115 (closed below, after the fds are restored)
    tee = None
    if verbose:
        import subprocess

        tee = subprocess.Popen(["tee", "-a", str(log_path)], stdin=subprocess.PIPE, stdout=real_stdout)
        target = tee.stdin.fileno()
    else:
        target = log.fileno()
    console_stream = open(os.dup(real_stdout), "w", buffering=1, encoding="utf-8")  # noqa: SIM115
    saved = sys.stdout, sys.stderr  # which may write elsewhere than fds 1 and 2 (pytest's capture does)
    try:
        os.dup2(target, 1)
        os.dup2(target, 2)
        sys.stdout, sys.stderr = (open(fd, "w", buffering=1, errors="replace", closefd=False) for fd in (1, 2))  # noqa: SIM115
        with Console(console_stream) as console:
            yield console
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        sys.stdout, sys.stderr = saved
        os.dup2(real_stdout, 1)
        os.dup2(real_stderr, 2)
        os.close(real_stdout)
        os.close(real_stderr)
        if tee is not None:
            tee.stdin.close()
            tee.wait()
        log.close()
        console_stream.close()


def failure_message(log_text: str, task: str) -> str:
    """The error of a failed task: the last exception line between its start and its end in the run's log."""
    text = ANSI.sub("", log_text)
    start = text.rfind(f"Executing task '{task}'")
    end = text.find(f"Task '{task}' finished with status FAILURE", start)
    section = "" if start == -1 else text[start : end if end != -1 else len(text)]
    lines = [m.group(1) + ":" + m.group(2) for line in section.splitlines() if (m := EXCEPTION_LINE.match(line))]
    return lines[-1].strip() if lines else "no exception in its log"


def run_local(pipeline, arguments: dict, pipeline_root: str | Path, *, verbose: bool = False) -> RunSummary:
    """Runs `pipeline(**arguments)` under kfp.local with `pipeline_root`, printing one line per task; writes the run's
    record, index.html and the history under `pipeline_root`; raises, with the failed task's error, if a task fails."""
    from google.protobuf import json_format
    from kfp import local

    from kfp_ct.components._common import tracking
    from kfp_ct.components._common.credentials import environment
    from kfp_ct.pipelines import report

    root = Path(pipeline_root).resolve()
    (root / "logs").mkdir(parents=True, exist_ok=True)
    started = datetime.datetime.now(datetime.UTC)
    log_path = root / "logs" / f"{pipeline.name}-{started:%Y%m%d-%H%M%S-%f}.log"
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root))
    _read_unset_defaults_as_none()
    before = set(root.iterdir())
    error = None
    # every step runs on this machine: a local registry is shared by the steps (even in a pod; see tracking)
    with _output_to(log_path, verbose) as console, environment({tracking.LOCAL_RUN: "1"}):
        console.line(f"{pipeline.name}: log {_shown_path(log_path)}")
        run = _Run(console, root)
        follower = _Follower(run)
        logging.getLogger().addFilter(follower)
        try:
            with _without_retries(pipeline):
                pipeline(**arguments)
        except Exception as exc:  # noqa: BLE001 (kfp.local raises RuntimeError; the record keeps any failure)
            error = exc
        finally:
            logging.getLogger().removeFilter(follower)
        finished = datetime.datetime.now(datetime.UTC)
        new = sorted((p for p in set(root.iterdir()) - before if p.is_dir()), key=_mtime)
        if not new:
            console.line(f"  {pipeline.name} wrote no run folder: {error}")
            raise RuntimeError(f"{pipeline.name} wrote no run folder under {root}: {error} (log: {log_path})")
        run_dir = new[-1]
        (run_dir / "pipeline_spec.json").write_text(json.dumps(json_format.MessageToDict(pipeline.pipeline_spec)))
        summary = summarize(pipeline, run_dir, run.status, run.seconds)
        failed = [name for name, status in run.status.items() if status == "failed"]
        sys.stdout.flush()
        log_text = log_path.read_text(encoding="utf-8", errors="replace")
        message = failure_message(log_text, failed[0]) if failed else (str(error) if error else None)
        status = "failed" if failed or error else "succeeded"
        record = run_record(summary, arguments, started, finished, status, message, log_path)
        (run_dir / "run.json").write_text(json.dumps(record, indent=1, default=str))
        report.write_index(run_dir)
        history = report.write_history(root)
        verdict = verdict_text(record["verdicts"], status)
        console.line(f"{pipeline.name} {status} in {record['seconds']:.0f} s: {verdict}")
        where = f"task {failed[0]} failed: " if failed else ""
        if status == "failed":
            console.line(f"  {where}{message}")
        console.line(f"  report {_shown_path(summary.index)}")
        console.line(f"  history {_shown_path(history)}, log {_shown_path(log_path)}")
    if status == "failed":
        raise RuntimeError(f"{pipeline.name}: {where}{message} (log: {log_path})") from error
    return summary


def _shown_path(path: Path) -> str:
    """`path` relative to the working folder when it is under it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def run_record(summary: RunSummary, arguments, started, finished, status, error, log_path: Path) -> dict:
    """The machine-readable record of a run, from which the history is drawn."""
    return {
        "pipeline": summary.pipeline,
        "run": summary.run_dir.name,
        "started": started.isoformat(timespec="seconds"),
        "finished": finished.isoformat(timespec="seconds"),
        "seconds": round((finished - started).total_seconds(), 1),
        "status": status,
        "error": error,
        "log": os.path.relpath(log_path, summary.run_dir),
        "arguments": arguments,
        "tasks": [
            {
                "name": task.name,
                "status": task.status,
                "seconds": None if task.seconds is None else round(task.seconds, 1),
                "figures": key_figures(task) if task.status == "succeeded" else {},
            }
            for task in summary.tasks
        ],
        "verdicts": verdicts([t for t in summary.tasks if t.status == "succeeded"]),
    }


@contextlib.contextmanager
def _without_retries(pipeline):
    """Clears the tasks' retry policies while kfp.local runs `pipeline` (and restores them): kfp.local honours them,
    but a local failure is bad input or a bug, never a lost node, and retrying it only repeats the error later."""
    spec = pipeline.pipeline_spec
    dags = [spec.root.dag, *(c.dag for c in spec.components.values() if c.HasField("dag"))]
    saved = []
    for dag in dags:
        for task in dag.tasks.values():
            if task.HasField("retry_policy"):
                saved.append((task, type(task.retry_policy)()))
                saved[-1][1].CopyFrom(task.retry_policy)
                task.ClearField("retry_policy")
    try:
        yield
    finally:
        for task, policy in saved:
            task.retry_policy.CopyFrom(policy)


def _read_unset_defaults_as_none() -> None:
    """Lets kfp.local run an optional pipeline parameter left at None, as KFP on a cluster does (a null value).

    kfp 2.17's local orchestrator fails on one in three places: reading its unset default ("Unknown value type"),
    writing None into a task's executor input, and casting an integer parameter with int(). These three places, and
    nothing else, learn to read, write and pass on null.
    """
    import types

    from google.protobuf import struct_pb2
    from kfp.local import executor_input_utils, executor_output_utils

    original = executor_output_utils.pb2_value_to_python
    if getattr(original, "reads_unset_as_none", False):
        return

    def pb2_value_to_python(value):
        return None if value.WhichOneof("kind") is None else original(value)

    pb2_value_to_python.reads_unset_as_none = True
    executor_output_utils.pb2_value_to_python = pb2_value_to_python

    builder = executor_input_utils.pipeline_spec_builder
    local_builder = types.SimpleNamespace(**vars(builder))
    local_builder.to_protobuf_value = lambda value: (
        struct_pb2.Value(null_value=0) if value is None else builder.to_protobuf_value(value)
    )
    executor_input_utils.pipeline_spec_builder = local_builder

    to_dict = executor_input_utils.executor_input_to_dict

    def executor_input_to_dict(executor_input, component_spec):
        values = executor_input.inputs.parameter_values
        nulls = [name for name, value in values.items() if value.WhichOneof("kind") == "null_value"]
        for name in nulls:
            del values[name]
        as_dict = to_dict(executor_input, component_spec)
        as_dict.setdefault("inputs", {}).setdefault("parameterValues", {}).update(dict.fromkeys(nulls))
        return as_dict

    executor_input_utils.executor_input_to_dict = executor_input_to_dict


def _read_task(output: Path, definitions: dict) -> TaskOutputs:
    """One task's executor_output.json; `definitions` maps output names to artifact types (schema titles)."""
    content = json.loads(output.read_text())
    task = TaskOutputs(name=output.parent.name, parameters=content.get("parameterValues", {}))
    for name, entry in content.get("artifacts", {}).items():
        artifact = entry["artifacts"][0]
        task.artifacts[name] = {
            "uri": artifact["uri"],
            "metadata": artifact.get("metadata", {}),
            "type": definitions.get(name, "system.Artifact"),
        }
    return task


def summarize(pipeline, run_dir: Path, statuses: dict | None = None, seconds: dict | None = None) -> RunSummary:
    """Reads each task's executor_output.json in `run_dir`; artifact types come from the pipeline's spec, where
    kfp.local names each task folder after its component (`comp-<folder>`). A task that failed wrote none: it is
    listed from `statuses` (task name -> succeeded or failed, as kfp.local logged them)."""
    components = pipeline.pipeline_spec.components
    statuses, seconds = statuses or {}, seconds or {}
    tasks = []
    for output in sorted(run_dir.glob("*/executor_output.json"), key=_mtime):
        artifacts = components[f"comp-{output.parent.name}"].output_definitions.artifacts
        task = _read_task(output, {name: a.artifact_type.schema_title for name, a in artifacts.items()})
        task.status, task.seconds = statuses.get(task.name, "succeeded"), seconds.get(task.name)
        tasks.append(task)
    listed = {task.name for task in tasks}
    tasks += [
        TaskOutputs(name=name, status=status, seconds=seconds.get(name))
        for name, status in statuses.items()
        if name not in listed
    ]
    return RunSummary(pipeline.name, run_dir, tasks)


def load_run(run_dir: str | Path) -> RunSummary:
    """A finished run read back from its folder (run.json, pipeline_spec.json and the tasks' outputs)."""
    run_dir = Path(run_dir)
    record = json.loads((run_dir / "run.json").read_text())
    components = json.loads((run_dir / "pipeline_spec.json").read_text())["components"]
    tasks = []
    for entry in record["tasks"]:
        output = run_dir / entry["name"] / "executor_output.json"
        if output.is_file():
            definitions = components[f"comp-{entry['name']}"].get("outputDefinitions", {}).get("artifacts", {})
            task = _read_task(output, {n: d["artifactType"]["schemaTitle"] for n, d in definitions.items()})
        else:
            task = TaskOutputs(name=entry["name"])
        task.status, task.seconds = entry["status"], entry["seconds"]
        tasks.append(task)
    return RunSummary(record["pipeline"], run_dir, tasks)
