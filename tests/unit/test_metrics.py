"""hello/metrics.py: /metrics to the byte (a scraper parses names, types, label escapes
and bucket counts exactly, so the whole exposition of a known registry is compared),
and what the middleware counts for each request."""

from __future__ import annotations

import pytest

from hello import buildinfo, metrics


def test_label_values_escape_backslash_newline_and_quote():
    assert metrics._label('a\\b\nc"d') == 'a\\\\b\\nc\\"d'


def test_exposition_of_a_known_registry(monkeypatch):
    monkeypatch.setattr(buildinfo, "build_info",
                        lambda: {"version": "1.2.3", "commit": 'ab"c', "python": "3.11.7"})
    registry = metrics.Registry()
    for route, method, status, seconds in (("/a", "GET", 200, 0.004), ("/a", "GET", 200, 0.07),
                                           ("/a", "POST", 500, 29.0), ("/b\\", "GET", 404, 31.0)):
        registry.started()
        registry.finished(route, method, status, seconds)
    registry.started()  # one still in flight

    def buckets(route, counts, total, count):
        bounds = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10",
                  "30", "+Inf"]
        return [f'hello_request_duration_seconds_bucket{{route="{route}",le="{bound}"}} {n}'
                for bound, n in zip(bounds, counts, strict=True)] + [
            f'hello_request_duration_seconds_sum{{route="{route}"}} {total}',
            f'hello_request_duration_seconds_count{{route="{route}"}} {count}']

    expected = [
        "# HELP hello_requests_total HTTP requests answered, by route, method and status.",
        "# TYPE hello_requests_total counter",
        'hello_requests_total{route="/a",method="GET",status="200"} 2',
        'hello_requests_total{route="/a",method="POST",status="500"} 1',
        'hello_requests_total{route="/b\\\\",method="GET",status="404"} 1',
        "# HELP hello_request_duration_seconds Time to answer a request, by route.",
        "# TYPE hello_request_duration_seconds histogram",
        *buckets("/a", [1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 3, 3], "29.074000", 3),
        *buckets("/b\\\\", [0] * 12 + [1], "31.000000", 1),
        "# HELP hello_requests_in_flight Requests being answered now.",
        "# TYPE hello_requests_in_flight gauge",
        "hello_requests_in_flight 1",
        "# HELP hello_build_info The running build; always 1.",
        "# TYPE hello_build_info gauge",
        'hello_build_info{version="1.2.3",commit="ab\\"c",python="3.11.7"} 1',
    ]
    assert registry.exposition().decode().split("\n") == [*expected, ""]


class Recorder(metrics.Registry):
    def __init__(self):
        super().__init__()
        self.seen: list[tuple] = []

    def finished(self, route, method, status, seconds):
        self.seen.append((route, method, status, seconds))
        super().finished(route, method, status, seconds)


class Body(list):
    closed = False

    def close(self):
        self.closed = True


def _run(app, environ, start_response=None):
    registry = Recorder()
    middleware = metrics.Middleware(app, registry)
    body = middleware(environ, start_response or (lambda status, headers, exc_info=None: None))
    return registry, b"".join(body)


def test_a_request_is_counted_by_its_route_method_status_and_time(monkeypatch):
    clock = iter([10.0, 10.25])
    monkeypatch.setattr(metrics.time, "perf_counter", lambda: next(clock))
    body = Body([b"hi"])

    def app(environ, start_response):
        environ[metrics.ROUTE_KEY] = "/whoami"
        start_response("201 Created", [])
        return body

    registry, sent = _run(app, {"REQUEST_METHOD": "PATCH"})
    assert sent == b"hi" and body.closed
    assert registry.seen == [("/whoami", "PATCH", 201, 0.25)]
    assert registry.in_flight == 0


@pytest.mark.parametrize("environ, method", [({"REQUEST_METHOD": "BREW"}, "other"), ({}, "other")])
def test_an_unknown_method_and_no_route_are_counted_as_other_and_unmatched(environ, method):
    def app(environ, start_response):
        start_response("404 Not Found", [])
        return [b""]

    registry, _ = _run(app, environ)
    assert [seen[:3] for seen in registry.seen] == [("unmatched", method, 404)]


def test_an_app_that_fails_before_answering_is_counted_with_status_0():
    def app(environ, start_response):
        raise RuntimeError("boom")

    registry = Recorder()
    with pytest.raises(RuntimeError, match="boom"):
        b"".join(metrics.Middleware(app, registry)({"REQUEST_METHOD": "GET"}, None))
    assert [seen[:3] for seen in registry.seen] == [("unmatched", "GET", 0)]
    assert registry.in_flight == 0


def test_exc_info_reaches_the_servers_start_response():
    given = []
    error = (ValueError, ValueError("x"), None)

    def app(environ, start_response):
        start_response("500 Internal Server Error", [], error)
        return [b""]

    _run(app, {"REQUEST_METHOD": "GET"}, lambda status, headers, exc_info=None: given.append(exc_info))
    assert given == [error]


def test_requests_in_flight_are_counted_while_their_bodies_are_sent():
    def app(environ, start_response):
        start_response("200 OK", [])
        return [b"a", b"b"]

    registry = Recorder()
    middleware = metrics.Middleware(app, registry)
    first = middleware({"REQUEST_METHOD": "GET"}, lambda *args: None)
    second = middleware({"REQUEST_METHOD": "GET"}, lambda *args: None)
    next(first), next(second)
    assert registry.in_flight == 2
    list(first), list(second)
    assert registry.in_flight == 0
    assert len(registry.seen) == 2
