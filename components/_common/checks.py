"""The rules on parameters that more than one step checks, each in one place: the thresholds a task's gate accepts
(the metric table itself is in _common/metrics.py), what a model may be called, and which URI schemes the catalog
reads and writes.

The preflight component checks a pipeline's parameters against these rules before any step has a side effect;
the steps themselves check the same rules again when they are used on their own.
"""

from __future__ import annotations

import re

from kfp_ct.components._common.metrics import CLASSIFICATION, FAIRNESS, LOWER_IS_BETTER, METRICS, REGRESSION
from kfp_ct.components._common.storage import split_uri

TASKS = (CLASSIFICATION, REGRESSION)

# --- thresholds (evaluate's gate) -----------------------------------------------------------------------------------

CHECKS = ("min", "max", "max_drop", "max_increase")
PER_SLICE = "per_slice"  # a flag beside the checks: apply them to every slice too


def check_task(task: str) -> str:
    if task not in TASKS:
        raise ValueError(f"unknown task '{task}': expected {' or '.join(TASKS)}")
    return task


def threshold_metrics(task: str) -> tuple[str, ...]:
    """The metrics a threshold may name for `task`: the task's metrics, and for classification the fairness ones."""
    return METRICS[task] + (FAIRNESS if task == CLASSIFICATION else ())


def check_thresholds(thresholds: dict | None, task: str) -> dict[str, dict[str, float]]:
    """Validates evaluate's `thresholds` for `task` (see kfp_ct.components.evaluate.core), naming what is wrong.

    Returns {metric: {check: bound}}, with `per_slice: True` kept beside the checks of a metric that is to be checked
    on every slice too (a fairness metric compares the groups of a column with each other: never per slice)."""
    check_task(task)
    if not thresholds:
        return {}
    if not isinstance(thresholds, dict):
        raise ValueError(f"thresholds must be a dict of metric -> checks, got {type(thresholds).__name__}")
    allowed = threshold_metrics(task)
    checked = {}
    for metric, checks in thresholds.items():
        if metric not in allowed:
            raise ValueError(f"threshold on unknown metric '{metric}' for {task}: expected one of {', '.join(allowed)}")
        if not isinstance(checks, dict) or not set(checks) - {PER_SLICE}:
            raise ValueError(f"thresholds['{metric}'] must be a dict such as {{'min': 0.8}}, got {checks!r}")
        unknown = [name for name in checks if name not in (*CHECKS, PER_SLICE)]
        if unknown:
            raise ValueError(
                f"unknown check(s) {', '.join(unknown)} on '{metric}': expected {', '.join(CHECKS)} (and {PER_SLICE})"
            )
        lower = metric in LOWER_IS_BETTER
        if lower and "max_drop" in checks:
            raise ValueError(f"'{metric}' is lower-is-better: bound its regression with max_increase, not max_drop")
        if not lower and "max_increase" in checks:
            raise ValueError(f"'{metric}' is higher-is-better: bound its regression with max_drop, not max_increase")
        values = {}
        for name, value in checks.items():
            if name == PER_SLICE:
                if not isinstance(value, bool):
                    raise ValueError(f"thresholds['{metric}']['{PER_SLICE}'] must be true or false, got {value!r}")
                if value and metric in FAIRNESS:
                    raise ValueError(
                        f"'{metric}' compares the groups of a sensitive column with each other: it has no per-slice "
                        f"value, remove '{PER_SLICE}'"
                    )
                if value:
                    values[PER_SLICE] = True
                continue
            try:
                values[name] = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"thresholds['{metric}']['{name}'] must be a number, got {value!r}") from None
            if name in ("max_drop", "max_increase") and values[name] < 0:
                raise ValueError(f"thresholds['{metric}']['{name}'] must be >= 0, got {value!r}")
        checked[metric] = values
    return checked


# --- names ---------------------------------------------------------------------------------------------------------

_SERVING_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
SERVING_NAME_MAX = 45  # KServe's hostnames add the namespace and suffixes to it; a DNS label holds 63 characters
_REGISTRY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
REGISTRY_NAME_MAX = 256


def check_registry_name(name: str, what: str = "model_name") -> str:
    """Checks that `name` can name a registered model and its MLflow experiment: letters, digits, '.', '_' and '-',
    starting with a letter or digit (no '/', ':' or '..': the registry and the artifact store turn names into
    paths)."""
    if not isinstance(name, str) or not _REGISTRY_NAME.match(name) or ".." in name or len(name) > REGISTRY_NAME_MAX:
        raise ValueError(
            f"{what} {name!r} cannot name a registered model: use letters, digits, '.', '_' and '-', starting with a "
            f"letter or digit, without '..', at most {REGISTRY_NAME_MAX} characters"
        )
    return name


def check_serving_name(name: str, what: str = "model_name") -> str:
    """Checks that `name` can name an InferenceService (a DNS-1035 label, short enough for KServe's hostnames) and,
    being one, a registered model too."""
    if not isinstance(name, str) or not _SERVING_NAME.match(name) or len(name) > SERVING_NAME_MAX:
        raise ValueError(
            f"{what} {name!r} cannot name an InferenceService: use at most {SERVING_NAME_MAX} lowercase letters, "
            "digits and '-', starting with a letter and not ending with '-' (for example 'elec2-classifier')"
        )
    return name


# --- URIs ----------------------------------------------------------------------------------------------------------

OBJECT_STORE_SCHEMES = ("gs", "s3", "minio")
STORAGE_SCHEMES = ("", *OBJECT_STORE_SCHEMES)  # "" is a path or file://
DATA_SCHEMES = (*STORAGE_SCHEMES, "http", "https")


def _describe(schemes: tuple[str, ...]) -> str:
    return ", ".join("a path or file://" if s == "" else f"{s}://" for s in schemes)


def check_uri(uri: str, what: str, schemes: tuple[str, ...] = DATA_SCHEMES) -> str:
    """Checks that `uri` is non-empty and has one of `schemes` ("" for a path or file://); returns its scheme."""
    if not isinstance(uri, str) or not uri.strip():
        raise ValueError(f"{what} is empty: expected {_describe(schemes)}")
    scheme, host, _ = split_uri(uri)
    if scheme not in schemes:
        raise ValueError(f"{what} '{uri}' has the unsupported scheme '{scheme}': expected {_describe(schemes)}")
    if scheme and not host:
        raise ValueError(f"{what} '{uri}' names no bucket or host after {scheme}://")
    return scheme
