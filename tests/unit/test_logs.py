"""Log lines: one per event, JSON or key=value, access lines with every field."""

import io
import json

from hello.logs import AccessLogMiddleware, LogWriter


def make_writer(log_format="json"):
    out, err = io.StringIO(), io.StringIO()
    return LogWriter(log_format, out=out, err=err), out, err


def test_event_is_one_json_line_on_stdout():
    writer, out, err = make_writer()
    writer.event("listening", port=8080)
    line = json.loads(out.getvalue())
    assert (line["event"], line["port"], line["level"]) == ("listening", 8080, "info")
    assert line["time"].endswith("+00:00")
    assert err.getvalue() == ""


def test_errors_go_to_stderr():
    writer, out, err = make_writer()
    writer.error("boom", code=1)
    assert out.getvalue() == ""
    line = json.loads(err.getvalue())
    assert {key: line[key] for key in ("level", "event", "code")} == \
        {"level": "error", "event": "boom", "code": 1}


def test_library_warnings_become_one_error_line_with_the_last_traceback_line():
    """waitress's and Flask's logging records reach stderr as our own lines."""
    import logging

    from hello.server import _ErrorsToWriter

    writer, out, err = make_writer()
    handler = _ErrorsToWriter(writer)
    assert handler.level == logging.WARNING
    try:
        raise RuntimeError("kaput")
    except RuntimeError:
        import sys
        record = logging.LogRecord("waitress", logging.ERROR, __file__, 1, "task %s failed",
                                   ("x",), sys.exc_info())
    handler.emit(record)
    plain = logging.LogRecord("waitress.queue", logging.WARNING, __file__, 1, "depth %d", (5,), None)
    handler.emit(plain)
    first, second = (json.loads(line) for line in err.getvalue().splitlines())
    assert (first["level"], first["event"], first["logger"]) == \
        ("error", "task x failed | RuntimeError: kaput", "waitress")
    assert (second["event"], second["logger"]) == ("depth 5", "waitress.queue")
    assert out.getvalue() == ""


def test_text_format():
    writer, out, _ = make_writer("text")
    writer.event("stopped", drained_ms=3)
    text = out.getvalue()
    assert text.count("\n") == 1
    assert "event=stopped" in text and "drained_ms=3" in text


def test_access_middleware_records_status_bytes_and_duration():
    writer, out, _ = make_writer()

    def app(environ, start_response):
        start_response("201 Created", [("Content-Type", "text/plain")])
        return [b"abc", b"de"]

    wrapped = AccessLogMiddleware(app, writer)
    environ = {"REQUEST_METHOD": "PUT", "PATH_INFO": "/x", "REMOTE_ADDR": "10.0.0.1"}
    body = b"".join(wrapped(environ, lambda status, headers, exc_info=None: None))
    assert body == b"abcde"
    line = json.loads(out.getvalue())
    assert (line["method"], line["path"], line["status"], line["bytes"], line["remote"]) == \
        ("PUT", "/x", 201, 5, "10.0.0.1")
    assert line["duration_ms"] >= 0


def test_access_line_level_and_exact_duration(monkeypatch):
    writer, out, _ = make_writer()
    clock = iter([1.0, 1.0123456])
    monkeypatch.setattr("hello.logs.time.perf_counter", lambda: next(clock))

    def app(environ, start_response):
        start_response("204 No Content", [])
        return []

    list(AccessLogMiddleware(app, writer)({"REQUEST_METHOD": "GET", "PATH_INFO": "/"},
                                         lambda *args: None))
    line = json.loads(out.getvalue())
    assert (line["level"], line["status"], line["bytes"], line["duration_ms"]) == \
        ("info", 204, 0, 12.346)


def test_access_middleware_passes_exc_info_and_closes_the_body():
    """WSGI: a second start_response carries exc_info; the app's iterable is closed."""
    writer, out, _ = make_writer()
    calls, closed = [], []

    class Body(list):
        def close(self):
            closed.append(True)

    def app(environ, start_response):
        start_response("200 OK", [])
        start_response("500 Internal Server Error", [], ("exc", "info", None))
        return Body([b"x"])

    def start_response(status, headers, exc_info=None):
        calls.append((status, exc_info))

    assert list(AccessLogMiddleware(app, writer)({}, start_response)) == [b"x"]
    assert calls == [("200 OK", None), ("500 Internal Server Error", ("exc", "info", None))]
    assert closed == [True]
    assert json.loads(out.getvalue())["status"] == 500
