"""Runs a pipeline under kfp.local (SubprocessRunner, use_venv=False) and summarizes what each task wrote.

kfp.local has no UI, so each run gets an `index.html` beside its task folders: the tasks, their outputs, the
metrics, confusion matrices and ROC curves, and links to every HTML and Markdown artifact.
"""

from __future__ import annotations

import contextlib
import html
import json
from dataclasses import dataclass, field
from pathlib import Path

REPORT_TYPES = {"system.HTML": ".html", "system.Markdown": ".md"}


@dataclass
class TaskOutputs:
    name: str
    parameters: dict = field(default_factory=dict)
    artifacts: dict = field(default_factory=dict)  # output name -> {"uri", "type", "metadata"}


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


def run_local(pipeline, arguments: dict, pipeline_root: str | Path) -> RunSummary:
    """Runs `pipeline(**arguments)` under kfp.local with `pipeline_root`; raises if a task fails."""
    from kfp import local

    root = Path(pipeline_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root))
    _read_unset_defaults_as_none()
    before = set(root.iterdir())
    try:
        with _without_retries(pipeline):
            pipeline(**arguments)
    finally:
        new = sorted(set(root.iterdir()) - before, key=lambda p: p.stat().st_mtime)
        if new:
            write_index(summarize(pipeline, new[-1]))
    return summarize(pipeline, new[-1])


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


def summarize(pipeline, run_dir: Path) -> RunSummary:
    """Reads each task's executor_output.json in `run_dir`; artifact types come from the pipeline's spec, where
    kfp.local names each task folder after its component (`comp-<folder>`)."""
    components = pipeline.pipeline_spec.components
    tasks = []
    for output in sorted(run_dir.glob("*/executor_output.json"), key=lambda p: p.stat().st_mtime):
        content = json.loads(output.read_text())
        task = TaskOutputs(name=output.parent.name, parameters=content.get("parameterValues", {}))
        definitions = components[f"comp-{task.name}"].output_definitions.artifacts
        for name, entry in content.get("artifacts", {}).items():
            artifact = entry["artifacts"][0]
            task.artifacts[name] = {
                "uri": artifact["uri"],
                "metadata": artifact.get("metadata", {}),
                "type": definitions[name].artifact_type.schema_title,
            }
        tasks.append(task)
    return RunSummary(pipeline.name, run_dir, tasks)


def print_summary(summary: RunSummary) -> None:
    print(f"\nRun of {summary.pipeline}: {summary.run_dir}")
    for task in summary.tasks:
        print(f"  {task.name}")
        for name, value in task.parameters.items():
            print(f"    {name} = {json.dumps(value)}")
        for name, artifact in task.artifacts.items():
            scalars = {k: v for k, v in artifact["metadata"].items() if isinstance(v, (int, float, str, bool))}
            shown = ", ".join(f"{k}={v}" for k, v in list(scalars.items())[:8])
            print(f"    {name}: {artifact['uri']}" + (f"  ({shown})" if shown else ""))
    print(f"  index: {summary.index}")


def _roc_svg(points: list[dict]) -> str:
    coords = sorted((p.get("falsePositiveRate", 0.0), p.get("recall", 0.0)) for p in points)
    path = " ".join(
        f"{'M' if i == 0 else 'L'}{20 + 260 * x:.1f},{280 - 260 * y:.1f}" for i, (x, y) in enumerate(coords)
    )
    return (
        '<svg class="roc" width="300" height="300" viewBox="0 0 300 300" xmlns="http://www.w3.org/2000/svg">'
        '<rect x="20" y="20" width="260" height="260" fill="none" stroke="#999"/>'
        '<line x1="20" y1="280" x2="280" y2="20" stroke="#ccc" stroke-dasharray="4"/>'
        f'<path d="{path}" fill="none" stroke="#1565c0" stroke-width="2"/>'
        '<text x="150" y="298" font-size="11" text-anchor="middle">false positive rate</text>'
        '<text x="10" y="150" font-size="11" transform="rotate(-90 10 150)" text-anchor="middle">recall</text></svg>'
    )


def _confusion_table(matrix: dict) -> str:
    labels = [spec["displayName"] for spec in matrix["annotationSpecs"]]
    head = "".join(f"<th>{html.escape(label)}</th>" for label in labels)
    rows = "".join(
        f"<tr><th>{html.escape(label)}</th>" + "".join(f"<td>{value:g}</td>" for value in row["row"]) + "</tr>"
        for label, row in zip(labels, matrix["rows"])
    )
    return f'<table class="confusion"><tr><th>actual \\ predicted</th>{head}</tr>{rows}</table>'


def _report_link(summary: RunSummary, task: TaskOutputs, name: str, artifact: dict) -> str:
    """A link to a report under `reports/` with the extension a browser needs to render it."""
    import markdown

    source = Path(artifact["uri"])
    reports = summary.run_dir / "reports"
    reports.mkdir(exist_ok=True)
    target = reports / f"{task.name}.{name}.html"
    text = source.read_text(encoding="utf-8", errors="replace")
    if artifact["type"] == "system.Markdown":
        text = f"<!doctype html><meta charset='utf-8'><title>{html.escape(name)}</title>" + markdown.markdown(
            text, extensions=["tables", "fenced_code"]
        )
    target.write_text(text, encoding="utf-8")
    return f'<a href="reports/{html.escape(target.name)}">{html.escape(name)}</a>'


def write_index(summary: RunSummary) -> Path:
    """Writes `index.html` in the run folder."""
    sections = []
    for task in summary.tasks:
        parts = [f"<h2>{html.escape(task.name)}</h2>"]
        if task.parameters:
            items = "".join(
                f"<li>{html.escape(k)} = <code>{html.escape(json.dumps(v))}</code></li>"
                for k, v in task.parameters.items()
            )
            parts.append(f"<ul>{items}</ul>")
        for name, artifact in task.artifacts.items():
            meta = artifact["metadata"]
            if artifact["type"] in REPORT_TYPES and Path(artifact["uri"]).is_file():
                parts.append(f"<p>report: {_report_link(summary, task, name, artifact)}</p>")
            else:
                parts.append(f"<p>{html.escape(name)}: <code>{html.escape(artifact['uri'])}</code></p>")
            scalars = {k: v for k, v in meta.items() if isinstance(v, (int, float, str, bool))}
            if scalars:
                rows = "".join(
                    f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>" for k, v in scalars.items()
                )
                parts.append(f'<table class="metrics">{rows}</table>')
            if "confusionMatrix" in meta:
                parts.append(_confusion_table(meta["confusionMatrix"]))
            if "confidenceMetrics" in meta:
                parts.append(_roc_svg(meta["confidenceMetrics"]))
        sections.append("<section>" + "".join(parts) + "</section>")
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(summary.pipeline)}: "
        f"{html.escape(summary.run_dir.name)}</title><style>body{{font-family:sans-serif;margin:2em}}"
        "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}"
        "section{border-top:1px solid #ddd;margin-top:1em}</style></head><body>"
        f"<h1>{html.escape(summary.pipeline)}</h1><p>run folder: <code>{html.escape(str(summary.run_dir))}</code></p>"
        + "".join(sections)
        + "</body></html>"
    )
    summary.index.write_text(page, encoding="utf-8")
    return summary.index
