"""What the metrics middleware records for each request, against small WSGI apps: the
route, method and status it counts, the time it measures, and what it passes on."""

from __future__ import annotations

import pytest

from hello import metrics


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
