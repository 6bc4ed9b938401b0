"""/metrics to the byte: a scraper parses names, types, label escapes and bucket
counts exactly, so the whole exposition of a known registry is compared."""

from __future__ import annotations

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
