"""Everything `hello` does inside waitress, in one place, for one waitress version.

waitress has no hooks for what `hello serve` needs, so this module subclasses its
parser, task, channel and server classes. They are internals: a new waitress may
rename any of them, so the version is checked here at import, and a mismatch
stops `hello serve` with one line instead of failing under load (the way
spec/staticx_onedir.py refuses an unknown staticx). setup.cfg and requirements/
pin the same version.

What is here, and why:
- HelloParser: the RFC 9112 edges waitress 3.0.2 lets through. A request with
  both Content-Length and Transfer-Encoding (or Transfer-Encoding in HTTP/1.0) is
  a 400 and the connection closes (§6.3: request smuggling), and so is chunked named
  twice (§6.1; waitress decodes it once); HTTP versions other
  than 1.0/1.1 get 505; HTTP/1.1 without exactly one Host gets 400 (§3.2). It also
  stamps when a request's first byte and its head's end arrived, for the deadlines,
  and keeps the real request line of a 431 for the access log.
- HelloServer: the health routes (/healthz, /readyz) are answered in the event-loop
  thread, so busy workers cannot starve them; the header/body deadlines are
  enforced every second; at the connection limit a new connection evicts the
  stalest one still sending its request instead of waiting behind it, so 1000 slow
  clients cannot lock a health probe out; when every connection has a request
  (nothing to evict) and the headroom is used, the newest request still queued for
  a worker is answered 503 instead; at most LOOP_ANSWERS_PER_READ pipelined health
  requests are answered in the loop per read; poll() instead of select(), which
  fails past fd 1023.
- the memory budget (hello/memory.py): a request body is reserved (twice: the app's
  copy too) when its head arrives, and a response is counted while it waits to be
  sent; a body that does not fit is read to its end and thrown away, then answered
  503 with Retry-After, and a request without a body is answered 503 while the
  budget is spent. Nothing is buffered in temp files (no spill: $TMPDIR is a tmpfs
  charged to the same limit in every shape hello ships in, and a full one reset
  uploads), so a connection holds one fd.
- drain steps: accept what the kernel queued and stop listening; close idle
  keep-alive connections.
"""

from __future__ import annotations

import errno
import functools
import io
import pathlib
import socket
import sys
import threading
import time

import waitress

from hello import memory

WAITRESS_VERSION = "3.0.2"


def installed_waitress_version() -> str | None:
    """The version of the waitress that is imported, from its dist-info folder name.

    Read from the folder name, not importlib.metadata: that import costs start time
    and is deferred in the binary (spec/rthook_defer_imports.py). The spec copies
    waitress's dist-info next to the package. The expected name is checked first:
    globbing a big site-packages costs ~7 ms of every start.
    """
    package = pathlib.Path(waitress.__file__).resolve().parent
    folders = (package.parent, pathlib.Path(getattr(sys, "_MEIPASS", package.parent)))
    for folder in folders:
        if (folder / f"waitress-{WAITRESS_VERSION}.dist-info").is_dir():
            return WAITRESS_VERSION
    for folder in folders:
        for info in folder.glob("waitress-*.dist-info"):
            return info.name[len("waitress-"):-len(".dist-info")]
    return None


_found = installed_waitress_version()
if _found != WAITRESS_VERSION:
    raise ImportError(f"hello needs waitress {WAITRESS_VERSION} (it uses its internals), "
                      f"found {_found or 'an unknown version'}: check requirements/runtime.txt")

# Imported after the check: an unknown waitress may not even have these names.
from waitress import wasyncore  # noqa: E402
from waitress.adjustments import Adjustments  # noqa: E402
from waitress.channel import HTTPChannel  # noqa: E402
from waitress.parser import (  # noqa: E402
    HTTPRequestParser,
    ParsingError,
    crack_first_line,
    get_header_lines,
)
from waitress.server import TcpWSGIServer  # noqa: E402
from waitress.task import ErrorTask, ThreadedTaskDispatcher, WSGITask  # noqa: E402
from waitress.utilities import (  # noqa: E402
    BadRequest,
    Error,
    RequestEntityTooLarge,
    RequestHeaderFieldsTooLarge,
)

# Answered in the loop thread: cheap, and what health gates and orchestrators probe.
LOOP_ANSWERED_PATHS = frozenset({"/healthz", "/readyz"})
# How a probe's request starts (with its query or protocol next), peeked at the limit.
PROBE_STARTS = tuple(f"{method} {path}{after}".encode() for method in ("GET", "HEAD")
                     for path in sorted(LOOP_ANSWERED_PATHS) for after in (" ", "?"))
PROBE_PEEK_BYTES = 16
# Probes let in past the limit and its headroom at once, at most (each is answered in the
# loop and closed, so they do not stay; a client that only looks like one cannot hold more).
PROBE_LANE = 16
# How often the deadlines and the idle timeout are checked (waitress's default is 30 s).
MAINTENANCE_SECONDS = 1.0
# Past the limit with nothing evictable (every connection has a request being
# served), a few more connections are still accepted so a probe is not refused.
CONNECTION_HEADROOM = 16
# Health requests answered in the loop thread per read of a connection; the rest of a
# pipelined batch goes to the workers (one read can hold hundreds of requests, and
# answering them all in one turn made every other connection wait: probes took 0.5 s).
LOOP_ANSWERS_PER_READ = 4
ACCEPT_BATCH = 128
# A request that waited this long for a worker makes the server "saturated" (/readyz 503).
SATURATED_SECONDS = 1.0
# Out of fds with nothing to evict or shed: how long the listener is left alone.
FDS_RETRY_SECONDS = 0.1
_FIRST_LINE_KEPT = 8192
# waitress spills a body past 512 KB and a response past 1 MB to temp files: never here.
NEVER_SPILL = 1 << 62
# What a parsed request waiting in its connection's queue costs (measured: ~0.9 KB; one
# read can hold ~190 pipelined requests), counted in the memory budget until served.
PARSED_REQUEST_BYTES = 2048


class VersionNotSupported(Error):
    code = 505
    reason = "HTTP Version Not Supported"


class Overloaded(Error):
    """A queued request turned away at the connection limit (with Retry-After)."""
    code = 503
    reason = "Service Unavailable"


class Discarded:
    """A body buffer that keeps only the count of what arrived: a body refused for the
    memory budget is still read to its end, so its 503 reaches the client whole (closed
    mid-upload, the client got a reset instead), but it is not held."""

    def __init__(self, seen: int = 0):
        self.seen = seen

    def append(self, data: bytes) -> None:
        self.seen += len(data)

    def __len__(self) -> int:
        return self.seen

    def getfile(self):
        return io.BytesIO()

    def close(self) -> None:
        pass


class HelloParser(HTTPRequestParser):
    """waitress's parser plus the RFC 9112 checks it lacks, the deadline stamps, and the
    memory budget's reservation for its body."""

    # A request line waitress could not parse leaves these unset, and waitress's own
    # "Client disconnected while serving %s" % request.path then raised AttributeError.
    command: str | None = None
    path: str | None = None

    def __init__(self, adj, budget: memory.Budget | None = None):
        super().__init__(adj)
        self.started = time.monotonic()
        self.head_done_at: float | None = None
        self._start = b""
        self.too_large_line: tuple[str, str] | None = None
        self.budget = budget
        self.held = 0  # bytes of the budget this request holds (its body, itself queued)
        self.body_reserved = False
        self.queued_counted = False

    def received(self, data: bytes) -> int:
        if self.chunked and self.body_rcv is not None and not self.completed:
            return self._chunked_body(data)
        if self.head_done_at is None and b"\n" not in self._start.lstrip():
            # the request line, for a 431's log line; only that: each request of a
            # pipelined batch kept 8 KB of the batch, 1.5 MB a read of small requests
            skip = len(data) - len(data.lstrip()) if not self._start.strip() else 0
            end = data.find(b"\n", skip, _FIRST_LINE_KEPT - len(self._start))
            self._start += data[:end + 1 if end >= 0 else _FIRST_LINE_KEPT - len(self._start)]
        consumed = super().received(data)
        if self.headers_finished and self.head_done_at is None:
            self.head_done_at = time.monotonic()
            if self.error is None and self.content_length > 0 and not self.completed:
                self._reserve(self.content_length)
        self._count_when_queued()
        if isinstance(self.error, RequestHeaderFieldsTooLarge) and self.too_large_line is None:
            self.too_large_line = self._request_line_of(self._start)
        return consumed

    def _count_when_queued(self) -> None:
        """Once whole, a request waits in its connection's queue: counted until served."""
        if self.completed and not self.queued_counted and self.budget is not None \
                and not self.empty:
            self.queued_counted = True
            self.budget.add(PARSED_REQUEST_BYTES)
            self.held += PARSED_REQUEST_BYTES

    def _reserve(self, size: int) -> None:
        """Hold size body bytes (and the app's copy) in the budget, or refuse the body."""
        if self.budget is None:
            return
        if self.budget.reserve(size * memory.BODY_COPIES):
            self.held += size * memory.BODY_COPIES
            self.body_reserved = True
            return
        self.error = Overloaded("the server's memory budget is spent")
        self.release()
        if self.expect_continue:  # it waits for our word before sending: it gets the 503
            self.expect_continue = False
            self.connection_close = True
            self.completed = True
            self.body_rcv = None
            return
        kept, self.body_rcv.buf = self.body_rcv.buf, Discarded(len(self.body_rcv))
        kept.close()

    def release(self) -> None:
        """Give what it holds back (idempotent: the channel's close and the task's end
        may both get here)."""
        held, self.held = self.held, 0
        if held:
            self.budget.add(-held)

    def close(self) -> None:
        self.release()
        super().close()

    def _chunked_body(self, data: bytes) -> int:
        """waitress's chunked branch, but the limit counts the body, not its framing
        (waitress counts chunk sizes and CRLFs too, so a body of exactly the limit got 413),
        a chunk that declares more than the limit allows is refused as it is declared,
        and what arrives is reserved in the memory budget as it arrives."""
        receiver = self.body_rcv
        before = len(receiver)
        consumed = receiver.received(data)
        self.body_bytes_received += consumed
        if self.error is None and len(receiver) > before:
            self._reserve(len(receiver) - before)
        # what arrived plus what the current chunk still promises: a chunk declared
        # past the limit is refused at once, not waited for until the body deadline
        if len(receiver) + receiver.chunk_remainder >= self.adj.max_request_body_size:
            self.error = RequestEntityTooLarge(
                f"exceeds max_body of {self.adj.max_request_body_size - 1}")
            self.completed = True
        elif receiver.error:
            self.error = receiver.error
            self.completed = True
        elif receiver.completed:
            self.completed = True
            self.headers["CONTENT_LENGTH"] = str(len(receiver))
        self._count_when_queued()
        return consumed

    @staticmethod
    def _request_line_of(start: bytes) -> tuple[str, str] | None:
        """(method, path) of a head that was too large, when its first line is whole."""
        line = start.lstrip().split(b"\r\n", 1)  # waitress, too, skips leading whitespace
        if len(line) < 2:
            return None
        try:
            method, uri, _ = crack_first_line(line[0])
        except Exception:  # a malformed line: log nothing rather than a guess
            return None
        if not method:
            return None
        return method.decode("latin-1"), uri.split(b"?", 1)[0].decode("latin-1")

    def parse_header(self, header_plus: bytes) -> None:
        had_te = b"\ntransfer-encoding:" in header_plus.lower().replace(b" ", b"")
        codings = self._transfer_codings(header_plus) if had_te else []
        super().parse_header(header_plus)
        problem = self._framing_problem(had_te, codings.count(b"chunked") > 1)
        if problem is not None:
            self.error = problem
            self.connection_close = True
            self.body_rcv = None  # nothing more is read: the answer closes the connection
            self.chunked = False
            self.content_length = 0

    @staticmethod
    def _transfer_codings(header_plus: bytes) -> list[bytes]:
        """Every coding of every Transfer-Encoding line (waitress joins and pops them)."""
        try:
            lines = get_header_lines(header_plus.partition(b"\r\n")[2])
        except ParsingError:
            return []  # waitress refuses the head itself
        codings = []
        for line in lines:
            name, sep, value = line.partition(b":")
            if sep and name.lower() == b"transfer-encoding":
                codings += [coding.strip(b" \t").lower() for coding in value.split(b",")
                            if coding.strip(b" \t")]
        return codings

    def _framing_problem(self, had_te: bool, chunked_twice: bool = False) -> Error | None:
        if self.version not in ("1.0", "1.1", ""):
            return VersionNotSupported(f"HTTP/{self.version} is not supported; use HTTP/1.1")
        if chunked_twice:  # RFC 9112 6.1: applied once; waitress would decode it once
            return BadRequest("Transfer-Encoding names chunked more than once")
        if had_te and ("CONTENT_LENGTH" in self.headers or self.version != "1.1"):
            return BadRequest("Transfer-Encoding with Content-Length or in HTTP/1.0")
        host = self.headers.get("HOST")
        if self.version == "1.1" and (host is None or "," in host):
            return BadRequest("HTTP/1.1 needs exactly one Host header")
        return None


class DrainAwareTask(WSGITask):
    """Once drain has begun, every response says `Connection: close`.

    A WSGI app may not set hop-by-hop headers (PEP 3333), so this is done where
    waitress builds the response head (build_response_header, set_close_on_finish).
    """

    def build_response_header(self):
        if self.channel.server.hello_draining.is_set() or self.channel.lane_only:
            self.set_close_on_finish()
        return super().build_response_header()


class LoggedErrorTask(ErrorTask):
    """The 400/413/431/503/505 answers waitress gives itself, before any WSGI app runs:
    the same nosniff and no-store headers as every other response, and an access-log
    line."""

    def execute(self):
        self.response_headers.append(("X-Content-Type-Options", "nosniff"))
        self.response_headers.append(("Cache-Control", "no-store"))
        if isinstance(self.request.error, Overloaded):
            self.response_headers.append(("Retry-After", "1"))
        started = time.perf_counter()
        super().execute()
        writer = getattr(self.channel.server, "hello_writer", None)
        if writer is None:
            return
        request = self.request
        method = getattr(request, "command", None) or None
        path = getattr(request, "path", None) or None
        if isinstance(request.error, RequestHeaderFieldsTooLarge):
            # waitress parses a stand-in `GET / HTTP/1.0` for these: log the real line
            method, path = getattr(request, "too_large_line", None) or (None, None)
        writer.access(method=method, path=path,
                      status=int(self.status.split(" ", 1)[0]),
                      bytes=self.content_length or 0,
                      duration_ms=round((time.perf_counter() - started) * 1000, 3),
                      remote=self.channel.addr[0] if self.channel.addr else None)


class HelloChannel(HTTPChannel):
    task_class = DrainAwareTask
    error_task_class = LoggedErrorTask
    parser_class = HelloParser

    def __init__(self, server, *args, **kwargs):
        self.served_any = False
        self.loop_service_pending = False
        self.queued_at: float | None = None  # when it was queued for a worker
        self.client_done = False  # its client sent FIN: nothing more is read
        self.lane_only = False  # let in past the limit as a probe: one health answer, then closed
        self.unparsed = b""  # the rest of a pipelined batch, parsed as its queue drains
        # each request's parser reserves its body in the server's budget
        self.parser_class = functools.partial(HelloParser, budget=server.budget)
        self._counted_out = 0  # of total_outbufs_len, what the budget holds for us
        self._count_lock = threading.Lock()
        super().__init__(server, *args, **kwargs)

    def readable(self):
        """The socket is read when the connection takes input and holds no unparsed
        bytes of its own (those are parsed first: HelloServer.parse_unparsed)."""
        return not self.unparsed and self.takes_input()

    def takes_input(self) -> bool:
        """waitress's readable(), and: while the memory budget is spent, a connection that
        has been served takes no new request (a body already admitted, or being read to
        be thrown away, is read on; a new connection's first request may be a probe, and
        is read): 300 clients pipelining requests and never reading the answers grew the
        server by 300 MB."""
        if self.client_done:
            return False
        if self.served_any and self.server.budget.exhausted():
            request = self.request
            if request is None or not request.headers_finished or request.completed:
                return False
        return super().readable()

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
        self.unparsed = b""
        super().handle_close()
        self._count_out()
        for request in (self.request, *self.requests):  # their bodies are no one's now
            if request is not None:
                request.release()

    def received(self, data):
        """Parse what fits the queue; answer health requests here, in the loop thread,
        outside the lock that parsing holds (service() takes it too); keep the rest."""
        data = self.unparsed + data
        answered = 0
        while True:
            data = self._parse(data)
            if not (self.loop_service_pending and self.requests and self.connected):
                break
            self.loop_service_pending = False
            if answered == LOOP_ANSWERS_PER_READ:
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
            while data and len(self.requests) <= self.adj.channel_request_lookahead:
                if self.request is None:
                    self.request = self.parser_class(self.adj)
                n = self.request.received(data)
                # answers go out in order: a continue waits for the queue to be empty
                if (self.request.expect_continue and self.request.headers_finished
                        and not self.requests and not self.sent_continue):
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

    def _send_now(self) -> None:
        """Send a loop-answered response in this turn, not the next: under 1000 busy
        connections each turn of the loop costs milliseconds, and a probe waits for it."""
        with self.outbuf_lock:
            self._flush_exception(self._flush_some)
        if self.close_when_flushed and not self.total_outbufs_len:
            self.handle_close()

    def read_if_waiting(self) -> None:
        """Read a request that arrived before we accepted, without waiting for a turn."""
        try:
            data = self.socket.recv(self.adj.recv_bytes, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.handle_close()
            return
        if data:
            self.last_activity = time.time()
            self.received(data)

    def service(self):
        """Run the first request, unless its client has gone (then only its log line,
        status 499 as nginx writes it) or it waited longer than --queue-timeout for a
        worker (then 503 with Retry-After instead of running late)."""
        self.served_any = True
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

    def handle_read(self):
        """waitress's, except that a wakeup with nothing to read is not a socket error
        (waitress logs it and closes the connection), and the end of the client's input
        is not the end of the connection while it has whole requests to be answered."""
        try:
            data = self.socket.recv(self.adj.recv_bytes)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.handle_close()
            return
        if data:
            self.last_activity = time.time()
            self.received(data)
        elif self.requests:
            # A client that left, or one that half-closed after its request and still
            # reads: the two look the same. Its requests are answered (a wait among them
            # ends at once: waitress.client_disconnected says so), then it is closed.
            self.client_done = True
        else:
            self.handle_close()

    def check_client_disconnected(self):
        return not self.connected or self.client_done


def _is_probe(conn: socket.socket) -> bool:
    """The connection's first bytes, already here, are a health request: past the limit
    and its headroom it is let in all the same (answered in the loop at once, it costs
    an fd for a moment). Refused with the rest, probes failed under clients reconnecting
    at once at the limit (1 in 70 at --connection-limit 20)."""
    try:
        start = conn.recv(PROBE_PEEK_BYTES, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except OSError:
        return False
    return start.startswith(PROBE_STARTS)


def _answered_in_loop(request) -> bool:
    return (request.error is None and request.command in ("GET", "HEAD")
            and request.path in LOOP_ANSWERED_PATHS)


class HelloServer(TcpWSGIServer):
    """waitress's TCP server with loop-thread health, deadlines and eviction."""

    channel_class = HelloChannel

    def __init__(self, application, sock, *, writer, header_timeout: float,
                 body_timeout: float, budget: memory.Budget | None = None,
                 accept_batch: int = ACCEPT_BATCH, queue_timeout: float = 10.0, **adjustments):
        # channel_request_lookahead=1: a connection stays readable while its request
        # waits or runs, so a client that leaves is seen (its request is then not run,
        # and a running one can tell: waitress.client_disconnected)
        adj = Adjustments(cleanup_interval=MAINTENANCE_SECONDS, inbuf_overflow=NEVER_SPILL,
                          outbuf_overflow=NEVER_SPILL, channel_request_lookahead=1,
                          **adjustments)  # run() polls
        self.budget = budget or memory.Budget(memory.UNLIMITED)
        self.accept_batch = accept_batch
        self.queue_timeout = queue_timeout
        dispatcher = ThreadedTaskDispatcher()
        dispatcher.set_thread_count(adj.threads)
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.hello_draining = threading.Event()
        self.hello_writer = writer
        self._evicting: list[HelloChannel] = []  # closed when the loop's turn ends
        # holding the rest of a pipelined batch (a dict: oldest first), loop thread only
        self.unparsed_channels: dict[HelloChannel, None] = {}
        self._accept_paused_until = 0.0  # out of fds with nothing to close: wait a little
        # sock is bound and listening already: waitress neither makes nor binds one
        super().__init__(application, _sock=sock, dispatcher=dispatcher, adj=adj,
                         bind_socket=False)
        self._loop_thread: threading.Thread | None = None

    def run(self):
        """waitress's loop, plus closing evicted connections between turns: closed in
        the middle of a turn, an evicted connection's fd could be reused by a connection
        accepted in the same turn and get the old one's pending events (a hang-up)."""
        self._loop_thread = threading.current_thread()
        try:
            while self._map:
                wasyncore.poll2(self.adj.asyncore_loop_timeout, self._map)
                self.close_evicted()
                self.parse_unparsed()
        except (SystemExit, KeyboardInterrupt):
            self.task_dispatcher.shutdown()

    def close_evicted(self) -> None:
        """The end of a loop turn: the connections evicted or shed in it are closed. One
        that got a whole request since (read again in this turn: its last bytes came after
        the eviction's read) is kept: closed, that request went unanswered. A shed one has
        none left (its 503 ends it)."""
        while self._evicting:
            channel = self._evicting.pop()
            if channel.connected and not channel.requests:
                channel.handle_close()

    def parse_unparsed(self) -> None:
        """The end of a loop turn: connections holding the rest of a pipelined batch
        parse on where their queue has room (a worker that finishes one pulls the
        trigger, so the loop turns)."""
        for channel in list(self.unparsed_channels):
            if not channel.connected or not channel.unparsed:
                del self.unparsed_channels[channel]
            elif channel.takes_input():
                del self.unparsed_channels[channel]
                channel.received(b"")

    def _lane_connections(self) -> int:
        return sum(1 for channel in list(self.active_channels.values()) if channel.lane_only)

    def _open_connections(self) -> int:
        """Open and not about to close. A shed connection whose 503 went out at once is
        closed already (out of active_channels): it must not be taken off twice."""
        return len(self.active_channels) - sum(1 for channel in self._evicting
                                               if channel.connected)

    def add_task(self, channel):
        request = channel.requests[0]
        if channel.lane_only and request.error is None and not _answered_in_loop(request):
            # let in past the limit for a probe, it sent something else behind it
            request.error = Overloaded("the server is at its connection limit")
        if (request.error is None and not request.body_reserved
                and not _answered_in_loop(request) and self.budget.exhausted()):
            request.error = Overloaded("the server's memory budget is spent")
        in_loop = threading.current_thread() is self._loop_thread
        if in_loop and (_answered_in_loop(request) or isinstance(request.error, Overloaded)):
            channel.loop_service_pending = True  # a 503 costs nothing: not behind the queue
        else:
            self.to_workers(channel)

    def to_workers(self, channel) -> None:
        channel.queued_at = time.monotonic()
        super().add_task(channel)

    def saturated(self) -> bool:
        """A request has waited for a worker longer than SATURATED_SECONDS: /readyz says
        so, so that a load balancer sends the next ones to another instance."""
        dispatcher = self.task_dispatcher
        with dispatcher.lock:
            oldest = dispatcher.queue[0].queued_at if dispatcher.queue else None
        return oldest is not None and time.monotonic() - oldest > SATURATED_SECONDS

    def shed_stale_queue(self, mono: float) -> None:
        """Loop thread, every MAINTENANCE_SECONDS: queued requests whose client has gone
        are dropped, and those past --queue-timeout answered 503, now, without waiting
        for a worker (1000 clients that gave up on ?wait=30s left an hour of work)."""
        dispatcher = self.task_dispatcher
        with dispatcher.lock:
            stale = [channel for channel in dispatcher.queue
                     if not channel.connected or channel.queued_at is None
                     or mono - channel.queued_at > self.queue_timeout]
            for channel in stale:  # no worker can take it now: it is ours
                dispatcher.queue.remove(channel)
        for channel in stale:
            if channel.requests:
                channel.service()
            if channel.connected:
                channel._send_now()

    def readable(self):
        """Listen always: at the limit, handle_accept makes room instead."""
        now = time.time()
        if now >= self.next_channel_cleanup:
            self.next_channel_cleanup = now + self.adj.cleanup_interval
            self.maintenance(now)
        return self.accepting and time.monotonic() >= self._accept_paused_until

    def handle_accept(self):
        """Accept up to accept_batch (ACCEPT_BATCH unless the fds are few) queued
        connections per loop turn (waitress takes one: with 1000 connections to poll per
        turn, a probe queued behind a burst of reconnecting slow clients waited seconds
        in the listen backlog)."""
        evictable: list[HelloChannel] | None = None  # stalest last, found once per turn
        fresh: list[HelloChannel] = []  # accepted in this turn since evictable was found
        lane = False
        for _ in range(self.accept_batch):
            try:
                pair = self.accept()
                if pair is None:
                    return
                conn, addr = pair
                self.set_socket_options(conn)
            except OSError as error:
                if error.errno in (errno.EMFILE, errno.ENFILE):
                    self._make_room_for_fds(evictable)
                    return
                continue  # the peer went away before we got to it
            if self._open_connections() >= self.adj.connection_limit:
                if evictable is None:
                    evictable = self._evictable()
                stalest = self._pop_still_evictable(evictable)
                if stalest is None and fresh:  # a burst: its own earliest newcomers next
                    evictable, fresh = fresh[::-1], []
                    stalest = self._pop_still_evictable(evictable)
                if stalest is not None:  # closed at the end of this turn
                    self._evicting.append(stalest)
                elif self._open_connections() >= self.adj.connection_limit + CONNECTION_HEADROOM:
                    if _is_probe(conn) and self._lane_connections() < PROBE_LANE:
                        lane = True  # one health answer, then closed
                    elif not self._shed_newest_queued():
                        conn.close()  # nothing to evict or shed, no headroom left: refuse it
                        continue
            channel = self.channel_class(self, conn, self.fix_addr(addr), self.adj, map=self._map)
            channel.lane_only, lane = lane, False
            channel.read_if_waiting()
            if evictable is not None:
                fresh.append(channel)

    def handle_error(self):
        """An error in handle_accept: logged, and the server goes on listening. waitress's
        closes the dispatcher, here the listener: the server accepted nothing more, for
        good, while it looked alive."""
        _, kind, value, where = self.compact_traceback()
        self.log_info(f"error while accepting, still listening ({kind}:{value} {where})", "error")

    def _make_room_for_fds(self, evictable: list[HelloChannel] | None) -> None:
        """Out of fds (a hard open-file limit too small for the limit and its headroom):
        make room as at the limit, the stalest unfinished request or else the newest
        queued one, so the next turn accepts; and, with nothing to take, stop listening
        for a moment rather than spin on EMFILE. It spun at 100 % CPU, evicted nothing,
        and every probe timed out."""
        stalest = self._pop_still_evictable(self._evictable() if evictable is None else evictable)
        if stalest is not None:
            self._evicting.append(stalest)
        elif not self._shed_newest_queued():
            self._accept_paused_until = time.monotonic() + FDS_RETRY_SECONDS

    def _evictable(self) -> list[HelloChannel]:
        """Connections still sending a request (or idle), the longest-waiting last: a
        request's age counts from its first byte, so dripping bytes does not renew it.
        Made once per handle_accept (then the turn's own newcomers, earliest first, when
        these run out: a burst bigger than the limit and headroom refused a probe behind
        it); a candidate is read just before it is taken (its whole request may be
        waiting), and what a turn evicts is closed before the next."""
        mono, now = time.monotonic(), time.time()

        def waited(channel: HelloChannel) -> float:
            request = channel.request
            return mono - request.started if request is not None else now - channel.last_activity

        # being served, holding requests still to parse or sending an answer: never cut it
        return sorted((channel for channel in list(self.active_channels.values())
                       if not (channel.requests or channel.unparsed or channel.total_outbufs_len)),
                      key=waited)

    def _pop_still_evictable(self, evictable: list[HelloChannel]) -> HelloChannel | None:
        """The stalest candidate, once what waits unread on its socket is read: a client
        that sent its whole request just after we accepted it is not idle, and closing it
        would drop that request unanswered."""
        while evictable:
            channel = evictable.pop()
            if not self._read_waiting(channel):
                return channel  # broken: closed with the evicted at the end of the turn,
                # not now, where a newcomer could get its fd and its events
            if channel.connected and not channel.requests and not channel.total_outbufs_len:
                return channel
        return None

    def _read_waiting(self, channel: HelloChannel) -> bool:
        """Read what waits on a candidate's socket until it holds a whole request, or
        nothing more waits: one recv_bytes was not enough, a 20 KB head or body was cut
        and the client evicted with the rest of its request unread. At most one request's
        worth (the parser refuses more). False if the socket is broken."""
        budget = self.adj.max_request_header_size + self.adj.max_request_body_size
        while budget > 0 and channel.connected and not channel.requests \
                and not channel.total_outbufs_len:
            try:
                data = channel.socket.recv(self.adj.recv_bytes, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return True
            except OSError:
                return False
            if not data:  # the client half-closed: nothing more will come
                return True
            budget -= len(data)
            channel.last_activity = time.time()
            try:
                channel.received(data)
            except OSError:  # a body past 512 KB could not spill (out of fds, /tmp full)
                return False
        return True

    def _shed_newest_queued(self) -> bool:
        """Every connection has a request: turn away the newest one still waiting for a
        worker with a 503 (it has not started, and the older ones are served first),
        so a health probe always gets in however long the queue is."""
        dispatcher = self.task_dispatcher
        with dispatcher.lock:
            if not dispatcher.queue:
                return False
            channel = dispatcher.queue.pop()  # no worker can take it now: it is ours
        if channel.requests:  # (none if it was cancelled meanwhile)
            channel.requests[0].error = Overloaded("the server is at its connection limit")
            channel.service()
        if channel.connected:
            channel._send_now()
        self._evicting.append(channel)
        return True

    def maintenance(self, now):
        super().maintenance(now)  # --channel-timeout: idle keep-alive connections
        mono = time.monotonic()
        self.shed_stale_queue(mono)
        for channel in list(self.active_channels.values()):
            if channel.requests:
                continue
            if self._past_deadline(channel, mono):
                channel.will_close = True  # closed by the loop's next write pass

    def _past_deadline(self, channel: HelloChannel, mono: float) -> bool:
        request = channel.request
        if request is None:
            # a fresh connection that never sent a byte is held to the header deadline
            if channel.served_any:
                return False
            return time.time() - channel.creation_time > self.header_timeout
        if request.head_done_at is None:
            return mono - request.started > self.header_timeout
        return mono - request.head_done_at > self.body_timeout


def accept_queued_and_stop_listening(server: HelloServer) -> None:
    """Drain step 1 (loop thread): what the kernel already queued is served, not reset.

    The listener closes whatever happens: out of fds (the backlog can hold more than the
    soft limit leaves), the rest of the backlog is reset rather than served all drain long.
    """
    try:
        while True:
            try:
                pair = server.accept()
            except OSError:  # EMFILE, ENFILE, ENOBUFS: no room for more
                break
            if pair is None:
                break
            conn, addr = pair
            try:
                server.set_socket_options(conn)
            except OSError:  # the peer went away before we got to it
                conn.close()
                continue
            server.channel_class(server, conn, server.fix_addr(addr), server.adj, map=server._map)
    finally:
        wasyncore.dispatcher.close(server)  # and accepting is False


def close_idle(server: HelloServer, grace_seconds: float) -> None:
    """Drain step 2 (loop thread): close keep-alive connections with nothing in progress."""
    cutoff = time.time() - grace_seconds
    for channel in list(server.active_channels.values()):
        idle = (not channel.requests and channel.request is None
                and not channel.unparsed and not channel.total_outbufs_len)
        if idle and channel.last_activity <= cutoff:
            channel.will_close = True
            server.trigger.pull_trigger()


def close_all(server: HelloServer) -> None:
    """Drain's last step (loop thread): every connection is closed and the loop ends.

    The trigger stays open: a worker that just sent its last response still pulls it
    (waitress's HTTPChannel.service() ends `if self.connected: self.server.pull_trigger()`),
    and its connection can close, and this run, between that check and the write, which
    then raised EBADF in the worker. close_trigger closes it once the workers are gone.

    Connections close through handle_close, as waitress's own loop closes them: it takes
    the outbuf lock, so a worker still flushing (past a drain timeout) finishes its send
    before the socket goes, and it wakes a worker waiting on that lock for the loop.
    """
    for obj in list(server._map.values()):
        if isinstance(obj, HTTPChannel):
            obj.handle_close()
        elif obj is not server.trigger:  # the listener, if drain's first step did not run:
            wasyncore.dispatcher.close(obj)  # its own close() closes the trigger too
    server._map.clear()  # the trigger too: the loop ends


def close_trigger(server: HelloServer) -> None:
    """After the workers stopped. One still running (past the shutdown timeout) may yet
    pull it: then the pipe is left to the process's exit."""
    with server.task_dispatcher.lock:
        if server.task_dispatcher.threads:
            return
    server.trigger.close()


def busy_connections(server: HelloServer) -> int:
    """From the main thread: len() of the loop thread's dict is one step, never torn."""
    return len(server.active_channels)

