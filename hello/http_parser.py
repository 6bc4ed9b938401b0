"""How hello reads a request: waitress's parser, held to RFC 9112 and to the memory budget.

- StrictParser: the RFC 9112 edges waitress 3.0.2 lets through. A request with both
  Content-Length and Transfer-Encoding (or Transfer-Encoding in HTTP/1.0) is a 400 and
  the connection closes (section 6.3: request smuggling), and so is chunked named twice
  (6.1; waitress decodes it once); HTTP versions other than 1.0/1.1 get 505; HTTP/1.1
  without exactly one Host gets 400 (3.2).
- HelloParser: stamps when a request's first byte and its head's end arrived, for the
  deadlines (hello/event_loop.py), keeps the real request line of a 431 for the access
  log, and holds the memory budget (hello/memory.py): a body is reserved (twice: the
  app's copy too) when its head arrives; one that does not fit is read to its end and
  thrown away (Discarded), then answered 503 with Retry-After.
"""

from __future__ import annotations

import io
import time

from hello import memory, waitress_version

waitress_version.check()
# Imported after the check: an unknown waitress may not even have these names.
from waitress.parser import (  # noqa: E402
    HTTPRequestParser,
    ParsingError,
    crack_first_line,
    get_header_lines,
)
from waitress.utilities import (  # noqa: E402
    BadRequest,
    Error,
    RequestEntityTooLarge,
    RequestHeaderFieldsTooLarge,
)

_FIRST_LINE_KEPT = 8192
# What a parsed request waiting in its connection's queue costs (measured: ~0.9 KB),
# counted in the memory budget until served.
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



class StrictParser(HTTPRequestParser):
    """waitress's parser plus the RFC 9112 checks it lacks."""

    # A request line waitress could not parse leaves these unset, and waitress's own
    # "Client disconnected while serving %s" % request.path then raised AttributeError.
    command: str | None = None
    path: str | None = None

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



class HelloParser(StrictParser):
    """StrictParser plus the deadline stamps, a 431's request line, and the memory
    budget's reservation for its body."""

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
