"""The healthcheck's URL rules and its `--commit` step to the letter, in process,
against a loopback stub that records what it was asked (make mutation found these
loose). The CLI's verdicts against bad servers are in test_healthcheck.py."""

from __future__ import annotations

import http.server
import json
import socket
import threading

import pytest

from hello import healthcheck
from tests.conftest import full_listen_backlog


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
def stub():
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


def test_commit_is_asked_of_slash_version_without_the_query(stub):
    port = stub.server_address[1]
    stub.answers = {"/healthz": (200, b"ok"), "/version": _version("0123456789abcdef")}
    url = f"http://127.0.0.1:{port}/healthz?probe=1"
    assert healthcheck.probe(url, 5, "0123456789ab") == (True, f"{url}: 200, commit 0123456789ab")
    assert stub.paths == ["/healthz?probe=1", "/version"]


@pytest.mark.parametrize("answer, says", [
    ((200, b"not json"), "not a hello /version answer"),
    ((200, b'{"no": "commit"}'), "not a hello /version answer"),
    (_version("f" * 50), f"commit {'f' * 40!r}, expected 0123456"),
    (_version(7), "commit '7', expected 0123456"),
])
def test_a_wrong_version_answer_is_unhealthy_exactly(stub, answer, says):
    port = stub.server_address[1]
    stub.answers = {"/healthz": (200, b"ok"), "/version": answer}
    assert healthcheck.probe(f"http://127.0.0.1:{port}/healthz", 5, "0123456") == (
        False, f"http://127.0.0.1:{port}/version: {says}")


def test_the_timeout_bounds_the_version_request_too(stub):
    port = stub.server_address[1]
    stub.answers = {"/healthz": (200, b"ok"), "/version": "hang"}
    assert healthcheck.probe(f"http://127.0.0.1:{port}/healthz", 0.5, "0123456") == (
        False, f"http://127.0.0.1:{port}/version: no complete answer within 0.5s")


def test_an_endless_200_is_healthy_once_enough_of_it_arrived():
    """A large or endless body: the probe reads a bounded part and decides."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve():
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            try:
                while not stop.is_set():
                    conn.sendall(b"4000\r\n" + b"x" * 0x4000 + b"\r\n")
            except OSError:
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/healthz"
        assert healthcheck.probe(url, 3) == (True, f"{url}: 200")
    finally:
        stop.set()
        listener.close()
        thread.join(timeout=10)


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
