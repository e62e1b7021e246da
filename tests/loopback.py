"""Servers on loopback for the tests: a free port, start a server process and wait until it answers, stop it.

A plain module (not a conftest): test files import it by name, `from loopback import free_port`, wherever they are.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_http(url: str, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


def start_server(args: list[str], health_url: str, log: Path, timeout: float = 120, env: dict | None = None):
    with open(log, "wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        wait_for_http(health_url, process, timeout)
    except Exception:
        process.kill()
        raise RuntimeError(f"{args[0]} failed to start; its log:\n{log.read_text()[-4000:]}") from None
    return process


def stop_server(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


class SlowServer:
    """A loopback HTTP server that answers each connection with `head` and then drips `body` a byte at a time,
    `interval` seconds apart (`head=None`: it never answers)."""

    def __init__(self, head: bytes | None, body: bytes = b"", interval: float = 0.2):
        self.head, self.body, self.interval = head, body, interval
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/data.csv"

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            if self.head is None:
                self.stop.wait()
                return
            for i in range(len(self.head + self.body)):
                if self.stop.wait(self.interval if i >= len(self.head) else 0):
                    return
                try:
                    conn.sendall((self.head + self.body)[i : i + 1])
                except OSError:
                    return

    def close(self) -> None:
        self.stop.set()
        self.sock.close()
