"""What runs a request: waitress's tasks, with the headers and log line hello gives every
answer: while draining, every answer says `Connection: close`, and waitress's own
error answers (400/413/431/503/505) carry hello's headers and an access-log line.
"""

from __future__ import annotations

import time

from hello import waitress_version
from hello.http_parser import Overloaded

waitress_version.check()
# Imported after the check: an unknown waitress may not even have these names.
from waitress.task import ErrorTask, WSGITask  # noqa: E402
from waitress.utilities import RequestHeaderFieldsTooLarge  # noqa: E402


class DrainAwareTask(WSGITask):
    """Once drain has begun, every response says `Connection: close`.

    A WSGI app may not set hop-by-hop headers (PEP 3333), so this is done where
    waitress builds the response head (build_response_header, set_close_on_finish).
    """

    def build_response_header(self):
        if self.channel.server.draining.is_set() or self.channel.lane_only:
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
