"""`hello healthcheck`'s verdict against small loopback stubs that answer badly.

Each stub is a real TCP server on 127.0.0.1 that reads the probe's request and then
answers one way (a status, garbage, nothing, or a 200 dripped a byte at a time).
The probe is the real CLI in a child process: exit 0 only for a 200, else exit 1
with one line. The stub times how long the probe kept the connection after sending
its request: never longer than --timeout, whatever the interpreter's start-up costs.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import socket
import subprocess
import sys
import threading
import time

import pytest

from hello import healthcheck
from tests.conftest import ROOT, child_env, free_port, full_listen_backlog, wait_until

TIMEOUT_S = 1.0
# a probe gives up this soon after its deadline (measured by the stub, start-up excluded)
LATE_S = 0.3
# python -m hello's start-up and exit on a busy 2-core machine (also under mutmut)
START_S = 10.0


def _answer(status: str, body: bytes = b'{"status": "ok"}\n') -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nLocation: /elsewhere\r\n\r\n").encode() + body


ANSWERS = {
    "200": _answer("200 OK"),
    "500": _answer("500 Internal Server Error"),
    "503": _answer("503 Service Unavailable"),
    "302": _answer("302 Found"),
    "404": _answer("404 Not Found"),
    "garbage": b"\x16\x03\x01 this is not HTTP at all\r\n\r\n",
    "empty": b"",
    "200 without a body": _answer("200 OK")[:-5],  # promises more than it sends, then closes
    "200 with a large body": _answer("200 OK", b"x" * 200_000),  # read in part, still healthy
}


class Stub:
    """A one-port TCP server: reads the request head, then behaves as told."""

    def __init__(self, behaviour: str):
        self.behaviour = behaviour
        # "full": a listener that never accepts, its accept queue already full, so the
        # kernel drops the probe's SYN and connect() itself hangs
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=0)
        self.fillers: list[socket.socket] = []
        self.port = self.listener.getsockname()[1]
        self.requests: list[bytes] = []
        self.held_s: float | None = None  # request received -> the probe hung up
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        if behaviour == "full":
            self._fill_the_accept_queue()
        else:
            self.thread.start()

    def _fill_the_accept_queue(self) -> None:
        for _ in range(8):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", self.port))
            self.fillers.append(filler)
        time.sleep(0.2)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/healthz"

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(10)
            head = b""
            try:
                while b"\r\n\r\n" not in head:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    head += chunk
                self.requests.append(head)
                received = time.monotonic()
                if self.behaviour == "hang":
                    conn.settimeout(30)
                    while conn.recv(1):  # b"" once the probe hangs up
                        pass
                    self.held_s = time.monotonic() - received
                elif self.behaviour == "drip":
                    # a 200, one byte every 50 ms: each read is quick, the whole is 8 s
                    for byte in _answer("200 OK"):
                        if self.stopping.wait(0.05):
                            return
                        conn.sendall(bytes([byte]))
                else:
                    conn.sendall(ANSWERS[self.behaviour])
            except OSError:  # the probe hung up (a drip's send fails)
                if self.behaviour == "drip":
                    self.held_s = time.monotonic() - received

    def close(self) -> None:
        self.stopping.set()
        if self.thread.is_alive():
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() in _serve
        self.listener.close()
        for filler in self.fillers:
            filler.close()
        if self.thread.ident is not None:
            self.thread.join(5)


@pytest.fixture
def stub():
    made: list[Stub] = []

    def make(behaviour: str) -> Stub:
        made.append(Stub(behaviour))
        return made[-1]

    yield make
    for one in made:
        one.close()


def run_healthcheck(url: str, timeout: float = TIMEOUT_S) -> tuple[subprocess.CompletedProcess, float]:
    began = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "hello", "healthcheck", "--url", url,
                             "--timeout", f"{timeout:g}s"],
                            capture_output=True, text=True, cwd=ROOT, check=False,
                            timeout=timeout + 30, env=child_env({"PATH": "/usr/bin:/bin"}))
    return result, time.monotonic() - began


@pytest.mark.parametrize("behaviour", ["200", "200 with a large body"])
def test_200_is_healthy_exit_0_one_line_on_stdout(stub, behaviour):
    server = stub(behaviour)
    result, took = run_healthcheck(server.url)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"hello healthcheck: {server.url}: 200\n"
    assert result.stderr == ""
    assert took < START_S
    assert server.requests[0].startswith(b"GET /healthz HTTP/1.1\r\n")
    assert b"\r\nUser-Agent: hello-healthcheck\r\n" in server.requests[0]


def test_a_url_without_a_path_probes_the_root(stub):
    server = stub("200")
    root = f"http://127.0.0.1:{server.port}"
    result, _ = run_healthcheck(root)
    assert result.returncode == 0, result.stderr
    assert server.requests[0].startswith(b"GET / HTTP/1.1\r\n")


def test_a_url_without_a_port_probes_port_80(monkeypatch):
    from hello import healthcheck as module
    tried = []

    closed = free_port()

    def resolve(host, port, **kwargs):  # record what was asked; connect to a closed port
        tried.append((host, port))
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", closed))]

    monkeypatch.setattr(module.socket, "getaddrinfo", resolve)
    assert module.probe("http://127.0.0.1/healthz", 1.0) == \
        (False, "http://127.0.0.1/healthz: Connection refused")
    assert tried == [(b"127.0.0.1", 80)]


@pytest.mark.parametrize("behaviour, says", [
    ("500", "status 500, expected 200"),
    ("503", "status 503, expected 200"),
    ("302", "status 302, expected 200"),
    ("404", "status 404, expected 200"),
    ("garbage", "bad HTTP answer (BadStatusLine)"),
    ("empty", "Remote end closed connection without response"),
    ("200 without a body", "bad HTTP answer (IncompleteRead)"),
    ("hang", f"no complete answer within {TIMEOUT_S:g}s"),
    ("drip", f"no complete answer within {TIMEOUT_S:g}s"),
    ("full", f"no complete answer within {TIMEOUT_S:g}s"),
])
def test_anything_but_a_prompt_200_is_exit_1_with_one_line(stub, behaviour, says):
    server = stub(behaviour)
    result, took = run_healthcheck(server.url)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert result.stderr == f"hello healthcheck: {server.url}: {says}\n"
    assert len(server.requests) == (behaviour != "full"), "the stub never saw the probe's request"
    assert took < TIMEOUT_S + START_S, f"took {took:.1f}s with --timeout {TIMEOUT_S:g}s"
    if behaviour in ("hang", "drip"):
        held = wait_until(lambda: server.held_s, 5, what="the stub to see the probe hang up")
        assert held < TIMEOUT_S + LATE_S, f"the probe held the connection {held:.2f}s"


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - the stdlib's name
        self.server.paths.append(self.path)
        answer = self.server.answers.get(self.path.split("?")[0], (404, b""))
        if answer == "hang":
            self.server.release.wait(5)
            return
        status, body = answer
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def recorder():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.paths, server.answers, server.release = [], {}, threading.Event()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def _version(commit) -> tuple[int, bytes]:
    return 200, json.dumps({"commit": commit, "version": "9.9.9"}).encode()


def test_commit_is_asked_of_slash_version_without_the_query(recorder):
    port = recorder.server_address[1]
    recorder.answers = {"/healthz": (200, b"ok"), "/version": _version("0123456789abcdef")}
    url = f"http://127.0.0.1:{port}/healthz?probe=1"
    assert healthcheck.probe(url, 5, "0123456789ab") == (True, f"{url}: 200, commit 0123456789ab")
    assert recorder.paths == ["/healthz?probe=1", "/version"]


@pytest.mark.parametrize("answer, says", [
    ((200, b"not json"), "not a hello /version answer"),
    ((200, b'{"no": "commit"}'), "not a hello /version answer"),
    (_version("f" * 50), f"commit {'f' * 40!r}, expected 0123456"),
    (_version(7), "commit '7', expected 0123456"),
])
def test_a_wrong_version_answer_is_unhealthy_exactly(recorder, answer, says):
    port = recorder.server_address[1]
    recorder.answers = {"/healthz": (200, b"ok"), "/version": answer}
    assert healthcheck.probe(f"http://127.0.0.1:{port}/healthz", 5, "0123456") == (
        False, f"http://127.0.0.1:{port}/version: {says}")


def test_the_timeout_bounds_the_version_request_too(recorder):
    port = recorder.server_address[1]
    recorder.answers = {"/healthz": (200, b"ok"), "/version": "hang"}
    assert healthcheck.probe(f"http://127.0.0.1:{port}/healthz", 0.5, "0123456") == (
        False, f"http://127.0.0.1:{port}/version: no complete answer within 0.5s")


@contextlib.contextmanager
def _streaming_200(head: bytes, piece: bytes):
    """A server that answers one request with head, then piece after piece until the
    probe hangs up; yields its /healthz URL."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve():
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(head)
            try:
                while not stop.is_set():
                    conn.sendall(piece)
            except OSError:
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/healthz"
    finally:
        stop.set()
        listener.close()
        thread.join(timeout=10)


def test_an_endless_200_is_healthy_once_enough_of_it_arrived():
    """A large or endless body: the probe reads a bounded part and decides."""
    with _streaming_200(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                        b"4000\r\n" + b"x" * 0x4000 + b"\r\n") as url:
        assert healthcheck.probe(url, 3) == (True, f"{url}: 200")


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/!", 'http://127.0.0.1:8080/"', "http://h/~"])
def test_printable_urls_are_accepted(url):
    assert healthcheck.parse_url(url).scheme == "http"


@pytest.mark.parametrize("url, message", [
    ("http://127.0.0.1:8080/a b", "'http://127.0.0.1:8080/a b' has spaces or control characters"),
    ("http://127.0.0.1:8080/\x7f", "'http://127.0.0.1:8080/\\x7f' has spaces or control characters"),
    ("http://user@127.0.0.1/", "a URL with user:password@ is not allowed"),
    ("http://:pw@127.0.0.1/", "a URL with user:password@ is not allowed"),
    ("http://127.0.0.1:99999/", "'http://127.0.0.1:99999/' has no valid port"),
    ("https://127.0.0.1/", "'https://127.0.0.1/' is not an http:// URL"),
    ("http://a..b/", "'http://a..b/' has no valid host name"),
    ("http://127.0.0.1:0/h", "'http://127.0.0.1:0/h' has no valid port"),
    ("http://127.0.0.1/h\u00e9", "'http://127.0.0.1/h\u00e9' has characters outside ASCII in its path "
     "(percent-encode them)"),
])
def test_bad_urls_exactly(url, message):
    with pytest.raises(ValueError) as caught:
        healthcheck.parse_url(url)
    assert str(caught.value) == message


@pytest.mark.parametrize("host, url", [
    ("0.0.0.0", "http://127.0.0.1:8080/healthz"), ("::", "http://127.0.0.1:8080/healthz"),
    ("", "http://127.0.0.1:8080/healthz"), ("::1", "http://[::1]:8080/healthz"),
    ("10.1.2.3", "http://10.1.2.3:8080/healthz"),
])
def test_local_url_of_the_servers_own_host(host, url):
    assert healthcheck.local_url(host, 8080) == url


def test_a_full_listen_backlog_fails_within_the_timeout():
    """The connect is bounded by the timeout too (a server too busy to accept)."""
    import time

    with full_listen_backlog() as port:
        started = time.monotonic()
        ok, reason = healthcheck.probe(f"http://127.0.0.1:{port}/healthz", 0.4)
        assert (ok, reason) == (False, f"http://127.0.0.1:{port}/healthz: no complete answer "
                                       "within 0.4s")
        assert time.monotonic() - started < 0.9


def _one_answer(answer: bytes):
    """A listener that answers one request with these bytes, then closes."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve():
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(5)
            head = b""
            while b"\r\n\r\n" not in head:
                head += conn.recv(4096)
            conn.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener, thread


@pytest.mark.parametrize("answer, says", [
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", "200"),
    (b"HTTP/1.1 200 OK\r\ntransfer-encoding: Chunked\r\n\r\n2;x=y\r\nok\r\n0\r\n\r\n", "200"),
    (b"HTTP/1.0 200 OK\r\n\r\nno length: read to the end", "200"),
    (b"HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok", "200"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", "bad HTTP answer (InvalidContentLength)"),
    (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "bad HTTP answer (HeaderParsingError)"),
    (b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70000, "bad HTTP answer (LineTooLong)"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad HTTP answer (InvalidChunkLength)"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nshort", "bad HTTP answer (IncompleteRead)"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n", "bad HTTP answer (IncompleteRead)"),
    (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", "200"),
    (b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 500 No\r\nContent-Length: 0\r\n\r\n",
     "status 500, expected 200"),
    (b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok", "200"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: " + b"1" * 5000 + b"\r\n\r\nok",
     "bad HTTP answer (InvalidContentLength)"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nContent-Length: 2\r\n\r\nok",
     "bad HTTP answer (InvalidContentLength)"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok", "200"),
    (b"HTTP/2 200\r\n\r\n", "bad HTTP answer (BadStatusLine)"),
    (b"HTTP/1.1 20 OK\r\n\r\n", "bad HTTP answer (BadStatusLine)"),
    (b"HTTP/1.1 2000 OK\r\n\r\n", "bad HTTP answer (BadStatusLine)"),
])
def test_the_answer_is_read_as_http_1_1_frames_it(answer, says):
    listener, thread = _one_answer(answer)
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/healthz"
        assert healthcheck.probe(url, 3) == (says == "200", f"{url}: {says}")
    finally:
        listener.close()
        thread.join(timeout=10)


def test_one_huge_chunk_is_read_only_as_far_as_the_body_cap():
    """A chunk announced as 4 GiB: the probe stops at 64 KiB and judges, it does not
    buffer until the deadline."""
    with _streaming_200(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffff\r\n",
                        b"x" * 65536) as url:
        began = time.monotonic()
        assert healthcheck.probe(url, 10) == (True, f"{url}: 200")
        assert time.monotonic() - began < 2


def test_an_international_host_name_is_sent_as_its_ascii_form(recorder, monkeypatch):
    """The Host header is ASCII (xn--), as the resolver and http.client spell it."""
    port = recorder.server_address[1]
    real = socket.getaddrinfo
    monkeypatch.setattr(healthcheck.socket, "getaddrinfo",
                        lambda host, *args, **kwargs: real("127.0.0.1", *args, **kwargs))
    seen = []
    original = _Handler.do_GET

    def do_get(handler):
        seen.append(handler.headers["Host"])
        original(handler)

    monkeypatch.setattr(_Handler, "do_GET", do_get)
    recorder.answers = {"/healthz": (200, b"ok")}
    url = f"http://bücher.example:{port}/healthz"
    assert healthcheck.probe(url, 5) == (True, f"{url}: 200")
    assert seen == [f"xn--bcher-kva.example:{port}"]


def test_a_version_answer_nested_too_deep_is_unhealthy_in_one_line(recorder):
    port = recorder.server_address[1]
    recorder.answers = {"/healthz": (200, b"ok"), "/version": (200, b"[" * 60000)}
    assert healthcheck.probe(f"http://127.0.0.1:{port}/healthz", 5, "0123456") == (
        False, f"http://127.0.0.1:{port}/version: not a hello /version answer")
