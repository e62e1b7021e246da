"""Benchmark: tuning the scikit-learn trainer through tune's local backend against the same fits called directly.

The data is elec2 (the whole file by default), featurized by the catalog's featurize core; each fit is a random
forest (25 trees, single-threaded as the trainer's default n_jobs leaves it) on the fit rows of the train split,
scored on its validation rows: about a second per fit on an idle 2-core machine. (HistGradientBoosting already
spreads one fit over every core with OpenMP, so running its trials side by side cannot be faster than one after
the other: the parallel-trials goal is about trainers that use one core per fit.) Three measurements, each in a
fresh Python process, one after the other:

1. tune, 1 parallel trial: `core.tune` (the local backend) with the `random` algorithm (its suggestions do not
   depend on results, so every run gets the same hyperparameters), from the call to its return: checking the
   settings, loading the data, starting the worker, every trial, parsing its `name=value` lines;
2. the same fits called directly, sequentially, in one process (the data loaded once, before the clock starts);
3. tune, 2 parallel trials.

The three are repeated (`--repeat`: 2, 1 with --quick) one after the other and each figure is the fastest of its
runs, as timeit does: this machine is shared, and a run slowed by another process's load says nothing of tune.

    python bench/tune.py            # 20 trials on all of elec2
    python bench/tune.py --quick    # 4 trials of 3 trees on 2000 rows: the smoke run tests/bench calls

Goals: tuning overhead (1 parallel trial) under 10% of the direct fits' time; 2 parallel trials at least 1.6x
faster than 1 on 2 cores. The load average is printed beside the figures: on a busy machine they mean little.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL_OVERHEAD = 0.10
GOAL_SPEEDUP = 1.6
ESTIMATOR = "random_forest"
FIXED = {"n_estimators": 25}
SPACE = [
    {"name": "min_samples_leaf", "parameterType": "int", "feasibleSpace": {"min": "1", "max": "20"}},
    {"name": "max_features", "parameterType": "categorical", "feasibleSpace": {"list": ["sqrt", "log2", "0.5"]}},
]
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "elec2" / "elec2.csv"


def prepare_data(directory: Path, rows: int | None) -> dict:
    import pandas as pd

    from kfp_ct.components._common import datasets
    from kfp_ct.components.featurize.core import featurize

    frame = pd.read_csv(DATA, nrows=rows)
    datasets.write_frame(frame, directory / "dataset.parquet", str(DATA))
    featurize(
        dataset_path=str(directory / "dataset.parquet"),
        target_column="class",
        train_path=str(directory / "train.parquet"),
        test_path=str(directory / "test.parquet"),
        featurizer_path=str(directory / "featurizer"),
        task="classification",
        seed=0,
    )
    return {"train": str(directory / "train.parquet"), "featurizer": str(directory / "featurizer"), "rows": len(frame)}


def measure_tune(data: dict, trials: int, parallel: int, fixed: dict) -> dict:
    from kfp_ct.components.train_sklearn import core as sk  # noqa: F401 - imported before the clock, as direct does
    from kfp_ct.components.tune import core
    from kfp_ct.components.tune.results import SUCCEEDED

    started = time.perf_counter()
    result = core.tune(
        train_path=data["train"],
        featurizer_path=data["featurizer"],
        target_column="class",
        task="classification",
        trainer="sklearn",
        search_space=SPACE,
        algorithm="random",
        objective_metric_name="validation-roc_auc",
        objective_type="maximize",
        max_trial_count=trials,
        parallel_trial_count=parallel,
        max_failed_trial_count=0,
        seed=0,
        options={"estimator": ESTIMATOR},
        hyperparameters=fixed,
        log=lambda line: None,
    ).search
    seconds = time.perf_counter() - started
    if result.count(SUCCEEDED) != trials:
        raise RuntimeError(
            f"{trials - result.count(SUCCEEDED)} trial(s) did not succeed: "
            f"{[t.error for t in result.trials if t.error][:1]}"
        )
    return {
        "seconds": seconds,
        "startup_seconds": result.startup_seconds,
        "trial_seconds": sum(t.seconds for t in result.trials),
        "params": [t.params for t in sorted(result.trials, key=lambda t: t.number)],
        "values": [t.value for t in sorted(result.trials, key=lambda t: t.number)],
    }


def measure_direct(data: dict, params: list[dict], fixed: dict) -> dict:
    from kfp_ct.components._common.training import load_train_data, seed_everything
    from kfp_ct.components.train_sklearn import core as sk

    loaded = load_train_data(data["train"], data["featurizer"], 0, "class", "classification")
    started = time.perf_counter()
    values = []
    for hyperparameters in params:
        seed_everything(0)
        result = sk.fit(
            loaded.x_fit,
            loaded.y_fit,
            loaded.x_val,
            loaded.y_val,
            "classification",
            2,
            {**fixed, **hyperparameters},
            seed=0,
            estimator=ESTIMATOR,
        )
        values.append(result.metrics["roc_auc"])
    return {"seconds": time.perf_counter() - started, "values": values, "fit_rows": len(loaded.y_fit)}


def in_subprocess(mode: str, data: dict, extra: dict) -> dict:
    """Runs one measurement in a fresh interpreter (nothing imported or started beforehand)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump({"mode": mode, "data": data, **extra}, f)
    try:
        completed = subprocess.run([sys.executable, __file__, "--measure", f.name], capture_output=True, text=True)
    finally:
        os.remove(f.name)
    if completed.returncode != 0:
        raise RuntimeError(f"{mode} measurement failed:\n{completed.stderr[-4000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="4 trials of 3 trees on 2000 rows (smoke run)")
    parser.add_argument("--trials", type=int)
    parser.add_argument("--rows", type=int)
    parser.add_argument(
        "--repeat", type=int, default=2, help="interleaved runs of each measurement (the fastest counts)"
    )
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        spec = json.loads(Path(args.measure).read_text())
        if spec["mode"] == "direct":
            out = measure_direct(spec["data"], spec["params"], spec["fixed"])
        else:
            out = measure_tune(spec["data"], spec["trials"], spec["parallel"], spec["fixed"])
        print(json.dumps(out))
        return 0

    trials = args.trials or (4 if args.quick else 20)
    repeat = args.repeat or (1 if args.quick else 2)
    rows = args.rows or (2000 if args.quick else None)
    fixed = {"n_estimators": 3} if args.quick else FIXED
    runs: dict[str, list[dict]] = {"tune1": [], "direct": [], "tune2": []}
    with tempfile.TemporaryDirectory(prefix="kfp-ct-bench-tune-") as tmp:
        data = prepare_data(Path(tmp), rows)
        load_before = os.getloadavg()[0]
        for _ in range(repeat):
            runs["tune1"].append(in_subprocess("tune", data, {"trials": trials, "parallel": 1, "fixed": fixed}))
            params = runs["tune1"][-1]["params"]
            runs["direct"].append(in_subprocess("direct", data, {"params": params, "fixed": fixed}))
            runs["tune2"].append(in_subprocess("tune", data, {"trials": trials, "parallel": 2, "fixed": fixed}))
        load_after = os.getloadavg()[0]
    tune1, direct, tune2 = (min(runs[name], key=lambda run: run["seconds"]) for name in ("tune1", "direct", "tune2"))

    same = all(run["params"] == tune1["params"] for run in runs["tune1"] + runs["tune2"]) and all(
        abs(a - round(b, 6)) < 1e-6 for run in runs["direct"] for a, b in zip(tune1["values"], run["values"])
    )
    overhead = (tune1["seconds"] - direct["seconds"]) / direct["seconds"]
    speedup = tune1["seconds"] / tune2["seconds"]
    print(
        f"tune benchmark: {trials} trials of a random forest ({fixed['n_estimators']} trees) on "
        f"{direct['fit_rows']} fit rows of elec2 ({data['rows']} rows), {os.cpu_count()} CPUs, load average "
        f"{load_before:.1f} -> {load_after:.1f}; each figure the fastest of {repeat} interleaved runs"
    )
    print(f"  {'run':<34}{'seconds':>10}{'per fit':>10}")
    print(f"  {'direct fits (baseline)':<34}{direct['seconds']:>10.2f}{direct['seconds'] / trials:>10.2f}")
    print(
        f"  {'tune, 1 parallel trial':<34}{tune1['seconds']:>10.2f}{tune1['seconds'] / trials:>10.2f}"
        f"   (data load and worker start-up {tune1['startup_seconds']:.2f} s, trials {tune1['trial_seconds']:.2f} s)"
    )
    print(
        f"  {'tune, 2 parallel trials':<34}{tune2['seconds']:>10.2f}{tune2['seconds'] / trials:>10.2f}"
        f"   (data load and worker start-up {tune2['startup_seconds']:.2f} s)"
    )
    print(f"  same hyperparameters and scores in all three runs: {same}")
    print(
        f"  tuning overhead (1 parallel) vs direct fits: {overhead:+.1%} (goal < {GOAL_OVERHEAD:.0%}): "
        f"{'met' if overhead < GOAL_OVERHEAD else 'NOT met'}"
    )
    print(
        f"  2 parallel vs 1 parallel: {speedup:.2f}x faster (goal >= {GOAL_SPEEDUP}x): "
        f"{'met' if speedup >= GOAL_SPEEDUP else 'NOT met'}"
    )
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
