"""`kfp-ct backfill`: the scheduled runs of a past period, run one after another locally, each with its own as_of
(what a recurring run would have done), and one summary line per period."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from kfp_ct.components._common import windows
from kfp_ct.pipelines.local_run import RunSummary, TaskOutputs, component_of, run_local


def schedule(start: str, end: str, every: str) -> list[datetime]:
    """The as_of times of the runs a schedule every `every` from `start` makes up to `end` (inclusive): start +
    every, start + 2 * every, ... (the first run reads [start, start + every) with a window of `every`)."""
    first, last = windows.parse_time(start, "--from"), windows.parse_time(end, "--to")
    step = windows.parse_duration(every, "--every")
    if last < first + step:
        raise ValueError(f"--to ({end}) must be at least one period (--every {every}) after --from ({start})")
    times, moment = [], first + step
    while moment <= last:
        times.append(moment)
        moment += step
    return times


def _task(summary: RunSummary, kind: str) -> TaskOutputs | None:
    """The succeeded task of component `kind` (one of each runs: the others sit in branches not taken)."""
    found = [t for t in summary.tasks if component_of(t.name) == kind and t.status == "succeeded"]
    return found[0] if found else None


def _metadata(task: TaskOutputs | None, output: str) -> dict:
    return ((task.artifacts.get(output) or {}).get("metadata", {})) if task else {}


def period_summary(summary: RunSummary) -> dict:
    """What one scheduled run decided: its window, the rows in it, the drift verdict, the triggers, and whether it
    retrained, blessed and pushed a new champion."""
    dataset = _metadata(_task(summary, "ingest"), "dataset")
    drift = _task(summary, "monitor-drift")
    table = _metadata(drift, "drift_table")
    evaluated = _task(summary, "evaluate")
    window = dataset.get("window") or {}
    return {
        "start": window.get("start"),
        "end": window.get("end"),
        "rows": dataset.get("rows"),
        "no_new_data": bool(table.get("no_new_data")),
        "dataset_drift": bool(table.get("dataset_drift")),
        "drifted_columns": table.get("drifted_columns") or [],
        "triggers": table.get("triggers") or [],
        "triggered": bool(drift and drift.parameters.get("Output")),
        "retrained": any(component_of(t.name).startswith("train-") for t in summary.tasks),
        "blessed": bool(evaluated.parameters.get("Output")) if evaluated else None,
        "pushed_version": _metadata(_task(summary, "push"), "manifest").get("version"),
        "run": summary.run_dir.name,
        "run_dir": str(summary.run_dir),
    }


def period_line(period: dict) -> str:
    """One line per period: window, rows, drift verdict, triggered, retrained/promoted."""
    head = f"[{period['start']}, {period['end']})  {period['rows']:>7} rows  "
    if period["no_new_data"]:
        return head + "no new data: nothing compared, nothing triggered"
    drift = f"drift in {', '.join(period['drifted_columns'])}" if period["dataset_drift"] else "no dataset drift"
    if not period["triggered"]:
        return head + f"{drift}; no trigger fired"
    outcome = "retrained" if period["retrained"] else "triggered"
    if period["pushed_version"]:
        outcome += f", promoted version {period['pushed_version']}"
    elif period["blessed"] is False:
        outcome += ", not blessed: the champion stays"
    return head + f"{drift}; fired: {', '.join(period['triggers'])} -> {outcome}"


def backfill(
    pipeline,
    arguments: dict,
    start: str,
    end: str,
    every: str,
    root: str | Path,
    *,
    verbose: bool = False,
    before_run: Callable[[datetime, datetime], None] | None = None,
) -> list[dict]:
    """Runs `pipeline` locally once per scheduled time of [start, end] every `every` (window: `every` unless the
    arguments give one), in order, printing each period's line; stops at the first failed run (the next periods
    would start from a registry it left half-way). `before_run(window start, as_of)` is called before each run
    (the demo serves that period's traffic with the champion of the time)."""
    inputs = pipeline.component_spec.inputs or {}
    if "as_of" not in inputs or "window" not in inputs:
        raise ValueError(f"{pipeline.name} takes no window and as_of: only a windowed pipeline can be backfilled")
    times = schedule(start, end, every)
    arguments = {"window": every, **arguments}
    length = windows.parse_duration(arguments["window"], "window")
    periods = []
    for moment in times:
        if before_run is not None:
            before_run(moment - length, moment)
        as_of = moment.isoformat().replace("+00:00", "Z")
        summary = run_local(pipeline, {**arguments, "as_of": as_of}, root, verbose=verbose)
        periods.append(period_summary(summary))
        print(f"period {len(periods)}/{len(times)}: {period_line(periods[-1])}", flush=True)
    print(f"backfill of {pipeline.name}, {len(times)} periods of {every}:")
    for period in periods:
        print(f"  {period_line(period)}")
    return periods
