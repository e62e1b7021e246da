"""Benchmark: windowed ingest from a Hive-partitioned source of 365 daily partitions reads only the partitions the
window needs.

The source is dt=YYYY-MM-DD/part-0.parquet for a year, ROWS rows a day (a time column spread over the day and a few
numerical and string columns). Measured in the same run, best of REPEATS each:
- windowed: ingest of the whole source with window="7d" (the 365 partitions listed, 358 pruned, 7 read);
- baseline: ingest of a folder holding only those 7 partitions (the same files), with the same window.

    python bench/ingest_window.py            # 365 partitions of 20,000 rows
    python bench/ingest_window.py --quick    # 365 partitions of 500 rows: the smoke run tests/bench calls

Goal: windowed within 1.5x of the baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np
import pandas as pd

DAYS = 365
FIRST_DAY = "2026-01-01"
AS_OF = "2026-07-01T00:00:00Z"  # the window [06-24, 07-01)
WINDOW = "7d"
GOAL_RATIO = 1.5
REPEATS = 5


def write_source(root: str, rows: int, seed: int = 0) -> list[str]:
    """The 365 daily partitions; returns their folders' names."""
    rng = np.random.default_rng(seed)
    names = []
    for day in pd.date_range(FIRST_DAY, periods=DAYS, freq="D"):
        name = f"dt={day:%Y-%m-%d}"
        os.makedirs(os.path.join(root, name))
        offsets = np.sort(rng.integers(0, 86_400_000_000, rows))
        frame = pd.DataFrame(
            {
                "time": day + pd.to_timedelta(offsets, unit="us"),
                "x": rng.normal(0, 1, rows),
                "y": rng.lognormal(0, 1, rows),
                "n": rng.integers(0, 100, rows),
                "s": rng.choice(["a", "b", "c", "d"], rows),
            }
        )
        frame.to_parquet(os.path.join(root, name, "part-0.parquet"), index=False)
        names.append(name)
    return names


def timed(source: str, out: str) -> tuple[float, dict]:
    from kfp_ct.components.ingest.core import ingest

    start = time.perf_counter()
    result = ingest(source_uri=source, output_path=out, time_column="time", window=WINDOW, as_of=AS_OF)
    seconds = time.perf_counter() - start
    os.remove(out)
    return seconds, result.metadata


def run(rows: int) -> dict:
    from kfp_ct.components._common import windows

    with tempfile.TemporaryDirectory(prefix="kfp-ct-bench-window-") as tmp:
        source = os.path.join(tmp, "events")
        names = write_source(source, rows)
        window = windows.resolve(WINDOW, AS_OF)
        needed = [n for n in names if window.covers(*windows.partition_span(f"{n}/part-0.parquet"))]  # the 7 partitions
        alone = os.path.join(tmp, "alone")
        for name in needed:
            shutil.copytree(os.path.join(source, name), os.path.join(alone, name))
        out = os.path.join(tmp, "out.parquet")
        timed(source, out), timed(alone, out)  # warm the page cache and the imports
        windowed, baseline = [], []
        for _ in range(REPEATS):
            seconds, windowed_meta = timed(source, out)
            windowed.append(seconds)
            seconds, baseline_meta = timed(alone, out)
            baseline.append(seconds)
    if windowed_meta["sha256"] != baseline_meta["sha256"]:
        raise SystemExit("the windowed ingest and the baseline wrote different datasets")
    return {
        "partitions": DAYS,
        "rows_per_partition": rows,
        "partitions_needed": len(needed),
        "files_read": windowed_meta["files_read"],
        "rows": windowed_meta["rows"],
        "windowed_s": min(windowed),
        "baseline_s": min(baseline),
        "ratio": min(windowed) / min(baseline),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="500 rows a partition (smoke run)")
    parser.add_argument("--rows", type=int, help="rows per daily partition (default 20,000; 500 with --quick)")
    parser.add_argument("--json", help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    rows = args.rows or (500 if args.quick else 20_000)
    result = run(rows)
    print(
        f"windowed ingest, {result['partitions']} daily partitions of {rows:,} rows, window {WINDOW} "
        f"(best of {REPEATS}):"
    )
    print(
        f"  windowed (whole source):  {result['windowed_s']:.3f} s  files read {result['files_read']} of "
        f"{result['partitions']}, {result['rows']:,} rows"
    )
    print(f"  baseline ({result['partitions_needed']} partitions alone): {result['baseline_s']:.3f} s")
    verdict = "meets" if result["ratio"] <= GOAL_RATIO else "MISSES"
    print(f"  ratio {result['ratio']:.2f}x ({verdict} the goal <= {GOAL_RATIO}x)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
