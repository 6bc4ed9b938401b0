"""The answers waitress builds itself (400, 431, 505, ...): their access-log line, exactly,
its duration read from a clock the test sets (a real one says 0.0 ms: microseconds)."""

from __future__ import annotations

import io
import json
import socket
import threading
import time
import types

from hello import drain, tasks
from hello.event_loop import HelloServer
from hello.logs import LogWriter


def _app(environ, start_response):  # never reached: waitress answers before any app
    start_response("200 OK", [])
    return [b""]


def test_an_answer_waitress_builds_is_logged_with_its_duration_in_ms(monkeypatch):
    readings = iter([10.0, 10.0123456])  # started, then done: 12.3456 ms
    clock = types.SimpleNamespace(**{name: getattr(time, name) for name in dir(time)
                                     if not name.startswith("_")})
    clock.perf_counter = lambda: next(readings)
    monkeypatch.setattr(tasks, "time", clock)
    out = io.StringIO()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    server = HelloServer(_app, listener, writer=LogWriter("json", out=out, err=io.StringIO()),
                         header_timeout=30, body_timeout=60, threads=1, connection_limit=10,
                         ident="hello")
    loop = threading.Thread(target=server.run, daemon=True)
    loop.start()
    try:
        with socket.create_connection(("127.0.0.1", server.getsockname()[1]), timeout=5) as client:
            client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: x\r\n\r\n")
            answer = b""
            while chunk := client.recv(65536):
                answer += chunk
    finally:
        server.trigger.pull_trigger(lambda: drain.close_all(server))
        loop.join(5)
        server.task_dispatcher.shutdown(timeout=5)
        drain.close_trigger(server)
    assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    [line] = [json.loads(line) for line in out.getvalue().splitlines()]
    assert line["status"] == 400 and line["duration_ms"] == 12.346  # ms, to the microsecond
