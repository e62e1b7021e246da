"""The local backend's search: every Katib algorithm through its Optuna sampler, on real trial functions that print
`name=value` lines in worker processes (tune_objectives.py)."""

import itertools
import math
import statistics

import pytest
import tune_objectives as objectives

from kfp_ct.components.tune import search
from kfp_ct.components.tune.results import (
    EARLY_STOPPED,
    FAILED,
    SUCCEEDED,
    check_result,
    objective_value,
    parse_metrics,
)
from kfp_ct.components.tune.settings import check_settings
from kfp_ct.components.tune.space import assignment, grid_size, parse_parameter, parse_search_space


def run_search(
    trial_fn,
    parameters,
    metric,
    objective_type="maximize",
    algorithm="tpe",
    *,
    setup=None,
    setup_args=(),
    log=print,
    **counts,
):
    """A local search with its settings checked first, as `tune` does."""
    checked = check_settings(
        parameters=parameters,
        objective_metric_name=metric,
        objective_type=objective_type,
        algorithm=algorithm,
        **counts,
    )
    return search.run_search(trial_fn, checked, setup=setup, setup_args=setup_args, log=log)


def space(*specs):
    return parse_search_space(list(specs))


def double(name, low, high, **extra):
    return {"name": name, "parameterType": "double", "feasibleSpace": {"min": str(low), "max": str(high), **extra}}


def integer(name, low, high, **extra):
    return {"name": name, "parameterType": "int", "feasibleSpace": {"min": str(low), "max": str(high), **extra}}


def categorical(name, values, kind="categorical"):
    return {"name": name, "parameterType": kind, "feasibleSpace": {"list": values}}


QUADRATIC = space(double("x", -1, 1), double("y", -2, 1), categorical("kind", ["a", "b"]))
# Trial budget per algorithm and the loss its best trial must reach (0 at the optimum; a trial in the wrong
# category scores 1 or more). GP-based Bayesian optimization is slow to suggest, and sample-efficient.
BUDGET = {
    "random": (40, 0.25),
    "sobol": (32, 0.25),
    "tpe": (30, 0.1),
    "multivariate-tpe": (30, 0.1),
    "cmaes": (40, 0.25),
    "bayesianoptimization": (20, 0.25),
}


@pytest.mark.parametrize("algorithm", sorted(BUDGET))
def test_algorithm_finds_the_optimum(algorithm):
    budget, tolerance = BUDGET[algorithm]
    result = run_search(
        objectives.quadratic,
        QUADRATIC,
        "loss",
        "minimize",
        algorithm,
        max_trial_count=budget,
        parallel_trial_count=2,
        log=lambda line: None,
    )
    assert len(result.trials) == budget and result.reason == "max_trial_count"
    assert result.count(SUCCEEDED) == budget
    best = result.best
    assert best.value < tolerance, (algorithm, best.value, best.params)
    assert best.params["kind"] == "b"
    assert math.hypot(best.params["x"] - 0.3, best.params["y"] + 1.2) < math.sqrt(tolerance)
    # the objective is the best (min) value the trial printed, not the last or the first line's
    assert best.value == min(best.metrics["loss"])
    assert best.metrics["other-metric"] == [0.03]
    # every value lies in its feasible space and has its type
    for trial in result.trials:
        assert -1 <= trial.params["x"] <= 1 and -2 <= trial.params["y"] <= 1
        assert isinstance(trial.params["x"], float) and trial.params["kind"] in ("a", "b")


def test_tpe_beats_random_on_the_same_budget():
    runs = {
        alg: run_search(
            objectives.quadratic,
            QUADRATIC,
            "loss",
            "minimize",
            alg,
            max_trial_count=30,
            parallel_trial_count=2,
            seed=seed,
            log=lambda line: None,
        ).best.value
        for alg, seed in (("tpe", 1), ("random", 1))
    }
    assert runs["tpe"] < runs["random"]


def test_grid_covers_its_grid_exactly():
    parameters = space(
        integer("a", 0, 4, step="2"), categorical("b", ["1", "2.5"], "discrete"), categorical("c", ["x", "y"])
    )
    assert grid_size(parameters) == 3 * 2 * 2
    result = run_search(
        objectives.grid_point,
        parameters,
        "score",
        "maximize",
        "grid",
        max_trial_count=12,
        parallel_trial_count=2,
        log=lambda line: None,
    )
    seen = [(t.params["a"], t.params["b"], t.params["c"]) for t in result.trials]
    assert sorted(seen) == sorted(itertools.product([0, 2, 4], [1, 2.5], ["x", "y"]))
    assert result.best.value == 42.5 and result.best.params["a"] == 4


def test_grid_of_stepped_doubles_is_katibs():
    parameter = parse_parameter(double("lr", 0.1, 0.5, step="0.1"))
    assert parameter.grid() == ["0.1", "0.2", "0.3", "0.4", "0.5"]
    with pytest.raises(ValueError, match="grid algorithm needs a step for a double parameter"):
        check_settings(
            parameters=space(double("lr", 0.1, 0.5)),
            objective_metric_name="score",
            algorithm="grid",
            max_trial_count=4,
            parallel_trial_count=1,
            max_failed_trial_count=0,
        )


def test_grid_refuses_more_trials_than_points():
    with pytest.raises(ValueError, match=r"max_trial_count \(7\) is above the number of grid points \(6\)"):
        run_search(
            objectives.grid_point,
            space(integer("a", 1, 3), categorical("b", ["1", "2"], "discrete")),
            "score",
            "maximize",
            "grid",
            max_trial_count=7,
            parallel_trial_count=1,
        )


def test_failed_trials_are_counted_and_the_limit_stops_the_run():
    lines = []
    result = run_search(
        objectives.flaky,
        space(double("x", 0, 1)),
        "loss",
        "minimize",
        "random",
        max_trial_count=20,
        parallel_trial_count=2,
        max_failed_trial_count=2,
        seed=3,
        log=lines.append,
    )
    failed = [t for t in result.trials if t.state == FAILED]
    # Katib fails an Experiment once more than maxFailedTrialCount trials have failed
    assert result.reason == "max_failed_trial_count"
    assert len(failed) == 3
    assert len(result.trials) < 20
    for trial in failed:
        if trial.params["x"] < 0.5:
            assert "RuntimeError: diverged" in trial.error
        else:  # ran but never printed the objective: Katib's "metrics unavailable"
            assert "never printed loss" in trial.error
    assert any("Failed" in line for line in lines)
    if result.best is not None:
        assert result.best.params["x"] >= 0.6


def test_no_successful_trial_is_a_clear_error():
    result = run_search(
        objectives.flaky,
        space(double("x", 0, 0.49)),
        "loss",
        "minimize",
        "random",
        max_trial_count=4,
        parallel_trial_count=2,
        max_failed_trial_count=1,
        log=lambda line: None,
    )
    assert result.best is None and result.count(FAILED) == 2
    with pytest.raises(RuntimeError, match=r"(?s)no trial reported loss: 2 failed .*diverged at x="):
        check_result(result)


def test_a_dead_worker_fails_its_trial_and_is_replaced():
    result = run_search(
        objectives.crash,
        space(double("x", 0, 1)),
        "loss",
        "minimize",
        "random",
        max_trial_count=8,
        parallel_trial_count=2,
        max_failed_trial_count=8,
        seed=0,
        log=lambda line: None,
    )
    crashed = [t for t in result.trials if t.params["x"] < 0.5]
    assert crashed and all(t.state == FAILED and "exit code 3" in t.error for t in crashed)
    assert all(t.state == SUCCEEDED for t in result.trials if t.params["x"] >= 0.5)
    assert len(result.trials) == 8


def test_medianstop_prunes_trials_below_the_median():
    stopping = {
        "algorithmName": "medianstop",
        "algorithmSettings": [{"name": "min_trials_required", "value": "2"}, {"name": "start_step", "value": "3"}],
    }
    result = run_search(
        objectives.epochs,
        space(double("quality", 0.1, 1.0)),
        "accuracy",
        "maximize",
        "random",
        max_trial_count=12,
        parallel_trial_count=1,
        early_stopping=stopping,
        seed=5,
        log=lambda line: None,
    )
    stopped = [t for t in result.trials if t.state == EARLY_STOPPED]
    assert stopped, [(t.params, t.state) for t in result.trials]
    completed = [t for t in result.trials if t.state == SUCCEEDED]
    for trial in stopped:
        epochs = trial.metrics["epoch"]
        assert 3 <= len(epochs) < 10  # never before start_step reports, and stopped before the end
        # (accuracy grows with quality at every epoch, so below the median accuracy means below the median quality
        # of the trials completed before it: min_trials_required of them at least)
        earlier = [t.params["quality"] for t in completed if t.number < trial.number]
        assert len(earlier) >= 2 and trial.params["quality"] < statistics.median(earlier)
    assert result.best.state == SUCCEEDED
    assert result.best.params["quality"] == max(t.params["quality"] for t in result.trials)


def test_the_goal_stops_the_search():
    result = run_search(
        objectives.quadratic,
        QUADRATIC,
        "loss",
        "minimize",
        "tpe",
        objective_goal=0.5,
        max_trial_count=40,
        parallel_trial_count=2,
        log=lambda line: None,
    )
    assert result.reason == "goal" and result.best.value <= 0.5
    assert len(result.trials) < 40


def test_the_prepared_context_reaches_every_worker(tmp_path):
    (tmp_path / "offset").write_text("0.25")
    result = run_search(
        objectives.with_context,
        space(double("x", 0, 1)),
        "loss",
        "minimize",
        "tpe",
        max_trial_count=16,
        parallel_trial_count=2,
        setup=objectives.load_context,
        setup_args=(str(tmp_path / "offset"),),
        log=lambda line: None,
    )
    assert abs(result.best.params["x"] - 0.25) < 0.1


def test_a_failing_setup_fails_before_any_trial(tmp_path):
    with pytest.raises(RuntimeError, match=r"preparing the trials failed \(before any trial ran\)(.|\n)*FileNotFound"):
        run_search(
            objectives.with_context,
            space(double("x", 0, 1)),
            "loss",
            "minimize",
            "tpe",
            max_trial_count=4,
            parallel_trial_count=2,
            setup=objectives.load_context,
            setup_args=(str(tmp_path / "missing"),),
            log=lambda line: None,
        )


# --- metrics parsing: Katib's StdOut collector -----------------------------------------------------------------


def test_parse_metrics_uses_katibs_default_regex():
    text = (
        "epoch=1 loss=0.52 validation-roc_auc = 0.81\n"
        "2026-11-26T07:00:00Z validation-roc_auc=8.5e-1\n"
        "loss=nan accuracy=-.5 note=abc\n"
        "progress 3/10 [=====>....]\n"
    )
    assert parse_metrics(text) == {
        "epoch": [1.0],
        "loss": [0.52],
        "validation-roc_auc": [0.81, 0.85],
        "accuracy": [-0.5],
    }
    assert parse_metrics(text, ["validation-roc_auc"]) == {"validation-roc_auc": [0.81, 0.85]}
    assert objective_value([0.81, 0.85, 0.8], "maximize") == 0.85
    assert objective_value([0.81, 0.85, 0.8], "minimize") == 0.8
    assert objective_value([], "minimize") is None


# --- search spaces and settings: errors before any trial runs --------------------------------------------------


@pytest.mark.parametrize(
    "spec, message",
    [
        ([], "the search space is empty"),
        ({}, "the search space is empty"),
        ([double("lr", 0.5, 0.1)], r"parameter 'lr': feasibleSpace.min \(0.5\) is above max \(0.1\)"),
        (
            [{"name": "lr", "parameterType": "float", "feasibleSpace": {"min": "0", "max": "1"}}],
            "parameter 'lr': unknown parameterType 'float'",
        ),
        ([double("lr", 0.1, 1, distribution="gamma")], "parameter 'lr': unknown distribution 'gamma'"),
        ([double("lr", 0, 1, distribution="logUniform")], "a logUniform distribution needs min > 0"),
        ([categorical("kind", [])], "parameter 'kind': feasibleSpace.list must be a non-empty list"),
        ([categorical("kind", ["a", "a"])], "feasibleSpace.list has duplicates"),
        ([categorical("n", ["1", "two"], "discrete")], "parameter 'n': feasibleSpace.list must be a number"),
        ([integer("n", 1, 2.5)], "feasibleSpace.max of an int parameter must be an integer"),
        ([double("lr", "x", 1)], "feasibleSpace.min must be a number"),
        ([{"name": "lr", "parameterType": "double", "feasibleSpace": {"max": "1"}}], "feasibleSpace.min is missing"),
        ([double("lr", 0, 1, steps="0.1")], r"unknown feasibleSpace keys \['steps'\]"),
        ([double("lr", 0, 1), double("lr", 0, 2)], "names lr more than once"),
        ([double("lr", 0, 1, step="-0.1")], "step must be positive"),
    ],
)
def test_bad_search_spaces_are_refused(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_search_space(spec)


def test_search_space_forms():
    as_dict = parse_search_space(
        {
            "lr": {"parameterType": "double", "feasibleSpace": {"min": 0.01, "max": 1}},
            "depth": {"parameterType": "int", "feasibleSpace": {"min": 2, "max": 8}},
        }
    )
    as_list = parse_search_space({"parameters": [double("lr", 0.01, 1), integer("depth", 2, 8)]})
    assert as_dict == as_list
    assert [p.to_katib() for p in as_list] == [
        {"name": "lr", "parameterType": "double", "feasibleSpace": {"min": "0.01", "max": "1.0"}},
        {"name": "depth", "parameterType": "int", "feasibleSpace": {"min": "2", "max": "8"}},
    ]
    flags = parse_parameter(categorical("flag", [True, None, 32, "gini"]))
    assert flags.values == ("true", "null", "32", "gini")
    assert [flags.parse(v) for v in flags.values] == [True, None, 32, "gini"]


@pytest.mark.parametrize(
    "algorithm, parameters, message",
    [
        ("hyperband", QUADRATIC, "algorithm 'hyperband' runs only on Katib"),
        ("pbt", QUADRATIC, "algorithm 'pbt' runs only on Katib"),
        ("enas", QUADRATIC, "algorithm 'enas' runs only on Katib"),
        ("darts", QUADRATIC, "algorithm 'darts' runs only on Katib"),
        ("annealing", QUADRATIC, "unknown algorithm 'annealing'"),
        ("cmaes", space(double("x", 0, 1), categorical("kind", ["a", "b"])), "cmaes needs two or more continuous"),
    ],
)
def test_unsupported_algorithms_are_refused_before_any_trial(algorithm, parameters, message):
    with pytest.raises(ValueError, match=message):
        run_search(objectives.quadratic, parameters, "loss", "minimize", algorithm, max_trial_count=4)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"objective_type": "max"}, "objective_type must be maximize or minimize"),
        ({"max_trial_count": 0}, "max_trial_count must be an integer >= 1"),
        ({"parallel_trial_count": 5, "max_trial_count": 4}, r"parallel_trial_count \(5\) must not exceed"),
        ({"max_failed_trial_count": 5, "max_trial_count": 4}, r"max_failed_trial_count \(5\) must not exceed"),
        ({"early_stopping": {"algorithmName": "hyperband"}}, "unknown early stopping algorithm 'hyperband'"),
        (
            {"early_stopping": {"algorithmName": "medianstop", "algorithmSettings": [{"name": "x", "value": "1"}]}},
            "unknown setting 'x' for early stopping medianstop",
        ),
        (
            {
                "early_stopping": {
                    "algorithmName": "medianstop",
                    "algorithmSettings": [{"name": "start_step", "value": "0"}],
                }
            },
            "start_step must be at least 1",
        ),
    ],
)
def test_bad_settings_are_refused(kwargs, message):
    settings = {"objective_type": "minimize", "max_trial_count": 4, **kwargs}
    with pytest.raises(ValueError, match=message):
        run_search(objectives.quadratic, QUADRATIC, "loss", algorithm="tpe", **settings)


def test_normal_distributions_stay_in_bounds_and_centre():
    normal = parse_parameter(double("lr", 2, 10, distribution="normal"))
    log_normal = parse_parameter(double("lr", 1e-4, 1e-2, distribution="logNormal"))
    stepped = parse_parameter(integer("n", 10, 20, distribution="normal"))
    quantiles = [i / 100 for i in range(1, 100)]
    values = [float(assignment(normal, q)) for q in quantiles]
    assert values == sorted(values) and 2 <= values[0] and values[-1] <= 10
    assert abs(values[49] - 6) < 1e-9 and values[24] > 4.5  # half the mass within about a sigma of the centre
    logs = [float(assignment(log_normal, q)) for q in quantiles]
    assert abs(math.log10(logs[49]) + 3) < 1e-9
    assert {assignment(stepped, q) for q in quantiles} <= {str(v) for v in range(10, 21)}
