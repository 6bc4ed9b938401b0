"""Log lines: access and lifecycle on stdout, errors on stderr; JSON or text.

One writer, one lock, one line per event: a container runtime or journald can
ship the lines as they are. The access log is WSGI middleware so it sees the
status and byte count every client saw, whatever route answered.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from datetime import UTC, datetime


class LogWriter:
    def __init__(self, log_format: str = "json", out=None, err=None):
        self.log_format = log_format
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self._lock = threading.Lock()

    def format(self, fields: dict) -> str:
        """One line, without taking the lock (a signal handler may need it)."""
        fields = {"time": datetime.now(UTC).isoformat(timespec="milliseconds"), **fields}
        if self.log_format == "json":
            return json.dumps(fields, separators=(",", ":"))
        return " ".join(f"{key}={value}" for key, value in fields.items())

    def _write(self, stream, fields: dict) -> None:
        line = self.format(fields)
        with self._lock:
            stream.write(line + "\n")
            stream.flush()

    def event(self, message: str, **fields) -> None:
        """A lifecycle event: listening, draining, stopped."""
        self._write(self.out, {"level": "info", "event": message, **fields})

    def error(self, message: str, **fields) -> None:
        self._write(self.err, {"level": "error", "event": message, **fields})

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
                seen["bytes"] += len(chunk)
                yield chunk
        finally:
            if hasattr(body, "close"):
                body.close()
            self.writer.access(
                method=environ.get("REQUEST_METHOD"),
                path=environ.get("PATH_INFO"),
                status=seen["status"],
                bytes=seen["bytes"],
                duration_ms=round((time.perf_counter() - started) * 1000, 3),
                remote=environ.get("REMOTE_ADDR"),
            )
