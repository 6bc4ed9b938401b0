"""Raw-socket HTTP for the hostile-client tests: what a real client library would refuse to send."""

from __future__ import annotations

import re
import socket
import time

STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3}) ")


def exchange(port: int, payload: bytes, timeout: float = 5.0) -> tuple[bytes, bool]:
    """Send payload, read until the server closes or timeout: (all bytes, closed by server)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(payload)
        chunks, deadline = [], time.monotonic() + timeout
        while time.monotonic() < deadline:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                return b"".join(chunks), False
            except ConnectionResetError:
                return b"".join(chunks), True
            if not chunk:
                return b"".join(chunks), True
            chunks.append(chunk)
        return b"".join(chunks), False


def statuses(reply: bytes) -> list[int]:
    return [int(code) for code in STATUS_LINE.findall(reply)]


def seconds_until_closed(sock: socket.socket, limit: float) -> float | None:
    """How long until the server closes sock (reading whatever it sends); None if it never does."""
    started = time.monotonic()
    sock.settimeout(0.05)
    while time.monotonic() - started < limit:
        try:
            if sock.recv(65536) == b"":
                return time.monotonic() - started
        except TimeoutError:
            continue
        except ConnectionResetError:
            return time.monotonic() - started
    return None


def timed_get(port: int, path: str, timeout: float) -> float | None:
    """Seconds for a whole `GET path` on a fresh connection; None if it failed or was not 200."""
    started = time.monotonic()
    try:
        reply, closed = exchange(port, f"GET {path} HTTP/1.1\r\nHost: probe\r\n"
                                 "Connection: close\r\n\r\n".encode(), timeout=timeout)
    except OSError:
        return None
    if not closed or statuses(reply)[:1] != [200]:
        return None
    return time.monotonic() - started


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
