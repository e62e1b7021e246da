"""What a search produces, on either backend: each trial's state, assignments and metrics, and the best trial;
how a trial's output is read (Katib's StdOut metrics collector); and the search's Markdown report."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Optional

METRICS_FORMAT = r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)"
_METRICS_RE = re.compile(METRICS_FORMAT)

SUCCEEDED, FAILED, EARLY_STOPPED, KILLED = "Succeeded", "Failed", "EarlyStopped", "Killed"


@dataclass
class TrialResult:
    number: int
    assignments: dict[str, str]
    params: dict[str, Any]
    state: str = "Running"
    value: Optional[float] = None
    metrics: dict[str, list[float]] = field(default_factory=dict)
    error: str = ""
    seconds: float = 0.0
    output: list[str] = field(default_factory=list)
    name: str = ""  # the Katib trial's name (katib backend)


@dataclass
class SearchResult:
    trials: list[TrialResult]
    best: Optional[TrialResult]
    reason: str
    objective_metric_name: str
    objective_type: str
    startup_seconds: float = 0.0  # local backend: loading the data and starting the workers

    def count(self, state: str) -> int:
        return sum(t.state == state for t in self.trials)


def parse_metrics(text: str, names: Optional[Iterable[str]] = None) -> dict[str, list[float]]:
    """The values of `name=value` pairs in `text`, in order, as Katib's StdOut collector reads them (its default
    regular expression; with `names`, only lines holding one of them and only those names)."""
    wanted = set(names) if names is not None else None
    found: dict[str, list[float]] = {}
    for line in text.splitlines():
        if wanted is not None and not any(name in line for name in wanted):
            continue
        for match in _METRICS_RE.finditer(line):
            name, value = match.group(1).strip(), match.group(2).strip()
            if (wanted is not None and name not in wanted) or not value:
                continue
            try:
                number = float(value)
            except ValueError:
                continue
            found.setdefault(name, []).append(number)
    return found


def objective_value(values: list[float], objective_type: str) -> Optional[float]:
    """Katib's default metric strategy for the objective: the best value a trial reported."""
    if not values:
        return None
    return max(values) if objective_type == "maximize" else min(values)


def check_result(result: SearchResult) -> TrialResult:
    """The best trial; a clear error when no trial succeeded (with the first failures' messages)."""
    if result.best is not None:
        return result.best
    failures = [t for t in result.trials if t.state == FAILED][:3]
    detail = "\n".join(
        f"trial {t.number} {t.params}: {t.error}\n  last output: {' | '.join(t.output[-5:])}" for t in failures
    )
    raise RuntimeError(
        f"no trial reported {result.objective_metric_name}: {result.count(FAILED)} failed "
        f"(stopped by {result.reason}).\n{detail}"
    )


def report_markdown(
    result: SearchResult, algorithm: str, backend: str, trainer: str, max_failed_trial_count: int
) -> str:
    """A Markdown summary: the outcome, the best hyperparameters and every trial (with a warning when more than
    `max_failed_trial_count` trials failed)."""
    best = result.best
    lines = [
        f"# Tuning: {trainer}, {algorithm} ({backend})",
        "",
        f"Objective: {result.objective_type} `{result.objective_metric_name}`. Stopped by: {result.reason}.",
        f"Trials: {len(result.trials)} ({result.count(SUCCEEDED)} succeeded, {result.count(FAILED)} failed, "
        f"{result.count(EARLY_STOPPED)} early stopped, {result.count(KILLED)} killed).",
        "",
    ]
    if best is not None:
        lines += [
            f"Best: trial {best.number}, {result.objective_metric_name} = {best.value:.6g}",
            "",
            "| hyperparameter | value |",
            "|---|---|",
        ]
        lines += [f"| {name} | `{value!r}` |" for name, value in best.params.items()]
        lines.append("")
    if result.trials:
        names = list(result.trials[0].params)
        lines += [
            "| trial | state | " + " | ".join(names) + f" | {result.objective_metric_name} | seconds |",
            "|---" * (len(names) + 4) + "|",
        ]
        for t in result.trials:
            value = f"{t.value:.6g}" if t.value is not None else "-"
            lines.append(
                f"| {t.number} | {t.state} | "
                + " | ".join(f"{t.params[n]!r}" for n in names)
                + f" | {value} | {t.seconds:.1f} |"
            )
    if result.reason == "max_failed_trial_count":
        lines += [
            "",
            f"**Warning:** more than {max_failed_trial_count} trials failed, so the search stopped early; "
            "the best of the trials that succeeded is returned.",
        ]
    return "\n".join(lines) + "\n"
