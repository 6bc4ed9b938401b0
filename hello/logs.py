"""Log lines: access and lifecycle on stdout, errors on stderr; JSON or text.

One writer, one lock, one line per event: a container runtime or journald can
ship the lines as they are. The access log is WSGI middleware so it sees the
status and byte count every client saw, whatever route answered.

Values come from clients (paths, methods), so no value may break a line: JSON
escapes them, and text lines are logfmt, where a value with a space, quote, `=`
or control character is quoted with its escapes (`path="/a\nlevel=error"`).
If stdout goes away (a closed pipe), one line on stderr says so and stdout lines
are dropped from then on: the service keeps serving and still drains. A stream
that stalls costs lines, not requests: `hello serve`'s lines are queued
(hello/log_queue.py).
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
from hello.log_queue import QueuedStreams

_BARE = re.compile(r"[!#-<>-~]+")  # printable ASCII without space, '"' and '='


def logfmt_value(value) -> str:
    """A value as logfmt writes it: bare when safe, else JSON-quoted (escapes kept)."""
    text = "null" if value is None else str(value)
    if _BARE.fullmatch(text):
        return text
    return json.dumps(text)


class LogWriter(QueuedStreams):
    """Lines to stdout and stderr, each whole; queued (hello/log_queue.py) for `serve`."""

    def __init__(self, log_format: str = "json", out=None, err=None, queued: bool = False):
        self.log_format = log_format
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self._lock = threading.Lock()
        if queued:
            self._start_queues()

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
