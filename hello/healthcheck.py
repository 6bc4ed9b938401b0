"""`hello healthcheck`: the curl-less probe a scratch image's HEALTHCHECK runs.

Deliberately light: a container runtime starts it every few seconds, for as long as
the container lives, so it speaks the few lines of HTTP/1.1 it needs over a socket
(http.client alone brought email.parser and ssl: 16 ms of imports per probe) and
imports nothing else it can do without. Returns (ok, one-line reason).

The timeout is a deadline for the whole check (connect, send, status line,
headers and body), not for each read: a server that drips its answer one byte
at a time would otherwise hold the probe for as long as it likes.
"""

from __future__ import annotations

import socket
import time

MAX_BODY_BYTES = 64 * 1024  # /healthz answers a few bytes; never read more than this
MAX_HEAD_BYTES = 64 * 1024  # the status line and headers
_HEX = frozenset(b"0123456789abcdefABCDEF")


class BadAnswer(Exception):
    """Not an HTTP answer the probe can judge; str() names what (BadStatusLine, ...)."""


class _Deadline:
    """A socket whose every operation may only use the time left before a deadline,
    so the sum of them is bounded too."""

    def __init__(self, host: str, port: int, deadline: float):
        self.deadline = deadline
        # bytes: a str host is encoded with the idna codec, whose import alone costs
        # more than the rest of a probe (encodings.idna, stringprep, unicodedata)
        address = host.encode("ascii") if host.isascii() else host
        self.sock = self._connect(address, port)

    def _connect(self, address, port: int) -> socket.socket:
        """The first of the host's addresses that accepts, each tried in the time left
        (socket.create_connection gives every address the whole timeout)."""
        error: OSError = OSError(f"no address for {address!r}")
        for family, kind, proto, _, where in socket.getaddrinfo(address, port, type=socket.SOCK_STREAM):
            sock = socket.socket(family, kind, proto)
            try:
                sock.settimeout(self._left())
                sock.connect(where)
                return sock
            except TimeoutError:
                sock.close()
                raise
            except OSError as failed:
                sock.close()
                error = failed
        raise error

    def _left(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        return left

    def send(self, data: bytes) -> None:
        self.sock.settimeout(self._left())
        self.sock.sendall(data)

    def recv(self) -> bytes:
        self.sock.settimeout(self._left())
        return self.sock.recv(65536)

    def close(self) -> None:
        self.sock.close()


def parse_url(url: str):
    """The parts of an http:// URL (a urllib.parse.SplitResult); ValueError (a usage
    error) for anything else."""
    import urllib.parse  # only a --url needs it

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
    if parts.port == 0:
        raise ValueError(f"{url!r} has no valid port")
    if not (parts.path + parts.query).isascii():
        raise ValueError(f"{url!r} has characters outside ASCII in its path (percent-encode them)")
    return parts


def _local(host: str, port: int) -> tuple[str, int, str]:
    """(address, port, host:port) of the local server: loopback for a wildcard."""
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return host, port, f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def local_url(host: str, port: int) -> str:
    """Where the local server answers: its own address, or loopback for a wildcard."""
    return f"http://{_local(host, port)[2]}/healthz"


def probe(url: str, timeout: float, commit: str | None = None) -> tuple[bool, str]:
    """GET url, expecting 200; with commit, then GET /version on the same server and
    expect that commit: the answer of the build a deploy started, not another's.
    The timeout bounds both requests together."""
    parts = parse_url(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host = parts.netloc  # what the Host header says: ASCII, as an IDN resolves (xn--...)
    if not host.isascii():
        host = parts.hostname.encode("idna").decode("ascii") + (f":{parts.port}" if parts.port else "")
    return _probe((parts.hostname, parts.port or 80, host), target, url, timeout, commit)


def probe_local(host: str, port: int, timeout: float, commit: str | None = None) -> tuple[bool, str]:
    """probe() of the local server's /healthz, with no URL to parse."""
    server = _local(host, port)
    return _probe(server, "/healthz", f"http://{server[2]}/healthz", timeout, commit)


def _probe(server: tuple[str, int, str], target: str, url: str, timeout: float,
           commit: str | None) -> tuple[bool, str]:
    deadline = time.monotonic() + timeout
    ok, reason, _ = _get(server, target, url, timeout, deadline)
    if not ok or commit is None:
        return ok, reason
    version_url = f"http://{server[2]}/version"
    ok, reason, body = _get(server, "/version", version_url, timeout, deadline)
    if not ok:
        return ok, reason
    import json  # only --commit needs it

    try:
        answered = json.loads(body)["commit"]
    except (ValueError, KeyError, TypeError, RecursionError):
        return False, f"{version_url}: not a hello /version answer"
    if not isinstance(answered, str) or not answered.startswith(commit):
        return False, f"{version_url}: commit {str(answered)[:40]!r}, expected {commit}"
    return True, f"{url}: 200, commit {commit}"


def _get(server: tuple[str, int, str], target: str, url: str, timeout: float,
         deadline: float) -> tuple[bool, str, bytes]:
    """One GET of target on server (address, port, Host header); url names it in the reason."""
    host, port, netloc = server
    connection = None
    try:
        connection = _Deadline(host, port, deadline)
        connection.send(f"GET {target} HTTP/1.1\r\nHost: {netloc}\r\n"
                        "User-Agent: hello-healthcheck\r\nAccept-Encoding: identity\r\n"
                        "Connection: close\r\n\r\n".encode("ascii"))
        status, body = _read_answer(connection)
    except TimeoutError:
        return False, f"{url}: no complete answer within {timeout:g}s", b""
    except BadAnswer as error:
        return False, f"{url}: bad HTTP answer ({error})", b""
    except OSError as error:
        return False, f"{url}: {error.strerror or error}", b""
    finally:
        if connection is not None:
            connection.close()
    if status != 200:
        return False, f"{url}: status {status}, expected 200", body
    return True, f"{url}: 200", body


class _Reader:
    """The answer's bytes, read as they are needed, within the connection's deadline."""

    def __init__(self, connection: _Deadline):
        self.connection = connection
        self.buffer = bytearray()
        self.received = 0

    def _more(self) -> bool:
        chunk = self.connection.recv()
        self.buffer += chunk
        self.received += len(chunk)
        return bool(chunk)

    def line(self) -> bytes | None:
        """One line without its end (CRLF, or a bare LF as http.client took it); None
        when the answer ends first."""
        while (end := self.buffer.find(b"\n")) < 0:
            if len(self.buffer) > MAX_HEAD_BYTES:
                raise BadAnswer("LineTooLong")
            if not self._more():
                return None
        line = bytes(self.buffer[:end])
        del self.buffer[:end + 1]
        return line[:-1] if line.endswith(b"\r") else line

    def exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            if not self._more():
                raise BadAnswer("IncompleteRead")
        return self.take(size)

    def upto(self, size: int) -> bytes:
        while len(self.buffer) < size and self._more():
            pass
        return self.take(size)

    def take(self, size: int) -> bytes:
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data


def _read_answer(connection: _Deadline) -> tuple[int, bytes]:
    """(status, up to MAX_BODY_BYTES of the body) of the final answer (past any 1xx)."""
    reader = _Reader(connection)
    status, fields = _read_head(reader)
    while 100 <= status < 200:  # an interim answer (100 Continue, 103 Early Hints)
        status, fields = _read_head(reader)
    codings = [c.strip().lower() for c in b",".join(fields.get(b"transfer-encoding", [])).split(b",")]
    lengths = set(fields.get(b"content-length", []))
    if codings[-1] == b"chunked":
        body = _dechunk(reader)
    elif lengths:
        (length,) = lengths if len(lengths) == 1 else (b"",)
        if not (length.isdigit() and len(length) <= 18):
            raise BadAnswer("InvalidContentLength")
        body = reader.exactly(min(int(length), MAX_BODY_BYTES))
    else:
        body = reader.upto(MAX_BODY_BYTES)
    return status, body


def _read_head(reader: _Reader) -> tuple[int, dict[bytes, list[bytes]]]:
    """The status and header fields (name -> its values) of one answer's head."""
    first = reader.line()
    if first is None:
        if not reader.received:
            raise ConnectionResetError("Remote end closed connection without response")
        raise BadAnswer("IncompleteRead" if _status(bytes(reader.buffer)) else "BadStatusLine")
    status = _status(first)
    if status is None:
        raise BadAnswer("BadStatusLine")
    fields: dict[bytes, list[bytes]] = {}
    size = len(first)
    while line := reader.line():
        size += len(line)
        if size > MAX_HEAD_BYTES:
            raise BadAnswer("LineTooLong")
        name, colon, value = line.partition(b":")
        if not colon:
            raise BadAnswer("HeaderParsingError")
        fields.setdefault(name.strip().lower(), []).append(value.strip())
    if line is None:
        raise BadAnswer("IncompleteRead")
    return status, fields


def _status(line: bytes) -> int | None:
    """The status of `HTTP/1.x NNN reason`, or None when that is not what it is."""
    code = line[9:12]
    if line[:9] not in (b"HTTP/1.1 ", b"HTTP/1.0 ") or len(code) != 3 or not code.isdigit() \
            or line[12:13] not in (b"", b" ", b"\r", b"\n"):
        return None
    return int(code)


def _dechunk(reader: _Reader) -> bytes:
    """A chunked body, decoded until its end or MAX_BODY_BYTES of it: a chunk larger
    than what is left to read is read only that far."""
    body = bytearray()
    while len(body) < MAX_BODY_BYTES:
        size_line = reader.line()
        if size_line is None:
            raise BadAnswer("IncompleteRead")
        size_text = size_line.split(b";")[0].strip()
        if not 1 <= len(size_text) <= 8 or not _HEX.issuperset(size_text):
            raise BadAnswer("InvalidChunkLength")
        size = int(size_text, 16)
        if size == 0:
            break
        wanted = min(size, MAX_BODY_BYTES - len(body))
        body += reader.exactly(wanted)
        if wanted < size:
            break
        if reader.line() is None:  # the chunk's own line end
            raise BadAnswer("IncompleteRead")
    return bytes(body)
