"""The local backend's search loop: Optuna samplers standing in for Katib's suggestion services, trials run by the
workers, and Katib's rules for when a search stops."""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Iterable
from typing import Any, Optional

from kfp_ct.components.tune.results import (
    EARLY_STOPPED,
    FAILED,
    KILLED,
    SUCCEEDED,
    SearchResult,
    TrialResult,
    objective_value,
    parse_metrics,
)
from kfp_ct.components.tune.settings import SearchSettings
from kfp_ct.components.tune.space import Parameter, assignment, distributions
from kfp_ct.components.tune.workers import Workers


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


class _Study:
    """The Optuna side of one local search: asks for each trial's assignments, hears the lines each trial prints
    (its metrics, and for early stopping whether to prune it), and keeps Katib's account of the trials: the best
    one, and when the search stops."""

    def __init__(self, settings: SearchSettings):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        stopping = settings.early_stopping
        pruner = (
            optuna.pruners.MedianPruner(
                n_startup_trials=stopping["min_trials_required"], n_warmup_steps=stopping["start_step"]
            )
            if stopping
            else optuna.pruners.NopPruner()
        )
        parameters = list(settings.parameters)
        self.settings = settings
        self.study = optuna.create_study(
            direction=settings.objective_type,
            sampler=make_sampler(settings.algorithm, parameters, settings.seed),
            pruner=pruner,
        )
        self.space = distributions(parameters, settings.algorithm)
        self.by_name = {p.name: p for p in parameters}
        self.trials: list[TrialResult] = []
        self._asked: dict[int, Any] = {}  # trial number -> its Optuna trial, until it is told
        self._steps: dict[int, int] = {}  # trial number -> objective values reported
        self._started: dict[int, float] = {}

    def ask(self) -> TrialResult:
        """A new trial with the sampler's assignments (as Katib's text, and typed)."""
        optuna_trial = self.study.ask(self.space)
        number = len(self.trials)
        texts = {name: assignment(p, optuna_trial.params[name]) for name, p in self.by_name.items()}
        trial = TrialResult(number, texts, {name: self.by_name[name].parse(text) for name, text in texts.items()})
        self.trials.append(trial)
        self._asked[number], self._steps[number], self._started[number] = optuna_trial, 0, time.monotonic()
        return trial

    def running(self, number: int) -> bool:
        return self.trials[number].state == "Running"

    def hear(self, number: int, line: str) -> bool:
        """Records a line trial `number` printed; True when early stopping prunes the trial."""
        trial, objective = self.trials[number], self.settings.objective_metric_name
        trial.output = (trial.output + [line])[-50:]
        prune = False
        for name, values in parse_metrics(line).items():
            trial.metrics.setdefault(name, []).extend(values)
            if name == objective and self.settings.early_stopping:
                for value in values:
                    self._steps[number] += 1
                    self._asked[number].report(value, self._steps[number])
                    prune = prune or self._asked[number].should_prune()
        return prune

    def finish(self, number: int, state: str, error: str = "") -> str:
        """Ends trial `number` (a trial that never printed the objective fails, as Katib's "metrics unavailable"),
        tells the sampler, and returns the line that reports it."""
        import optuna

        trial, objective = self.trials[number], self.settings.objective_metric_name
        trial.seconds = time.monotonic() - self._started[number]
        trial.value = objective_value(trial.metrics.get(objective, []), self.settings.objective_type)
        if state == SUCCEEDED and trial.value is None:
            state, error = FAILED, f"the trial never printed {objective}=<number> (Katib: metrics unavailable)"
        trial.state, trial.error = state, error
        optuna_trial = self._asked.pop(number)
        if state == SUCCEEDED:
            self.study.tell(optuna_trial, trial.value)
        elif state == EARLY_STOPPED:
            self.study.tell(optuna_trial, state=optuna.trial.TrialState.PRUNED)
        else:
            self.study.tell(optuna_trial, state=optuna.trial.TrialState.FAIL)
        shown = f"{trial.value:.6g}" if trial.value is not None else "-"
        return f"trial {number} {state} {objective}={shown} {trial.params} ({trial.seconds:.1f} s)" + (
            f": {error.splitlines()[0]}" if error else ""
        )

    def best(self) -> Optional[TrialResult]:
        scored = [t for t in self.trials if t.value is not None and t.state in (SUCCEEDED, EARLY_STOPPED)]
        if not scored:
            return None
        return (max if self.settings.objective_type == "maximize" else min)(scored, key=lambda t: t.value)

    def stop_reason(self, busy: bool) -> Optional[str]:
        """Why the search stops now, as Katib names it, or None while it goes on (`busy`: trials still running)."""
        settings = self.settings
        if sum(t.state == FAILED for t in self.trials) > settings.max_failed_trial_count:
            return "max_failed_trial_count"
        top, goal = self.best(), settings.objective_goal
        if goal is not None and top is not None:
            if top.value >= goal if settings.objective_type == "maximize" else top.value <= goal:
                return "goal"
        if len(self.trials) >= settings.max_trial_count and not busy:
            return "max_trial_count"
        return None

    def kill_running(self) -> bool:
        """Marks the trials still running as killed (the search stopped early); True when there were any."""
        running = [t for t in self.trials if t.state == "Running"]
        for trial in running:
            trial.state, trial.seconds = KILLED, time.monotonic() - self._started[trial.number]
        return bool(running)

    def result(self, reason: str, startup_seconds: float) -> SearchResult:
        settings = self.settings
        return SearchResult(
            self.trials, self.best(), reason, settings.objective_metric_name, settings.objective_type, startup_seconds
        )


def run_search(
    trial_fn: Callable,
    settings: SearchSettings,
    *,
    setup: Optional[Callable] = None,
    setup_args: tuple = (),
    log: Callable[[str], None] = print,
    preload: Iterable[str] = (),
) -> SearchResult:
    """Runs a search locally: `trial_fn(context, params)` prints `name=value` lines for a dict of typed
    hyperparameters, in worker processes. `context` is what `setup(*setup_args)` returned, called once in this
    process while the workers' fork server imports `preload`; it must pickle (cheaply: see `Workers`).

    `trial_fn` must be an importable module-level function (workers are separate processes); `preload` names
    modules the workers' fork server imports once (`trial_fn`'s own module always is). `settings` come checked
    from `check_settings`. Returns every trial and the best one (None when none reported the objective).
    """
    search = _Study(settings)
    began = time.monotonic()
    preload = tuple(dict.fromkeys(["kfp_ct.components.tune.workers", *preload, trial_fn.__module__]))
    max_trial_count = settings.max_trial_count
    workers = Workers(min(settings.parallel_trial_count, max_trial_count), trial_fn, max_trial_count, preload)
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

        checked = time.monotonic()
        while (reason := search.stop_reason(busy=bool(workers.busy))) is None:
            for worker_id in workers.idle():
                if len(search.trials) >= max_trial_count:
                    break
                trial = search.ask()
                workers.submit(worker_id, trial.number, trial.params)
            if time.monotonic() - checked > 0.5:
                checked = time.monotonic()
                for _, number, code in workers.dead():
                    log(search.finish(number, FAILED, f"the trial's worker process died (exit code {code})"))
            try:
                kind, number, detail = workers.results.get(timeout=0.2)
            except queue.Empty:
                continue
            if kind == "ready" or not search.running(number):
                continue
            if kind == "line":
                if search.hear(number, detail):
                    workers.pruned[number] = 1
            elif kind == "end":
                state, error, worker_id = detail
                workers.busy.pop(worker_id, None)
                log(search.finish(number, state, error))
        killed = search.kill_running()
    finally:
        workers.close(kill=killed or bool(workers.busy))
    return search.result(reason, startup)
