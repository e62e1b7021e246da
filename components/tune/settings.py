"""A search's settings, checked once: the algorithm for the backend, the objective, the trial counts and early
stopping, as Katib's admission webhook and suggestion services would accept them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from kfp_ct.components.tune.space import Parameter, grid_size

OBJECTIVE_TYPES = ("maximize", "minimize")
LOCAL_ALGORITHMS = ("random", "grid", "tpe", "multivariate-tpe", "cmaes", "sobol", "bayesianoptimization")
KATIB_ONLY_ALGORITHMS = ("hyperband", "enas", "darts", "pbt")
EARLY_STOPPING_SETTINGS = {"medianstop": {"min_trials_required": 3, "start_step": 4}}


@dataclass(frozen=True)
class SearchSettings:
    """Everything a search runs by, checked by `check_settings` (build it with that function, not directly)."""

    parameters: tuple[Parameter, ...]
    objective_metric_name: str
    objective_type: str
    algorithm: str
    objective_goal: Optional[float]
    max_trial_count: int
    parallel_trial_count: int
    max_failed_trial_count: int
    early_stopping: Optional[dict]  # parsed: {"algorithmName": ..., setting: int, ...}
    seed: int


def parse_early_stopping(early_stopping: Optional[dict]) -> Optional[dict]:
    """{"algorithmName": "medianstop", "algorithmSettings": [{"name", "value"}]} -> the settings with defaults."""
    if not early_stopping:
        return None
    if not isinstance(early_stopping, dict):
        raise ValueError(
            f"early_stopping must be a dict like {{'algorithmName': 'medianstop'}}, got {early_stopping!r}"
        )
    name = early_stopping.get("algorithmName")
    if name not in EARLY_STOPPING_SETTINGS:
        raise ValueError(f"unknown early stopping algorithm {name!r}: expected {', '.join(EARLY_STOPPING_SETTINGS)}")
    settings = dict(EARLY_STOPPING_SETTINGS[name])
    for item in early_stopping.get("algorithmSettings") or []:
        key, value = item.get("name"), item.get("value")
        if key not in settings:
            raise ValueError(f"unknown setting {key!r} for early stopping {name}: expected {', '.join(settings)}")
        try:
            number = int(str(value))
        except ValueError:
            raise ValueError(f"early stopping setting {key} must be an integer, got {value!r}") from None
        if number < 1:
            raise ValueError(f"early stopping setting {key} must be at least 1, got {value!r}")
        settings[key] = number
    return {"algorithmName": name, **settings}


def check_settings(
    *,
    parameters: list[Parameter],
    objective_metric_name: str,
    objective_type: str = "maximize",
    algorithm: str = "tpe",
    objective_goal: Optional[float] = None,
    max_trial_count: int = 12,
    parallel_trial_count: int = 2,
    max_failed_trial_count: int = 3,
    early_stopping: Optional[dict] = None,
    seed: int = 0,
    local: bool = True,
) -> SearchSettings:
    """The checked settings of a search. Refuses, before any trial runs, what Katib's admission webhook or
    suggestion service would refuse, and the algorithms that only Katib can run when `local`."""
    if algorithm in KATIB_ONLY_ALGORITHMS:
        if local:
            raise ValueError(
                f"algorithm '{algorithm}' runs only on Katib (backend='katib'); the local backend runs "
                f"{', '.join(LOCAL_ALGORITHMS)}"
            )
        if algorithm in ("enas", "darts"):
            raise ValueError(
                f"algorithm '{algorithm}' is Katib's neural architecture search, which needs a nasConfig "
                "rather than hyperparameters: use it with a NAS Experiment of your own"
            )
    elif algorithm not in LOCAL_ALGORITHMS:
        raise ValueError(
            f"unknown algorithm '{algorithm}': expected one of {', '.join(LOCAL_ALGORITHMS + KATIB_ONLY_ALGORITHMS)}"
        )
    if objective_type not in OBJECTIVE_TYPES:
        raise ValueError(f"objective_type must be maximize or minimize, got {objective_type!r}")
    counts = (
        ("max_trial_count", max_trial_count, 1),
        ("parallel_trial_count", parallel_trial_count, 1),
        ("max_failed_trial_count", max_failed_trial_count, 0),
    )
    for name, value, least in counts:
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
    if max_failed_trial_count > max_trial_count:
        raise ValueError(
            f"max_failed_trial_count ({max_failed_trial_count}) must not exceed max_trial_count "
            f"({max_trial_count}), as Katib requires"
        )
    if parallel_trial_count > max_trial_count:
        raise ValueError(
            f"parallel_trial_count ({parallel_trial_count}) must not exceed max_trial_count "
            f"({max_trial_count}), as Katib requires"
        )
    if algorithm == "cmaes" and sum(p.numeric for p in parameters) < 2:
        raise ValueError(
            "cmaes needs two or more continuous (double or int) parameters, as Katib requires; the "
            f"search space has {[p.name for p in parameters if p.numeric]}: use tpe or random instead"
        )
    if algorithm == "grid":
        size = grid_size(parameters)
        if max_trial_count > size:
            raise ValueError(
                f"max_trial_count ({max_trial_count}) is above the number of grid points ({size}); "
                f"Katib refuses this: set max_trial_count to {size} or less"
            )
    return SearchSettings(
        parameters=tuple(parameters),
        objective_metric_name=objective_metric_name,
        objective_type=objective_type,
        algorithm=algorithm,
        objective_goal=objective_goal,
        max_trial_count=max_trial_count,
        parallel_trial_count=parallel_trial_count,
        max_failed_trial_count=max_failed_trial_count,
        early_stopping=parse_early_stopping(early_stopping),
        seed=seed,
    )
