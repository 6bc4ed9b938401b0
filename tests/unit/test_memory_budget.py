"""The memory budget inside the server: what is reserved, counted, refused with 503, given back.

A real HelloServer on a loopback socket with its loop in a thread and real clients,
with a small budget (hello/memory.py Budget) instead of a container's limit:
tests/binary/test_memory_limit.py runs the binary under a real memory cgroup.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from hello import drain, memory
from hello.event_loop import HelloServer
from hello.http_parser import PARSED_REQUEST_BYTES, Discarded
from tests.conftest import wait_until

KB = 1024


class Budgeted:
    """A HelloServer with a budget of `limit` bytes, serving /echo, /block and /."""

    def __init__(self, limit: int, threads: int = 2):
        self.release = threading.Event()
        self.blocked = threading.Semaphore(0)
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        listener.setblocking(False)
        self.port = listener.getsockname()[1]
        self.budget = memory.Budget(limit)
        self.server = HelloServer(self.app, listener, writer=None, header_timeout=30,
                                  body_timeout=60, threads=threads, connection_limit=100,
                                  ident="hello", budget=self.budget,
                                  max_request_body_size=(4 << 20) + 1)
        self.loop = threading.Thread(target=self.server.run, daemon=True)
        self.loop.start()
        self.clients: list[socket.socket] = []

    def app(self, environ, start_response):
        path = environ["PATH_INFO"]
        if path == "/block":
            self.blocked.release()
            self.release.wait(30)
        body = environ["wsgi.input"].read() if path == "/echo" else b"ok"
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(len(body)))])
        return [body]

    def connect(self, receive_buffer: int | None = None) -> socket.socket:
        client = socket.socket()
        if receive_buffer:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        client.settimeout(10)
        client.connect(("127.0.0.1", self.port))
        self.clients.append(client)
        return client

    def channel(self, client: socket.socket):
        port = client.getsockname()[1]
        return wait_until(lambda: next((channel for channel in list(
            self.server.active_channels.values()) if channel.addr[1] == port), None),
            5, what="the server's end of the connection")

    def close(self) -> None:
        self.release.set()
        for client in self.clients:
            client.close()
        self.server.task_dispatcher.shutdown(timeout=5)
        self.server.trigger.pull_trigger(lambda: drain.close_all(self.server))
        self.loop.join(5)
        drain.close_trigger(self.server)


@pytest.fixture
def budgeted():
    made: list[Budgeted] = []

    def make(limit: int, threads: int = 2) -> Budgeted:
        made.append(Budgeted(limit, threads))
        return made[-1]

    yield make
    for each in made:
        each.close()


_readers: dict[int, object] = {}


def answer(client: socket.socket) -> tuple[int, dict, bytes]:
    """The next whole response on client: (status, headers, body), by Content-Length;
    read through one buffered reader per client, so pipelined answers are not lost."""
    reader = _readers.setdefault(id(client), client.makefile("rb"))
    status_line = reader.readline()
    assert status_line, "closed before an answer"
    headers = {}
    while (line := reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").rstrip("\r\n").partition(": ")
        headers[name] = value
    body = reader.read(int(headers.get("Content-Length", 0)))
    return int(status_line.split()[1]), headers, body


def post(size: int, extra: str = "") -> bytes:
    return (f"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n{extra}\r\n"
            .encode() + b"x" * size)


def test_a_body_that_fits_is_reserved_twice_served_and_given_back(budgeted):
    server = budgeted(limit=1 << 20)
    client = server.connect()
    client.sendall(post(100 * KB)[:-1])  # all but the last byte: reserved, not yet served
    wait_until(lambda: server.budget.held == 2 * 100 * KB, 5, what="the reservation")
    client.sendall(b"x")
    status, _, body = answer(client)
    assert status == 200 and len(body) == 100 * KB
    wait_until(lambda: server.budget.held == 0, 5, what="everything given back")


def test_a_body_past_the_budget_is_read_to_its_end_not_held_then_answered_503(budgeted):
    server = budgeted(limit=300 * KB)
    client = server.connect()
    client.sendall(post(200 * KB)[:-1])  # 400 KB with the app's copy: no room
    channel = server.channel(client)
    wait_until(lambda: channel.request is not None and channel.request.body_rcv is not None
               and len(channel.request.body_rcv) == 200 * KB - 1, 5, what="the body read")
    assert isinstance(channel.request.body_rcv.getbuf(), Discarded)
    assert server.budget.held == 0
    client.sendall(b"x")  # the whole body went out: no reset
    status, headers, body = answer(client)
    assert status == 503 and headers["Retry-After"] == "1", headers
    assert b"memory budget" in body


def test_expect_100_continue_past_the_budget_is_answered_503_before_the_body(budgeted):
    server = budgeted(limit=300 * KB)
    client = server.connect()
    client.sendall(post(200 * KB, "Expect: 100-continue\r\n")[:-200 * KB])
    status, headers, _ = answer(client)  # no 100 Continue first: the final answer
    assert status == 503 and headers["Connection"] == "close"
    assert _readers[id(client)].read(1) == b""  # closed: the body is not wanted


def test_a_chunked_body_is_reserved_as_it_arrives_and_refused_past_the_budget(budgeted):
    server = budgeted(limit=300 * KB)
    client = server.connect()
    client.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n" % (50 * KB) + b"y" * (50 * KB) + b"\r\n"
    client.sendall(chunk * 2)
    wait_until(lambda: server.budget.held == 2 * 100 * KB, 5, what="two chunks reserved")
    client.sendall(chunk * 2 + b"0\r\n\r\n")  # 400 KB: no room for the second 100 KB
    status, headers, _ = answer(client)
    assert status == 503 and headers["Retry-After"] == "1"
    wait_until(lambda: server.budget.held == 0, 5, what="the chunks given back")


def test_while_the_budget_is_spent_new_work_is_503_but_health_answers(budgeted):
    server = budgeted(limit=100 * KB, threads=1)
    server.budget.add(100 * KB)  # held by responses slow readers have not taken
    client = server.connect()
    client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    status, headers, _ = answer(client)
    assert status == 503 and headers["Retry-After"] == "1"
    probe = server.connect()
    probe.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer(probe)[0] == 200  # the app answers ok for any path: the loop ran it


def test_a_response_the_client_does_not_read_is_counted_until_it_is_sent(budgeted):
    server = budgeted(limit=16 << 20)
    client = server.connect(receive_buffer=4 * KB)
    client.sendall(post(4 << 20))
    wait_until(lambda: server.budget.held > 1 << 20, 10, what="the unsent answer counted")
    status, _, body = answer(client)  # now it reads
    assert status == 200 and len(body) == 4 << 20
    wait_until(lambda: server.budget.held == 0, 5, what="the sent answer given back")


def test_closed_connections_give_back_what_they_held(budgeted):
    server = budgeted(limit=1 << 20)
    clients = [server.connect() for _ in range(3)]
    for client in clients:
        client.sendall(post(100 * KB)[:50 * KB])  # reserved, half sent, then gone
    wait_until(lambda: server.budget.held == 3 * 2 * 100 * KB, 5, what="three reservations")
    for client in clients:
        client.close()
    wait_until(lambda: server.budget.held == 0, 5, what="the reservations given back")


def test_a_pipelined_batch_is_parsed_as_its_queue_drains_and_counted_until_served(budgeted):
    server = budgeted(limit=1 << 20, threads=1)
    blocker = server.connect()
    blocker.sendall(b"GET /block HTTP/1.1\r\nHost: x\r\n\r\n")
    assert server.blocked.acquire(timeout=5)
    client = server.connect()
    request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    client.sendall(request * 50)
    queued = 2  # channel_request_lookahead=1: the one waiting and one more
    wait_until(lambda: server.budget.held >= (1 + queued) * PARSED_REQUEST_BYTES, 5,
               what="the queued requests counted")
    channel = server.channel(client)
    assert len(channel.requests) == queued and channel.unparsed == request * (50 - queued)
    server.release.set()
    for _ in range(50):
        assert answer(client)[0] == 200
    wait_until(lambda: server.budget.held == 0, 5, what="the served requests given back")


def test_a_spent_budget_reads_no_new_request_but_finishes_an_admitted_body(budgeted):
    server = budgeted(limit=1 << 20)
    uploader = server.connect()
    uploader.sendall(post(100 * KB)[:50 * KB])
    wait_until(lambda: server.budget.held == 200 * KB, 5, what="the body admitted")
    server.budget.add(1 << 20)  # now spent
    waiting = server.connect()
    server.channel(waiting)  # accepted before its request comes: read all the same
    waiting.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer(waiting)[0] == 200  # a new connection's first request may be a probe
    waiting.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # a keep-alive's next request
    uploader.sendall(post(100 * KB)[50 * KB:])
    assert answer(uploader)[0] == 200  # admitted before: read on and served
    time.sleep(0.5)
    channel = server.channel(waiting)
    assert not channel.requests and channel.request is None  # not read while it is spent
    server.budget.add(-(1 << 20))
    assert answer(waiting)[0] == 200


def test_no_body_waits_in_a_temp_file(budgeted):
    server = budgeted(limit=16 << 20)
    client = server.connect()
    client.sendall(post(900 * KB)[:-1])  # past waitress's 512 KB inbuf_overflow
    channel = server.channel(client)
    wait_until(lambda: channel.request is not None and channel.request.body_rcv is not None
               and len(channel.request.body_rcv) == 900 * KB - 1, 5, what="the body read")
    assert not channel.request.body_rcv.getbuf().overflowed
    client.sendall(b"x")
    assert answer(client)[0] == 200
