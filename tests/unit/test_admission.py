"""hello/admission.py: who gives way at the connection limit, decided from connection
states alone (tests/unit/test_connection_limit.py runs the same choices on sockets)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from hello.admission import CONNECTION_HEADROOM, PROBE_LANE, Admission, admit, out_of_fds, stalest_last

LIMIT = 10
QUIET = {"evictable": False, "probe": False, "lanes": 0, "queued": False}


@pytest.mark.parametrize("open_now", [0, LIMIT - 1])
def test_below_the_limit_every_connection_is_accepted(open_now):
    assert admit(open_now, LIMIT, **{**QUIET, "evictable": True}) is Admission.ACCEPT


def test_at_the_limit_the_stalest_sending_connection_gives_way():
    assert admit(LIMIT, LIMIT, **{**QUIET, "evictable": True}) is Admission.EVICT_STALEST
    assert admit(LIMIT + 99, LIMIT, **{**QUIET, "evictable": True}) is Admission.EVICT_STALEST


@pytest.mark.parametrize("open_now", [LIMIT, LIMIT + CONNECTION_HEADROOM - 1])
def test_with_nothing_to_evict_the_headroom_still_accepts(open_now):
    assert admit(open_now, LIMIT, **{**QUIET, "queued": True, "probe": True}) is Admission.ACCEPT


def test_past_the_headroom_a_probe_gets_its_lane_until_the_lane_is_full():
    full = LIMIT + CONNECTION_HEADROOM
    assert admit(full, LIMIT, **{**QUIET, "probe": True, "lanes": PROBE_LANE - 1,
                                 "queued": True}) is Admission.PROBE_LANE
    assert admit(full, LIMIT, **{**QUIET, "probe": True, "lanes": PROBE_LANE,
                                 "queued": True}) is Admission.SHED_NEWEST_QUEUED


def test_past_the_headroom_the_newest_queued_request_is_shed_or_the_newcomer_refused():
    full = LIMIT + CONNECTION_HEADROOM
    assert admit(full, LIMIT, **{**QUIET, "queued": True}) is Admission.SHED_NEWEST_QUEUED
    assert admit(full, LIMIT, **QUIET) is Admission.REFUSE
    assert admit(full, LIMIT, **{**QUIET, "probe": True, "lanes": PROBE_LANE}) is Admission.REFUSE


def test_out_of_fds_it_evicts_then_sheds_then_pauses():
    assert out_of_fds(evictable=True, queued=True) is Admission.EVICT_STALEST
    assert out_of_fds(evictable=False, queued=True) is Admission.SHED_NEWEST_QUEUED
    assert out_of_fds(evictable=False, queued=False) is Admission.PAUSE


def connection(name, *, started=None, last_activity=0.0, requests=(), unparsed=b"", outbuf=0):
    request = None if started is None else SimpleNamespace(started=started)
    return SimpleNamespace(name=name, request=request, last_activity=last_activity,
                           requests=list(requests), unparsed=unparsed, total_outbufs_len=outbuf)


def test_stalest_last_orders_by_the_first_byte_of_the_request_or_the_last_activity():
    mono, now = 100.0, 5000.0
    candidates = [connection("head sent 30 s ago", started=70.0),
                  connection("idle 5 s", last_activity=4995.0),
                  connection("head sent 50 s ago", started=50.0),
                  connection("idle 40 s", last_activity=4960.0)]
    assert [each.name for each in stalest_last(candidates, mono, now)] == [
        "idle 5 s", "head sent 30 s ago", "idle 40 s", "head sent 50 s ago"]


def test_a_connection_being_served_parsing_or_sending_is_never_a_candidate():
    busy = [connection("queued", requests=["GET /"], last_activity=0.0),
            connection("batch left to parse", unparsed=b"GET / HTTP/1.1\r\n"),
            connection("answer unsent", outbuf=1)]
    idle = connection("idle", last_activity=1.0)
    assert stalest_last([*busy, idle], 100.0, 5000.0) == [idle]
