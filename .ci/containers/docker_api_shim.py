"""A Docker-API pass-through in front of `podman system service` (podman 4.3, Debian bookworm) that fixes the two
ways in which podman's answers about an auto-removed container differ from Docker's, and nothing else.

kfp.local.DockerRunner runs each task with `auto_remove=True`, streams its logs, then calls `wait`:

1. When the container is already gone, podman 4.3 answers some calls (`GET /containers/{id}/json`, which docker-py
   makes before streaming logs) with HTTP 500 "... does not exist in database: no such container". docker-py raises
   that as APIError, not NotFound, so the task fails although it ran. The shim turns such a 500 into Docker's 404.
2. Podman removes an auto-removed container within milliseconds of its exit, so `POST /containers/{id}/wait` almost
   always answers 404, and DockerRunner then *assumes success*: a task that exited 1 would pass. Docker answers
   `wait` with the exit code of a container that it auto-removes (the `removed` condition that `docker run --rm`
   uses). The shim follows podman's event stream, keeps the exit code of each container that died, and answers a
   `wait` that podman answers "no such container" with that exit code, as Docker would.

Every other byte passes through unchanged: requests, bodies, streamed logs, hijacked (upgraded) attach streams and
every other status code. Each request goes upstream with `Connection: close`, so one connection carries one exchange
and the response is piped to its end without parsing HTTP framing; on a local unix socket that costs nothing.
Podman 5 (Debian trixie) fixed both upstream (podman PRs #18912 and #24275); bookworm-backports has no podman.

usage: python docker_api_shim.py LISTEN_SOCKET PODMAN_SOCKET
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import re
import sys
import time

HEAD_END = b"\r\n\r\n"
MAX_HEAD = 1 << 16
NO_SUCH_CONTAINER = re.compile(rb"no such container", re.IGNORECASE)
WAIT = re.compile(rb"^POST (?:/v[0-9.]+)?/containers/([^/?\s]+)/wait[?\s]")
EVENTS = b"/v1.41/events?filters=%7B%22type%22%3A%5B%22container%22%5D%7D"  # {"type":["container"]}
EXIT_WAIT_S = 5.0  # how long a `wait` on a vanished container waits for its `die` event
KEEP = 4096  # exit codes kept (the most recent)


class ExitCodes:
    """Exit codes of the containers that died, by full id and by name, from podman's event stream."""

    def __init__(self) -> None:
        self.codes: collections.OrderedDict[bytes, int] = collections.OrderedDict()
        self.changed = asyncio.Condition()

    async def add(self, ids: list[bytes], code: int) -> None:
        async with self.changed:
            for key in ids:
                self.codes[key] = code
                self.codes.move_to_end(key)
            while len(self.codes) > KEEP:
                self.codes.popitem(last=False)
            self.changed.notify_all()

    def get(self, ref: bytes) -> int | None:
        if ref in self.codes:
            return self.codes[ref]
        matches = {code for key, code in self.codes.items() if len(ref) >= 12 and key.startswith(ref)}
        return matches.pop() if len(matches) == 1 else None

    async def wait_for(self, ref: bytes, timeout: float) -> int | None:
        deadline = time.monotonic() + timeout
        async with self.changed:
            while (code := self.get(ref)) is None and (left := deadline - time.monotonic()) > 0:
                try:
                    await asyncio.wait_for(self.changed.wait(), left)
                except TimeoutError:
                    break
            return code


async def follow_events(upstream: str, exits: ExitCodes, ready: asyncio.Event) -> None:
    """Reads podman's `die` events for ever (reconnecting), recording each container's exit code."""
    while True:
        try:
            reader, writer = await asyncio.open_unix_connection(upstream, limit=MAX_HEAD)
            writer.write(b"GET " + EVENTS + b" HTTP/1.1\r\nHost: podman\r\n\r\n")
            await writer.drain()
            head = await reader.readuntil(HEAD_END)
            if b" 200 " not in head.split(b"\r\n", 1)[0]:
                raise ConnectionError(head.split(b"\r\n", 1)[0].decode(errors="replace"))
            chunked = b"transfer-encoding: chunked" in head.lower()
            ready.set()
            buffer = b""
            while True:
                if chunked:
                    size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                    if size == 0:
                        break
                    data = await reader.readexactly(size + 2)
                    buffer += data[:-2]
                else:
                    data = await reader.read(1 << 16)
                    if not data:
                        break
                    buffer += data
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    await record(line, exits)
        except (OSError, ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as err:
            print(f"docker_api_shim: event stream: {err!r}; reconnecting", file=sys.stderr, flush=True)
        await asyncio.sleep(0.5)


async def record(line: bytes, exits: ExitCodes) -> None:
    try:
        event = json.loads(line)
        if event.get("Action") not in ("die", "died"):
            return
        actor = event["Actor"]
        code = int(actor["Attributes"].get("exitCode", actor["Attributes"]["containerExitCode"]))
    except (ValueError, KeyError, TypeError):
        return
    ids = [actor["ID"].encode()] + ([actor["Attributes"]["name"].encode()] if actor["Attributes"].get("name") else [])
    await exits.add(ids, code)


async def read_head(reader: asyncio.StreamReader) -> bytes:
    """The header block of one HTTP message, up to and including the blank line; less at EOF."""
    try:
        return await reader.readuntil(HEAD_END)
    except asyncio.IncompleteReadError as err:
        return err.partial
    except asyncio.LimitOverrunError:
        raise ValueError("HTTP header block over 64 KiB") from None


def close_after(head: bytes) -> bytes:
    """The request head with `Connection: close` in place of any Connection header (an upgrade keeps its own)."""
    lines = head[: -len(HEAD_END)].split(b"\r\n")
    kept = [line for line in lines[1:] if not line.lower().startswith(b"connection:")]
    upgrade = any(line.lower().startswith(b"upgrade:") for line in kept)
    return b"\r\n".join([lines[0], *kept, b"Connection: Upgrade" if upgrade else b"Connection: close"]) + HEAD_END


def status_of(head: bytes) -> bytes:
    return head.split(b"\r\n", 1)[0].split(b" ", 2)[1] if head.startswith(b"HTTP/") else b""


def replace_status(head: bytes, status: bytes, body: bytes, content_type: bytes | None = None) -> bytes:
    """`head` with a new status line and a Content-Length for `body` (and a new Content-Type if given)."""
    lines = head[: -len(HEAD_END)].split(b"\r\n")
    version = lines[0].split(b" ", 1)[0]
    drop = (b"content-length:", b"transfer-encoding:") + ((b"content-type:",) if content_type else ())
    kept = [line for line in lines[1:] if not line.lower().startswith(drop)]
    extra = [b"Content-Type: " + content_type] if content_type else []
    return b"\r\n".join([version + b" " + status, *kept, *extra, b"Content-Length: %d" % len(body)]) + HEAD_END


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(1 << 16):
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (OSError, RuntimeError, asyncio.CancelledError):
        pass


def dechunk(body: bytes) -> bytes:
    """The payload of a complete chunked body (error bodies are small and read whole)."""
    out, rest = b"", body
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out, rest = out + rest[:size], rest[size + 2 :]
    return out


async def handle(client_r, client_w, upstream: str, exits: ExitCodes) -> None:
    up_w = None
    try:
        head = await read_head(client_r)
        if not head.endswith(HEAD_END):
            return
        up_r, up_w = await asyncio.open_unix_connection(upstream, limit=MAX_HEAD)
        up_w.write(close_after(head))
        to_upstream = asyncio.ensure_future(pipe(client_r, up_w))  # the request body, or a hijacked stream

        response = await read_head(up_r)
        if status_of(response) in (b"404", b"500"):
            body = await up_r.read()  # one exchange per connection: the server closes after this body
            payload = dechunk(body) if b"transfer-encoding: chunked" in response.lower() else body
            wait = WAIT.match(head)
            code = (
                await exits.wait_for(wait.group(1), EXIT_WAIT_S) if wait and NO_SUCH_CONTAINER.search(payload) else None
            )
            if code is not None:  # 2.: the exit code of the container that podman already removed
                body = json.dumps({"StatusCode": code, "Error": None}).encode() + b"\n"
                response = replace_status(response, b"200 OK", body, b"application/json")
            elif status_of(response) == b"500" and NO_SUCH_CONTAINER.search(payload):  # 1.
                response = replace_status(response, b"404 Not Found", payload)
                body = payload
            client_w.write(response + body)
        else:
            client_w.write(response)
            await client_w.drain()
            await pipe(up_r, client_w)
        await client_w.drain()
        to_upstream.cancel()
    except (OSError, ValueError, asyncio.IncompleteReadError):
        pass
    finally:
        for writer in (client_w, up_w):
            if writer is not None:
                writer.close()


async def serve(listen: str, upstream: str) -> None:
    exits = ExitCodes()
    ready = asyncio.Event()
    events = asyncio.ensure_future(follow_events(upstream, exits, ready))
    await asyncio.wait_for(ready.wait(), 60)  # no container may die unseen once clients can connect
    if os.path.exists(listen):
        os.remove(listen)
    server = await asyncio.start_unix_server(lambda r, w: handle(r, w, upstream, exits), path=listen, limit=MAX_HEAD)
    os.chmod(listen, 0o660)
    async with server:
        await asyncio.gather(server.serve_forever(), events)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__.rsplit("usage: ", 1)[1])
    asyncio.run(serve(sys.argv[1], sys.argv[2]))
