"""Preflight: check every parameter of a run that can be checked before any step has a side effect.

A pipeline runs this first and its other steps after it; `kfp-ct run` and `kfp-ct submit` run the same checks
before they start anything. The rules live in `_common` (checks, tracking), where the steps check them again:

- thresholds: metric names valid for the task, checks and directions (evaluate's gate);
- model_name: a registered model's and an InferenceService's name (push derives the service from it);
- framework: one of the trainers (an unknown one would silently skip every training branch);
- URIs: the data URIs' and the storage URI's schemes (target=kserve needs an object store the cluster reads);
- the registry: exists and answers (a trainer may create a missing sqlite file or folder; nothing else does).

Every problem found is reported at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from kfp_ct.components._common import checks
from kfp_ct.components._common.results import Result

FRAMEWORKS = ("sklearn", "torch", "keras")
PUSH_TARGETS = ("local", "kserve")
REGISTRY_CHECKS = ("create", "existing", "skip")


def _collect(problems: list[str], check, *args, **kwargs) -> None:
    try:
        check(*args, **kwargs)
    except (ValueError, LookupError, OSError) as err:  # OSError: FileNotFoundError, ConnectionError
        problems.append(str(err))


@dataclass
class PreflightResult(Result):
    """The checks that passed (the parameters checked, in order)."""

    checked: list[str]


def preflight(
    *,
    data_uris: dict[str, str | None] | None = None,
    target_column: str | None = None,
    model_name: str | None = None,
    task: str | None = None,
    framework: str | None = None,
    thresholds: dict | None = None,
    push_target: str | None = None,
    storage_uri: str | None = None,
    tracking_uri: str | None = None,
    registry: str = "skip",
) -> PreflightResult:
    """Checks the parameters given (None: not a parameter of this run) and raises one ValueError naming every
    problem. `data_uris` maps a parameter name to a URI (None when not given). `registry` is "create" (a trainer
    will write to it: it must answer, or be a sqlite file or folder a trainer may create), "existing" (it must exist
    and answer) or "skip" (not reachable from here, e.g. when submitting to a cluster)."""
    from kfp_ct.components._common import tracking

    if registry not in REGISTRY_CHECKS:
        raise ValueError(f"registry must be one of {', '.join(REGISTRY_CHECKS)}, got '{registry}'")
    problems: list[str] = []
    checked: list[str] = []
    for name, uri in (data_uris or {}).items():
        if uri is not None:
            _collect(problems, checks.check_uri, uri, name, checks.DATA_SCHEMES)
            checked.append(name)
    if target_column is not None:
        if not target_column.strip():
            problems.append("target_column is empty: name the column to predict")
        checked.append("target_column")
    if task is not None:
        _collect(problems, checks.check_task, task)
        checked.append("task")
        if task in checks.TASKS:
            _collect(problems, checks.check_thresholds, thresholds, task)
            checked.append("thresholds")
    if framework is not None:
        if framework not in FRAMEWORKS:
            problems.append(f"unknown framework '{framework}': expected one of {', '.join(FRAMEWORKS)}")
        checked.append("framework")
    if model_name is not None:
        _collect(problems, checks.check_serving_name, model_name)
        checked.append("model_name")
    if push_target is not None:
        if push_target not in PUSH_TARGETS:
            problems.append(f"unknown push_target '{push_target}': expected one of {', '.join(PUSH_TARGETS)}")
        checked.append("push_target")
    if storage_uri is not None:
        schemes = checks.OBJECT_STORE_SCHEMES if push_target == "kserve" else checks.STORAGE_SCHEMES
        _collect(problems, checks.check_uri, storage_uri, "storage_uri", schemes)
        checked.append("storage_uri")
    if registry != "skip":
        _collect(problems, tracking.check_registry, tracking_uri, create=registry == "create")
        checked.append("registry")
    if problems:
        raise ValueError(f"preflight found {len(problems)} problem(s), nothing was run:\n- " + "\n- ".join(problems))
    return PreflightResult(checked=checked)
