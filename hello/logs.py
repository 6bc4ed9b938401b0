"""Log lines: access and lifecycle on stdout, errors on stderr; JSON or text.

One writer, one lock, one line per event: a container runtime or journald can
ship the lines as they are. The access log is WSGI middleware so it sees the
status and byte count every client saw, whatever route answered.

Values come from clients (paths, methods), so no value may break a line: JSON
escapes them, and text lines are logfmt, where a value with a space, quote, `=`
or control character is quoted with its escapes (`path="/a\nlevel=error"`).
If stdout goes away (a closed pipe), one line on stderr says so and stdout lines
are dropped from then on: the service keeps serving and still drains. If stdout
or stderr stalls (a pipe nobody reads is full after ~64 KiB), `hello serve`'s lines
wait in a bounded queue per stream that a thread of their own writes out
(queued=True), and past the queue they are dropped and counted: stdout's on stderr
(at most once per DROPPED_REPORT_SECONDS), stderr's in one line when stderr is read
again. A stalled log reader used to block every request, /healthz included, and
SIGTERM's drain: stdout's since the queue came, stderr's until its own did.
"""

from __future__ import annotations

import io
import json
import os
import queue
import re
import select
import sys
import threading
import time
from datetime import UTC, datetime

from hello.forwarded import CLIENT_KEY

_BARE = re.compile(r"[!#-<>-~]+")  # printable ASCII without space, '"' and '='
STDOUT_QUEUE_LINES = 2000  # ~0.5 MB of usual lines; a reader that keeps up never fills it
STDERR_QUEUE_LINES = 500  # errors and warnings: rarer, and rate-limited at their source
# ...and in bytes: a client picks its path (up to 32 KiB, six times that JSON-escaped),
# so 2000 lines could hold 130 MB: with stdout unread, that OOM-killed a 160 MiB container.
STDOUT_QUEUE_BYTES = 1 << 20
STDERR_QUEUE_BYTES = 256 << 10
DROPPED_REPORT_SECONDS = 10.0  # at most one "lines dropped" line on stderr per this long


class LineQueue(queue.Queue):
    """Log lines waiting for their writer, bounded in lines and in bytes (put_nowait
    raises queue.Full past either)."""

    def __init__(self, lines: int, max_bytes: int):
        super().__init__(lines)
        self.max_bytes = max_bytes
        self.bytes = 0

    def put(self, item: str, block: bool = True, timeout: float | None = None) -> None:
        with self.mutex:
            if self.bytes + len(item) > self.max_bytes:
                raise queue.Full
        super().put(item, block, timeout)

    def _put(self, item: str) -> None:  # under the queue's own lock
        self.bytes += len(item)
        super()._put(item)

    def _get(self) -> str:
        item = super()._get()
        self.bytes -= len(item)
        return item


def logfmt_value(value) -> str:
    """A value as logfmt writes it: bare when safe, else JSON-quoted (escapes kept)."""
    text = "null" if value is None else str(value)
    if _BARE.fullmatch(text):
        return text
    return json.dumps(text)


class LogWriter:
    THREAD_NAME = "hello-stdout"  # the writer of a queued stdout; it lives until exit
    ERR_THREAD_NAME = "hello-stderr"  # and of a queued stderr

    def __init__(self, log_format: str = "json", out=None, err=None, queued: bool = False):
        self.log_format = log_format
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self._lock = threading.Lock()
        self._queue: queue.Queue[str] | None = None
        self._err_queue: queue.Queue[str] | None = None
        self._dropped = 0
        self._err_dropped = 0
        self._dropped_reported_at = -DROPPED_REPORT_SECONDS
        if queued:
            self._queue = LineQueue(STDOUT_QUEUE_LINES, STDOUT_QUEUE_BYTES)
            self._err_queue = LineQueue(STDERR_QUEUE_LINES, STDERR_QUEUE_BYTES)
            threading.Thread(target=self._write_queued, name=self.THREAD_NAME, daemon=True).start()
            threading.Thread(target=self._write_queued_errors, name=self.ERR_THREAD_NAME,
                             daemon=True).start()

    def format(self, fields: dict) -> str:
        """One line, without taking the lock (a signal handler may need it)."""
        fields = {"time": datetime.now(UTC).isoformat(timespec="milliseconds"), **fields}
        if self.log_format == "json":
            return json.dumps(fields, separators=(",", ":"))
        return " ".join(f"{key}={logfmt_value(value)}" for key, value in fields.items())

    def _write(self, stream, fields: dict) -> None:
        line = self.format(fields)
        if self._queue is not None and stream is not None and stream is self.out:
            self._enqueue(line)
            return
        if self._err_queue is not None and stream is not None and stream is self.err:
            try:
                self._err_queue.put_nowait(line)
            except queue.Full:
                with self._lock:
                    self._err_dropped += 1
            return
        with self._lock:
            if stream is None:
                return
            try:
                stream.write(line + "\n")
                stream.flush()
            except (BrokenPipeError, ValueError, OSError) as error:
                self._lost(stream, error)

    def _enqueue(self, line: str) -> None:
        try:
            self._queue.put_nowait(line)
            return
        except queue.Full:
            pass
        now = time.monotonic()
        with self._lock:
            self._dropped += 1
            if now - self._dropped_reported_at < DROPPED_REPORT_SECONDS:
                return
            self._dropped_reported_at, dropped, self._dropped = now, self._dropped, 0
        self.warning("stdout is not being read; its log lines are dropped", dropped=dropped)

    def _write_queued(self) -> None:
        """The one writer of a queued stdout: raw writes (no buffer lock for a stuck
        write to hold at exit), blocking only this thread when nobody reads."""
        while True:
            line = self._queue.get()
            stream = self.out
            try:
                if stream is not None:
                    data = (line + "\n").encode()
                    while data:
                        data = data[os.write(stream.fileno(), data):]
            except (OSError, ValueError) as error:
                with self._lock:
                    self._lost(stream, error)
            finally:
                self._queue.task_done()

    def _write_queued_errors(self) -> None:
        """The one writer of a queued stderr; back after lines were dropped (nobody read
        stderr), it says how many."""
        while True:
            line = self._err_queue.get()
            try:
                if self._raw_err(line):
                    with self._lock:
                        dropped, self._err_dropped = self._err_dropped, 0
                    if dropped:
                        self._raw_err(self.format({
                            "level": "warning", "event": "stderr was not being read; "
                            "its lines were dropped", "dropped": dropped}))
            finally:
                self._err_queue.task_done()

    def _raw_err(self, line: str) -> bool:
        """Write one stderr line from its writer thread; False if stderr is gone."""
        stream = self.err
        if stream is None:
            return False
        try:
            try:
                fd = stream.fileno()
            except (AttributeError, io.UnsupportedOperation):  # not a file: a test's buffer
                stream.write(line + "\n")
                stream.flush()
                return True
            data = (line + "\n").encode()
            while data:
                data = data[os.write(fd, data):]
            return True
        except (OSError, ValueError):
            self.err = None  # stderr lost costs nothing more
            return False

    def flush(self, timeout: float) -> None:
        """Wait (at most timeout) until queued stdout and stderr lines are written."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(
                waiting is not None and waiting.unfinished_tasks
                for waiting in (self._queue, self._err_queue)):
            time.sleep(0.01)

    def _lost(self, stream, error: Exception) -> None:
        """A closed stdout costs one stderr line; stderr lost costs nothing more."""
        if stream is self.out:
            self.out = None
            try:  # what is still buffered, and the interpreter's flush at exit, go nowhere
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, stream.fileno())
                os.close(devnull)
            except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
                pass
        else:
            self.err = None
        if self.err is not None:
            try:
                self.err.write(self.format({"level": "error", "event": "stdout is closed;"
                                            " its log lines are dropped from now on",
                                            "error": type(error).__name__}) + "\n")
                self.err.flush()
            except (OSError, ValueError):
                self.err = None

    def event(self, message: str, **fields) -> None:
        """A lifecycle event: listening, draining, stopped."""
        self._write(self.out, {"level": "info", "event": message, **fields})

    def error(self, message: str, **fields) -> None:
        self._write(self.err, {"level": "error", "event": message, **fields})

    def warning(self, message: str, **fields) -> None:
        self._write(self.err, {"level": "warning", "event": message, **fields})

    def raw_stdout_line(self, fields: dict) -> None:
        """For a signal handler: no lock (the main thread may hold it), no exception, and
        no wait: into a full pipe nobody reads, the line is dropped (the write blocked,
        and with it the exit a second signal asks for)."""
        if self.out is None:
            return
        try:
            fd = self.out.fileno()
            if not select.select([], [fd], [], 0)[1]:
                return
            os.write(fd, (self.format(fields) + "\n").encode()[:select.PIPE_BUF])
        except (OSError, ValueError, AttributeError):
            pass

    def access(self, **fields) -> None:
        self._write(self.out, {"level": "info", "event": "request", **fields})


class AccessLogMiddleware:
    """Writes one access line per request once its body has been sent."""

    def __init__(self, app, writer: LogWriter):
        self.app = app
        self.writer = writer

    def __call__(self, environ, start_response):
        started = time.perf_counter()
        seen = {"status": 0, "bytes": 0}

        def recording_start_response(status, headers, exc_info=None):
            seen["status"] = int(status.split(" ", 1)[0])
            return start_response(status, headers, exc_info)

        body = self.app(environ, recording_start_response)
        try:
            for chunk in body:
                yield chunk
                # counted once the server took it: a client gone mid-answer stops the
                # iteration at the yield, and its chunk was not sent
                seen["bytes"] += len(chunk)
        finally:
            if hasattr(body, "close"):
                body.close()
            self.writer.access(
                method=environ.get("REQUEST_METHOD"),
                path=environ.get("PATH_INFO"),
                status=seen["status"],
                bytes=seen["bytes"],
                duration_ms=round((time.perf_counter() - started) * 1000, 3),
                remote=environ.get(CLIENT_KEY) or environ.get("REMOTE_ADDR"),
            )
