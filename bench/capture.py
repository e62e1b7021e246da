"""Benchmark: capturing what the model serves.

1. The capture sink (`kfp-ct capture-sink`, one process, a local capture folder and write-ahead log) receives KServe
   logger CloudEvents built with the `cloudevents` SDK (binary mode, as KServe sends them): for each request one
   `inference.request` event (one elec2 record) and one `inference.response` event, sent by a load generator in its
   own process (asyncio, `--connections` keep-alive connections, one event in flight on each). Measured: events/s
   acknowledged, acknowledgement latency p50/p99, and afterwards that every acknowledged pair is a Parquet row.
   The default of 40 connections is what KServe's logger can have in flight at that rate: its agent (kserve
   cmd/agent/main.go, `--workers`, default 5, which the agent injector does not set) sends with 5 workers, each
   posting one event and waiting for its answer (pkg/logger/worker.go), so at most 5 per predictor replica; the
   goal's 5,000 events/s are 2,500 scored requests/s, which take 5 to 9 replicas at the 589 to 286 requests/s that
   `kfp-ct serve` answered on this 2-core machine (bench/serving.py, idle and loaded): with 8 replicas, 40 events
   in flight at most (the logger code is the same at v0.20.0 and on the master of 2026-08). Two runs, each against a
   new sink: at the goal's rate (events due at 5,000 a second, sent by whichever connection is free; each latency
   counted from the event's due time, so an event that waited for a free connection counts its wait: no coordinated
   omission), which is what "sustains 5,000 events/s with p99 < 20 ms" asks; and at its capacity (every connection
   sends its next event as soon as the previous one is answered: the most events/s, with as many waiting as KServe
   would allow, and the sink's CPU per event).
2. `kfp-ct serve MODEL` without and with `--capture FOLDER`, both running, loaded in turn (A B A B ..., so that the
   machine's other load falls on both alike) on the same model (bench/serving.py's load generator: 8 connections,
   one record per request): requests/s and server CPU per request of each, and their ratios.

    python bench/capture.py            # elec2 model, 15 s per measurement
    python bench/capture.py --quick    # a 5000-row model, 3 s per measurement: the smoke run tests/bench calls

Goals: the sink sustains >= 5,000 events/s with p99 acknowledgement < 20 ms; capture costs <= 10% of requests/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serving import NAME, free_port, run_load, start, stop, train, wait_ready  # noqa: E402

GOAL_EVENTS_S = 5000.0
GOAL_P99_MS = 20.0
GOAL_COST = 0.10
LOGGER_WORKERS = 5  # KServe's agent: events in flight per predictor replica
REPLICAS = 8  # predictor replicas for 2,500 requests/s (5,000 events/s)
REQUEST = "org.kubeflow.serving.inference.request"
RESPONSE = "org.kubeflow.serving.inference.response"


# --- the sink's load: pre-built HTTP requests carrying CloudEvents -------------------------------------------------


def group_cpu_seconds(pgid: int) -> float:
    """CPU seconds (user + system) used so far by the processes of a process group (a server and its workers)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields after the name: state ppid pgrp ... utime(11) stime(12)
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def cpu_times() -> list[int]:
    """The machine's CPU time counters (/proc/stat: user nice system idle iowait irq softirq steal ...)."""
    with open("/proc/stat") as f:
        return [int(v) for v in f.readline().split()[1:9]]


def steal_share(before: list[int], after: list[int]) -> float:
    """The share of this machine's CPU time that its hypervisor gave to other machines between two readings: time
    the sink waited for a CPU it was due, which no code of its own can win back."""
    delta = [b - a for a, b in zip(before, after, strict=True)]
    return delta[7] / max(1, sum(delta))


def sink_requests(model: dict, port: int, n: int, model_uri: str) -> list[bytes]:
    """`n` request/response event pairs as raw HTTP/1.1 requests (binary-mode CloudEvents from the SDK)."""
    from urllib.parse import quote

    from cloudevents.conversion import to_binary
    from cloudevents.http import CloudEvent

    path = f"/models/{NAME}?model_uri={quote(model_uri)}&version=bench"
    out = []
    records, labels, proba = model["records"], model["labels"], model["proba"]
    for i in range(n):
        j = i % len(records)
        for kind, data in (
            (REQUEST, {"instances": [records[j]]}),
            (RESPONSE, {"predictions": [labels[j]], "probabilities": [proba[j]]}),
        ):
            event = CloudEvent(
                {"type": kind, "source": "http://localhost:9081/", "id": f"req-{i}", "inferenceservicename": NAME},
                data,
            )
            headers, body = to_binary(event)
            head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {len(body)}\r\n"
            head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            out.append(head.encode() + b"\r\n" + body)
    return out


async def _send_all(port: int, requests: list[bytes], connections: int, duration: float, rate: float | None) -> dict:
    """Sends `requests` over `connections` for `duration` s: event i due at i / `rate` s (latency from then), or, with
    no rate, each as soon as a connection is free."""
    latencies, statuses = [], {}
    opened = [await asyncio.open_connection("127.0.0.1", port) for _ in range(connections)]
    first = time.perf_counter()
    deadline = first + duration
    position = [0]
    acknowledged = []

    async def connection(reader, writer) -> None:
        while position[0] < len(requests):
            i = position[0]
            started = first + i / rate if rate else time.perf_counter()
            if started >= deadline:
                break
            position[0] += 1
            if started > time.perf_counter():
                await asyncio.sleep(started - time.perf_counter())
            writer.write(requests[i])
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            statuses[status] = statuses.get(status, 0) + 1
            if status == 200:
                acknowledged.append(i)
        writer.close()

    await asyncio.gather(*(connection(reader, writer) for reader, writer in opened))
    return {
        "latencies": latencies,
        "statuses": statuses,
        "elapsed": time.perf_counter() - first,
        "acknowledged": acknowledged,
    }


def _sink_load(port: int, requests: list[bytes], connections: int, duration: float, rate: float | None, queue) -> None:
    import uvloop

    queue.put(uvloop.run(_send_all(port, requests, connections, duration, rate)))


def run_sink(model: dict, workdir: Path, seconds: float, connections: int, rate: float | None) -> dict:
    """A new sink loaded for `seconds` at `rate` events/s (None: at its capacity); its figures."""
    workdir = workdir / f"sink-{rate or 'capacity'}"
    capture, wal, log = workdir / "capture", workdir / "wal", workdir / "sink.log"
    workdir.mkdir()
    port = free_port()
    cli = Path(sys.executable).parent / "kfp-ct"
    args = [str(cli)] if cli.exists() else [sys.executable, "-m", "kfp_ct.pipelines.cli"]
    args += ["capture-sink", "--capture", str(capture), "--wal", str(wal), "--port", str(port)]
    args += ["--flush-seconds", "2", "--pair-timeout-s", "30"]
    with open(log, "wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_ready(f"http://127.0.0.1:{port}/healthz", process, log)
        pairs = int(seconds * GOAL_EVENTS_S * 2)  # more than the goal can send in `seconds`
        requests = sink_requests(model, port, pairs, model["path"])
        context = multiprocessing.get_context("spawn")
        # warm-up: the model's signature is read on the first event
        queue = context.Queue()
        warm = context.Process(target=_sink_load, args=(port, requests[:2], 1, 10.0, None, queue))
        warm.start()
        queue.get(timeout=60)
        warm.join()
        queue = context.Queue()
        loader = context.Process(target=_sink_load, args=(port, requests[2:], connections, seconds, rate, queue))
        cpu_before, machine_before = group_cpu_seconds(process.pid), cpu_times()
        loader.start()
        result = queue.get(timeout=seconds + 120)
        sink_cpu = group_cpu_seconds(process.pid) - cpu_before  # (the flushes that follow are not counted)
        steal = steal_share(machine_before, cpu_times())
        loader.join(timeout=30)
        acked = set(result["acknowledged"])  # loader index k is event k + 2: pair p's events are 2p - 2 and 2p - 1
        expected_pairs = {f"req-{p}" for p in range(1, pairs) if 2 * p - 2 in acked and 2 * p - 1 in acked}
        expected_pairs.add("req-0")  # the warm-up pair
        rows = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            rows = _captured_ids(capture)
            if expected_pairs <= rows:
                break
            time.sleep(0.5)
        stats = json.loads(_get(f"http://127.0.0.1:{port}/stats"))
    finally:
        stop(process)
    lat = np.asarray(result["latencies"]) * 1000
    return {
        "cpu_us_per_event": sink_cpu / len(lat) * 1e6,
        "steal": steal,
        "rate": rate,
        "due": min(len(requests) - 2, math.ceil(rate * seconds)) if rate else None,
        "events": len(lat),
        "events_s": len(lat) / result["elapsed"],
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
        "statuses": result["statuses"],
        "pairs_acknowledged": len(expected_pairs),
        "pairs_captured": len(expected_pairs & rows),
        "rows": len(rows),
        "stats": stats,
    }


def _captured_ids(capture: Path) -> set[str]:
    import pyarrow.parquet as pq

    ids = set()
    for file in capture.rglob("*.parquet"):
        if not file.name.startswith("."):
            ids.update(pq.read_table(file, columns=["request_id"])["request_id"].to_pylist())
    return ids


def _get(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


# --- the model server without and with capture ------------------------------------------------------------------------


def run_servers(model: dict, workdir: Path, seconds: float, rounds: int) -> tuple[dict, dict]:
    """`kfp-ct serve` without and with --capture, both started, then loaded in turn `rounds` times each (A B A B ...),
    so that a change in the machine's other load falls on both alike; (without, with) summed over the rounds."""
    capture = workdir / "served-capture"
    servers = {}
    try:
        for kind, extra in (("plain", ()), ("captured", ("--capture", str(capture)))):
            port = free_port()
            log = workdir / f"serve-{kind}.log"
            servers[kind] = (start("kfp-ct", model["path"], port, log, extra), port, log)
        path = f"/v1/models/{NAME}:predict"
        bodies = [json.dumps({"instances": [r]}).encode() for r in model["records"]]
        totals = {
            kind: {"requests": 0, "elapsed": 0.0, "cpu": 0.0, "answered": 0, "errors": 0, "p99": []} for kind in servers
        }
        for kind, (process, port, log) in servers.items():
            wait_ready(f"http://127.0.0.1:{port}/v2/models/{NAME}/ready", process, log)
            totals[kind]["answered"] += run_load(port, path, bodies[:50], 1.0)["ok"]  # warm-up
        for _ in range(rounds):
            for kind, (process, port, _) in servers.items():
                cpu_before = group_cpu_seconds(process.pid)
                result = run_load(port, path, bodies, seconds)
                total = totals[kind]
                total["cpu"] += group_cpu_seconds(process.pid) - cpu_before
                total["requests"] += result["requests"]
                total["elapsed"] += result["requests"] / result["rps"]
                total["answered"] += result["ok"]
                total["errors"] += result["errors"]
                total["p99"].append(result["p99_ms"])
    finally:
        for process, _, _ in servers.values():
            stop(process)  # SIGTERM: the capture thread writes what it holds
    import pyarrow.parquet as pq

    out = {}
    for kind, total in totals.items():
        out[kind] = {
            "requests": total["requests"],
            "rps": total["requests"] / total["elapsed"],
            "p99_ms": max(total["p99"]),
            "errors": total["errors"],
            "answered": total["answered"],
            "cpu_us_per_request": total["cpu"] / total["requests"] * 1e6,
        }
    out["captured"]["captured_rows"] = sum(pq.read_metadata(f).num_rows for f in capture.rglob("*.parquet"))
    return out["plain"], out["captured"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small smoke run (5000-row model, 3 s per measurement)")
    parser.add_argument("--seconds", type=float, default=None, help="load duration per measurement")
    parser.add_argument(
        "--connections",
        type=int,
        default=LOGGER_WORKERS * REPLICAS,
        help="the sink load's concurrent connections (default: KServe's 5 logger workers x 8 predictor replicas)",
    )
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    seconds = args.seconds or (3.0 if args.quick else 15.0)
    workdir = Path(tempfile.mkdtemp(prefix="kfp-ct-bench-capture-"))
    try:
        model = train(workdir, 5000 if args.quick else None, 20 if args.quick else 100)
        paced = run_sink(model, workdir, seconds, args.connections, GOAL_EVENTS_S)
        sink = run_sink(model, workdir, seconds, args.connections, None)
        plain, captured = run_servers(model, workdir, seconds, 2 if args.quick else 3)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    cost = 1 - captured["rps"] / plain["rps"]
    cpu_cost = 1 - plain["cpu_us_per_request"] / captured["cpu_us_per_request"]
    capacity = 1e6 / sink["cpu_us_per_event"]
    print(
        f"load average of this machine at the end: {', '.join(f'{v:.1f}' for v in os.getloadavg())} "
        f"on {os.cpu_count()} cores (other work shares them: the CPU figures do not depend on it)"
    )
    sustained = paced["events"] == paced["due"] and set(paced["statuses"]) == {200}
    sink_ok = sustained and paced["p99_ms"] < GOAL_P99_MS and sink["events_s"] >= GOAL_EVENTS_S
    complete = all(run["pairs_captured"] == run["pairs_acknowledged"] for run in (paced, sink))
    print(f"capture sink ({args.connections} connections, {seconds:g} s a run, one row per request/response pair)")
    print(f"  at the goal's rate ({GOAL_EVENTS_S:,.0f} events/s due; latency from each event's due time):")
    print(f"    events acknowledged: {paced['events']:,} of {paced['due']:,} due  ({paced['statuses']})")
    print(f"    CPU time taken by the hypervisor (steal) meanwhile: {paced['steal'] * 100:.1f}%")
    print(
        f"    ack latency: p50 {paced['p50_ms']:.2f} ms  p99 {paced['p99_ms']:.2f} ms  (goal p99 < {GOAL_P99_MS:g} ms)"
    )
    print("  at its capacity (each connection sends as soon as it is answered):")
    print(f"    events acknowledged: {sink['events']:,}  ({sink['statuses']})")
    print(f"    events/s: {sink['events_s']:,.0f}  (goal >= {GOAL_EVENTS_S:,.0f})")
    print(f"    CPU time taken by the hypervisor (steal) meanwhile: {sink['steal'] * 100:.1f}%")
    print(f"    ack latency: p50 {sink['p50_ms']:.2f} ms  p99 {sink['p99_ms']:.2f} ms  (at saturation)")
    print(
        f"    sink CPU per event: {sink['cpu_us_per_event']:.0f} us = {capacity:,.0f} events/s per CPU core "
        f"(goal >= {GOAL_EVENTS_S:,.0f}): {'met' if capacity >= GOAL_EVENTS_S else 'NOT met'}"
    )
    print(
        "  acknowledged pairs captured as rows: "
        + ", ".join(f"{run['pairs_captured']:,}/{run['pairs_acknowledged']:,}" for run in (paced, sink))
    )
    print(f"  sink goal: {'met' if sink_ok and complete else 'NOT met'}")
    print(f"kfp-ct serve, loaded in turn, {seconds:g} s each, {2 if args.quick else 3} rounds")
    print(f"  without capture: {plain['rps']:,.0f} req/s  p99 {plain['p99_ms']:.2f} ms  errors {plain['errors']}")
    print(
        f"  with --capture:  {captured['rps']:,.0f} req/s  p99 {captured['p99_ms']:.2f} ms  errors "
        f"{captured['errors']}  rows captured {captured['captured_rows']:,} of {captured['answered']:,} answered"
    )
    print(
        f"  ratio with/without: {captured['rps'] / plain['rps']:.3f}  cost {cost * 100:.1f}% (goal <= 10%): "
        f"{'met' if cost <= GOAL_COST else 'NOT met'}"
    )
    print(
        f"  server CPU per request: {plain['cpu_us_per_request']:.0f} us without, "
        f"{captured['cpu_us_per_request']:.0f} us with capture: cost {cpu_cost * 100:.1f}% of requests/s per core "
        f"(goal <= 10%): {'met' if cpu_cost <= GOAL_COST else 'NOT met'}"
    )
    if args.json:
        figures = {"paced": paced, "sink": sink, "plain": plain, "captured": captured}
        Path(args.json).write_text(json.dumps(figures, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
