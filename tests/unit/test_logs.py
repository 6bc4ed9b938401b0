"""Log lines: one per event, JSON or key=value, access lines with every field."""

import contextlib
import io
import json
import os
import queue

import pytest

from hello import log_queue, logs
from hello.log_queue import LineQueue
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


def test_a_repeated_library_warning_is_one_line_per_window_then_says_how_many_were_left_out(
        monkeypatch):
    """waitress logs "Task queue depth is N" for every queued request: one line per
    message (its format, not its arguments) per REPEAT_SECONDS, then the count held back."""
    import logging

    from hello import server

    clock = [1000.0]
    monkeypatch.setattr(server.time, "monotonic", lambda: clock[0])
    writer, _, err = make_writer()
    handler = server._ErrorsToWriter(writer)

    def warn(msg, *args, logger="waitress.queue"):
        handler.emit(logging.LogRecord(logger, logging.WARNING, __file__, 1, msg, args, None))

    for depth in (1, 2, 3):
        warn("Task queue depth is %d", depth)
    warn("another message %s", "a")  # its own window
    warn("Task queue depth is %d", 4, logger="waitress")  # another logger: its own window
    clock[0] = 1000.0 + server.REPEAT_SECONDS - 0.5
    warn("Task queue depth is %d", 5)
    clock[0] = 1000.0 + server.REPEAT_SECONDS  # exactly REPEAT_SECONDS after the first line
    warn("Task queue depth is %d", 6)
    warn("Task queue depth is %d", 7)
    clock[0] += server.REPEAT_SECONDS
    warn("Task queue depth is %d", 8)
    lines = [json.loads(line) for line in err.getvalue().splitlines()]
    for line in lines:
        del line["time"]
    assert lines == [
        {"level": "warning", "event": "Task queue depth is 1", "logger": "waitress.queue"},
        {"level": "warning", "event": "another message a", "logger": "waitress.queue"},
        {"level": "warning", "event": "Task queue depth is 4", "logger": "waitress"},
        {"level": "warning", "event": "Task queue depth is 6", "logger": "waitress.queue",
         "repeats_left_out": 3},
        {"level": "warning", "event": "Task queue depth is 8", "logger": "waitress.queue",
         "repeats_left_out": 1},
    ]


def test_text_format():
    writer, out, _ = make_writer("text")
    writer.event("stopped", drained_ms=3)
    text = out.getvalue()
    assert text.count("\n") == 1
    assert "event=stopped" in text and "drained_ms=3" in text
    assert text.split(" ", 1)[1] == "level=info event=stopped drained_ms=3\n"  # after time=


def test_json_lines_are_compact():
    writer, out, _ = make_writer()
    writer.event("listening", port=8080, path="/a b")
    assert out.getvalue().split(",", 1)[1] == \
        '"level":"info","event":"listening","port":8080,"path":"/a b"}\n'  # after "time"


def test_a_queued_stdout_lost_says_why_on_stderr_once():
    read_end, write_end = os.pipe()
    os.close(read_end)
    out, err = open(write_end, "w", encoding="utf-8"), io.StringIO()  # noqa: SIM115
    try:
        writer = LogWriter("json", out=out, err=err, queued=True)
        writer.event("listening")
        writer.event("dropped")
        writer.flush(5)
        lines = [json.loads(line) for line in err.getvalue().splitlines()]
        assert [(line["event"], line["error"]) for line in lines] == [
            ("stdout is closed; its log lines are dropped from now on", "BrokenPipeError")]
    finally:
        with contextlib.suppress(OSError):
            out.close()


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


def test_access_line_counts_only_the_bytes_the_server_took():
    """A client gone mid-answer: waitress stops asking for chunks (it closes the body at
    the one it could not send), and the line says what went out, not what the app made."""
    writer, out, _ = make_writer()

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"abc", b"defg", b"hi"]

    chunks = AccessLogMiddleware(app, writer)({"REQUEST_METHOD": "GET", "PATH_INFO": "/"},
                                              lambda status, headers, exc_info=None: None)
    assert next(chunks) == b"abc"  # sent
    assert next(chunks) == b"defg"  # handed over, and its send failed
    chunks.close()
    line = json.loads(out.getvalue())
    assert (line["status"], line["bytes"]) == (200, 3)


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


def _pipe_nobody_reads():
    """A text stream on a pipe whose reading end is closed: the next write is EPIPE."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    return open(write_end, "w", encoding="utf-8")  # noqa: SIM115 (closed by the test)


def test_a_lost_stdout_costs_one_stderr_line_and_points_its_fd_at_dev_null():
    out, err = _pipe_nobody_reads(), io.StringIO()
    writer = LogWriter("json", out=out, err=err)
    try:
        writer.event("listening")
        writer.event("still here")  # dropped without another word
        assert writer.out is None
        assert os.readlink(f"/proc/self/fd/{out.fileno()}") == "/dev/null"
        lines = err.getvalue().splitlines()
        assert len(lines) == 1
        line = json.loads(lines[0])
        del line["time"]
        assert line == {"level": "error", "event": "stdout is closed; its log lines are dropped "
                        "from now on", "error": "BrokenPipeError"}
    finally:
        out.close()


def test_a_lost_stderr_is_dropped_quietly_and_stdout_goes_on():
    out, err = io.StringIO(), _pipe_nobody_reads()
    writer = LogWriter("json", out=out, err=err)
    try:
        writer.error("first")
        writer.error("second")
        assert writer.err is None
        writer.event("listening")
        assert [json.loads(line)["event"] for line in out.getvalue().splitlines()] == ["listening"]
        assert os.readlink(f"/proc/self/fd/{err.fileno()}").startswith("pipe:")  # left alone
    finally:
        with contextlib.suppress(BrokenPipeError):  # what the failed write left buffered
            err.close()


def test_stdout_and_stderr_both_lost_end_in_silence_not_an_exception():
    out, err = _pipe_nobody_reads(), _pipe_nobody_reads()
    writer = LogWriter("text", out=out, err=err)
    try:
        writer.event("listening")  # stdout fails, then so does the line saying so
        assert (writer.out, writer.err) == (None, None)
        writer.error("nobody hears this")
        writer.event("or this")
    finally:
        for stream in (out, err):
            with contextlib.suppress(BrokenPipeError):
                stream.close()


def test_raw_stdout_line_is_one_whole_line_written_at_once():
    read_end, write_end = os.pipe()
    with open(write_end, "w", encoding="utf-8") as out:
        writer = LogWriter("json", out=out, err=io.StringIO())
        writer.raw_stdout_line({"level": "info", "event": "second signal, exiting now"})
        data = os.read(read_end, 65536)  # no flush: os.write, as a signal handler needs
        writer.out = None
        writer.raw_stdout_line({"event": "not written"})
    assert data.endswith(b"\n") and data.count(b"\n") == 1
    line = json.loads(data)
    assert (line["level"], line["event"]) == ("info", "second signal, exiting now")
    assert os.read(read_end, 65536) == b""  # closed, and nothing more was written
    os.close(read_end)


def test_raw_stdout_line_on_a_closed_stdout_raises_nothing():
    out = _pipe_nobody_reads()
    out.close()
    LogWriter("json", out=out, err=io.StringIO()).raw_stdout_line({"event": "x"})  # ValueError
    read_end, write_end = os.pipe()
    os.close(read_end)
    with open(write_end, "w", encoding="utf-8") as broken:
        LogWriter("json", out=broken, err=io.StringIO()).raw_stdout_line({"event": "x"})  # EPIPE


@pytest.mark.parametrize("booted", [1000.0, 0.5])  # 0.5: a microVM just booted (monotonic from 0)
def test_a_full_stdout_queue_drops_lines_and_counts_them_once_per_window(monkeypatch, booted):
    """stdout nobody reads: past the queue, lines are dropped, and stderr says how many,
    at most once per DROPPED_REPORT_SECONDS (exactly at the window's end, again)."""
    clock = [booted]
    monkeypatch.setattr(logs.time, "monotonic", lambda: clock[0])
    writer, out, err = make_writer()
    writer._queue = queue.Queue(2)  # queued, with no thread emptying it: nobody reads

    def dropped_lines():
        return [(line["level"], line["event"], line["dropped"])
                for line in map(json.loads, err.getvalue().splitlines())]

    writer.event("one")
    writer.event("two")
    assert dropped_lines() == []
    writer.event("three")  # the first one dropped is said at once
    assert dropped_lines() == [("warning", "stdout is not being read; its log lines are dropped", 1)]
    clock[0] += log_queue.DROPPED_REPORT_SECONDS - 0.001
    writer.access(path="/four")
    writer.event("five")
    assert len(dropped_lines()) == 1  # counted, not said
    clock[0] += 0.001  # the window's end
    writer.event("six")
    assert dropped_lines()[1:] == [("warning", "stdout is not being read; its log lines are dropped",
                                    3)]
    writer.event("seven")
    clock[0] += log_queue.DROPPED_REPORT_SECONDS
    writer.event("eight")
    assert [count for *_, count in dropped_lines()] == [1, 3, 2]
    assert [json.loads(writer._queue.get_nowait())["event"] for _ in range(2)] == ["one", "two"]
    assert out.getvalue() == ""


def test_flush_waits_only_while_queued_lines_are_unwritten(monkeypatch):
    """At exit: no wait at all for an empty or absent queue, and short polls (not a
    second each) while the writer thread catches up."""
    clock, sleeps = [0.0], []
    writer, _, _ = make_writer()
    writer._queue = queue.Queue()

    def sleep(seconds):
        sleeps.append(seconds)
        clock[0] += seconds
        if len(sleeps) == 3:
            writer._queue.get_nowait()
            writer._queue.task_done()  # the writer thread wrote it

    monkeypatch.setattr(logs.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(logs.time, "sleep", sleep)
    writer.flush(5)
    LogWriter("json", out=io.StringIO(), err=io.StringIO()).flush(5)  # not queued
    assert sleeps == []
    writer._queue.put("a line")
    writer.flush(5)
    assert sleeps == [0.01] * 3
    writer._queue.put("a line nobody writes")
    writer.flush(1)
    assert len(sleeps) == 3 + 100 and clock[0] == pytest.approx(1.03)


def test_a_line_queue_holds_at_most_its_bytes_whatever_its_lines():
    lines = LineQueue(lines=100, max_bytes=50)
    lines.put_nowait("x" * 30)
    with pytest.raises(queue.Full):
        lines.put_nowait("y" * 21)  # 51 bytes: one too many
    lines.put_nowait("z" * 20)
    assert lines.bytes == 50
    assert lines.get_nowait() == "x" * 30 and lines.bytes == 20
    lines.put_nowait("w" * 30)
    assert lines.bytes == 50


def test_a_line_queue_holds_at_most_its_lines_too():
    lines = LineQueue(lines=2, max_bytes=1 << 20)
    lines.put_nowait("a")
    lines.put_nowait("b")
    with pytest.raises(queue.Full):
        lines.put_nowait("c")
