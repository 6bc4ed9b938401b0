"""A connection, as hello serves it: waitress's channel and tasks, plus

- health (/healthz, /readyz) answered in the event-loop thread, so busy workers cannot
  starve them (at most LOOP_ANSWERS_PER_READ of a pipelined batch per read);
- a pipelined batch parsed only as its queue drains, the rest kept as bytes;
- a client that left: its queued request is logged 499, not run; one that waited past
  --queue-timeout for a worker is answered 503;
- unsent answers counted in the memory budget (hello/memory.py), and no new request
  read from a served connection while the budget is spent;
- its tasks are hello/tasks.py's.
"""

from __future__ import annotations

import functools
import socket
import threading
import time

from hello import waitress_version
from hello.http_parser import HelloParser, Overloaded
from hello.tasks import DrainAwareTask, LoggedErrorTask

waitress_version.check()
# Imported after the check: an unknown waitress may not even have these names.
from waitress.channel import HTTPChannel  # noqa: E402

# Answered in the loop thread: cheap, and what health gates and orchestrators probe.
LOOP_ANSWERED_PATHS = frozenset({"/healthz", "/readyz"})
# Health requests answered in the loop thread per read of a connection; the rest of a
# pipelined batch goes to the workers (answering hundreds in one turn made every other
# connection wait: probes took 0.5 s).
LOOP_ANSWERS_PER_READ = 4


def answered_in_loop(request) -> bool:
    return (request.error is None and request.command in ("GET", "HEAD")
            and request.path in LOOP_ANSWERED_PATHS)


class BudgetedChannel(HTTPChannel):
    """waitress's channel, its requests' bodies and its unsent answers held in the
    server's memory budget (server.budget) for as long as they take memory."""

    def __init__(self, server, *args, **kwargs):
        self.served_any = False
        # each request's parser reserves its body in the server's budget
        self.parser_class = functools.partial(HelloParser, budget=server.budget)
        self._counted_out = 0  # of total_outbufs_len, what the budget holds for us
        self._count_lock = threading.Lock()
        super().__init__(server, *args, **kwargs)

    def takes_input(self) -> bool:
        """waitress's readable(), and: while the memory budget is spent, a connection that
        has been served takes no new request (a body already admitted, or being read to
        be thrown away, is read on; a new connection's first request may be a probe, and
        is read): 300 clients pipelining requests and never reading the answers grew the
        server by 300 MB."""
        if self.served_any and self.server.budget.exhausted():
            request = self.request
            if request is None or not request.headers_finished or request.completed:
                return False
        return super().readable()

    def service(self):
        self.served_any = True
        super().service()

    def _count_out(self) -> None:
        """Bring the budget's count of this connection's unsent response bytes up to date
        (after waitress changed total_outbufs_len: a write, a send, a close)."""
        with self._count_lock:
            change = self.total_outbufs_len - self._counted_out
            self._counted_out += change
        if change:
            self.server.budget.add(change)

    def write_soon(self, data):
        try:
            return super().write_soon(data)
        finally:
            self._count_out()

    def _flush_some(self, do_close=True):
        try:
            return super()._flush_some(do_close=do_close)
        finally:
            self._count_out()

    def handle_close(self):
        super().handle_close()
        self._count_out()
        for request in (self.request, *self.requests):  # their bodies are no one's now
            if request is not None:
                request.release()



class PipelinedChannel(BudgetedChannel):
    """A BudgetedChannel that answers health requests in the loop thread, in the read
    that brought them, and parses a pipelined batch only as its queue drains."""

    def __init__(self, server, *args, **kwargs):
        self.loop_service_pending = False  # add_task found a request for the loop to answer
        self.unparsed = b""  # the rest of a pipelined batch, parsed as its queue drains
        super().__init__(server, *args, **kwargs)

    def readable(self):
        """The socket is read when the connection takes input and holds no unparsed
        bytes of its own (those are parsed first: HelloServer.parse_unparsed)."""
        return not self.unparsed and self.takes_input()

    def handle_close(self):
        self.unparsed = b""
        super().handle_close()

    def received(self, data, loop_answers: int = LOOP_ANSWERS_PER_READ):
        """Parse what fits the queue; answer up to loop_answers health requests here, in
        the loop thread, outside the lock that parsing holds (service() takes it too);
        keep the rest. Kept bytes are parsed on with loop_answers 0 (parse_unparsed): a
        batch's health requests then go to the workers, as the rest of a read's did (the
        loop answering 4 per request a worker finished put a pipelining client's health
        flood in the loop thread, and probes waited)."""
        data = self.unparsed + data
        answered = 0
        while True:
            data = self._parse(data)
            if not (self.loop_service_pending and self.requests and self.connected):
                break
            self.loop_service_pending = False
            if answered == loop_answers:
                self.server.to_workers(self)  # a pipelined batch: the rest waits its turn
                break
            self.service()
            answered += 1
        self.unparsed = data if self.connected else b""
        if self.unparsed:
            self.server.unparsed_channels[self] = None
        if answered and self.connected:
            self._send_now()
        return True

    def _parse(self, data: bytes) -> bytes:
        """waitress's received(), except that it stops once the connection's queue is
        full (more than channel_request_lookahead requests) and returns the bytes left:
        one read can hold 200 pipelined requests, and 300 such clients made the loop
        parse 60,000 requests in one turn (a probe waited 4 s for it)."""
        with self.requests_lock:
            if self.will_close or self.close_when_flushed:
                return b""
            # a 100 Continue that found the client gone closed us: read nothing more (a
            # request parsed after the close reserved its body for good: the budget leaked)
            while data and self.connected and \
                    len(self.requests) <= self.adj.channel_request_lookahead:
                if self.request is None:
                    self.request = self.parser_class(self.adj)
                n = self.request.received(data)
                # answers go out in order: a continue waits for the queue to be empty; a
                # request already refused (a 413 for its Content-Length) gets its refusal
                # (waitress's send_continue un-completes it, and it waited for the body)
                if (self.request.expect_continue and self.request.headers_finished
                        and not self.request.completed and not self.requests
                        and not self.sent_continue):
                    self.send_continue()
                if self.request.completed:
                    self.sent_continue = False
                    if not self.request.empty:
                        self.requests.append(self.request)
                        if len(self.requests) == 1:  # else service() queues it after this one
                            self.server.add_task(self)
                    self.request = None
                if n >= len(data):
                    return b""
                data = data[n:]
        return data

    def answer_now(self) -> None:
        """In the loop thread: serve the first request (taken out of the workers' queue)
        and send its answer in this turn."""
        if self.requests:
            self.service()
        if self.connected:
            self._send_now()

    def _send_now(self) -> None:
        """Send a loop-answered response in this turn, not the next: under 1000 busy
        connections each turn of the loop costs milliseconds, and a probe waits for it."""
        with self.outbuf_lock:
            self._flush_exception(self._flush_some)
        if self.close_when_flushed and not self.total_outbufs_len:
            self.handle_close()


class HelloChannel(PipelinedChannel):
    """A PipelinedChannel that reads without blocking the loop, and does not run what a
    client that left, or waited past --queue-timeout, asked for."""

    task_class = DrainAwareTask
    error_task_class = LoggedErrorTask

    def __init__(self, server, *args, **kwargs):
        self.queued_at: float | None = None  # when it was queued for a worker
        self.client_done = False  # its client sent FIN: nothing more is read
        self.lane_only = False  # let in past the limit as a probe: one health answer, then closed
        super().__init__(server, *args, **kwargs)

    def takes_input(self) -> bool:
        return not self.client_done and super().takes_input()

    def _take(self, flags: int = 0) -> bytes | None:
        """Receive and take in what the socket has (b"" at the client's end); None if
        nothing waited. OSError if the socket broke."""
        try:
            data = self.socket.recv(self.adj.recv_bytes, flags)
        except (BlockingIOError, InterruptedError):
            return None
        if data:
            self.last_activity = time.time()
            self.received(data)
        return data

    def handle_read(self):
        """waitress's, except that a wakeup with nothing to read is not a socket error
        (waitress logs it and closes the connection), and the end of the client's input
        is not the end of the connection while it has whole requests to be answered."""
        try:
            data = self._take()
        except OSError:
            self.handle_close()
            return
        if data == b"":
            if self.requests:
                # A client that left, or one that half-closed after its request and still
                # reads: the two look the same. Its requests are answered (a wait among
                # them ends at once: waitress.client_disconnected says so), then closed.
                self.client_done = True
            else:
                self.handle_close()

    def read_if_waiting(self) -> None:
        """Read a request that arrived before we accepted, without waiting for a turn."""
        try:
            self._take(socket.MSG_DONTWAIT)
        except OSError:
            self.handle_close()

    def read_whole_request(self) -> bool:
        """Read what waits on the socket until it holds a whole request, or nothing more
        waits: before an eviction, one recv_bytes was not enough (a 20 KB head or body was
        cut and the client evicted with the rest unread). At most one request's worth (the
        parser refuses more). False if the socket broke (closed by the caller, later)."""
        budget = self.adj.max_request_header_size + self.adj.max_request_body_size
        while budget > 0 and self.connected and not self.requests \
                and not self.total_outbufs_len:
            try:
                data = self._take(socket.MSG_DONTWAIT)
            except OSError:
                return False
            if not data:  # nothing waits, or the client half-closed: nothing more now
                return True
            budget -= len(data)
        return True

    def service(self):
        """Run the first request, unless its client has gone (then only its log line,
        status 499 as nginx writes it) or it waited longer than --queue-timeout for a
        worker (then 503 with Retry-After instead of running late)."""
        queued_at, self.queued_at = self.queued_at, None
        request = self.requests[0] if self.requests else None
        if request is not None and request.error is None:
            if not self.connected:
                self._log_gone(request)
            elif queued_at is not None and \
                    time.monotonic() - queued_at > self.server.queue_timeout:
                request.error = Overloaded(
                    f"the request waited over {self.server.queue_timeout:g}s for a worker")
        super().service()
        if self.client_done and not self.requests and self.connected:
            with self.requests_lock:
                self.close_when_flushed = True  # its last answer out, then closed
            self.server.pull_trigger()

    def _log_gone(self, request) -> None:
        writer = self.server.hello_writer
        if writer is not None:
            writer.access(method=request.command, path=request.path, status=499, bytes=0,
                          duration_ms=0, remote=self.addr[0] if self.addr else None)

    def check_client_disconnected(self):
        return not self.connected or self.client_done
