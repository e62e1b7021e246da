"""Benchmark: evaluate with 3 slice columns and 2 fairness metrics against evaluate without them, same run, same data.

Setup: elec2 (45,312 rows) featurized; a champion (logistic regression) and a candidate (gradient boosting) trained
and registered in a local MLflow registry; the test split resampled to N rows. Then, alternately, `repeats` times:

- plain: evaluate(candidate) against the champion on the N rows;
- sliced: the same, with slices=["day", "period", "nswprice"] (7 days, 48 half-hours cut into 4 quantile bins, prices
  in 4 bins), sensitive_columns=["day"] (demographic parity and equalized odds differences) and thresholds on
  roc_auc per slice and on equalized_odds_difference.

Both score the candidate and the champion once; the sliced run adds the grouping of the rows and the per-slice and
fairness figures from the same predictions. The figures are each one's median wall time and median CPU time (this
process's, all threads); the goal is judged on CPU time, which other processes on a shared machine do not inflate,
and the wall-time ratio is printed beside it.

    python bench/evaluate.py                 # 1M test rows, 3 repeats
    python bench/evaluate.py --quick         # 50k rows, 1 repeat: the smoke run tests/bench calls

Goal: sliced <= 1.5x plain (CPU time).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

GOAL_RATIO = 1.5
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "elec2" / "elec2.csv"
SLICES = ["day", "period", "nswprice"]
SENSITIVE = ["day"]
THRESHOLDS = {"roc_auc": {"min": 0.5, "per_slice": True}, "equalized_odds_difference": {"max": 1.0}}


def prepare(root: Path, rows: int, data: Path) -> dict:
    """The featurized data, the two registered models and the test split resampled to `rows` rows."""
    import numpy as np
    import pyarrow.csv as pacsv

    from kfp_ct.components._common import datasets, tracking
    from kfp_ct.components.featurize.core import featurize
    from kfp_ct.components.train_sklearn.core import train_sklearn

    datasets.write_table(pacsv.read_csv(data), root / "elec2.parquet", str(data))
    featurize(
        dataset_path=str(root / "elec2.parquet"),
        target_column="class",
        train_path=str(root / "train.parquet"),
        test_path=str(root / "test.parquet"),
        featurizer_path=str(root / "featurizer"),
        source_uri=str(data),
    )
    uri = f"sqlite:///{root / 'mlflow.db'}"
    common = {
        "train_path": str(root / "train.parquet"),
        "featurizer_path": str(root / "featurizer"),
        "model_name": "bench-evaluate",
        "tracking_uri": uri,
    }
    champion = train_sklearn(model_path=str(root / "champion"), estimator="logistic_regression", **common)
    candidate = train_sklearn(
        model_path=str(root / "candidate"),
        estimator="hist_gradient_boosting",
        hyperparameters={"max_iter": 50},
        **common,
    )
    tracking.promote("bench-evaluate", champion.version, tracking_uri=uri)
    test = datasets.read_frame(root / "test.parquet")
    picked = np.random.default_rng(0).integers(0, len(test), rows)
    datasets.write_frame(test.iloc[picked].reset_index(drop=True), root / "test-big.parquet", "elec2 test, resampled")
    return {"model": candidate.model_path, "test": str(root / "test-big.parquet"), "uri": uri}


def run(setup: dict, sliced: bool) -> tuple[float, float, object]:
    from kfp_ct.components.evaluate.core import evaluate

    options = {"slices": SLICES, "sensitive_columns": SENSITIVE, "thresholds": THRESHOLDS} if sliced else {}
    started, cpu = time.perf_counter(), time.process_time()
    result = evaluate(
        model_path=setup["model"],
        test_path=setup["test"],
        target_column="class",
        model_name="bench-evaluate",
        tracking_uri=setup["uri"],
        **options,
    )
    return time.perf_counter() - started, time.process_time() - cpu, result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="50k rows, 1 repeat")
    parser.add_argument("--data", type=Path, default=DATA, help="elec2.csv")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    rows, repeats = (50_000, 1) if args.quick else (args.rows, args.repeats)

    with tempfile.TemporaryDirectory(prefix="kfp-ct-bench-evaluate-") as tmp:
        print(f"evaluate on {rows:,} test rows (elec2 resampled), candidate and champion, {repeats} repeat(s)")
        setup = prepare(Path(tmp), rows, args.data)
        run(setup, sliced=False)  # warm up: imports, file cache
        wall = {"plain": [], "sliced": []}
        cpu = {"plain": [], "sliced": []}
        for _ in range(repeats):
            for kind in wall:
                seconds, cpu_seconds, result = run(setup, sliced=kind == "sliced")
                wall[kind].append(seconds)
                cpu[kind].append(cpu_seconds)
                if kind == "sliced":
                    sliced_result = result
    median = {kind: (statistics.median(wall[kind]), statistics.median(cpu[kind])) for kind in wall}
    for kind in wall:
        runs = ", ".join(f"{w:.2f}/{c:.2f}" for w, c in zip(wall[kind], cpu[kind]))
        print(f"  {kind + ':':7} {median[kind][0]:8.2f} s (cpu {median[kind][1]:7.2f} s)  runs wall/cpu: {runs}")
    n_slices = len(sliced_result.slices)
    print(
        f"  sliced: {len(SLICES)} slice columns ({n_slices} slices), {len(sliced_result.fairness)} sensitive "
        "column(s), 2 fairness metrics"
    )
    ratio, wall_ratio = median["sliced"][1] / median["plain"][1], median["sliced"][0] / median["plain"][0]
    met = ratio <= GOAL_RATIO
    print(
        f"  ratio sliced/plain {ratio:.2f}x cpu, {wall_ratio:.2f}x wall (goal <= {GOAL_RATIO}x cpu): "
        f"{'met' if met else 'MISSED'}"
    )
    print(f"  load average {os.getloadavg()[0]:.1f} at the end (wall times on a shared machine vary with it)")
    if args.json:
        figures = {
            "rows": rows,
            "plain_s": wall["plain"],
            "sliced_s": wall["sliced"],
            "plain_cpu_s": cpu["plain"],
            "sliced_cpu_s": cpu["sliced"],
            "ratio": ratio,
            "wall_ratio": wall_ratio,
            "slices": n_slices,
            "fairness": sliced_result.fairness,
        }
        args.json.write_text(json.dumps(figures, indent=2))
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
