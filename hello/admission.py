"""At --connection-limit, who gives way to a new connection: a decision over the
states of connections, no sockets (hello/connection_limit.py acts on it).

Below the limit, a connection is accepted. At it, the stalest connection still
sending its request (or idle) is evicted to make room, so 1000 slow clients cannot
lock a health probe out. With nothing to evict (every connection has a request being
served), a few more are accepted (CONNECTION_HEADROOM); past that, a health probe
gets a lane of its own (one answer, then closed), and anything else takes the place
of the newest request still queued for a worker (answered 503), or is refused.
"""

from __future__ import annotations

import enum

# Past the limit with nothing evictable, this many more connections are still accepted.
CONNECTION_HEADROOM = 16
# Probes let in past the limit and its headroom at once, at most (each is answered in the
# loop and closed, so they do not stay; a client that only looks like one cannot hold more).
PROBE_LANE = 16


class Admission(enum.Enum):
    ACCEPT = "accept"
    EVICT_STALEST = "evict the stalest connection still sending its request"
    PROBE_LANE = "accept for one health answer, then close"
    SHED_NEWEST_QUEUED = "answer the newest queued request 503 and close it"
    REFUSE = "refuse"
    PAUSE = "stop accepting for a moment"


def admit(open_now: int, limit: int, *, evictable: bool, probe: bool, lanes: int,
          queued: bool) -> Admission:
    """What to do with a new connection while open_now connections are open (and not
    about to close): evictable, one is still sending its request or idle; probe, the new
    one's first bytes are a health request; lanes, probes in their lane now; queued, a
    request waits for a worker."""
    if open_now < limit:
        return Admission.ACCEPT
    if evictable:
        return Admission.EVICT_STALEST
    if open_now < limit + CONNECTION_HEADROOM:
        return Admission.ACCEPT
    if probe and lanes < PROBE_LANE:
        return Admission.PROBE_LANE
    if queued:
        return Admission.SHED_NEWEST_QUEUED
    return Admission.REFUSE


def out_of_fds(*, evictable: bool, queued: bool) -> Admission:
    """accept() failed for want of a file descriptor: make room as at the limit, or stop
    accepting for a moment (spinning on EMFILE took 100 % CPU, and every probe timed out)."""
    if evictable:
        return Admission.EVICT_STALEST
    if queued:
        return Admission.SHED_NEWEST_QUEUED
    return Admission.PAUSE


def may_be_evicted(connection) -> bool:
    """Being served, holding requests still to parse or sending an answer: never cut."""
    return not (connection.requests or connection.unparsed or connection.total_outbufs_len)


def stalest_last(connections, mono: float, now: float) -> list:
    """Those that may be evicted, the longest-waiting last: a request's age counts from
    its first byte (request.started, monotonic), so dripping bytes does not renew it; an
    idle connection's from its last activity (last_activity, wall clock)."""

    def waited(connection) -> float:
        request = connection.request
        if request is not None:
            return mono - request.started
        return now - connection.last_activity

    return sorted((each for each in connections if may_be_evicted(each)), key=waited)
