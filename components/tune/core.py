"""Tune: search hyperparameters with Katib's semantics, locally or as a Katib Experiment on a cluster.

The search space, algorithm names, objective, early stopping and trial counts are Katib's (kubeflow.org/v1beta1
Experiment). Locally each trial runs in a worker process (the data is loaded once and shared with the workers)
and prints `name=value` lines, parsed with the regular expression of Katib's StdOut metrics collector; an Optuna
sampler stands in for Katib's suggestion service:

| Katib algorithm | local sampler |
|---|---|
| random | RandomSampler |
| grid | GridSampler (int, discrete, categorical and stepped doubles; every point exactly once) |
| tpe / multivariate-tpe | TPESampler(constant_liar=True) / the same with multivariate=True |
| cmaes | CmaEsSampler (needs two or more double/int parameters, as Katib's validation does) |
| sobol | QMCSampler(qmc_type="sobol") |
| bayesianoptimization | GPSampler (Gaussian-process Bayesian optimization; TPE where the installed Optuna lacks it) |

Katib's hyperband, enas, darts and pbt have no local equivalent: they are refused before any trial runs.
Early stopping `medianstop` becomes Optuna's MedianPruner (n_startup_trials = min_trials_required, pruning from the
start_step-th reported objective value on), fed each value of the objective metric a trial prints.

The run ends as a Katib Experiment does: when max_trial_count trials have completed (succeeded, failed or early
stopped), when the best objective value reaches the goal, or when more than max_failed_trial_count trials have
failed. A trial fails when it raises, its worker dies, or it never prints the objective metric (Katib's
"metrics unavailable"). Running trials are killed when the run stops early.
"""

from __future__ import annotations

import contextlib
import io
import math
import multiprocessing
import os
import queue
import re
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Optional

METRICS_FORMAT = r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)"
_METRICS_RE = re.compile(METRICS_FORMAT)

PARAMETER_TYPES = ("double", "int", "categorical", "discrete")
DISTRIBUTIONS = ("uniform", "logUniform", "normal", "logNormal")
OBJECTIVE_TYPES = ("maximize", "minimize")
LOCAL_ALGORITHMS = ("random", "grid", "tpe", "multivariate-tpe", "cmaes", "sobol", "bayesianoptimization")
KATIB_ONLY_ALGORITHMS = ("hyperband", "enas", "darts", "pbt")
EARLY_STOPPING_SETTINGS = {"medianstop": {"min_trials_required": 3, "start_step": 4}}
_FEASIBLE_KEYS = {"min", "max", "step", "list", "distribution"}

SUCCEEDED, FAILED, EARLY_STOPPED, KILLED = "Succeeded", "Failed", "EarlyStopped", "Killed"


# --- search space ------------------------------------------------------------------------------------------------


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


# --- settings ----------------------------------------------------------------------------------------------------


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
    parameters: list[Parameter],
    algorithm: str,
    objective_type: str,
    max_trial_count: int,
    parallel_trial_count: int,
    max_failed_trial_count: int,
    local: bool = True,
) -> None:
    """Refuses, before any trial runs, what Katib's admission webhook or suggestion service would refuse, and the
    algorithms that only Katib can run when `local`."""
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


# --- metrics -----------------------------------------------------------------------------------------------------


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


# --- samplers ----------------------------------------------------------------------------------------------------


def make_sampler(algorithm: str, parameters: list[Parameter], seed: int):
    import optuna

    if algorithm == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if algorithm == "grid":

        class _Grid(optuna.samplers.GridSampler):
            def after_trial(self, study, trial, state, values):  # the run stops itself at max_trial_count
                pass

        return _Grid({p.name: p.grid() for p in parameters}, seed=seed)
    if algorithm in ("tpe", "multivariate-tpe"):
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True, multivariate=algorithm == "multivariate-tpe")
    if algorithm == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if algorithm == "sobol":
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.QMCSampler(
                qmc_type="sobol", seed=seed, warn_independent_sampling=False, warn_asynchronous_seeding=False
            )
    if algorithm == "bayesianoptimization":
        if hasattr(optuna.samplers, "GPSampler"):
            return optuna.samplers.GPSampler(seed=seed)
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True)
    raise ValueError(f"no local sampler for algorithm '{algorithm}'")


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


# --- local backend -----------------------------------------------------------------------------------------------


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


class _Pruned(BaseException):
    """Raised inside a trial (from its own print) when the parent prunes it; a BaseException so that a trainer's
    `except Exception` does not swallow it."""


class _LineStream(io.TextIOBase):
    """Stands in for stdout and stderr inside a trial: forwards each complete line to the parent, and stops the
    trial at its next output once the parent has pruned it."""

    def __init__(self, results, number: int, pruned):
        self._results, self._number, self._pruned, self._buffer = results, number, pruned, ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._buffer += text
        *lines, self._buffer = self._buffer.split("\n")
        for line in lines:
            self._results.put(("line", self._number, line))
        if self._pruned[self._number]:
            raise _Pruned()
        return len(text)

    def flush(self) -> None:
        pass

    def close_lines(self) -> None:
        if self._buffer:
            self._results.put(("line", self._number, self._buffer))
            self._buffer = ""


THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "TF_NUM_INTRAOP_THREADS",
)


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _limit_threads(threads: int) -> None:
    """Limits the thread pools of numerical libraries already loaded (a forked worker inherits them from the
    fork server, where the environment variables above were not yet set)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        pass
    else:
        threadpool_limits(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


def _worker(
    worker_id: int,
    context: Any,
    trial_fn: Callable,
    tasks,
    results,
    pruned,
    threads: int,
) -> None:
    """A worker process: receives the trial context (unpickled here, once), then runs trials until told to stop.

    Its thread pools (OpenMP, BLAS, torch) get `threads` threads, so parallel trials share the cores instead of
    oversubscribing them."""
    for variable in THREAD_VARIABLES:
        os.environ[variable] = str(threads)
    _limit_threads(threads)
    results.put(("ready", worker_id, None))
    while True:
        task = tasks.get()
        if task is None:
            return
        number, params = task
        stream = _LineStream(results, number, pruned)
        state, error = SUCCEEDED, ""
        try:
            with contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream):
                trial_fn(context, params)
        except _Pruned:
            state = EARLY_STOPPED
        except BaseException as err:  # noqa: BLE001 - a trial's failure is a result, reported to the parent
            state, error = FAILED, f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=-3)}"
        stream.close_lines()
        results.put(("end", number, (state, error, worker_id)))


class _Workers:
    """`count` worker processes, each with its own task queue. They fork from a fork server that imported the trial
    code's modules once (`preload`), so a worker starts in milliseconds and shares no state with this process;
    where there is no fork server (Windows, macOS) they are spawned.

    Construction only starts the fork server, which imports `preload` while this process prepares the trials'
    context; `start(context)` then starts the workers, each receiving the context pickled (a `TrialContext`
    pickles its memory-mapped arrays as file names, so the data is not copied)."""

    def __init__(self, count: int, trial_fn, max_trials: int, preload: tuple[str, ...] = ()):
        if "forkserver" in multiprocessing.get_all_start_methods():
            self._ctx = multiprocessing.get_context("forkserver")
            self._ctx.set_forkserver_preload(list(preload))
            from multiprocessing import forkserver

            forkserver.ensure_running()  # returns at once: the server imports `preload` in the background
        else:
            self._ctx = multiprocessing.get_context("spawn")
        self.results = self._ctx.Queue()
        self.pruned = self._ctx.Array("b", max_trials, lock=False)
        self._trial_fn, self._context = trial_fn, None
        self.threads = max(1, cpu_count() // count)
        self.processes: list = [None] * count
        self.tasks: list = [None] * count
        self.busy: dict[int, int] = {}  # worker id -> trial number

    def start(self, context: Any) -> None:
        self._context = context
        for worker_id in range(len(self.processes)):
            self._start(worker_id)

    def _start(self, worker_id: int) -> None:
        self.tasks[worker_id] = self._ctx.SimpleQueue()
        self.processes[worker_id] = self._ctx.Process(
            target=_worker,
            args=(
                worker_id,
                self._context,
                self._trial_fn,
                self.tasks[worker_id],
                self.results,
                self.pruned,
                self.threads,
            ),
            daemon=True,
        )
        self.processes[worker_id].start()

    def wait_ready(self, timeout: float = 600) -> None:
        ready: set[int] = set()
        deadline = time.monotonic() + timeout
        while len(ready) < len(self.processes):
            try:
                kind, worker_id, _ = self.results.get(timeout=1)
            except queue.Empty:
                dead = [w for w, p in enumerate(self.processes) if w not in ready and not p.is_alive()]
                if dead:
                    raise RuntimeError(
                        f"a tuning worker exited with code {self.processes[dead[0]].exitcode} before its first trial"
                    ) from None
                if time.monotonic() > deadline:
                    raise TimeoutError(f"tuning workers did not start within {timeout} s") from None
                continue
            ready.add(worker_id)

    def idle(self) -> list[int]:
        return [w for w in range(len(self.processes)) if w not in self.busy]

    def submit(self, worker_id: int, number: int, params: dict) -> None:
        self.busy[worker_id] = number
        self.tasks[worker_id].put((number, params))

    def dead(self) -> list[tuple[int, int, int]]:
        """(worker id, trial number, exit code) of busy workers that died; each is restarted."""
        found = []
        for worker_id, number in list(self.busy.items()):
            process = self.processes[worker_id]
            if not process.is_alive():
                found.append((worker_id, number, process.exitcode))
                del self.busy[worker_id]
                self._start(worker_id)
        return found

    def close(self, kill: bool = False) -> None:
        started = {w: p for w, p in enumerate(self.processes) if p is not None}  # none if the context failed
        for worker_id, process in started.items():
            if kill or worker_id in self.busy:
                process.terminate()
            else:
                with contextlib.suppress(Exception):
                    self.tasks[worker_id].put(None)
        for process in started.values():
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
                process.join()
        self.results.close()
        self.results.join_thread()


def run_search(
    trial_fn: Callable,
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
    setup: Optional[Callable] = None,
    setup_args: tuple = (),
    log: Callable[[str], None] = print,
    preload: Iterable[str] = (),
) -> SearchResult:
    """Runs a search locally: `trial_fn(context, params)` prints `name=value` lines for a dict of typed
    hyperparameters, in worker processes. `context` is what `setup(*setup_args)` returned, called once in this
    process while the workers' fork server imports `preload`; it must pickle (cheaply: see `_Workers`).

    `trial_fn` must be an importable module-level function (workers are separate processes); `preload` names
    modules the workers' fork server imports once (`trial_fn`'s own module always is). Returns every trial and
    the best one (None when none reported the objective).
    """
    import optuna

    check_settings(parameters, algorithm, objective_type, max_trial_count, parallel_trial_count, max_failed_trial_count)
    stopping = parse_early_stopping(early_stopping)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner = (
        optuna.pruners.MedianPruner(
            n_startup_trials=stopping["min_trials_required"], n_warmup_steps=stopping["start_step"]
        )
        if stopping
        else optuna.pruners.NopPruner()
    )
    study = optuna.create_study(
        direction=objective_type, sampler=make_sampler(algorithm, parameters, seed), pruner=pruner
    )
    space = distributions(parameters, algorithm)
    by_name = {p.name: p for p in parameters}

    trials: list[TrialResult] = []
    asked: dict[int, Any] = {}
    steps: dict[int, int] = {}
    started: dict[int, float] = {}
    reason = "max_trial_count"
    began = time.monotonic()
    preload = tuple(dict.fromkeys(["kfp_ct.components.tune.core", *preload, trial_fn.__module__]))
    workers = _Workers(min(parallel_trial_count, max_trial_count), trial_fn, max_trial_count, preload)
    killed = False
    try:
        try:
            context = setup(*setup_args) if setup is not None else None
        except Exception as err:
            raise RuntimeError(
                f"preparing the trials failed (before any trial ran): {type(err).__name__}: {err}"
            ) from err
        workers.start(context)
        workers.wait_ready()
        startup = time.monotonic() - began

        def finish(number: int, state: str, error: str = "") -> None:
            trial = trials[number]
            trial.seconds = time.monotonic() - started[number]
            trial.value = objective_value(trial.metrics.get(objective_metric_name, []), objective_type)
            if state == SUCCEEDED and trial.value is None:
                state, error = (
                    FAILED,
                    (f"the trial never printed {objective_metric_name}=<number> (Katib: metrics unavailable)"),
                )
            trial.state, trial.error = state, error
            optuna_trial = asked.pop(number)
            if state == SUCCEEDED:
                study.tell(optuna_trial, trial.value)
            elif state == EARLY_STOPPED:
                study.tell(optuna_trial, state=optuna.trial.TrialState.PRUNED)
            else:
                study.tell(optuna_trial, state=optuna.trial.TrialState.FAIL)
            shown = f"{trial.value:.6g}" if trial.value is not None else "-"
            log(
                f"trial {number} {state} {objective_metric_name}={shown} {trial.params} ({trial.seconds:.1f} s)"
                + (f": {error.splitlines()[0]}" if error else "")
            )

        def best() -> Optional[TrialResult]:
            scored = [t for t in trials if t.value is not None and t.state in (SUCCEEDED, EARLY_STOPPED)]
            if not scored:
                return None
            return (max if objective_type == "maximize" else min)(scored, key=lambda t: t.value)

        checked = time.monotonic()
        while True:
            failed = sum(t.state == FAILED for t in trials)
            if failed > max_failed_trial_count:
                reason = "max_failed_trial_count"
                break
            top = best()
            if (
                objective_goal is not None
                and top is not None
                and (top.value >= objective_goal if objective_type == "maximize" else top.value <= objective_goal)
            ):
                reason = "goal"
                break
            if len(trials) >= max_trial_count and not workers.busy:
                break
            for worker_id in workers.idle():
                if len(trials) >= max_trial_count:
                    break
                optuna_trial = study.ask(space)
                number = len(trials)
                texts = {name: assignment(by_name[name], optuna_trial.params[name]) for name in by_name}
                params = {name: by_name[name].parse(text) for name, text in texts.items()}
                trials.append(TrialResult(number, texts, params))
                asked[number], steps[number], started[number] = optuna_trial, 0, time.monotonic()
                workers.submit(worker_id, number, params)
            if time.monotonic() - checked > 0.5:
                checked = time.monotonic()
                for _, number, code in workers.dead():
                    finish(number, FAILED, f"the trial's worker process died (exit code {code})")
            try:
                kind, number, detail = workers.results.get(timeout=0.2)
            except queue.Empty:
                continue
            if kind == "ready":
                continue
            trial = trials[number]
            if trial.state != "Running":
                continue
            if kind == "line":
                trial.output = (trial.output + [detail])[-50:]
                for name, values in parse_metrics(detail).items():
                    trial.metrics.setdefault(name, []).extend(values)
                    if name == objective_metric_name and stopping:
                        for value in values:
                            steps[number] += 1
                            asked[number].report(value, steps[number])
                            if asked[number].should_prune():
                                workers.pruned[number] = 1
            elif kind == "end":
                state, error, worker_id = detail
                workers.busy.pop(worker_id, None)
                finish(number, state, error)
        for trial in trials:
            if trial.state == "Running":
                trial.state, trial.seconds = KILLED, time.monotonic() - started[trial.number]
                killed = True
    finally:
        workers.close(kill=killed or bool(workers.busy))
    return SearchResult(trials, best(), reason, objective_metric_name, objective_type, startup)


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


def report_markdown(result: SearchResult, algorithm: str, backend: str, trainer: str) -> str:
    """A Markdown summary: the outcome, the best hyperparameters and every trial."""
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
    return "\n".join(lines) + "\n"


# --- the component's work ----------------------------------------------------------------------------------------


@dataclass
class TuneOutcome:
    """What `tune` found: the best hyperparameters (fixed ones included: a trainer's `hyperparameters` input), the
    search result and the Markdown report."""

    hyperparameters: dict
    result: SearchResult
    report: str
    metrics: dict


def tune(
    train_path: str,
    featurizer_path: str,
    target_column: Optional[str],
    task: Optional[str],
    trainer: str = "sklearn",
    search_space=None,
    algorithm: str = "tpe",
    objective_metric_name: Optional[str] = None,
    objective_type: Optional[str] = None,
    objective_goal: Optional[float] = None,
    max_trial_count: int = 12,
    parallel_trial_count: int = 2,
    max_failed_trial_count: int = 3,
    early_stopping: Optional[dict] = None,
    backend: str = "local",
    namespace: str = "kubeflow-user-example-com",
    seed: int = 0,
    options: Optional[dict] = None,
    hyperparameters: Optional[dict] = None,
    train_uri: Optional[str] = None,
    featurizer_uri: Optional[str] = None,
    katib_api=None,
    katib_timeout: float = 6 * 3600,
    katib_poll_seconds: float = 15,
    log: Callable[[str], None] = print,
) -> TuneOutcome:
    """Searches the trainer's hyperparameters on the train split (fit/validation rows as the trainer splits them).

    Everything is checked before any trial runs: the trainer, its options and hyperparameter names (the trainer's
    core says which it accepts), the search space, the algorithm for the backend, the objective and the counts.
    `backend="katib"` submits an Experiment whose trials read `train_uri`/`featurizer_uri` (gs://, s3:// or minio://
    URIs the trial pods can reach; default the paths).
    """
    from kfp_ct.components.tune import defaults, trial

    if backend not in ("local", "katib"):
        raise ValueError(f"backend must be 'local' or 'katib', got {backend!r}")
    options = trial.trainer_options(trainer, options)
    trial.allowed_hyperparameters(trainer, options)  # the trainer's core refuses an unknown estimator by name
    if task not in (None, "classification", "regression"):
        raise ValueError(f"task must be classification or regression, got {task!r}")
    parameters = parse_search_space(search_space if search_space else defaults.default_search_space(trainer, options))
    fixed = dict(hyperparameters or {})
    trial.check_hyperparameter_names(trainer, [p.name for p in parameters] + list(fixed), options)
    both = sorted(set(fixed) & {p.name for p in parameters})
    if both:
        raise ValueError(
            f"hyperparameter(s) {', '.join(both)} are both fixed (hyperparameters) and searched "
            "(search_space): keep each in one of them"
        )
    if backend == "local" and not os.path.isfile(train_path):
        raise FileNotFoundError(f"train dataset file not found: {train_path}")
    task_for_metrics = task or _featurizer_task(featurizer_path)
    default_metric, default_type = defaults.default_objective(task_for_metrics)
    objective_metric_name = objective_metric_name or default_metric
    objective_type = objective_type or (
        default_type
        if objective_metric_name == default_metric
        else (
            "minimize" if objective_metric_name.removeprefix("validation-") in defaults.LOWER_IS_BETTER else "maximize"
        )
    )
    defaults.check_objective(trainer, task_for_metrics, objective_metric_name, objective_type)
    check_settings(
        parameters,
        algorithm,
        objective_type,
        max_trial_count,
        parallel_trial_count,
        max_failed_trial_count,
        local=backend == "local",
    )
    parse_early_stopping(early_stopping)

    if backend == "local":
        with tempfile.TemporaryDirectory(prefix="kfp-ct-tune-") as shared:
            result = run_search(
                trial.run_trial,
                parameters,
                objective_metric_name,
                objective_type,
                algorithm,
                objective_goal,
                max_trial_count,
                parallel_trial_count,
                max_failed_trial_count,
                early_stopping,
                seed,
                setup=trial.prepare,
                setup_args=(trainer, train_path, featurizer_path, target_column, task, options, fixed, seed, shared),
                log=log,
                preload=trial.preload_modules(trainer),
            )
    else:
        from kfp_ct.components.tune import katib

        experiment = katib.build_experiment(
            katib.experiment_name(trainer),
            trainer,
            parameters,
            train_uri or train_path,
            featurizer_uri or featurizer_path,
            target_column,
            task,
            objective_metric_name,
            objective_type,
            objective_goal,
            defaults.additional_metric_names(trainer, task_for_metrics, objective_metric_name),
            algorithm,
            max_trial_count,
            parallel_trial_count,
            max_failed_trial_count,
            early_stopping,
            namespace,
            seed,
            options,
            fixed,
        )
        result = katib.run_experiment(experiment, parameters, katib_api, katib_timeout, katib_poll_seconds, log)
    best = check_result(result)
    found = {**fixed, **best.params}
    metrics = {
        "best_" + objective_metric_name: best.value,
        "trials": len(result.trials),
        "trials_succeeded": result.count(SUCCEEDED),
        "trials_failed": result.count(FAILED),
        "trials_early_stopped": result.count(EARLY_STOPPED),
    }
    report = report_markdown(result, algorithm, backend, f"{trainer} {' '.join(map(str, options.values()))}".strip())
    if result.reason == "max_failed_trial_count":
        report += (
            f"\n**Warning:** more than {max_failed_trial_count} trials failed, so the search stopped early; "
            "the best of the trials that succeeded is returned.\n"
        )
    return TuneOutcome(found, result, report, metrics)


def _featurizer_task(featurizer_path: str) -> str:
    """The task the featurizer was fitted for (its featurizer.json), without loading the transformer."""
    import json

    spec = os.path.join(featurizer_path, "featurizer.json")
    try:
        with open(spec) as f:
            return json.load(f)["task"]
    except FileNotFoundError:
        raise FileNotFoundError(f"not a featurizer directory: {spec} is missing") from None
