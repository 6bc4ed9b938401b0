"""One drain scenario the process, binary and image suites all run.

A drain test is only honest if the clients are ones that would notice a broken
drain: urllib asks for `Connection: close` itself (and waitress echoes it), so it
cannot see whether the server says so on its own. These clients are http.client
connections that never ask to close (HTTP/1.1 keep-alive):

- `inflight`: a slow request (/whoami?wait=2s) the server has read before the signal;
  its answer must say `Connection: close`;
- `idle`: a keep-alive connection that finished a request before the signal and
  then sits idle; the server must close it within its idle grace (0.5 s), long
  before the in-flight request ends;
- `late`: connected before the signal, its request (/readyz) sent after the server
  began draining, while `inflight` is still running: 503 `draining`, with
  `Connection: close`.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import pathlib
import socket
import threading
import time
from collections.abc import Callable

from tests.conftest import wait_until

WAIT_S = 2.0           # how long the in-flight request takes
IDLE_CLOSE_S = 1.5     # the server's idle grace (0.5 s) plus its polling, on a busy machine


class KeepAlive:
    """An HTTP/1.1 client connection that never asks the server to close it."""

    def __init__(self, host: str, port: int, timeout: float = 30.0):
        self.connection = http.client.HTTPConnection(host, port, timeout=timeout)
        self.connection.connect()

    @property
    def local_port(self) -> int:
        return self.connection.sock.getsockname()[1]

    def send(self, path: str) -> None:
        self.connection.request("GET", path)  # no Connection header: keep-alive

    def receive(self) -> tuple[int, http.client.HTTPMessage, bytes]:
        response = self.connection.getresponse()
        return response.status, response.headers, response.read()

    def get(self, path: str) -> tuple[int, http.client.HTTPMessage, bytes]:
        self.send(path)
        return self.receive()

    def closed_at(self, timeout: float) -> float | None:
        """time.monotonic() when the server closed this connection (EOF), or None."""
        sock = self.connection.sock
        sock.settimeout(timeout)
        try:
            data = sock.recv(1)
        except TimeoutError:
            return None
        except OSError:
            return time.monotonic()  # reset: closed too
        return time.monotonic() if data == b"" else None

    def close(self) -> None:
        self.connection.close()


def _sockets(netns_pid: str):
    """(local port, remote port, state, receive queue) of every TCP socket, IPv4 and
    IPv6, in the network namespace of netns_pid (/proc/<pid>/net/tcp and tcp6)."""
    for table in ("tcp", "tcp6"):
        try:
            rows = pathlib.Path(f"/proc/{netns_pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            yield (int(fields[1].rsplit(":", 1)[1], 16), int(fields[2].rsplit(":", 1)[1], 16),
                   fields[3], int(fields[4].split(":")[1], 16))


def listening(port: int, netns_pid: str = "self") -> bool:
    """True while something listens on port in the network namespace of netns_pid."""
    return any(local == port and state == "0A" for local, _, state, _ in _sockets(netns_pid))


def request_read(server_port: int, client_port: int, netns_pid: str = "self") -> bool:
    """True once the server side of the connection from client_port has an empty
    receive queue (its request taken off the socket: in flight, not queued)."""
    for local, remote, state, queued in _sockets(netns_pid):
        if local == server_port and remote == client_port and state == "01":
            return queued == 0
    return False


def refused(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=0.5).close()
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    return False


@dataclasses.dataclass
class DrainOutcome:
    inflight: tuple            # (status, Connection header, waited_seconds)
    late: tuple                # (status, Connection header, body as JSON)
    late_while_inflight: bool  # the late answer came before the in-flight one
    idle_closed_after_s: float | None  # from the signal to the idle connection's EOF
    idle_closed_first: bool    # before the in-flight answer arrived
    signalled_at: float


def run_drain(host: str, port: int, send_signal: Callable[[], None],
              read_by_server: Callable[[KeepAlive], bool],
              draining: Callable[[], bool]) -> DrainOutcome:
    """Open the three connections, signal, and record what each client saw.

    read_by_server(inflight): the server has read the in-flight request.
    draining(): evidence the server has begun draining (its listener is gone).
    """
    idle = KeepAlive(host, port)
    status, headers, _ = idle.get("/healthz")
    assert status == 200 and headers.get("Connection") is None, headers
    inflight = KeepAlive(host, port)
    inflight.send(f"/whoami?wait={WAIT_S:g}s")
    wait_until(lambda: read_by_server(inflight), 10, interval=0.01,
               what="the in-flight request to be read by the server")
    late = KeepAlive(host, port)  # connected (and accepted or queued), nothing sent yet

    seen: dict = {}

    def answer():
        try:
            seen["inflight"] = inflight.receive()
        except (OSError, http.client.HTTPException) as error:
            seen["inflight"] = error
        seen["inflight_at"] = time.monotonic()

    def idle_watch():
        seen["idle_closed_at"] = idle.closed_at(timeout=20)

    threads = [threading.Thread(target=answer), threading.Thread(target=idle_watch)]
    for thread in threads:
        thread.start()
    signalled = time.monotonic()
    send_signal()
    try:
        wait_until(draining, 5, interval=0.005, what="the server to begin draining")
        late.send("/readyz")
        late_answer = late.receive()
        late_at = time.monotonic()
    finally:
        for thread in threads:
            thread.join(30)
        for client in (idle, inflight, late):
            client.close()

    def shape(answer):
        if isinstance(answer, Exception):
            return "no answer", repr(answer), None
        status, headers, body = answer
        return status, headers.get("Connection"), json.loads(body)

    idle_at = seen.get("idle_closed_at")
    return DrainOutcome(
        inflight=shape(seen["inflight"])[:2] + (
            (shape(seen["inflight"])[2] or {}).get("waited_seconds"),),
        late=shape(late_answer),
        late_while_inflight=late_at < seen["inflight_at"],
        idle_closed_after_s=None if idle_at is None else idle_at - signalled,
        idle_closed_first=idle_at is not None and idle_at < seen["inflight_at"],
        signalled_at=signalled,
    )


def assert_drained(outcome: DrainOutcome) -> None:
    """What every drain must show, whatever ran the server."""
    assert outcome.inflight == (200, "close", WAIT_S), \
        f"in-flight keep-alive request: (status, Connection, waited) {outcome}"
    assert outcome.late == (503, "close", {"status": "draining"}), \
        f"/readyz sent after the signal: {outcome}"
    assert outcome.late_while_inflight, f"/readyz answered only after the in-flight request: {outcome}"
    assert outcome.idle_closed_after_s is not None, "the idle keep-alive connection was never closed"
    assert outcome.idle_closed_after_s < IDLE_CLOSE_S, f"idle connection closed late: {outcome}"
    assert outcome.idle_closed_first, f"idle connection outlived the in-flight request: {outcome}"
