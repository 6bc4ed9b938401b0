"""GET /metrics: request counts, a latency histogram, in-flight and build info,
in the Prometheus text exposition format (version 0.0.4).

Written by hand rather than with prometheus-client: four metric families need
about sixty lines, and the library would add to every cold start of the binary
for nothing `hello` uses (figures in bench/RESULTS.md, `## Metrics`). Labels are
bounded: the route is the matched rule (`/status/<code>`, not each code's path),
or `unmatched`; status codes are at most 400 values.
"""

from __future__ import annotations

import threading
import time

from hello import buildinfo

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# seconds; like prometheus-client's defaults, stretched to /whoami?wait's 30 s cap
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
ROUTE_KEY = "hello.route"  # set by the app once Flask has matched the route
# a client picks the method: any other one is counted as "other", so labels stay bounded
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Registry:
    """The counters of one app; every method is thread-safe."""

    def __init__(self):
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, int], int] = {}
        self._buckets: dict[str, list[int]] = {}
        self._sums: dict[str, float] = {}
        self.in_flight = 0

    def started(self) -> None:
        with self._lock:
            self.in_flight += 1

    def finished(self, route: str, method: str, status: int, seconds: float) -> None:
        with self._lock:
            self.in_flight -= 1
            key = (route, method, status)
            self._requests[key] = self._requests.get(key, 0) + 1
            counts = self._buckets.setdefault(route, [0] * (len(BUCKETS) + 1))
            for index, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    counts[index] += 1
            counts[-1] += 1  # +Inf
            self._sums[route] = self._sums.get(route, 0.0) + seconds

    def exposition(self) -> bytes:
        with self._lock:
            requests = sorted(self._requests.items())
            buckets = {route: list(counts) for route, counts in sorted(self._buckets.items())}
            sums = dict(self._sums)
            in_flight = self.in_flight
        info = buildinfo.build_info()
        lines = [
            "# HELP hello_requests_total HTTP requests answered, by route, method and status.",
            "# TYPE hello_requests_total counter",
        ]
        lines += [f'hello_requests_total{{route="{_label(route)}",method="{_label(method)}",'
                  f'status="{status}"}} {count}' for (route, method, status), count in requests]
        lines += [
            "# HELP hello_request_duration_seconds Time to answer a request, by route.",
            "# TYPE hello_request_duration_seconds histogram",
        ]
        for route, counts in buckets.items():
            label = _label(route)
            for bound, count in zip(BUCKETS, counts, strict=False):
                lines.append(f'hello_request_duration_seconds_bucket{{route="{label}",'
                             f'le="{bound:g}"}} {count}')
            lines.append(f'hello_request_duration_seconds_bucket{{route="{label}",le="+Inf"}}'
                         f' {counts[-1]}')
            lines.append(f'hello_request_duration_seconds_sum{{route="{label}"}} {sums[route]:.6f}')
            lines.append(f'hello_request_duration_seconds_count{{route="{label}"}} {counts[-1]}')
        lines += [
            "# HELP hello_requests_in_flight Requests being answered now.",
            "# TYPE hello_requests_in_flight gauge",
            f"hello_requests_in_flight {in_flight}",
            "# HELP hello_build_info The running build; always 1.",
            "# TYPE hello_build_info gauge",
            f'hello_build_info{{version="{_label(str(info["version"]))}",'
            f'commit="{_label(str(info["commit"]))}",python="{_label(str(info["python"]))}"}} 1',
        ]
        return ("\n".join(lines) + "\n").encode()


class Middleware:
    """Counts every request the app answers, once its body has been sent."""

    def __init__(self, app, registry: Registry):
        self.app = app
        self.registry = registry

    def __call__(self, environ, start_response):
        started = time.perf_counter()
        seen = {"status": 0}

        def recording_start_response(status, headers, exc_info=None):
            seen["status"] = int(status.split(" ", 1)[0])
            return start_response(status, headers, exc_info)

        self.registry.started()
        body = ()
        try:
            body = self.app(environ, recording_start_response)
            yield from body
        finally:
            if hasattr(body, "close"):
                body.close()
            method = environ.get("REQUEST_METHOD", "")
            self.registry.finished(environ.get(ROUTE_KEY, "unmatched"),
                                   method if method in METHODS else "other", seen["status"],
                                   time.perf_counter() - started)
