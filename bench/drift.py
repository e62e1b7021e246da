"""Benchmark: monitor_drift's drift statistics against Evidently's DataDriftPreset, on the same generated data.

Each window (reference and current) has N rows x 25 columns: 20 numerical (normal, log-normal, uniform, integer
counts, a column with missing values and a constant one) and 5 categorical strings; a few columns drift, two of
them close to the threshold. Every measurement runs in its own subprocess, which reports its wall time; its peak
memory is that subprocess's max RSS. Both read the same Parquet files: ours streams them, Evidently gets them as
pandas DataFrames (reading included in its time).

    python bench/drift.py            # 100k and 1M rows (ours and Evidently), then 10M rows (ours only)
    python bench/drift.py --quick    # 20k rows, ours and Evidently: the smoke run tests/bench calls

Goals: 1M rows in <= 5 s, >= 40x faster than Evidently, < 2 GB peak, zero differing verdicts; 10M rows (ours only)
in <= 30 s with bounded memory.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

GOAL_SECONDS_1M = 5.0
GOAL_SPEEDUP = 40.0
GOAL_PEAK_MB = 2048
GOAL_SECONDS_10M = 30.0
CHUNK = 1_000_000
CATEGORIES = [f"c{i:02d}" for i in range(12)]


def _columns(rng: np.random.Generator, n: int, current: bool) -> dict:
    """One chunk of the 25 columns; `current` applies the drift."""
    shift = 1.0 if current else 0.0
    cols = {}
    for i in range(8):  # normal; num_0 drifts clearly, num_1 close above the threshold, num_2 close below it
        mean = {0: 0.5, 1: 0.104, 2: 0.096}.get(i, 0.0) * shift
        cols[f"num_{i}"] = rng.normal(mean, 1.0, n)
    for i in range(8, 12):  # log-normal (long right tail); num_8 scale drift
        cols[f"num_{i}"] = rng.lognormal(0.0, 1.3 if (i == 8 and current) else 1.0, n)
    for i in range(12, 16):  # uniform
        cols[f"num_{i}"] = rng.uniform(0.0, 10.0, n)
    for i in range(16, 18):  # integer counts (more than 10 distinct values: numerical)
        cols[f"num_{i}"] = rng.poisson(40 + (6 if i == 16 and current else 0), n).astype(np.int64)
    x = rng.normal(0.0, 1.0, n)  # float with 5% missing values
    x[rng.random(n) < 0.05] = np.nan
    cols["num_18"] = x
    cols["num_19"] = np.full(n, 3.0)  # constant in both: std 0
    for i in range(5):
        p = np.linspace(1.0, 2.0, len(CATEGORIES))
        if current and i == 0:
            p = p[::-1]  # categorical drift
        cols[f"cat_{i}"] = rng.choice(len(CATEGORIES), size=n, p=p / p.sum())
    return cols


def generate(path: str, rows: int, current: bool, seed: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    dictionary = pa.array(CATEGORIES)
    writer = None
    try:
        for start in range(0, rows, CHUNK):
            cols = _columns(rng, min(CHUNK, rows - start), current)
            arrays = {}
            for name, values in cols.items():
                if name.startswith("cat_"):
                    arrays[name] = pa.DictionaryArray.from_arrays(pa.array(values.astype(np.int32)), dictionary).cast(
                        pa.string()
                    )
                else:
                    arrays[name] = pa.array(values, from_pandas=True)
            table = pa.table(arrays)
            writer = writer or pq.ParquetWriter(path, table.schema)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()


def run_ours(reference: str, current: str) -> dict:
    from kfp_ct.components.monitor_drift.core import detect_drift

    start, cpu = time.perf_counter(), time.process_time()
    result = detect_drift(reference, current)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "verdicts": {c.column: c.drifted for c in result.columns},
        "tests": {c.column: c.test_display_name for c in result.columns},
        "scores": {c.column: c.score for c in result.columns},
        "dataset_drift": result.dataset_drift,
        "share": result.share_of_drifted_columns,
    }


def run_evidently(reference: str, current: str) -> dict:
    import warnings

    import pandas as pd

    from kfp_ct.components.monitor_drift.report import evidently_drift

    warnings.filterwarnings("ignore")
    start, cpu = time.perf_counter(), time.process_time()
    result = evidently_drift(pd.read_parquet(reference), pd.read_parquet(current))
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "verdicts": {c: v["drifted"] for c, v in result.columns.items()},
        "tests": {c: v["test"] for c, v in result.columns.items()},
        "scores": {c: v["score"] for c, v in result.columns.items()},
        "dataset_drift": result.dataset_drift,
        "share": result.share_of_drifted_columns,
    }


def measure(which: str, reference: str, current: str) -> dict:
    """Runs one measurement in a fresh subprocess; adds that subprocess's peak RSS (os.wait4's ru_maxrss) in MB."""
    with tempfile.TemporaryDirectory(prefix="kfp-ct-bench-") as tmp:
        out, log = os.path.join(tmp, "result.json"), os.path.join(tmp, "log.txt")
        with open(log, "w") as log_file:
            proc = subprocess.Popen(
                [sys.executable, __file__, "--child", which, reference, current, out],
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            with open(log) as f:
                raise RuntimeError(f"{which} failed (exit {proc.returncode}):\n{f.read()[-4000:]}")
        with open(out) as f:
            result = json.load(f)
    result["peak_mb"] = usage.ru_maxrss / 1024  # kilobytes on Linux
    return result


def _differences(ours: dict, theirs: dict) -> list[str]:
    diffs = []
    for column in sorted(set(ours["verdicts"]) | set(theirs["verdicts"])):
        a, b = ours["verdicts"].get(column), theirs["verdicts"].get(column)
        if a != b or ours["tests"].get(column) != theirs["tests"].get(column):
            diffs.append(
                f"{column}: ours {ours['tests'].get(column)} {ours['scores'].get(column)} -> {a}; "
                f"evidently {theirs['tests'].get(column)} {theirs['scores'].get(column)} -> {b}"
            )
    return diffs


def bench(rows: int, folder: str, with_evidently: bool) -> dict:
    reference, current = os.path.join(folder, f"ref_{rows}.parquet"), os.path.join(folder, f"cur_{rows}.parquet")
    start = time.perf_counter()
    generate(reference, rows, False, seed=1)
    generate(current, rows, True, seed=2)
    print(f"\n{rows:,} rows per window x 25 columns (generated in {time.perf_counter() - start:.1f} s)", flush=True)
    ours = measure("ours", reference, current)
    line = (
        f"  monitor_drift: {ours['seconds']:8.2f} s (cpu {ours['cpu_seconds']:7.2f} s)  peak {ours['peak_mb']:7.0f} MB"
    )
    print(
        line + f"  drifted {sum(ours['verdicts'].values())}/{len(ours['verdicts'])}"
        f" dataset_drift={ours['dataset_drift']}",
        flush=True,
    )
    out = {"rows": rows, "ours": ours}
    if with_evidently:
        theirs = measure("evidently", reference, current)
        diffs = _differences(ours, theirs)
        speedup = theirs["seconds"] / ours["seconds"]
        print(
            f"  evidently:     {theirs['seconds']:8.2f} s (cpu {theirs['cpu_seconds']:7.2f} s)  peak "
            f"{theirs['peak_mb']:7.0f} MB"
            f"  drifted {sum(theirs['verdicts'].values())}/{len(theirs['verdicts'])}"
            f" dataset_drift={theirs['dataset_drift']}"
        )
        cpu_ratio = theirs["cpu_seconds"] / ours["cpu_seconds"]
        print(f"  speedup {speedup:.1f}x (cpu time {cpu_ratio:.1f}x); columns whose verdicts differ: {len(diffs)}")
        for d in diffs:
            print(f"    {d}")
        out.update(evidently=theirs, speedup=speedup, cpu_ratio=cpu_ratio, differing=len(diffs), differences=diffs)
    for path in (reference, current):
        os.remove(path)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="20k rows, ours and Evidently (smoke run)")
    parser.add_argument("--json", help="also write the figures as JSON here")
    parser.add_argument("--child", nargs=4, metavar=("WHICH", "REF", "CUR", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        which, reference, current, out = args.child
        result = (run_ours if which == "ours" else run_evidently)(reference, current)
        with open(out, "w") as f:
            json.dump(result, f)
        return 0
    print(
        f"cpus {os.cpu_count()}, load average {os.getloadavg()[0]:.1f} (wall times grow with the load; cpu times less)"
    )
    sizes = [(20_000, True)] if args.quick else [(100_000, True), (1_000_000, True), (10_000_000, False)]
    results = []
    with tempfile.TemporaryDirectory(prefix="kfp-ct-bench-drift-") as folder:
        for rows, with_evidently in sizes:
            results.append(bench(rows, folder, with_evidently))
    print("\nsummary")
    ok = True
    for r in results:
        ours = r["ours"]
        if "evidently" in r:
            print(
                f"  {r['rows']:>10,} rows: ours {ours['seconds']:.2f} s (cpu {ours['cpu_seconds']:.2f} s) / "
                f"{ours['peak_mb']:.0f} MB, evidently {r['evidently']['seconds']:.2f} s (cpu "
                f"{r['evidently']['cpu_seconds']:.2f} s) / {r['evidently']['peak_mb']:.0f} MB, {r['speedup']:.1f}x "
                f"(cpu {r['cpu_ratio']:.1f}x), "
                f"{r['differing']} differing verdicts"
            )
            ok &= r["differing"] == 0
        else:
            print(
                f"  {r['rows']:>10,} rows: ours {ours['seconds']:.2f} s (cpu {ours['cpu_seconds']:.2f} s) / "
                f"{ours['peak_mb']:.0f} MB"
            )
        if r["rows"] == 1_000_000:
            goal = (
                ours["seconds"] <= GOAL_SECONDS_1M
                and r["speedup"] >= GOAL_SPEEDUP
                and ours["peak_mb"] < GOAL_PEAK_MB
                and r["differing"] == 0
            )
            print(
                f"    goal (<= {GOAL_SECONDS_1M:.0f} s, >= {GOAL_SPEEDUP:.0f}x, < {GOAL_PEAK_MB} MB, 0 differing): "
                f"{'met' if goal else 'NOT met'}"
            )
        if r["rows"] == 10_000_000:
            goal = ours["seconds"] <= GOAL_SECONDS_10M and ours["peak_mb"] < GOAL_PEAK_MB
            print(f"    goal (<= {GOAL_SECONDS_10M:.0f} s, < {GOAL_PEAK_MB} MB): {'met' if goal else 'NOT met'}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
