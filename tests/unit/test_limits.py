"""hello/limits.py: the settings fitted to the open-file limit and the memory limit.

In this process, with the limits faked: what is asserted is hello's decision, which a
real server would only show on a machine set up for it (tests/server/test_limits_live.py
runs a real server under a real low fd limit and a real memory cgroup).
"""

from __future__ import annotations

import dataclasses
import io
import json

import pytest

from hello import limits, memory
from hello.admission import CONNECTION_HEADROOM
from hello.connection_limit import ACCEPT_BATCH
from hello.logs import LogWriter

INF = limits.resource.RLIM_INFINITY
MIB = 1 << 20


class Limits:
    """RLIMIT_NOFILE as the kernel would keep it, or refuse to change it."""

    def __init__(self, soft, hard, refuse: bool = False):
        self.soft, self.hard, self.refuse = soft, hard, refuse
        self.set_to: list[tuple[int, int]] = []

    def getrlimit(self, which):
        assert which == limits.resource.RLIMIT_NOFILE
        return self.soft, self.hard

    def setrlimit(self, which, wanted):
        assert which == limits.resource.RLIMIT_NOFILE
        self.set_to.append(wanted)
        if self.refuse:
            raise ValueError("not allowed")
        self.soft, self.hard = wanted


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
    fake = Limits(soft, hard, refuse)
    monkeypatch.setattr(limits.resource, "getrlimit", fake.getrlimit)
    monkeypatch.setattr(limits.resource, "setrlimit", fake.setrlimit)
    assert limits._allow_open_files(1500) == allowed
    assert fake.set_to == set_to


def lines_of(err: io.StringIO) -> list[dict]:
    lines = [json.loads(line) for line in err.getvalue().splitlines()]
    for line in lines:
        del line["time"]
    return lines


def _fitted(monkeypatch, settings, soft, hard):
    monkeypatch.setattr(limits.resource, "getrlimit", Limits(soft, hard).getrlimit)
    monkeypatch.setattr(limits.resource, "setrlimit", Limits(soft, hard).setrlimit)
    err = io.StringIO()
    fitted = limits.fit_open_files(settings, LogWriter("json", out=io.StringIO(), err=err))
    return fitted, lines_of(err)


def test_one_fd_a_connection_plus_headroom_spare_and_a_turns_accepts_are_wanted():
    assert limits.fds_wanted(1000) == 1000 + CONNECTION_HEADROOM + limits.SPARE_FDS + ACCEPT_BATCH
    assert limits.fds_wanted(10, 4) == 10 + CONNECTION_HEADROOM + limits.SPARE_FDS + 4


def test_the_connection_limit_stands_when_the_open_files_allow_it(monkeypatch, settings):
    wanted = limits.fds_wanted(settings.connection_limit)
    assert _fitted(monkeypatch, settings, wanted, wanted) == ((settings, ACCEPT_BATCH), [])


@pytest.mark.parametrize("hard, batch, fitting", [
    (1000, ACCEPT_BATCH - 3, 1000 - limits.SPARE_FDS - (ACCEPT_BATCH - 3) - CONNECTION_HEADROOM),
    (1001, ACCEPT_BATCH - 3, 1001 - limits.SPARE_FDS - (ACCEPT_BATCH - 3) - CONNECTION_HEADROOM),
    (256, 32, 256 - 16 - 32 - 16),
    (64, 8, 64 - 16 - 8 - 16),  # a container's nofile=64: 24 connections, not 1
    (30, limits.MIN_ACCEPT_BATCH, 1)])
def test_below_the_open_file_limit_the_connection_limit_is_lowered_to_fit_and_said(
        monkeypatch, settings, hard, batch, fitting):
    (fitted, fitted_batch), lines = _fitted(monkeypatch, settings, hard, hard)
    assert fitted.connection_limit == fitting and type(fitted.connection_limit) is int
    assert fitted_batch == batch
    assert dataclasses.replace(fitted, connection_limit=settings.connection_limit) == settings
    assert lines == [{"level": "warning", "event": "open-file limit is below --connection-limit "
                      "plus spare fds; the connection limit is lowered to fit",
                      "limit": hard, "wanted": limits.fds_wanted(settings.connection_limit),
                      "connection_limit": fitting}]


def _memory_fitted(settings, reading):
    err = io.StringIO()
    fitted, budget = limits.fit_memory(settings, LogWriter("json", out=io.StringIO(), err=err),
                                       reading)
    return fitted, budget, lines_of(err)


def test_without_a_memory_limit_nothing_changes_and_nothing_is_refused(settings):
    fitted, budget, lines = _memory_fitted(settings, memory.Reading(None, 0, "none"))
    assert fitted == settings and lines == []
    assert budget.limit == memory.UNLIMITED


def test_a_160_mib_container_keeps_the_defaults_and_budgets_the_rest(settings):
    reading = memory.Reading(160 * MIB, 34 * MIB, "cgroup v2 memory.max")
    fitted, budget, lines = _memory_fitted(settings, reading)
    assert fitted == settings and lines == []
    free = 160 * MIB - 34 * MIB - 20 * MIB  # an eighth of the limit is headroom
    assert budget.limit == free - settings.connection_limit * memory.CONNECTION_BYTES


def test_a_tight_limit_lowers_the_connections_and_the_largest_body_and_says_so(settings):
    reading = memory.Reading(56 * MIB, 36 * MIB, "cgroup v1 memory.limit_in_bytes")
    settings = dataclasses.replace(settings, max_body_bytes=3 * MIB)
    fitted, budget, lines = _memory_fitted(settings, reading)
    free = 4 * MIB  # 56 - 36 - 16 (the least headroom)
    connections = free // 2 // memory.CONNECTION_BYTES
    assert fitted.connection_limit == connections == 256
    assert budget.limit == free - connections * memory.CONNECTION_BYTES == memory.MIN_BUFFER
    assert fitted.max_body_bytes == budget.limit // memory.BODY_COPIES == MIB
    assert dataclasses.replace(fitted, connection_limit=settings.connection_limit,
                               max_body_bytes=settings.max_body_bytes) == settings
    assert lines == [{"level": "warning", "event": "the memory limit cannot hold what the "
                      "settings allow; lowered to fit", "limit": 56 * MIB, "used": 36 * MIB,
                      "source": "cgroup v1 memory.limit_in_bytes", "connection_limit": 256,
                      "max_body_bytes": fitted.max_body_bytes}]


def test_a_body_larger_than_the_budget_holds_is_lowered_alone(settings):
    big = dataclasses.replace(settings, max_body_bytes=200 * MIB)
    fitted, budget, lines = _memory_fitted(big, memory.Reading(160 * MIB, 34 * MIB, "v2"))
    assert fitted.max_body_bytes == budget.limit // memory.BODY_COPIES
    assert fitted.connection_limit == settings.connection_limit
    assert list(lines[0])[-1] == "max_body_bytes" and "connection_limit" not in lines[0]


def test_fit_reads_the_open_files_then_the_memory(monkeypatch, settings):
    monkeypatch.setattr(limits.resource, "getrlimit", Limits(64, 64).getrlimit)
    monkeypatch.setattr(limits.resource, "setrlimit", Limits(64, 64).setrlimit)
    err = io.StringIO()
    fitted = limits.fit(settings, LogWriter("json", out=io.StringIO(), err=err),
                        memory.Reading(160 * MIB, 34 * MIB, "v2"))
    assert fitted.settings.connection_limit == 24 and fitted.accept_batch == 8
    assert fitted.budget.limit == 160 * MIB - 54 * MIB - 24 * memory.CONNECTION_BYTES
    assert len(err.getvalue().splitlines()) == 1  # the fd warning; memory had room
