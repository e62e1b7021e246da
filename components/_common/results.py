"""The one shape every component's core returns, so that every component body reads the same way: read the inputs,
call the core with keywords, write `metrics` to the step's Metrics and `metadata` onto its main output artifact."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Result:
    """Base of each core's `<Component>Result` (which adds what that component decides or produces).

    `metrics`: the scalars the step logs as KFP Metrics (names as the KFP UI shows them); `metadata`: what goes onto
    the component's main output artifact (what later steps and a person read).
    """

    metrics: dict[str, float] = field(default_factory=dict, kw_only=True)
    metadata: dict = field(default_factory=dict, kw_only=True)

    def log_metrics(self, metrics_artifact) -> None:
        """Logs `metrics` on a KFP Metrics output."""
        for name, value in self.metrics.items():
            metrics_artifact.log_metric(name, value)
