"""hello/channel.py: a pipelined batch parsed only as its connection's queue drains, the
rest kept as bytes, and every request of it answered, whole and in order.

A real HelloServer on loopback with its loop in a thread (tests/unit/test_memory_budget.py's),
real clients. tests/binary/test_memory_limit.py floods the binary with 300 such clients.
"""

from __future__ import annotations

import pytest

from tests.conftest import wait_until
from tests.unit.test_memory_budget import Budgeted, answer

UNLIMITED = 1 << 40


@pytest.fixture
def server():
    made = Budgeted(UNLIMITED, threads=1)
    yield made
    made.close()


def echo(text: str) -> bytes:
    return (f"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: {len(text)}\r\n\r\n{text}").encode()


def test_a_pipelined_batch_is_answered_whole_and_in_order(server):
    client = server.connect()
    client.sendall(b"".join(echo(str(number)) for number in range(200)))
    assert [answer(client)[2] for _ in range(200)] == [str(n).encode() for n in range(200)]


def test_a_request_cut_at_the_end_of_what_was_kept_is_finished_by_the_next_read(server):
    client = server.connect()
    server.connect().sendall(b"GET /block HTTP/1.1\r\nHost: x\r\n\r\n")
    assert server.blocked.acquire(timeout=5)  # the only worker is held: the batch waits
    client.sendall(echo("a") + echo("b") + echo("c") + echo("d")[:20])
    channel = server.channel(client)
    wait_until(lambda: channel.unparsed, 5, what="the rest of the batch kept as bytes")
    client.sendall(echo("d")[20:])
    server.release.set()
    assert [answer(client)[2] for _ in range(4)] == [b"a", b"b", b"c", b"d"]


def test_a_client_gone_with_its_batch_unparsed_costs_nothing_after(server):
    client = server.connect()
    server.connect().sendall(b"GET /block HTTP/1.1\r\nHost: x\r\n\r\n")
    assert server.blocked.acquire(timeout=5)
    client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 50)
    channel = server.channel(client)
    wait_until(lambda: channel.unparsed, 5, what="the rest of the batch kept as bytes")
    client.close()
    server.release.set()
    wait_until(lambda: not channel.connected and not channel.unparsed
               and channel not in server.server.unparsed_channels, 10,
               what="the connection closed and its bytes dropped")
    after = server.connect()
    after.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer(after)[:1] == (200,)


def hold_the_worker(server) -> None:
    server.connect().sendall(b"GET /block HTTP/1.1\r\nHost: x\r\n\r\n")
    assert server.blocked.acquire(timeout=5)  # the only worker: the next batch is kept


@pytest.mark.parametrize("before", [0, 3])
def test_an_expect_request_refused_for_its_size_gets_413_not_100(server, before):
    """waitress's send_continue un-completes the request it answers: a 413 found at the
    head was turned into a 100, and the server then waited for a body it refuses
    (buffering it, uncounted, as it came). Behind a batch, it is parsed when the queue
    has drained: the same."""
    client = server.connect()
    client.settimeout(5)
    client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * before
                   + b"POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                     b"Content-Length: 99999999\r\n\r\n")
    assert [answer(client)[0] for _ in range(before + 1)] == [200] * before + [413]
    assert client.recv(1) == b""  # and closed


def test_a_client_gone_when_its_100_continue_is_sent_holds_no_budget(monkeypatch):
    """A reset at the 100 closes the connection in the middle of parsing: what came after
    it was parsed all the same, and its body's reservation was never given back."""
    from hello.channel import HelloChannel

    monkeypatch.setattr(HelloChannel, "send_continue", lambda channel: channel.handle_close())
    server = Budgeted(8 << 20)
    try:
        client = server.connect()
        client.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                       b"Content-Length: 5\r\n\r\nhello"
                       b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 500000\r\n\r\ny")
        assert client.recv(1) == b""  # closed at its 100
        wait_until(lambda: not server.server.active_channels, 5, what="the connection gone")
        wait_until(lambda: server.budget.held == 0, 5,
                   what=f"the budget given back (held {server.budget.held})")
    finally:
        server.close()


def test_an_error_parsing_kept_bytes_closes_that_connection_and_the_loop_serves_on(server,
                                                                                   monkeypatch):
    from hello.http_parser import HelloParser

    parse_header = HelloParser.parse_header

    def failing(parser, head):
        if b"x-boom" in head.lower():
            raise RuntimeError("a bug in the parser")
        return parse_header(parser, head)

    monkeypatch.setattr(HelloParser, "parse_header", failing)
    client = server.connect()
    hold_the_worker(server)
    client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 3
                   + b"GET / HTTP/1.1\r\nHost: x\r\nX-Boom: 1\r\n\r\n")
    server.release.set()
    client.settimeout(5)
    while client.recv(65536):  # that connection is closed (what was not sent yet is lost)
        pass
    after = server.connect()
    after.settimeout(5)
    after.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer(after)[0] == 200
    assert server.loop.is_alive()
