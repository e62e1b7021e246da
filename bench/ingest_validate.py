"""Benchmark: ingest a CSV into Parquet, then validate it against a reference schema, at two sizes.

Generates 1M and 10M rows x 25 columns (12 float, 5 int, 5 low-cardinality string, 1 high-cardinality string,
1 timestamp, the string target `label`) as CSV, written with pyarrow in chunks. Each size runs in its own child
process (`ingest.core.ingest`, then `validate.core.validate` against the schema of a 20k-row reference sample), so
the child's peak RSS (getrusage) is the memory the two steps need. The small size is the baseline: the script
prints both sizes side by side, the large/small time ratio and whether the goals are met (large size under 4 GB
peak RSS; time ratio <= 12 for 10x the rows).

    python bench/ingest_validate.py            # 1M and 10M rows (about 1.3 GB of CSV at 10M)
    python bench/ingest_validate.py --quick    # 20k and 200k rows, a smoke run

`--source s3` measures reading from S3 instead: the same 1M rows (200k with --quick) ingested and validated from a
local file and from moto's S3 server on loopback (`s3://`, through AWS_ENDPOINT_URL), in the same run; it prints
both, the s3/local time ratio (goal <= 1.5) and each one's peak RSS (goal: S3 as flat as local, within 1.25x).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

CHUNK_ROWS = 500_000
TARGET = "label"
MEMORY_GOAL_MB = 4096
RATIO_GOAL = 12.0
S3_RATIO_GOAL = 1.5
S3_MEMORY_GOAL = 1.25
S3_BUCKET = "kfp-ct-bench"
CATEGORIES = {
    f"c{i}": [f"{name}_{k}" for k in range(size)]
    for i, (name, size) in enumerate([("red", 3), ("city", 12), ("plan", 5), ("device", 40), ("ch", 90)])
}


def _chunk(rng: np.random.Generator, rows: int, start_row: int) -> pa.Table:
    columns = {}
    for i in range(12):
        values = rng.normal(i, 1 + i, rows) if i % 2 else rng.uniform(0, 10 ** (i % 4), rows)
        columns[f"f{i}"] = pa.array(np.round(values, 4))
    columns["i0"] = pa.array(rng.integers(0, 7, rows))
    columns["i1"] = pa.array(rng.integers(0, 24, rows))
    columns["i2"] = pa.array(rng.integers(0, 1_000_000, rows))
    columns["i3"] = pa.array(rng.poisson(30, rows))
    columns["i4"] = pa.array(np.arange(start_row, start_row + rows))
    for name, values in CATEGORIES.items():
        columns[name] = pc.take(pa.array(values), pa.array(rng.integers(0, len(values), rows)))
    columns["user"] = pc.binary_join_element_wise(
        "user_", pc.cast(pa.array(rng.integers(0, 200_000, rows)), pa.string()), ""
    )
    seconds = 1_700_000_000 + rng.integers(0, 90 * 86_400, rows)
    columns["seen_at"] = pc.cast(pa.array(seconds), pa.timestamp("s"))
    columns[TARGET] = pc.take(pa.array(["no", "yes"]), pa.array((rng.random(rows) < 0.3).astype(np.int64)))
    return pa.table(columns)


def generate_csv(path: str, rows: int, seed: int) -> None:
    """Writes `rows` rows of the benchmark's 25 columns to `path`, one bounded chunk at a time."""
    rng = np.random.default_rng(seed)
    writer = None
    try:
        for start in range(0, rows, CHUNK_ROWS):
            table = _chunk(rng, min(CHUNK_ROWS, rows - start), start)
            if writer is None:
                writer = pacsv.CSVWriter(path, table.schema, write_options=pacsv.WriteOptions(quoting_style="needed"))
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()


def run_child(source: str, reference: str, workdir: str) -> dict:
    """In this (child) process: ingest, then validate; returns timings, findings and this process's peak RSS."""
    from kfp_ct.components.ingest.core import ingest
    from kfp_ct.components.validate.core import validate

    parquet = os.path.join(workdir, "dataset.parquet")
    start, start_cpu = time.perf_counter(), time.process_time()
    meta = ingest(source_uri=source, output_path=parquet).metadata
    ingested, ingested_cpu = time.perf_counter(), time.process_time()
    result = validate(dataset_path=parquet, target_column=TARGET, reference_schema_path=reference)
    validated, validated_cpu = time.perf_counter(), time.process_time()
    os.remove(parquet)
    return {
        "rows": meta["rows"],
        "columns": meta["columns"],
        "ingest_s": ingested - start,
        "validate_s": validated - ingested,
        "ingest_cpu_s": ingested_cpu - start_cpu,
        "validate_cpu_s": validated_cpu - ingested_cpu,
        "anomalies": len(result.anomalies),
        "blocking": len(result.blocking),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run_source(source: str, reference: str, workdir: str, repeat: int, env: dict | None = None) -> dict:
    """Runs ingest + validate of `source` in a fresh child process `repeat` times; keeps the fastest run (the least
    disturbed by other work on the machine) and the highest peak RSS."""
    runs = []
    for _ in range(repeat):
        done = subprocess.run(
            [sys.executable, __file__, "--child", source, reference, workdir],
            capture_output=True,
            text=True,
            check=False,
            env=env,
        )
        if done.returncode != 0:
            raise RuntimeError(f"the run on {source} failed:\n{done.stderr[-4000:]}")
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        runs.append(
            {
                **figures,
                "total_s": figures["ingest_s"] + figures["validate_s"],
                "total_cpu_s": figures["ingest_cpu_s"] + figures["validate_cpu_s"],
            }
        )
    best = min(runs, key=lambda run: run["total_s"])
    return {**best, "peak_rss_mb": max(run["peak_rss_mb"] for run in runs)}


def generate(rows: int, workdir: str) -> tuple[str, dict]:
    """The benchmark CSV of `rows` rows in `workdir`: (path, {generate_s, csv_mb})."""
    csv_path = os.path.join(workdir, f"data_{rows}.csv")
    start = time.perf_counter()
    generate_csv(csv_path, rows, seed=rows)
    return csv_path, {"generate_s": time.perf_counter() - start, "csv_mb": os.path.getsize(csv_path) / 2**20}


def measure(rows: int, reference: str, workdir: str, repeat: int) -> dict:
    """Generates the CSV, then runs ingest + validate on it (run_source)."""
    csv_path, generated = generate(rows, workdir)
    try:
        return {**run_source(csv_path, reference, workdir, repeat), **generated}
    finally:
        os.remove(csv_path)


def start_s3(workdir: str) -> tuple[subprocess.Popen, dict]:
    """moto's S3 server (ThreadedMotoServer) in its own process on a free loopback port, with a bucket; returns the
    process and the environment that points boto3 at it."""
    import socket
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench-secret",
        "AWS_REGION": "us-east-1",
    }
    code = (
        "import sys, threading; from moto.server import ThreadedMotoServer; "
        "ThreadedMotoServer(ip_address='127.0.0.1', port=int(sys.argv[1])).start(); threading.Event().wait()"
    )
    with open(os.path.join(workdir, "moto.log"), "wb") as log:
        process = subprocess.Popen([sys.executable, "-c", code, str(port)], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{env['AWS_ENDPOINT_URL']}/moto-api/", timeout=2):
                break
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise RuntimeError("moto's S3 server did not start") from None
            time.sleep(0.3)
    return process, env


def measure_s3(rows: int, reference: str, workdir: str, repeat: int) -> tuple[dict, dict]:
    """The same CSV ingested and validated from a local file and from s3:// on the loopback moto server."""
    import boto3

    csv_path, generated = generate(rows, workdir)
    process, env = start_s3(workdir)
    try:
        client = boto3.client(
            "s3",
            endpoint_url=env["AWS_ENDPOINT_URL"],
            region_name="us-east-1",
            aws_access_key_id="bench",
            aws_secret_access_key="bench-secret",
        )
        client.create_bucket(Bucket=S3_BUCKET)
        client.upload_file(csv_path, S3_BUCKET, os.path.basename(csv_path))
        local = {**run_source(csv_path, reference, workdir, repeat), **generated}
        remote = {
            **run_source(f"s3://{S3_BUCKET}/{os.path.basename(csv_path)}", reference, workdir, repeat, env),
            **generated,
        }
    finally:
        process.terminate()
        process.wait(timeout=30)
        os.remove(csv_path)
    return local, remote


def make_reference(workdir: str) -> str:
    """The schema of a 20k-row sample from the same generator: what a champion's training data would give."""
    from kfp_ct.components.ingest.core import ingest
    from kfp_ct.components.validate.core import infer_schema, write_schema

    csv_path, parquet, schema = (os.path.join(workdir, name) for name in ("ref.csv", "ref.parquet", "ref.json"))
    generate_csv(csv_path, 20_000, seed=1)
    ingest(source_uri=csv_path, output_path=parquet)
    write_schema(infer_schema(parquet, TARGET), schema)
    return schema


REPORT_ROWS = [
    ("rows", "{:,}", "rows"),
    ("CSV size (MB)", "{:.0f}", "csv_mb"),
    ("generate CSV (s)", "{:.1f}", "generate_s"),
    ("ingest (s)", "{:.2f}", "ingest_s"),
    ("validate (s)", "{:.2f}", "validate_s"),
    ("ingest + validate (s)", "{:.2f}", "total_s"),
    ("  of which CPU (s)", "{:.2f}", "total_cpu_s"),
    ("peak RSS (MB)", "{:.0f}", "peak_rss_mb"),
    ("anomalies (blocking)", "{}", None),
]


def table(left: dict, right: dict, headers: tuple[str, str]) -> None:
    print(f"{'':24}{headers[0]:>20}{headers[1]:>20}")
    for label, fmt, key in REPORT_ROWS:
        cells = [f"{r['anomalies']} ({r['blocking']})" if key is None else fmt.format(r[key]) for r in (left, right)]
        print(f"{label:24}{cells[0]:>20}{cells[1]:>20}")


def report(small: dict, large: dict) -> bool:
    table(small, large, ("baseline (small)", "large"))
    size_ratio = large["rows"] / small["rows"]
    ratio = large["total_s"] / small["total_s"]
    ratio_ok, memory_ok = ratio <= RATIO_GOAL, large["peak_rss_mb"] < MEMORY_GOAL_MB
    print(
        f"time ratio large/small: {ratio:.2f} for {size_ratio:.0f}x the rows (goal <= {RATIO_GOAL:g}): "
        f"{'met' if ratio_ok else 'NOT met'}"
    )
    print(
        f"  CPU time ratio: {large['total_cpu_s'] / small['total_cpu_s']:.2f}; ingest ratio "
        f"{large['ingest_s'] / small['ingest_s']:.2f}, validate ratio {large['validate_s'] / small['validate_s']:.2f}"
    )
    print(
        f"peak RSS large: {large['peak_rss_mb']:.0f} MB (goal < {MEMORY_GOAL_MB} MB): "
        f"{'met' if memory_ok else 'NOT met'}"
    )
    return ratio_ok and memory_ok


def report_s3(local: dict, remote: dict) -> bool:
    table(local, remote, ("baseline (local)", "s3 (moto)"))
    ratio = remote["total_s"] / local["total_s"]
    memory = remote["peak_rss_mb"] / local["peak_rss_mb"]
    ratio_ok, memory_ok = ratio <= S3_RATIO_GOAL, memory <= S3_MEMORY_GOAL
    print(
        f"time ratio s3/local: {ratio:.2f} (goal <= {S3_RATIO_GOAL:g}): {'met' if ratio_ok else 'NOT met'}; "
        f"ingest ratio {remote['ingest_s'] / local['ingest_s']:.2f}; CPU time ratio "
        f"{remote['total_cpu_s'] / local['total_cpu_s']:.2f}"
    )
    print(
        f"peak RSS s3: {remote['peak_rss_mb']:.0f} MB, local: {local['peak_rss_mb']:.0f} MB, ratio {memory:.2f} "
        f"(goal <= {S3_MEMORY_GOAL:g}): {'met' if memory_ok else 'NOT met'}"
    )
    return ratio_ok and memory_ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20k and 200k rows instead of 1M and 10M")
    parser.add_argument("--repeat", type=int, default=1, help="runs per size; the fastest counts (default 1)")
    parser.add_argument(
        "--source",
        choices=("local", "s3"),
        default="local",
        help="local: two sizes from a local file (default); s3: one size from local and from S3 (moto) side by side",
    )
    parser.add_argument("--child", nargs=3, metavar=("CSV", "REFERENCE", "WORKDIR"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_child(*args.child)))
        return 0
    small_rows, large_rows = (20_000, 200_000) if args.quick else (1_000_000, 10_000_000)
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the start", flush=True)
    if args.source == "s3":
        with tempfile.TemporaryDirectory(prefix="kfp-ct-bench-") as workdir:
            local, remote = measure_s3(
                large_rows if args.quick else small_rows, make_reference(workdir), workdir, args.repeat
            )
        print(f"load average {os.getloadavg()[0]:.1f} at the end (wall times on a shared machine vary with it)")
        met = report_s3(local, remote)
        print(f"goals: {'met' if met else 'NOT met'}")
        return 0
    with tempfile.TemporaryDirectory(prefix="kfp-ct-bench-") as workdir:
        reference = make_reference(workdir)
        small = measure(small_rows, reference, workdir, args.repeat)
        print(f"{small_rows:,} rows: {small['total_s']:.2f} s, peak RSS {small['peak_rss_mb']:.0f} MB", flush=True)
        large = measure(large_rows, reference, workdir, args.repeat)
        print(f"{large_rows:,} rows: {large['total_s']:.2f} s, peak RSS {large['peak_rss_mb']:.0f} MB", flush=True)
    print(f"load average {os.getloadavg()[0]:.1f} at the end (wall times on a shared machine vary with it)")
    met = report(small, large)
    print(f"goals: {'met' if met else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
