"""The search space: Katib ParameterSpecs checked into `Parameter`s, their typed values and grid points, and their
Optuna distributions (the local backend's view of the same space)."""

from __future__ import annotations

import math
import re
import statistics
from dataclasses import dataclass
from typing import Any, Optional

PARAMETER_TYPES = ("double", "int", "categorical", "discrete")
DISTRIBUTIONS = ("uniform", "logUniform", "normal", "logNormal")
_FEASIBLE_KEYS = {"min", "max", "step", "list", "distribution"}


@dataclass(frozen=True)
class Parameter:
    """One hyperparameter of a Katib search space (ParameterSpec), checked."""

    name: str
    type: str
    min: Optional[float] = None
    max: Optional[float] = None
    step: Optional[float] = None
    values: tuple[str, ...] = ()
    distribution: str = "uniform"

    @property
    def numeric(self) -> bool:
        return self.type in ("double", "int")

    def to_katib(self) -> dict:
        """The Katib ParameterSpec (feasibleSpace values are strings, as the API has them)."""
        space: dict[str, Any] = {}
        if self.numeric:
            space["min"], space["max"] = _number_text(self.min, self.type), _number_text(self.max, self.type)
            if self.step is not None:
                space["step"] = _number_text(self.step, self.type)
            if self.distribution != "uniform":
                space["distribution"] = self.distribution
        else:
            space["list"] = list(self.values)
        return {"name": self.name, "parameterType": self.type, "feasibleSpace": space}

    def parse(self, text: str):
        return parse_value(self.type, text)

    def grid(self) -> list[str]:
        """The points of this parameter on a grid, as Katib's grid algorithm builds it."""
        if self.type == "int":
            return [str(v) for v in range(int(self.min), int(self.max) + 1, int(self.step or 1))]
        if self.type == "double":
            if self.step is None:
                raise ValueError(
                    f"parameter '{self.name}': the grid algorithm needs a step for a double parameter "
                    "(feasibleSpace.step)"
                )
            count = int(math.floor((self.max - self.min) / self.step + 1e-9)) + 1
            return [_number_text(round(self.min + i * self.step, 12), "double") for i in range(count)]
        return list(self.values)


def parse_value(kind: str, text: str):
    """The typed value of an assignment as Katib passes it (a string), for a parameter of type `kind`: int, float,
    a number for discrete, and for categorical JSON scalars (`true`, `null`, `32`) as such, anything else as the
    string. Both backends (and the Katib trial's command line) type values through this one function."""
    if kind == "int":
        return int(float(text))
    if kind == "double":
        return float(text)
    if kind == "discrete":
        number = float(text)
        return int(number) if number.is_integer() and re.fullmatch(r"[+-]?\d+", text.strip()) else number
    if kind == "categorical":
        return _json_scalar(text)
    raise ValueError(f"unknown parameterType {kind!r}: expected one of {', '.join(PARAMETER_TYPES)}")


def _number_text(value: float, kind: str) -> str:
    return str(int(value)) if kind == "int" else repr(float(value))


def _json_scalar(text: str):
    import json

    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if value is None or isinstance(value, (bool, int, float)) else text


def value_text(value) -> str:
    """A list entry as Katib holds it: strings unchanged, other scalars as JSON (true, null, 32, 0.5)."""
    import json

    if isinstance(value, str):
        return value
    if value is None or isinstance(value, (bool, int, float)):
        return json.dumps(value)
    raise ValueError(f"a search-space list holds {value!r} ({type(value).__name__}): expected strings or numbers")


def _number(name: str, key: str, value) -> float:
    if isinstance(value, bool) or value is None or value == "":
        raise ValueError(f"parameter '{name}': feasibleSpace.{key} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"parameter '{name}': feasibleSpace.{key} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"parameter '{name}': feasibleSpace.{key} must be finite, got {value!r}")
    return number


def parse_parameter(spec: dict) -> Parameter:
    """Checks one Katib ParameterSpec dict and returns it as a Parameter; the message names what is wrong."""
    if not isinstance(spec, dict):
        raise ValueError(
            f"a search-space parameter must be a dict with name, parameterType and feasibleSpace, got {spec!r}"
        )
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"a search-space parameter has no name: {spec!r}")
    unknown = set(spec) - {"name", "parameterType", "feasibleSpace"}
    if unknown:
        raise ValueError(
            f"parameter '{name}': unknown keys {sorted(unknown)}: expected name, parameterType and feasibleSpace"
        )
    kind = spec.get("parameterType")
    if kind not in PARAMETER_TYPES:
        raise ValueError(
            f"parameter '{name}': unknown parameterType {kind!r}: expected one of {', '.join(PARAMETER_TYPES)}"
        )
    space = spec.get("feasibleSpace") or {}
    if not isinstance(space, dict):
        raise ValueError(f"parameter '{name}': feasibleSpace must be a dict, got {space!r}")
    unknown = set(space) - _FEASIBLE_KEYS
    if unknown:
        raise ValueError(
            f"parameter '{name}': unknown feasibleSpace keys {sorted(unknown)}: expected "
            f"{', '.join(sorted(_FEASIBLE_KEYS))}"
        )
    if kind in ("categorical", "discrete"):
        extra = {"min", "max", "step", "distribution"} & set(space)
        if extra:
            raise ValueError(
                f"parameter '{name}': a {kind} parameter takes feasibleSpace.list only, not {sorted(extra)}"
            )
        values = space.get("list")
        if not isinstance(values, (list, tuple)) or len(values) == 0:
            raise ValueError(f"parameter '{name}': feasibleSpace.list must be a non-empty list of values")
        texts = tuple(value_text(v) for v in values)
        if len(set(texts)) != len(texts):
            raise ValueError(f"parameter '{name}': feasibleSpace.list has duplicates: {list(texts)}")
        if kind == "discrete":
            for text in texts:
                _number(name, "list", text)
        return Parameter(name, kind, values=texts)
    if "list" in space:
        raise ValueError(f"parameter '{name}': a {kind} parameter takes min, max (and step, distribution), not list")
    for key in ("min", "max"):
        if key not in space:
            raise ValueError(f"parameter '{name}': feasibleSpace.{key} is missing")
    low, high = _number(name, "min", space["min"]), _number(name, "max", space["max"])
    if low > high:
        raise ValueError(f"parameter '{name}': feasibleSpace.min ({space['min']}) is above max ({space['max']})")
    step = _number(name, "step", space["step"]) if space.get("step") not in (None, "") else None
    if step is not None and step <= 0:
        raise ValueError(f"parameter '{name}': feasibleSpace.step must be positive, got {space['step']}")
    if kind == "int":
        for key, value in (("min", low), ("max", high), ("step", step)):
            if value is not None and not float(value).is_integer():
                raise ValueError(
                    f"parameter '{name}': feasibleSpace.{key} of an int parameter must be an integer, got {space[key]}"
                )
    distribution = space.get("distribution") or "uniform"
    if distribution not in DISTRIBUTIONS:
        raise ValueError(
            f"parameter '{name}': unknown distribution {distribution!r}: expected one of {', '.join(DISTRIBUTIONS)}"
        )
    if distribution.startswith("log") and low <= 0:
        raise ValueError(f"parameter '{name}': a {distribution} distribution needs min > 0, got {space['min']}")
    return Parameter(name, kind, low, high, step, distribution=distribution)


def parse_search_space(search_space) -> list[Parameter]:
    """Katib parameters from a list of ParameterSpec dicts, a dict {"parameters": [...]}, or a dict
    {name: {"parameterType": ..., "feasibleSpace": ...}}."""
    if isinstance(search_space, dict):
        if set(search_space) == {"parameters"}:
            search_space = search_space["parameters"]
        else:
            search_space = [
                {"name": name, **(spec if isinstance(spec, dict) else {"feasibleSpace": spec})}
                for name, spec in search_space.items()
            ]
    if not isinstance(search_space, (list, tuple)) or len(search_space) == 0:
        raise ValueError(
            "the search space is empty: give at least one parameter, e.g. [{'name': 'max_depth', "
            "'parameterType': 'int', 'feasibleSpace': {'min': '2', 'max': '8'}}]"
        )
    parameters = [parse_parameter(spec) for spec in search_space]
    names = [p.name for p in parameters]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ValueError(f"the search space names {', '.join(duplicated)} more than once")
    return parameters


def grid_size(parameters: list[Parameter]) -> int:
    return math.prod(len(p.grid()) for p in parameters)


def distributions(parameters: list[Parameter], algorithm: str) -> dict:
    """The Optuna distribution of each parameter. Normal and logNormal parameters are searched through their
    quantile in (0, 1) (see `assignment`), so every sampler sees a bounded space with the prior's shape."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    result = {}
    for p in parameters:
        if algorithm == "grid":
            result[p.name] = CategoricalDistribution(p.grid())
        elif not p.numeric:
            result[p.name] = CategoricalDistribution(list(p.values))
        elif p.distribution in ("normal", "logNormal"):
            result[p.name] = FloatDistribution(1e-6, 1 - 1e-6)
        elif p.type == "int":
            log = p.distribution == "logUniform"
            result[p.name] = IntDistribution(int(p.min), int(p.max), log=log, step=1 if log else int(p.step or 1))
        else:
            log = p.distribution == "logUniform"
            result[p.name] = FloatDistribution(p.min, p.max, log=log, step=None if log else p.step)
    return result


def _normal_value(p: Parameter, quantile: float) -> float:
    """The value at `quantile` of a normal prior centred in [min, max] with sigma = (max - min) / 6, truncated to
    [min, max] (on the log scale for logNormal)."""
    low, high = (math.log(p.min), math.log(p.max)) if p.distribution == "logNormal" else (p.min, p.max)
    if high == low:
        value = low
    else:
        prior = statistics.NormalDist((low + high) / 2, (high - low) / 6)
        lo_q, hi_q = prior.cdf(low), prior.cdf(high)
        value = min(max(prior.inv_cdf(lo_q + quantile * (hi_q - lo_q)), low), high)
    if p.distribution == "logNormal":
        value = math.exp(value)
    if p.step:
        value = min(p.min + round((value - p.min) / p.step) * p.step, p.max)
    return value


def assignment(p: Parameter, internal) -> str:
    """The Katib assignment string of a sampled value."""
    if not p.numeric or isinstance(internal, str):
        return str(internal)
    if p.distribution in ("normal", "logNormal"):
        internal = _normal_value(p, float(internal))
    return _number_text(round(internal) if p.type == "int" else internal, p.type)
