"""The process around the server: its open-file limit and a loop thread that dies.

Both in this process, with the limits faked and the loop replaced: what is asserted is
hello's decision, which a real server would only show on a machine set up for it.
"""

from __future__ import annotations

import dataclasses
import io
import json
import time

import pytest

from hello import server, waitress_internals
from hello.logs import LogWriter

INF = server.resource.RLIM_INFINITY


class Limits:
    """RLIMIT_NOFILE as the kernel would keep it, or refuse to change it."""

    def __init__(self, soft, hard, refuse: bool = False):
        self.soft, self.hard, self.refuse = soft, hard, refuse
        self.set_to: list[tuple[int, int]] = []

    def getrlimit(self, which):
        assert which == server.resource.RLIMIT_NOFILE
        return self.soft, self.hard

    def setrlimit(self, which, limits):
        assert which == server.resource.RLIMIT_NOFILE
        self.set_to.append(limits)
        if self.refuse:
            raise ValueError("not allowed")
        self.soft, self.hard = limits


@pytest.mark.parametrize("soft, hard, refuse, set_to, allowed", [
    (INF, INF, False, [], 1500),              # no limit: nothing to raise
    (2000, 4096, False, [], 1500),            # enough already (2000 >= 1500)
    (1500, 4096, False, [], 1500),            # exactly enough
    (1499, 4096, False, [(1500, 4096)], 1500),
    (1024, INF, False, [(1500, INF)], 1500),  # an unlimited hard limit: exactly what is wanted
    (1024, 1200, False, [(1200, 1200)], 1200),  # capped by the hard limit
    (1024, 4096, True, [(1500, 4096)], 1024),   # refused (a container's seccomp, say)
])
def test_the_open_file_limit_is_raised_towards_what_is_wanted(
        monkeypatch, soft, hard, refuse, set_to, allowed):
    limits = Limits(soft, hard, refuse)
    monkeypatch.setattr(server.resource, "getrlimit", limits.getrlimit)
    monkeypatch.setattr(server.resource, "setrlimit", limits.setrlimit)
    assert server._allow_open_files(1500) == allowed
    assert limits.set_to == set_to


def _fitted(monkeypatch, settings, soft, hard):
    monkeypatch.setattr(server.resource, "getrlimit", Limits(soft, hard).getrlimit)
    monkeypatch.setattr(server.resource, "setrlimit", Limits(soft, hard).setrlimit)
    err = io.StringIO()
    fitted = server._fit_connection_limit(settings, LogWriter("json", out=io.StringIO(), err=err))
    lines = [json.loads(line) for line in err.getvalue().splitlines()]
    for line in lines:
        del line["time"]
    return fitted, lines


def test_the_connection_limit_stands_when_the_open_files_allow_it(monkeypatch, settings):
    wanted = settings.connection_limit * server.FDS_PER_CONNECTION + server.SPARE_FDS
    assert _fitted(monkeypatch, settings, wanted, wanted) == (settings, [])


@pytest.mark.parametrize("hard, fitting", [
    (1000, (1000 - server.SPARE_FDS) // server.FDS_PER_CONNECTION),
    (1001, (1001 - server.SPARE_FDS) // server.FDS_PER_CONNECTION),  # the other parity: whole
    (100, 1)])
def test_below_the_open_file_limit_the_connection_limit_is_lowered_to_fit_and_said(
        monkeypatch, settings, hard, fitting):
    wanted = settings.connection_limit * server.FDS_PER_CONNECTION + server.SPARE_FDS
    fitted, lines = _fitted(monkeypatch, settings, hard, hard)
    assert fitted.connection_limit == fitting and type(fitted.connection_limit) is int
    assert dataclasses.replace(fitted, connection_limit=settings.connection_limit) == settings
    assert lines == [{"level": "warning", "event": "open-file limit is below --connection-limit "
                      "plus spare fds; the connection limit is lowered to fit",
                      "limit": hard, "wanted": wanted, "connection_limit": fitting}]


def test_a_server_whose_loop_dies_says_so_and_exits_1(monkeypatch, settings):
    monkeypatch.setattr(waitress_internals.HelloServer, "run", lambda self: None)  # died at once
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
        hello.waitress.task_dispatcher.shutdown(timeout=5)
        waitress_internals.close_all(hello.waitress)
        waitress_internals.close_trigger(hello.waitress)
    assert [json.loads(line)["event"] for line in out.getvalue().splitlines()] == ["listening"]
    (line,) = [json.loads(line) for line in err.getvalue().splitlines()]
    del line["time"]
    assert line == {"level": "error", "event": "server loop died"}
