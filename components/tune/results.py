"""What a search produces, on either backend: each trial's state, assignments and metrics, and the best trial;
and how a trial's output is read (Katib's StdOut metrics collector)."""

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
