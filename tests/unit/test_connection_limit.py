"""At --connection-limit: which connection is cut, which request is turned away, and
when a new one is refused: exactly, one loop turn at a time.

These tests are the server's event loop: a real HelloServer on a loopback socket with
real worker threads, but accept, read and the end of a turn happen when the test says,
so the choice the server makes is asserted, not raced. (tests/server/test_hostile.py
runs the same paths under a thousand real clients, as load tests.)
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import resource
import select
import socket
import threading
import time

import pytest
from waitress import wasyncore

from hello import channel, connection_limit, drain, event_loop
from hello.admission import CONNECTION_HEADROOM, PROBE_LANE
from hello.event_loop import HelloServer
from tests.conftest import wait_until
from tests.server.rawhttp import statuses

HEAD_STARTED = b"GET / HTTP/1.1\r\n"  # a request head, not finished
WHOLE = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
BLOCKING = b"GET /block HTTP/1.1\r\nHost: x\r\n\r\n"  # holds a worker until the test ends


class Loop:
    """A HelloServer whose event loop is the test."""

    def __init__(self, limit: int, threads: int):
        self.release = threading.Event()
        self.in_app = threading.Semaphore(0)
        self.clients: list[socket.socket] = []
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        listener.setblocking(False)
        self.port = listener.getsockname()[1]
        self.server = HelloServer(self.app, listener, writer=None, header_timeout=30,
                                  body_timeout=60, threads=threads, connection_limit=limit,
                                  ident="hello")
        self.server._loop_thread = threading.current_thread()  # health is answered here

    def app(self, environ, start_response):
        if environ["PATH_INFO"] == "/block":
            self.in_app.release()
            self.release.wait(30)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    def connect(self, payload: bytes = b"") -> socket.socket:
        """A client in the listen backlog, its bytes (if any) already sent."""
        client = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        if payload:
            client.sendall(payload)
        self.clients.append(client)
        return client

    def accept(self) -> None:
        self.server.handle_accept()

    def busy(self, count: int) -> list[socket.socket]:
        """count connections whose requests each hold a worker."""
        clients = []
        for _ in range(count):
            clients.append(self.connect(BLOCKING))
            self.accept()
            assert self.in_app.acquire(timeout=5), "a worker never took the request"
        return clients

    def channel(self, client: socket.socket):
        port = client.getsockname()[1]
        return next((channel for channel in self.server.active_channels.values()
                     if channel.addr[1] == port), None)

    def evicting(self) -> list[socket.socket]:
        """The clients whose connections this turn closes (a shed one may be closed already)."""
        ports = {channel.addr[1] for channel in self.server._evicting}
        return [client for client in self.clients if client.getsockname()[1] in ports]

    def queued(self) -> int:
        return len(self.server.task_dispatcher.queue)

    def close(self) -> None:
        self.release.set()
        for client in self.clients:
            client.close()
        self.server.task_dispatcher.shutdown(timeout=5)
        drain.close_all(self.server)
        drain.close_trigger(self.server)


@pytest.fixture
def loop():
    made: list[Loop] = []

    def make(limit: int, threads: int = 1) -> Loop:
        made.append(Loop(limit, threads))
        return made[-1]

    yield make
    for each in made:
        each.close()


@contextlib.contextmanager
def fds_left(count: int):
    """The open-file soft limit set so that exactly count more fds can be opened."""
    lowest_free = os.dup(0)
    os.close(lowest_free)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free + count, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def tick() -> None:
    """Let both clocks the server reads move on, so two stamps never tie."""
    start_mono, start_wall = time.monotonic(), time.time()
    wait_until(lambda: time.monotonic() - start_mono > 0.005 and time.time() - start_wall > 0.005,
               timeout=1, interval=0.001, what="the clocks to move")


def closed_by_server(client: socket.socket, within: float = 2.0) -> bool:
    """True once the server has closed client (whatever it sent first is read)."""
    client.settimeout(within)
    try:
        while client.recv(65536):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return True


def reply(client: socket.socket) -> bytes:
    client.settimeout(2)
    chunks = []
    while chunk := client.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_a_new_connection_at_the_limit_evicts_the_request_head_waiting_longest(loop):
    """Age counts from a request's first byte (a client dripping its head cannot renew it)
    or, for a connection that sent nothing, from its last activity."""
    server = loop(limit=3)
    dripping = server.connect(HEAD_STARTED)
    server.accept()
    tick()
    silent = server.connect()
    server.accept()
    tick()
    late = server.connect(HEAD_STARTED)
    server.accept()
    tick()
    dripping.sendall(b"Host: x\r\n")  # its newest byte, not its first
    server.channel(dripping).handle_read()

    order = []
    for _ in range(4):
        newcomer = server.connect()
        server.accept()
        evicted = server.evicting()
        assert len(evicted) == 1, evicted
        order.append(evicted[0])
        server.server.close_evicted()
        assert closed_by_server(evicted[0])
        assert server.channel(newcomer) is not None
        tick()
    assert order[:3] == [dripping, silent, late]
    assert order[3] is server.clients[3]  # then the first newcomer, idle since it came


def test_a_connection_with_a_request_in_hand_is_never_evicted(loop):
    server = loop(limit=2)
    (working,) = server.busy(1)
    queued = server.connect(WHOLE)
    server.accept()
    assert server.queued() == 1
    tick()
    unfinished = server.connect(HEAD_STARTED)  # past the limit: nothing to evict, headroom
    server.accept()
    assert server.evicting() == []
    newcomer = server.connect()
    server.accept()
    assert server.evicting() == [unfinished]  # the youngest, but the only one not in hand
    server.server.close_evicted()
    assert server.channel(working) and server.channel(queued) and server.channel(newcomer)


def test_past_the_headroom_the_newest_queued_request_gets_503_for_a_newcomer(loop):
    server = loop(limit=1)
    server.busy(1)
    waiting = []
    for _ in range(CONNECTION_HEADROOM):  # every one has a request: nothing to evict
        waiting.append(server.connect(WHOLE))
        server.accept()
        assert server.evicting() == []
    assert server.queued() == CONNECTION_HEADROOM
    newcomer = server.connect(b"GET /whoami HTTP/1.1\r\nHost: x\r\n\r\n")
    server.accept()

    assert server.evicting() == [waiting[-1]]
    assert server.queued() == CONNECTION_HEADROOM  # the newcomer's request took its place
    assert server.channel(newcomer) is not None
    server.server.close_evicted()
    answer = reply(waiting[-1])
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0] == b"HTTP/1.1 503 Service Unavailable"
    assert b"\r\nRetry-After: 1\r\n" in head + b"\r\n"
    assert b"\r\nX-Content-Type-Options: nosniff\r\n" in head + b"\r\n"
    assert body == (b"Service Unavailable\r\n\r\nthe server is at its connection limit"
                    b"\r\n\r\n(generated by hello)")


@pytest.mark.parametrize("probe", [b"GET /healthz HTTP/1.1", b"HEAD /readyz?x=1 HTTP/1.1",
                                   b"GET /readyz HTTP/1.0"])
def test_past_the_headroom_a_probe_gets_in_and_no_one_is_turned_away(loop, probe):
    server = loop(limit=1)
    server.busy(1)
    for _ in range(CONNECTION_HEADROOM):
        server.connect(WHOLE)
        server.accept()
    probe = server.connect(probe + b"\r\nHost: x\r\nConnection: close\r\n\r\n")
    server.accept()

    assert server.evicting() == []
    assert server.queued() == CONNECTION_HEADROOM
    answer = reply(probe)
    assert answer.startswith(b"HTTP/1.") and b" 200 OK\r\n" in answer[:20], answer


def test_past_the_headroom_a_newcomer_that_is_not_a_probe_and_nothing_to_shed_is_refused(loop):
    server = loop(limit=1, threads=1 + CONNECTION_HEADROOM)
    server.busy(1 + CONNECTION_HEADROOM)  # all being answered: nothing queued to shed
    for start in (b"GET /healthzz HTTP/1.1", b"GET /whoami HTTP/1.1", b""):
        newcomer = server.connect(start + b"\r\nHost: x\r\n\r\n" if start else b"")
        server.accept()
        assert closed_by_server(newcomer), start


def test_evicted_connections_do_not_count_against_the_headroom_in_their_turn(loop):
    server = loop(limit=1, threads=CONNECTION_HEADROOM - 1)
    server.busy(CONNECTION_HEADROOM - 1)
    unfinished = server.connect(HEAD_STARTED)
    server.accept()
    first, second = server.connect(WHOLE), server.connect(WHOLE)
    server.accept()  # one turn: first evicts the unfinished head, second fits the headroom
    assert server.evicting() == [unfinished]
    assert server.channel(first) is not None and server.channel(second) is not None


def test_with_nothing_to_evict_or_shed_new_connections_are_refused(loop):
    server = loop(limit=1, threads=1 + CONNECTION_HEADROOM)
    server.busy(1 + CONNECTION_HEADROOM)  # every connection is being answered; none queued
    refused = [server.connect(WHOLE), server.connect(WHOLE)]
    server.accept()  # one turn refuses both
    for client in refused:
        assert closed_by_server(client)
        assert server.channel(client) is None
    assert len(server.server.active_channels) == 1 + CONNECTION_HEADROOM


def test_drain_serves_what_the_kernel_queued_then_stops_listening(loop):
    server = loop(limit=10)
    asks = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    queued = [server.connect(asks), server.connect(asks)]
    drain.accept_queued_and_stop_listening(server.server)
    assert all(server.channel(client) is not None for client in queued)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.port), timeout=5).close()
    runner = threading.Thread(target=server.server.run, daemon=True)
    runner.start()
    for client in queued:
        assert reply(client).startswith(b"HTTP/1.1 200 OK\r\n")
    drain.close_all(server.server)
    runner.join(5)


def test_the_deadlines_are_checked_once_a_second_not_every_turn(loop, monkeypatch):
    server = loop(limit=10).server
    checks = []
    monkeypatch.setattr(server, "maintenance", checks.append)
    server.next_channel_cleanup = 0
    for _ in range(3):
        server.readable()
    assert len(checks) == 1
    assert server.next_channel_cleanup == pytest.approx(checks[0] + event_loop.MAINTENANCE_SECONDS)


def _available(client: socket.socket) -> bytes:
    """What the server has sent so far, without waiting for more."""
    data = b""
    client.setblocking(False)
    while True:
        try:
            chunk = client.recv(65536)
        except BlockingIOError:
            return data
        if not chunk:
            return data
        data += chunk


def test_pipelined_health_is_answered_in_the_read_that_brought_it_a_few_at_a_time(loop):
    """Health is answered by the loop itself, sent in the same turn (not the next), and
    at most LOOP_ANSWERS_PER_READ per read: the rest waits its turn with the workers."""
    server = loop(limit=10)
    server.busy(1)  # the only worker is held: nothing else answers meanwhile
    probe = server.connect(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                           * (channel.LOOP_ANSWERS_PER_READ + 1))
    server.accept()  # accepted, read, answered: no further turn of the loop
    answers = _available(probe)
    assert answers.count(b"HTTP/1.1 200 OK\r\n") == channel.LOOP_ANSWERS_PER_READ
    assert server.queued() == 1  # the fifth, behind the held worker


def test_a_connection_gone_before_accept_does_not_end_the_batch(loop, monkeypatch):
    server = loop(limit=10)
    clients = [server.connect(), server.connect()]
    accept, failed = server.server.accept, []

    def first_one_gone():
        if not failed:
            failed.append(True)
            # accept(2) passes on a new connection's network error (man 2 accept: EPROTO,
            # ENETDOWN...); wasyncore returns None only for ECONNABORTED and EAGAIN
            raise OSError(errno.EPROTO, "Protocol error")
        return accept()

    monkeypatch.setattr(server.server, "accept", first_one_gone)
    server.accept()
    assert failed and all(server.channel(client) is not None for client in clients)


def test_the_deadlines_are_checked_at_the_second_not_after_it(loop, monkeypatch):
    server = loop(limit=10).server
    checks = []
    monkeypatch.setattr(server, "maintenance", checks.append)
    monkeypatch.setattr(time, "time", lambda: 5000.0)
    server.next_channel_cleanup = 5000.0
    server.readable()
    assert checks == [5000.0]


def test_the_running_loop_answers_health_while_every_worker_is_busy(loop):
    server = loop(limit=10)
    server.busy(1)
    runner = threading.Thread(target=server.server.run, daemon=True)
    runner.start()
    try:
        probe = server.connect(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert reply(probe).startswith(b"HTTP/1.1 200 OK\r\n")
    finally:
        server.release.set()
        server.server.trigger.pull_trigger(lambda: drain.close_all(server.server))
        runner.join(5)
    assert not runner.is_alive()


def test_a_shed_connection_closed_at_once_makes_room_for_one_newcomer_not_two(loop):
    """A shed 503 small enough to be sent at once closes its connection in the turn it is
    shed: counted as open minus evicting, it was taken off twice, and every other
    newcomer of a burst got in without shedding anything (a flood of whole requests
    then grew the server past limit + headroom until it ran out of fds)."""
    server = loop(limit=1)
    server.busy(1)
    for _ in range(CONNECTION_HEADROOM):
        server.connect(WHOLE)
        server.accept()
    burst = [server.connect(WHOLE) for _ in range(4)]
    server.accept()  # one turn: each newcomer turns the newest queued request away
    server.server.close_evicted()
    assert len(server.server.active_channels) == 1 + CONNECTION_HEADROOM
    assert server.channel(burst[-1]) is not None
    for client in burst[:-1]:
        assert reply(client).startswith(b"HTTP/1.1 503 Service Unavailable\r\n")


def test_drain_stops_listening_even_when_the_fds_run_out_while_it_accepts(loop):
    """The backlog can hold more than the fds left (listen(1024), the soft limit is the
    connection limit plus spare): accept's EMFILE ended the step early, in a trigger
    thunk whose error waitress logs at INFO (dropped), and the listener stayed open: new
    connections were accepted and served all through the drain."""
    server = loop(limit=10)
    asks = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    queued = [server.connect(asks) for _ in range(4)]
    with fds_left(1):
        drain.accept_queued_and_stop_listening(server.server)
    assert not server.server.accepting
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.port), timeout=5).close()
    assert sum(server.channel(client) is not None for client in queued) == 1


def test_a_whole_request_waiting_unread_in_the_kernel_is_not_evicted_as_idle(loop):
    """A client connects and sends its whole request at once; the loop accepted it before
    the bytes came and has not read them yet when a newcomer arrives at the limit. Judged
    by what was parsed, it looked idle, the only one evictable, and was closed without an
    answer (seen: 2 of 480 honest clients at --connection-limit 20). Its waiting bytes
    are read first: it holds a request, so the newcomer gets the headroom instead."""
    server = loop(limit=2)
    (working,) = server.busy(1)
    honest = server.connect()
    server.accept()  # accepted before its bytes arrived
    # in the kernel, not read: no loop turn yet; longer than a small read would take
    honest.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUser-Agent: " + b"a" * 200 + b"\r\n\r\n")
    wait_until(lambda: server.channel(honest).socket.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT),
               timeout=2, what="the request to reach the server's socket")
    newcomer = server.connect()
    server.accept()
    assert server.evicting() == []
    server.server.close_evicted()
    assert server.channel(honest) is not None and server.channel(newcomer) is not None
    assert server.queued() == 1  # the honest request, waiting for the busy worker


def test_a_whole_request_larger_than_one_read_waiting_unread_is_not_evicted_as_idle(loop):
    """The same honest client, its request bigger than one recv (a 20 KB cookie, a
    20 KB POST): the first recv_bytes of it were read, the head or body was not whole
    yet, and it was evicted with the rest of its request unread in the kernel."""
    server = loop(limit=2)
    (working,) = server.busy(1)
    honest = server.connect()
    server.accept()
    body = b"x" * 20000
    honest.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    wait_until(lambda: len(server.channel(honest).socket.recv(
                   1 << 16, socket.MSG_PEEK | socket.MSG_DONTWAIT)) > len(body),
               timeout=2, what="the request to reach the server's socket")
    newcomer = server.connect()
    server.accept()
    assert server.evicting() == []
    server.server.close_evicted()
    assert server.channel(honest) is not None and server.channel(newcomer) is not None
    assert server.queued() == 1


def test_a_burst_past_the_limit_and_headroom_evicts_its_own_stalest_and_a_probe_gets_in(loop):
    """More newcomers in one turn than the limit, the evictable and the headroom hold
    (a low limit: one fitted under a small hard open-file limit): the candidates were
    found once per turn, so once they ran out the headroom filled with dripping heads and
    the rest of the burst was refused, a probe behind it too (25 % of probes reset at a
    limit of 1 under 300 reconnecting drips). This turn's own newcomers are candidates too."""
    server = loop(limit=1)
    server.connect(HEAD_STARTED)
    server.accept()
    burst = [server.connect(HEAD_STARTED) for _ in range(CONNECTION_HEADROOM + 3)]
    probe = server.connect(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    server.accept()  # one turn
    assert reply(probe).startswith(b"HTTP/1.1 200 OK\r\n")
    server.server.close_evicted()
    assert server.server.active_channels == {}  # each newcomer evicted the one before it
    assert all(closed_by_server(client) for client in burst)


def test_an_evicted_connection_whose_request_came_whole_later_in_its_turn_is_kept(loop):
    """The loop reads an evicted connection again in the same turn when poll reported it
    readable (its request's last segment came after the eviction's read): its request
    went to a worker and the end of the turn closed it unanswered. It is kept."""
    server = loop(limit=1)
    slow = server.connect(b"GET / HTTP/1.1\r\n")
    server.accept()
    newcomer = server.connect()
    server.accept()
    assert server.evicting() == [slow]
    slow.sendall(b"Host: x\r\nConnection: close\r\n\r\n")
    wait_until(lambda: server.channel(slow).socket.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT),
               timeout=2, what="the rest of the head to reach the server's socket")
    server.channel(slow).handle_read()  # the same turn's read event
    server.server.close_evicted()
    assert server.channel(slow) is not None and server.channel(newcomer) is not None
    runner = threading.Thread(target=server.server.run, daemon=True)
    runner.start()
    try:
        assert reply(slow).startswith(b"HTTP/1.1 200 OK\r\n")
    finally:
        server.server.trigger.pull_trigger(lambda: drain.close_all(server.server))
        runner.join(5)


def test_out_of_fds_a_turn_makes_room_as_at_the_limit_so_a_probe_gets_in(loop):
    """A hard open-file limit too small for the limit and its headroom (fitted to 1 under
    nofile 20: 15 slow requests used every fd): accept() failed with EMFILE on every
    try, nothing was evicted or shed, the loop spun at 100 % CPU and every probe timed
    out. Out of fds, a turn makes room as at the limit (here: the newest queued request
    gets its 503) and stops accepting; the next turn takes the probe."""
    server = loop(limit=10)
    server.busy(1)
    queued = [server.connect(WHOLE), server.connect(WHOLE)]
    server.accept()
    assert server.queued() == 2
    probe = server.connect(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    with fds_left(0):
        server.accept()
        assert server.evicting() == [queued[-1]]
        server.server.close_evicted()  # its fd is free again
        server.accept()
    assert reply(probe).startswith(b"HTTP/1.1 200 OK\r\n")
    assert reply(queued[-1]).startswith(b"HTTP/1.1 503 Service Unavailable\r\n")


def test_a_body_that_cannot_spill_while_a_turn_makes_room_does_not_close_the_listener(loop):
    """Making room reads a candidate's waiting bytes; a body that crosses waitress's
    inbuf_overflow (512 KB) there goes to a temp file, and out of fds (or with /tmp
    full) that raised inside handle_accept: waitress's handle_error then closed the
    listener, and the server accepted nothing more, for good, while it looked alive."""
    server = loop(limit=2)
    server.busy(1)
    uploader = server.connect()
    server.accept()
    server.channel(uploader).socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    uploader.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    uploader.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 600_000)
    newcomer = server.connect()
    with fds_left(0):
        wasyncore.readwrite(server.server, select.POLLIN)  # as poll2 does
    assert server.server.accepting
    assert server.evicting() == [uploader]
    server.server.close_evicted()
    server.accept()
    assert server.channel(newcomer) is not None


def test_an_error_while_accepting_is_one_error_line_and_the_listener_stays_open(loop, monkeypatch):
    """waitress's handle_error closes the dispatcher, here the listener: the server would
    accept nothing more, for good, while it looked alive."""
    server = loop(limit=10)
    server.connect()
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logger = logging.getLogger("waitress")
    logger.addHandler(handler)

    def broken(conn):
        raise RuntimeError("boom")

    monkeypatch.setattr(server.server, "set_socket_options", broken)
    try:
        wasyncore.readwrite(server.server, select.POLLIN)  # as poll2 does
    finally:
        logger.removeHandler(handler)
    assert server.server.accepting and server.server.socket is not None
    assert [(record.levelno, record.getMessage().split(" (")[0]) for record in records] == [
        (logging.ERROR, "error while accepting, still listening")]
    assert "RuntimeError" in records[0].getMessage() and "boom" in records[0].getMessage()
    monkeypatch.undo()
    late = server.connect()
    server.accept()
    assert server.channel(late) is not None


def test_out_of_fds_with_nothing_to_evict_or_shed_the_listener_rests_a_moment(loop, monkeypatch):
    server = loop(limit=10)
    server.busy(1)  # a request in hand (never evicted), and no queue to shed
    clock = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    server.server._make_room_for_fds(connection_limit.Candidates(server.server))
    assert server.evicting() == []
    assert not server.server.readable()
    until = server.server._accept_paused_until
    assert until == 100.0 + connection_limit.FDS_RETRY_SECONDS
    clock[0] = until - 0.001
    assert not server.server.readable()
    clock[0] = until  # the moment itself
    assert server.server.readable()


@pytest.mark.parametrize("payload", [b"", WHOLE], ids=["an idle one evicted", "a queued one shed"])
def test_out_of_fds_a_turn_that_makes_room_goes_on_listening(loop, payload):
    server = loop(limit=10)
    server.busy(1)
    taken = server.connect(payload)
    server.accept()
    server.server._make_room_for_fds(connection_limit.Candidates(server.server))
    assert server.evicting() == [taken]
    assert server.server.readable()


def test_drain_accepts_the_rest_of_the_backlog_past_a_connection_gone_already(loop, monkeypatch):
    server = loop(limit=10)
    asks = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    gone, kept = server.connect(asks), server.connect(asks)
    options, failed = server.server.set_socket_options, []

    def first_one_gone(conn):
        if not failed:
            failed.append(conn)
            raise OSError(errno.EINVAL, "Invalid argument")  # setsockopt on a reset socket
        options(conn)

    monkeypatch.setattr(server.server, "set_socket_options", first_one_gone)
    drain.accept_queued_and_stop_listening(server.server)
    assert failed and server.channel(gone) is None and server.channel(kept) is not None
    assert not server.server.accepting


def test_a_burst_past_the_old_candidates_evicts_its_own_earliest_newcomer_next(loop):
    """At the limit, a burst's newcomers evict the stalest old connections first; when
    those run out, the turn's own newcomers, earliest first (a client that connected
    first has had the longest to send its request)."""
    server = loop(limit=3)
    server.busy(1)
    old = []
    for _ in range(2):
        old.append(server.connect())
        server.accept()
        tick()
    burst = [server.connect() for _ in range(3)]
    server.accept()  # one turn: two old ones, then the burst's first
    assert set(server.evicting()) == {*old, burst[0]}


def test_a_probe_let_in_past_the_headroom_gets_one_health_answer_then_is_closed(loop):
    """`GET /healthz` in front of anything else got a client past the limit and the
    headroom for good: 299 connections under --connection-limit 20."""
    server = loop(limit=1, threads=1 + CONNECTION_HEADROOM)
    server.busy(1 + CONNECTION_HEADROOM)  # nothing to evict or shed
    sneaky = server.connect(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                            b"GET /block HTTP/1.1\r\nHost: x\r\n\r\n")
    server.accept()
    answer = reply(sneaky)  # until the server closes it
    assert statuses(answer) == [200], answer
    assert b"\r\nConnection: close\r\n" in answer
    assert server.queued() == 0  # the request behind it never reached a worker


def test_probes_past_the_headroom_that_never_finish_do_not_pile_up(loop):
    server = loop(limit=1, threads=1 + CONNECTION_HEADROOM)
    server.busy(1 + CONNECTION_HEADROOM)
    probes = []
    for _ in range(PROBE_LANE + 5):
        probes.append(server.connect(b"GET /healthz HTTP/1.1\r\n"))  # and the rest never
        server.accept()
        server.server.close_evicted()
        assert len(server.server.active_channels) <= 2 + CONNECTION_HEADROOM
    assert sum(closed_by_server(probe, within=0.2) for probe in probes) == len(probes) - 1


def test_past_the_headroom_a_full_lane_refuses_even_a_probe(loop, monkeypatch):
    server = loop(limit=1, threads=1 + CONNECTION_HEADROOM)
    server.busy(1 + CONNECTION_HEADROOM)
    monkeypatch.setattr(server.server, "_lane_connections", lambda: PROBE_LANE)
    probe = server.connect(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    server.accept()
    try:
        answer = reply(probe)
    except ConnectionResetError:  # closed with its request unread
        answer = b""
    assert answer == b""  # refused, unanswered
