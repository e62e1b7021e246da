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
    import optuna

    parameters, stopping = list(settings.parameters), settings.early_stopping
    objective_metric_name, objective_type = settings.objective_metric_name, settings.objective_type
    max_trial_count, max_failed_trial_count = settings.max_trial_count, settings.max_failed_trial_count
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner = (
        optuna.pruners.MedianPruner(
            n_startup_trials=stopping["min_trials_required"], n_warmup_steps=stopping["start_step"]
        )
        if stopping
        else optuna.pruners.NopPruner()
    )
    study = optuna.create_study(
        direction=objective_type, sampler=make_sampler(settings.algorithm, parameters, settings.seed), pruner=pruner
    )
    space = distributions(parameters, settings.algorithm)
    by_name = {p.name: p for p in parameters}

    trials: list[TrialResult] = []
    asked: dict[int, Any] = {}
    steps: dict[int, int] = {}
    started: dict[int, float] = {}
    reason = "max_trial_count"
    began = time.monotonic()
    preload = tuple(dict.fromkeys(["kfp_ct.components.tune.workers", *preload, trial_fn.__module__]))
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
                settings.objective_goal is not None
                and top is not None
                and (
                    top.value >= settings.objective_goal
                    if objective_type == "maximize"
                    else top.value <= settings.objective_goal
                )
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
