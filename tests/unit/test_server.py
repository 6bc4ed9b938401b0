"""hello/server.py, the process around the server: a loop thread that dies.

In this process, with the loop replaced: what is asserted is hello's decision, which a
real server would only show on a machine set up for it.
"""

from __future__ import annotations

import io
import json
import time

from hello import drain, server
from hello.event_loop import HelloServer
from hello.logs import LogWriter


def test_a_server_whose_loop_dies_says_so_and_exits_1(monkeypatch, settings):
    monkeypatch.setattr(HelloServer, "run", lambda self: None)  # died at once
    out, err = io.StringIO(), io.StringIO()
    sock = server.bind_listener("127.0.0.1", 0, False)
    hello = server.Server(settings, LogWriter("json", out=out, err=err), sock)
    started = time.monotonic()
    try:
        assert hello.run() == 1
        # the main thread looks at the loop once a second: an orchestrator restarts the
        # task that long after its loop died, not two seconds or more
        assert 1.0 <= time.monotonic() - started < 1.8
    finally:
        hello.http.task_dispatcher.shutdown(timeout=5)
        drain.close_all(hello.http)
        drain.close_trigger(hello.http)
    assert [json.loads(line)["event"] for line in out.getvalue().splitlines()] == ["listening"]
    (line,) = [json.loads(line) for line in err.getvalue().splitlines()]
    del line["time"]
    assert line == {"level": "error", "event": "server loop died"}
