"""`hello healthcheck`: the curl-less probe a scratch image's HEALTHCHECK runs.

Deliberately light: http.client only, no Flask, so a probe every few seconds
costs little. Returns (ok, one-line reason).

The timeout is a deadline for the whole check (connect, send, status line,
headers and body), not for each read: a server that drips its answer one byte
at a time would otherwise hold the probe for as long as it likes.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
import urllib.parse

MAX_BODY_BYTES = 64 * 1024  # /healthz answers a few bytes; never read more than this


def parse_url(url: str) -> urllib.parse.SplitResult:
    """The parts of an http:// URL; ValueError (a usage error) for anything else."""
    if any(ord(char) < 0x21 or ord(char) == 0x7F for char in url):
        raise ValueError(f"{url!r} has spaces or control characters")  # urlsplit drops some
    parts = urllib.parse.urlsplit(url)
    if parts.username is not None or parts.password is not None:
        # a probe needs no credentials, and they would be printed in its one line
        raise ValueError("a URL with user:password@ is not allowed")
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not 0-65535
    except ValueError:
        raise ValueError(f"{url!r} has no valid port") from None
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"{url!r} is not an http:// URL")
    try:
        parts.hostname.encode("idna")  # what the resolver will do: 'a..b' fails here
    except UnicodeError:
        raise ValueError(f"{url!r} has no valid host name") from None
    return parts


def local_url(host: str, port: int) -> str:
    """Where the local server answers: its own address, or loopback for a wildcard."""
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return f"http://[{host}]:{port}/healthz" if ":" in host else f"http://{host}:{port}/healthz"


class _DeadlineSocket(socket.socket):
    """A socket whose every send and receive may only use the time left before
    a deadline, so the sum of them is bounded too. (http.client reads through
    makefile(), which calls recv_into.)"""

    deadline = 0.0

    def _left(self) -> None:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError  # http.client reports it as a timeout
        self.settimeout(left)

    def recv_into(self, *args, **kwargs):
        self._left()
        return super().recv_into(*args, **kwargs)

    def sendall(self, *args, **kwargs):
        self._left()
        return super().sendall(*args, **kwargs)


class _DeadlineConnection(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, deadline: float):
        super().__init__(host, port, timeout=max(deadline - time.monotonic(), 0.001))
        self.deadline = deadline

    def connect(self) -> None:
        super().connect()
        plain = self.sock
        self.sock = _DeadlineSocket(fileno=plain.detach())  # family, type: from the fd
        self.sock.deadline = self.deadline


def probe(url: str, timeout: float, commit: str | None = None) -> tuple[bool, str]:
    """GET url, expecting 200; with commit, then GET /version on the same server and
    expect that commit: the answer of the build a deploy started, not another's.
    The timeout bounds both requests together."""
    deadline = time.monotonic() + timeout
    ok, reason, _ = _get(url, timeout, deadline)
    if not ok or commit is None:
        return ok, reason
    version_url = urllib.parse.urlunsplit(parse_url(url)._replace(path="/version", query=""))
    ok, reason, body = _get(version_url, timeout, deadline)
    if not ok:
        return ok, reason
    try:
        answered = json.loads(body)["commit"]
    except (ValueError, KeyError, TypeError):
        return False, f"{version_url}: not a hello /version answer"
    if not isinstance(answered, str) or not answered.startswith(commit):
        return False, f"{version_url}: commit {str(answered)[:40]!r}, expected {commit}"
    return True, f"{url}: 200, commit {commit}"


def _get(url: str, timeout: float, deadline: float) -> tuple[bool, str, bytes]:
    parts = parse_url(url)
    connection = _DeadlineConnection(parts.hostname, parts.port or 80, deadline=deadline)
    try:
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        connection.request("GET", target, headers={"User-Agent": "hello-healthcheck"})
        response = connection.getresponse()
        status = response.status
        body = response.read(MAX_BODY_BYTES)
        if response.length and len(body) < MAX_BODY_BYTES:  # promised more than arrived
            raise http.client.IncompleteRead(body, response.length)
    except TimeoutError:
        return False, f"{url}: no complete answer within {timeout:g}s", b""
    except OSError as error:
        return False, f"{url}: {error.strerror or error}", b""
    except http.client.HTTPException as error:
        return False, f"{url}: bad HTTP answer ({type(error).__name__})", b""
    finally:
        connection.close()
    if status != 200:
        return False, f"{url}: status {status}, expected 200", body
    return True, f"{url}: 200", body
