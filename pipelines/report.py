"""What a person sees of local runs: each run's `index.html` and the history of every run under a pipeline root.

kfp.local has no UI. A run's page draws the pipeline's DAG from the compiled spec (the run folder's
`pipeline_spec.json`) with each task's status, then per task what the KFP UI's viewers show: metrics as a table,
classification metrics as a ROC curve and a confusion-matrix heat map, HTML reports linked and Markdown inline, and
the output values. The history page (`<root>/index.html`) lists the runs (their `run.json` records) in time order
and charts over them the share of drifted columns, the retraining triggers and the champion's primary metric, with
the promotions marked. Plots are matplotlib figures written as inline SVG: the pages need no network.
"""

from __future__ import annotations

import html
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

from kfp_ct.pipelines.local_run import component_of, describe_figures, verdict_text

REPORT_TYPES = ("system.HTML", "system.Markdown")
TRIGGERS = ("data_drift", "performance_decay", "new_data")
STATUS_STYLE = {  # status -> (face colour, edge colour, line style)
    "succeeded": ("#c8e6c9", "#2e7d32", "solid"),
    "failed": ("#ffcdd2", "#c62828", "solid"),
    "taken": ("#e3f2fd", "#1565c0", "solid"),
    "skipped": ("#f0f0f0", "#9e9e9e", "dashed"),
    "not run": ("#ffffff", "#bdbdbd", "dotted"),
}


# --- the DAG, from the compiled pipeline spec (its JSON form) --------------------------------------------------------


@dataclass(frozen=True)
class Node:
    id: str  # task names from the root, joined by '/': unique, where task names repeat across sub-DAGs
    label: str
    kind: str  # "task" (runs a container) or "gate" (a dsl.If branch: runs its tasks when its condition holds)
    folder: str = ""  # for a task: the folder kfp.local writes, its component's name less "comp-"
    gates: tuple[str, ...] = ()  # the ids of the gates it sits behind


def _condition_label(condition: str) -> str:
    """`inputs.parameter_values['pipelinechannel--monitor-drift-Output'] == true` -> `monitor-drift-Output == true`."""
    text = re.sub(r"inputs\.parameter_values\['pipelinechannel--([^']+)'\]", r"\1", condition)
    return "if " + text


def pipeline_graph(spec: dict) -> tuple[dict[str, Node], list[tuple[str, str]]]:
    """The nodes and edges of a compiled pipeline spec (json_format.MessageToDict of pipeline_spec): every task
    that runs a container, and a gate node for every dsl.If branch; sub-pipelines are transparent. An edge goes
    from each last task of an upstream (for a sub-DAG, the tasks nothing inside it depends on) to each first task of
    the downstream one (for a gate, the gate itself, and from the gate to its first tasks)."""
    components = spec["components"]
    nodes: dict[str, Node] = {}
    edges: list[tuple[str, str]] = []

    def expand(dag: dict, prefix: str, gates: tuple[str, ...]) -> tuple[set[str], set[str]]:
        tasks = dag.get("tasks", {})
        entries, exits = {}, {}
        for name, task in tasks.items():
            ref = task["componentRef"]["name"]
            node_id = prefix + name
            component = components[ref]
            if "dag" not in component:
                nodes[node_id] = Node(node_id, name, "task", ref.removeprefix("comp-"), gates)
                entries[name] = exits[name] = {node_id}
                continue
            condition = task.get("triggerPolicy", {}).get("condition")
            if condition:
                nodes[node_id] = Node(node_id, _condition_label(condition), "gate", "", gates)
                inner_entries, inner_exits = expand(component["dag"], node_id + "/", (*gates, node_id))
                edges.extend((node_id, entry) for entry in inner_entries)
                entries[name], exits[name] = {node_id}, inner_exits or {node_id}
            else:
                entries[name], exits[name] = expand(component["dag"], node_id + "/", gates)
        depended_on = set()
        for name, task in tasks.items():
            for upstream in task.get("dependentTasks", []):
                depended_on.add(upstream)
                edges.extend((source, target) for source in exits[upstream] for target in entries[name])
        first = set().union(*(entries[n] for n, t in tasks.items() if not t.get("dependentTasks"))) if tasks else set()
        last = set().union(*(exits[n] for n in tasks if n not in depended_on)) if tasks else set()
        return first, last

    expand(spec["root"]["dag"], "", ())
    return nodes, sorted(set(edges))


def node_statuses(
    nodes: dict[str, Node], edges: list[tuple[str, str]], ran: dict[str, str], run_status: str
) -> dict[str, str]:
    """Each node's status: a task's as it ran (succeeded, failed), else skipped when a gate it sits behind was not
    taken, else not run (a failure upstream); a gate is taken when a task behind it ran, skipped when everything
    upstream of it succeeded (its condition was false), else not run."""
    import networkx as nx

    graph = nx.DiGraph(edges)
    graph.add_nodes_from(nodes)
    status: dict[str, str] = {}
    for node_id in nx.topological_sort(graph):
        node = nodes[node_id]
        if node.kind == "task":
            status[node_id] = ran.get(node.folder) or (
                "skipped" if any(status.get(g) == "skipped" for g in node.gates) else "not run"
            )
            continue
        behind = [n for n in nodes.values() if node_id in n.gates and n.kind == "task"]
        upstream = [status[p] for p in graph.predecessors(node_id)]
        if any(n.folder in ran for n in behind):
            status[node_id] = "taken"
        elif any(status.get(g) == "skipped" for g in node.gates) or all(s in ("succeeded", "taken") for s in upstream):
            status[node_id] = "skipped" if run_status == "succeeded" or upstream else "not run"
        else:
            status[node_id] = "not run"
    return status


def _svg(figure, css_class: str) -> str:
    """A matplotlib figure as an inline <svg> element (text kept as text, ids stable from run to run)."""
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "kfp-ct"}):
        figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg") :]
    return svg.replace("<svg ", f'<svg class="{css_class}" ', 1)


def _safe_id(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text)


def draw_dag(nodes: dict[str, Node], edges: list[tuple[str, str]], status: dict[str, str]) -> str:
    """The DAG as SVG: layers from networkx's topological generations (top to bottom), each layer ordered by the
    mean position of its parents; edges implied by others (transitive ones) are left out. Each task's box has the id
    `dag-<folder>`, each gate's `dag-gate-<n>`."""
    import networkx as nx
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Patch

    graph = nx.DiGraph(edges)
    graph.add_nodes_from(nodes)
    graph = nx.transitive_reduction(graph)
    layers = [list(layer) for layer in nx.topological_generations(graph)]
    width, height, dx, dy = 2.0, 0.5, 2.3, 0.95
    x: dict[str, float] = {}
    for layer in layers:
        layer.sort(key=lambda n: (sum(x[p] for p in graph.predecessors(n)) / max(1, graph.in_degree(n)), n))
        for i, node_id in enumerate(layer):
            x[node_id] = (i - (len(layer) - 1) / 2) * dx
    y = {node_id: -depth * dy for depth, layer in enumerate(layers) for node_id in layer}
    span = max(6.0, max(len(layer) for layer in layers) * dx)
    figure = Figure(figsize=(span, len(layers) * dy + 0.7))
    axes = figure.add_axes((0, 0, 1, 1))
    axes.set_xlim(-span / 2, span / 2)
    axes.set_ylim(-(len(layers) - 1) * dy - 0.4, 0.3 + 0.4)
    axes.axis("off")
    for source, target in sorted(graph.edges):  # a set inside: its order changes from process to process
        axes.add_patch(
            FancyArrowPatch(
                (x[source], y[source] - height / 2),
                (x[target], y[target] + height / 2),
                arrowstyle="-|>",
                mutation_scale=10,
                color="#757575",
                linewidth=1,
                shrinkA=0,
                shrinkB=1,
                connectionstyle=f"arc3,rad={0.3 if y[source] - y[target] > dy * 1.5 else 0}",  # past layers between
            )
        )
    gates = 0
    for node_id, node in nodes.items():
        face, edge, style = STATUS_STYLE[status[node_id]]
        box = FancyBboxPatch(
            (x[node_id] - width / 2, y[node_id] - height / 2),
            width,
            height,
            boxstyle=f"round,pad=0,rounding_size={0.08 if node.kind == 'task' else 0.25}",
            facecolor=face,
            edgecolor=edge,
            linestyle=style,
            linewidth=1.3,
        )
        if node.kind == "task":
            box.set_gid(f"dag-{_safe_id(node.folder)}")
        else:
            gates += 1
            box.set_gid(f"dag-gate-{gates}")
        axes.add_patch(box)
        label = node.label if len(node.label) <= 34 else node.label[:33] + "…"
        axes.text(
            x[node_id],
            y[node_id] + 0.07,
            label,
            ha="center",
            va="center",
            fontsize=8 if node.kind == "task" else 7,
            fontweight="bold" if node.kind == "task" else "normal",
            fontstyle="normal" if node.kind == "task" else "italic",
        )
        shown = axes.text(
            x[node_id], y[node_id] - 0.13, status[node_id], ha="center", va="center", fontsize=7, color=edge
        )
        shown.set_gid(box.get_gid().replace("dag-", "dag-status-", 1))
    axes.legend(
        handles=[Patch(facecolor=f, edgecolor=e, linestyle=s, label=n) for n, (f, e, s) in STATUS_STYLE.items()],
        loc="upper center",
        ncol=len(STATUS_STYLE),
        fontsize=7,
        frameon=False,
    )
    return _svg(figure, "dag")


# --- the KFP UI's viewers ---------------------------------------------------------------------------------------------


def roc_svg(points: list[dict], gid: str) -> str:
    """ClassificationMetrics' ROC curve (confidenceMetrics: falsePositiveRate, recall, confidenceThreshold)."""
    from matplotlib.figure import Figure

    coords = sorted((p.get("falsePositiveRate", 0.0), p.get("recall", 0.0)) for p in points)
    figure = Figure(figsize=(3.4, 3.2))
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], linestyle="--", color="#bdbdbd", linewidth=1)
    (line,) = axes.plot([c[0] for c in coords], [c[1] for c in coords], color="#1565c0", linewidth=2)
    line.set_gid(gid)
    area = sum((b[0] - a[0]) * (a[1] + b[1]) / 2 for a, b in zip(coords, coords[1:]))
    axes.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false positive rate", ylabel="true positive rate (recall)")
    axes.set_title(f"ROC curve (area {area:.3f})", fontsize=10)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    return _svg(figure, "roc")


def confusion_svg(matrix: dict, gid: str) -> str:
    """ClassificationMetrics' confusion matrix as a heat map, counts written in the cells."""
    import numpy as np
    from matplotlib.figure import Figure

    labels = [spec["displayName"] for spec in matrix["annotationSpecs"]]
    values = np.array([row["row"] for row in matrix["rows"]], dtype=float)
    figure = Figure(figsize=(1.6 + 0.7 * len(labels), 1.2 + 0.6 * len(labels)))
    axes = figure.add_subplot()
    image = axes.imshow(values, cmap="Blues")
    image.set_gid(gid)
    axes.set_xticks(range(len(labels)), labels)
    axes.set_yticks(range(len(labels)), labels)
    axes.set(xlabel="predicted", ylabel="actual")
    axes.set_title("confusion matrix", fontsize=10)
    for (i, j), value in np.ndenumerate(values):
        dark = value > values.max() / 2
        axes.text(j, i, f"{value:g}", ha="center", va="center", color="white" if dark else "black", fontsize=9)
    figure.tight_layout()
    return _svg(figure, "confusion")


def _relative(path: str, run_dir: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(run_dir.resolve()))
    except ValueError:
        return path


def _scalar_table(values: dict, css_class: str) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(_shown(v))}</td></tr>"
        for k, v in values.items()
        if isinstance(v, (int, float, str, bool)) or v is None
    )
    if not rows:
        return ""
    table = f'<table class="{css_class}">{rows}</table>'
    count = rows.count("<tr>")
    return table if count <= 15 else f"<details><summary>{count} values</summary>{table}</details>"


def _shown(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return value if isinstance(value, str) else json.dumps(value)


def _report(run_dir: Path, task: str, name: str, artifact: dict) -> str:
    """An HTML artifact linked (copied under reports/ with the extension a browser needs), a Markdown one inline."""
    import markdown

    source = Path(artifact["uri"])
    if not source.is_file():
        return f"<p>{html.escape(name)}: no file at <code>{html.escape(_relative(artifact['uri'], run_dir))}</code></p>"
    reports = run_dir / "reports"
    reports.mkdir(exist_ok=True)
    target = reports / f"{task}.{name}.html"
    text = source.read_text(encoding="utf-8", errors="replace")
    if artifact["type"] == "system.HTML":
        target.write_text(text, encoding="utf-8")
        return f'<p class="report"><a href="reports/{html.escape(target.name)}">open the {html.escape(name)}</a></p>'
    body = markdown.markdown(text, extensions=["tables", "fenced_code"])
    target.write_text(f"<!doctype html><meta charset='utf-8'><title>{html.escape(name)}</title>{body}", "utf-8")
    return f'<div class="markdown">{body}</div>'


def _artifact_types(spec: dict, folder: str) -> dict[str, str]:
    definitions = spec["components"].get(f"comp-{folder}", {}).get("outputDefinitions", {}).get("artifacts", {})
    return {name: d["artifactType"]["schemaTitle"] for name, d in definitions.items()}


def _task_section(run_dir: Path, spec: dict, task: dict) -> str:
    name = task["name"]
    parts = [
        f'<section class="task" id="task-{_safe_id(name)}"><h2>{html.escape(name)} '
        f'<span class="status {task["status"].replace(" ", "-")}">{html.escape(task["status"])}</span>'
        + (f" <small>{task['seconds']:.1f} s</small>" if task.get("seconds") is not None else "")
        + "</h2>"
    ]
    if figures := describe_figures(name, task.get("figures") or {}):
        parts.append(f'<p class="figures">{html.escape(figures)}</p>')
    output = run_dir / name / "executor_output.json"
    content = json.loads(output.read_text()) if output.is_file() else {}
    if content.get("parameterValues"):
        parts.append("<h3>output values</h3>" + _scalar_table(content["parameterValues"], "values"))
    types = _artifact_types(spec, name)
    for output_name, entry in content.get("artifacts", {}).items():
        artifact = entry["artifacts"][0]
        kind = types.get(output_name, "system.Artifact")
        meta = artifact.get("metadata", {})
        artifact = {"uri": artifact["uri"], "type": kind, "metadata": meta}
        parts.append(
            f"<h3>{html.escape(output_name)} <small>{html.escape(kind)} · "
            f"<code>{html.escape(_relative(artifact['uri'], run_dir))}</code></small></h3>"
        )
        gid = f"{_safe_id(name)}-{_safe_id(output_name)}"
        if kind in REPORT_TYPES:
            parts.append(_report(run_dir, name, output_name, artifact))
        if kind == "system.ClassificationMetrics":
            plots = []
            if meta.get("confidenceMetrics"):
                plots.append(roc_svg(meta["confidenceMetrics"], f"roc-{gid}"))
            if meta.get("confusionMatrix"):
                plots.append(confusion_svg(meta["confusionMatrix"], f"confusion-{gid}"))
            parts.append(f'<div class="plots">{"".join(plots)}</div>')
        else:
            parts.append(_scalar_table(meta, "metrics" if kind == "system.Metrics" else "metadata"))
    return "".join(parts) + "</section>"


STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em;max-width:80em;color:#212121}"
    "table{border-collapse:collapse;margin:.4em 0}td,th{border:1px solid #ddd;padding:2px 8px;text-align:left;"
    "font-size:.9em}section{border-top:1px solid #ddd;margin-top:1.2em}h3{font-size:1em;margin:.8em 0 .2em}"
    "h3 small,h2 small{font-weight:normal;color:#616161}svg{max-width:100%;height:auto}"
    ".plots{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start}.status{font-size:.7em;padding:1px 6px;"
    "border-radius:4px;background:#eee}.succeeded{background:#c8e6c9}.failed{background:#ffcdd2}"
    ".error{background:#ffebee;border:1px solid #c62828;padding:.5em}.verdict{font-size:1.1em}"
    ".markdown{border-left:3px solid #ddd;padding-left:1em}.markdown h1{font-size:1.3em}.markdown h2{font-size:1.1em}"
    ".charts{display:flex;flex-wrap:wrap;gap:1em}"
)


def _page(title: str, body: str) -> str:
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body>{body}</body></html>"
    )


def read_spec(run_dir: Path) -> dict:
    return json.loads((run_dir / "pipeline_spec.json").read_text())


def write_index(run_dir: Path) -> Path:
    """Writes `index.html` in a run folder, from its run.json and pipeline_spec.json."""
    run_dir = Path(run_dir)
    record = json.loads((run_dir / "run.json").read_text())
    spec = read_spec(run_dir)
    nodes, edges = pipeline_graph(spec)
    ran = {task["name"]: task["status"] for task in record["tasks"]}
    status = node_statuses(nodes, edges, ran, record["status"])
    head = [
        f"<h1>{html.escape(record['pipeline'])}</h1>",
        f'<p class="verdict"><span class="status {record["status"]}">{record["status"]}</span> '
        f"{html.escape(verdict_text(record['verdicts'], record['status']))}</p>",
        f"<p>run <code>{html.escape(record['run'])}</code>, started {html.escape(record['started'])}, "
        f'{record["seconds"]:.0f} s · <a href="{html.escape(record["log"])}">log</a> · '
        '<a href="../index.html">all runs</a></p>',
    ]
    if record.get("error"):
        head.append(f'<p class="error">{html.escape(record["error"])}</p>')
    head.append("<details><summary>arguments</summary>" + _scalar_table(record["arguments"], "values") + "</details>")
    head.append('<h2>pipeline</h2><figure class="dag-figure">' + draw_dag(nodes, edges, status) + "</figure>")
    sections = [_task_section(run_dir, spec, task) for task in record["tasks"]]
    path = run_dir / "index.html"
    path.write_text(_page(f"{record['pipeline']}: {record['run']}", "".join(head + sections)), encoding="utf-8")
    return path


# --- the history over runs --------------------------------------------------------------------------------------------


def run_records(root: Path) -> list[tuple[Path, dict]]:
    """Every run under `root` with its record, oldest first."""
    records = [(p.parent, json.loads(p.read_text())) for p in Path(root).glob("*/run.json")]
    return sorted(records, key=lambda item: item[1]["started"])


def _monitor(record: dict) -> dict:
    return next((t["figures"] for t in record["tasks"] if component_of(t["name"]) == "monitor-drift"), {})


def history_series(records: list[dict]) -> dict:
    """The figures charted over runs, one value per run (None where a run has none)."""
    monitors = [_monitor(r) for r in records]
    series = {
        "share_of_drifted_columns": [m.get("share_of_drifted_columns") for m in monitors],
        **{f"trigger_{name}": [m.get(f"trigger_{name}") for m in monitors] for name in TRIGGERS},
        "promoted": [r["verdicts"].get("pushed_version") if r["status"] == "succeeded" else None for r in records],
    }
    metric = next((k for r in records for k in r["verdicts"] if k in ("roc_auc", "rmse")), None)
    if metric is None:
        keys = [k for m in monitors for k in m if k.startswith("champion_") and k.endswith("_recorded")]
        metric = keys[0].removeprefix("champion_").removesuffix("_recorded") if keys else None
    series["metric"] = metric
    series["champion_recorded"] = [m.get(f"champion_{metric}_recorded") for m in monitors]
    series["champion_current"] = [m.get(f"champion_{metric}_current") for m in monitors]
    series["candidate"] = [r["verdicts"].get(metric) for r in records]
    return series


def history_svg(labels: list[str], series: dict) -> str:
    """Three charts over runs: share of drifted columns, the triggers, the champion's primary metric; promotions
    marked on each."""
    from matplotlib.figure import Figure

    n = len(labels)
    xs = list(range(n))
    figure = Figure(figsize=(max(7, 1.1 * n + 3), 7.5))
    drift, triggers, metric = figure.subplots(3, 1, sharex=True, height_ratios=(3, 2, 3))
    promoted = [i for i, v in enumerate(series["promoted"]) if v]
    for axes in (drift, triggers, metric):
        for i in promoted:
            axes.axvline(i, color="#2e7d32", alpha=0.25, linewidth=6)
    shares = [s if s is not None else 0.0 for s in series["share_of_drifted_columns"]]
    bars = drift.bar(
        xs, shares, color=["#ef6c00" if s is not None else "#eeeeee" for s in series["share_of_drifted_columns"]]
    )
    for i, bar in enumerate(bars):
        bar.set_gid(f"history-drift-{i + 1}")
    drift.set(ylim=(0, 1), ylabel="share of drifted\ncolumns")
    drift.set_title("drift, triggers and the champion over runs (green band: a version promoted)", fontsize=10)
    for i, (s, v) in enumerate(zip(series["share_of_drifted_columns"], series["promoted"])):
        if s is None:
            drift.text(i, 0.02, "no check", ha="center", fontsize=7, color="#757575")
        else:
            drift.text(i, s + 0.02, f"{s:.0%}", ha="center", fontsize=8)
        if v:
            drift.text(i, 0.92, f"v{v}", ha="center", fontsize=8, color="#2e7d32", fontweight="bold")
    for row, name in enumerate(TRIGGERS):
        values = series[f"trigger_{name}"]
        colors = ["#c62828" if v else ("#c8e6c9" if v is not None else "#ffffff") for v in values]
        points = triggers.scatter(xs, [row] * n, c=colors, s=140, marker="s", edgecolors="#9e9e9e")
        points.set_gid(f"history-trigger-{name}")
    triggers.set(yticks=range(len(TRIGGERS)), ylim=(-0.6, len(TRIGGERS) - 0.4))
    triggers.set_yticklabels([t.replace("_", " ") for t in TRIGGERS], fontsize=8)
    triggers.set_ylabel("trigger", fontsize=9)
    triggers.set_title("red: fired, green: checked and not fired, white: not checked", fontsize=8)
    name = series["metric"] or "metric"
    for key, label, style in (
        ("champion_recorded", f"champion's recorded {name}", dict(marker="o", color="#1565c0")),
        ("champion_current", f"champion's {name} on the current window", dict(marker="v", color="#ef6c00")),
        ("candidate", f"candidate's {name} (evaluate)", dict(marker="*", color="#2e7d32", markersize=10)),
    ):
        values = [v if v is not None else float("nan") for v in series[key]]
        (line,) = metric.plot(xs, values, linestyle="-", label=label, **style)
        line.set_gid(f"history-{key.replace('_', '-')}")
    metric.set_ylabel(name)
    metric.legend(fontsize=7, loc="best")
    metric.grid(alpha=0.3)
    metric.set_xticks(xs, labels, rotation=20, ha="right", fontsize=7)
    figure.tight_layout()
    return _svg(figure, "history")


def write_history(root: str | Path) -> Path:
    """Writes `<root>/index.html`: every run under `root`, oldest first, and the charts over them."""
    root = Path(root)
    runs = run_records(root)
    rows = []
    for run_dir, record in runs:
        rows.append(
            f"<tr><td>{html.escape(record['started'])}</td><td>{html.escape(record['pipeline'])}</td>"
            f'<td><span class="status {record["status"]}">{record["status"]}</span></td>'
            f"<td>{html.escape(verdict_text(record['verdicts'], record['status']))}</td>"
            f"<td>{record['seconds']:.0f} s</td>"
            f'<td><a href="{html.escape(run_dir.name)}/index.html">{html.escape(run_dir.name)}</a></td></tr>'
        )
    body = [
        f"<h1>runs under {html.escape(root.resolve().name)}</h1>",
        f"<p>{len(runs)} runs, oldest first.</p>",
        '<table class="runs"><tr><th>started</th><th>pipeline</th><th>status</th><th>verdict</th><th>took</th>'
        f"<th>report</th></tr>{''.join(rows)}</table>",
    ]
    if runs:
        labels = [
            f"{i + 1}. {r['pipeline'].removesuffix('-pipeline')}\n{r['started'][5:16]}" for i, (_, r) in enumerate(runs)
        ]
        body.append(
            '<h2>over runs</h2><div class="charts">'
            + history_svg(labels, history_series([r for _, r in runs]))
            + "</div>"
        )
    path = root / "index.html"
    path.write_text(_page(f"runs under {root.resolve().name}", "".join(body)), encoding="utf-8")
    return path


def rebuild(root: str | Path) -> Path:
    """Rewrites every run's index.html under `root`, then the history."""
    for run_dir, _ in run_records(Path(root)):
        write_index(run_dir)
    return write_history(root)
