"""The local backend's worker processes: each runs trials sent to it, forwarding the trial's output lines to the
search loop and stopping a trial the loop has pruned."""

from __future__ import annotations

import contextlib
import io
import multiprocessing
import os
import queue
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from kfp_ct.components.tune.results import EARLY_STOPPED, FAILED, SUCCEEDED


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


class Workers:
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
        from kfp_ct.components._common.training import cpu_threads

        self.threads = max(1, cpu_threads() // count)  # the pod's CPUs, shared by the workers
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
