"""The RFC 9112 edges and the slow-client deadlines, over raw sockets against the real server."""

import json
import socket

import pytest

from tests.conftest import http_status
from tests.server.rawhttp import exchange, seconds_until_closed, statuses


def access_lines(stdout: str) -> list[dict]:
    lines = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == "request"]


def test_content_length_with_transfer_encoding_is_400_and_closes(serve_unfrozen):
    service = serve_unfrozen()
    smuggled = (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    reply, closed = exchange(service.port, smuggled)
    assert statuses(reply) == [400]  # the pipelined request is not answered
    assert closed


def test_transfer_encoding_in_http_1_0_is_400_and_closes(serve_unfrozen):
    service = serve_unfrozen()
    reply, closed = exchange(service.port, b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n"
                             b"Connection: keep-alive\r\n\r\n0\r\n\r\n")
    assert statuses(reply) == [400]
    assert closed


@pytest.mark.parametrize("te", [b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
                                b"Transfer-Encoding: chunked, chunked"])
def test_chunked_twice_is_400_and_closes(serve_unfrozen, te):
    """RFC 9112 6.1: chunked is applied once. Decoding "chunked, chunked" once (what
    waitress does) reads another body than a front end that decodes it twice."""
    service = serve_unfrozen()
    reply, closed = exchange(service.port, b"POST /echo HTTP/1.1\r\nHost: x\r\n" + te +
                             b"\r\n\r\n1\r\nx\r\n0\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert statuses(reply) == [400], reply[:200]
    assert closed


@pytest.mark.parametrize("version", [b"2.0", b"9.9", b"0.9"])
def test_unsupported_http_versions_get_505(serve_unfrozen, version):
    service = serve_unfrozen()
    reply, closed = exchange(service.port, b"GET / HTTP/" + version + b"\r\nHost: x\r\n\r\n")
    assert statuses(reply) == [505], reply[:200]
    assert closed


@pytest.mark.parametrize("head", [
    b"GET / HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
])
def test_http_1_1_needs_exactly_one_host(serve_unfrozen, head):
    reply, _ = exchange(serve_unfrozen().port, head)
    assert statuses(reply) == [400]


def test_http_1_0_without_host_is_fine(serve_unfrozen):
    reply, _ = exchange(serve_unfrozen().port, b"GET / HTTP/1.0\r\n\r\n")
    assert statuses(reply) == [200]


def test_body_of_exactly_max_body_bytes_is_accepted_one_more_is_413(serve_unfrozen):
    service = serve_unfrozen("--max-body-bytes", "1000")
    head = b"POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: "
    reply, _ = exchange(service.port, head + b"1000\r\n\r\n" + b"x" * 1000)
    assert statuses(reply) == [200]
    assert reply.endswith(b"x" * 1000)
    reply, _ = exchange(service.port, head + b"1001\r\n\r\n" + b"x" * 1001)
    assert statuses(reply) == [413]


def test_chunked_body_of_exactly_max_body_bytes_is_accepted(serve_unfrozen):
    service = serve_unfrozen("--max-body-bytes", "1000")
    body = b"3e8\r\n" + b"y" * 1000 + b"\r\n0\r\n\r\n"
    reply, _ = exchange(service.port, b"POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                        b"Transfer-Encoding: chunked\r\n\r\n" + body)
    assert statuses(reply) == [200]
    assert reply.endswith(b"y" * 1000)


def test_a_chunk_declared_past_the_limit_is_413_at_once(serve_unfrozen):
    """Review: a chunk size of 4 GiB was waited for, byte by byte, until the body
    deadline; it is refused as soon as it is declared (the body deadline here is 60 s,
    the exchange gives up after 10)."""
    service = serve_unfrozen("--max-body-bytes", "1000", "--body-timeout", "60s")
    reply, closed = exchange(service.port, b"POST /echo HTTP/1.1\r\nHost: x\r\n"
                             b"Transfer-Encoding: chunked\r\n\r\nffffffff\r\nabc", timeout=10)
    assert statuses(reply) == [413] and closed, reply


def test_431_is_logged_with_the_real_request_line(serve_unfrozen):
    service = serve_unfrozen("--max-header-bytes", "1024")
    reply, _ = exchange(service.port, b"PUT /big/path?q=1 HTTP/1.1\r\nHost: x\r\nX-Big: "
                        + b"a" * 4000 + b"\r\n\r\n")
    assert statuses(reply) == [431]
    _, out, _ = service.stop()
    [line] = [line for line in access_lines(out) if line["status"] == 431]
    assert (line["method"], line["path"]) == ("PUT", "/big/path")


def test_431_before_the_request_line_ends_logs_no_guess(serve_unfrozen):
    service = serve_unfrozen("--max-header-bytes", "1024")
    reply, _ = exchange(service.port, b"GET /" + b"a" * 4000)
    assert statuses(reply) == [431]
    _, out, _ = service.stop()
    [line] = [line for line in access_lines(out) if line["status"] == 431]
    assert (line["method"], line["path"]) == (None, None)


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def _closed_by_its_deadline(service, sock: socket.socket) -> None:
    """The deadline closed this connection (after about 1 s), not the server: it still
    answers, and it is the same process (a crashed loop also closes every connection)."""
    waited = seconds_until_closed(sock, limit=6)
    assert waited is not None and 0.8 <= waited <= 3.5, waited
    assert service.process.poll() is None, "the server exited"
    assert http_status(service.url + "/healthz") == 200


def test_header_deadline_closes_a_dripping_head(serve_unfrozen):
    service = serve_unfrozen("--header-timeout", "1s")
    with _connect(service.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        _closed_by_its_deadline(service, sock)


def test_header_deadline_closes_a_silent_connection(serve_unfrozen):
    service = serve_unfrozen("--header-timeout", "1s")
    with _connect(service.port) as sock:
        _closed_by_its_deadline(service, sock)


def test_body_deadline_closes_a_dripping_body(serve_unfrozen):
    service = serve_unfrozen("--body-timeout", "1s")
    with _connect(service.port) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nab")
        _closed_by_its_deadline(service, sock)


def test_keep_alive_between_requests_is_not_the_header_deadline(serve_unfrozen):
    """An idle keep-alive connection that was served is governed by --channel-timeout."""
    service = serve_unfrozen("--header-timeout", "1s", "--channel-timeout", "30")
    with _connect(service.port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert statuses(sock.recv(65536)) == [200]
        assert seconds_until_closed(sock, limit=2.5) is None


def test_channel_timeout_closes_an_idle_keep_alive_connection(serve_unfrozen):
    """The idle sweep runs every second here (waitress's is 30 s), so --channel-timeout 1
    closes a served, idle keep-alive connection within a few seconds."""
    service = serve_unfrozen("--channel-timeout", "1")
    with _connect(service.port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert statuses(sock.recv(65536)) == [200]
        waited = seconds_until_closed(sock, limit=6)
    assert waited is not None and waited <= 3.5, waited
    assert http_status(service.url + "/healthz") == 200


def test_connection_limit_evicts_the_stalest_unfinished_request_for_a_new_client(serve_unfrozen):
    """--connection-limit reaches the server: at 2 open connections, a third (a probe)
    evicts the one whose unfinished head started first, and is answered
    (tests/unit/test_connection_limit.py has every case, one loop turn at a time)."""
    service = serve_unfrozen("--connection-limit", "2", "--header-timeout", "30s")
    with _connect(service.port) as oldest:
        oldest.sendall(b"GET / HTTP/1.1\r\n")
        assert http_status(service.url + "/healthz") == 200  # under the limit: nothing cut
        with _connect(service.port) as newer:
            newer.sendall(b"GET / HTTP/1.1\r\n")
            assert http_status(service.url + "/healthz") == 200  # the third connection
            assert seconds_until_closed(oldest, limit=3) is not None
            newer.sendall(b"Host: x\r\nConnection: close\r\n\r\n")
            reply = b""
            newer.settimeout(5)
            while chunk := newer.recv(65536):
                reply += chunk
            assert statuses(reply) == [200]


def test_no_access_log_means_no_line_for_the_servers_own_error_answers_either(serve_unfrozen):
    service = serve_unfrozen("--no-access-log")
    reply, _ = exchange(service.port, b"GET / HTTP/1.1\r\n\r\n")  # no Host: waitress's 400
    assert statuses(reply) == [400]
    _, out, _ = service.stop()
    assert [line["event"] for line in access_lines(out)] == [], out
