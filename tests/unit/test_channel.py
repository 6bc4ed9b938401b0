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
