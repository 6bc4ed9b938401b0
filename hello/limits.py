"""Fit `hello serve` to what its runtime gives it: open files and memory.

Both are read once at start, before serving, and a setting that would not fit is
lowered with one warning line saying what and why, rather than failing under load:
- open files: the soft RLIMIT_NOFILE is raised towards what --connection-limit
  needs (one fd a connection: nothing spills to temp files; CONNECTION_HEADROOM
  more; SPARE_FDS for the process itself; the connections one loop turn accepts
  before the ones they evict are closed); under a lower hard limit the connection
  limit and that accept batch are scaled down to fit. Kept at 2 fds a connection
  plus 192 spare, a hard limit of 64 left a connection limit of 1.
- memory: hello/memory.py reads the cgroup limit; the connection limit and
  --max-body-bytes are lowered when they alone would not fit, and what is left is
  the budget for bodies and responses that clients make it hold.
"""

from __future__ import annotations

import dataclasses
import resource

from hello import memory
from hello.admission import CONNECTION_HEADROOM
from hello.connection_limit import ACCEPT_BATCH
from hello.logs import LogWriter

FDS_PER_CONNECTION = 1
# listener, trigger pipe, stdio, the unpack folder's lock, Python's own (measured: 9 open
# in a serving binary with no connection)
SPARE_FDS = 16
MIN_ACCEPT_BATCH = 4


@dataclasses.dataclass(frozen=True)
class Fitted:
    settings: object  # hello.config.Settings, lowered where it did not fit
    accept_batch: int  # connections one loop turn may accept
    budget: memory.Budget


def fit(settings, writer: LogWriter, reading: memory.Reading | None = None) -> Fitted:
    settings, batch = fit_open_files(settings, writer)
    settings, budget = fit_memory(settings, writer, reading or memory.read())
    return Fitted(settings, batch, budget)


def fds_wanted(connection_limit: int, accept_batch: int = ACCEPT_BATCH) -> int:
    return ((connection_limit + CONNECTION_HEADROOM) * FDS_PER_CONNECTION
            + SPARE_FDS + accept_batch)


def fit_open_files(settings, writer: LogWriter):
    """(settings, accept batch) that the open-file limit can hold. Kept above it, the
    connection limit was never reached: accept() failed with EMFILE first, before any
    slow client could be evicted, and a few hundred of them locked every probe out."""
    wanted = fds_wanted(settings.connection_limit)
    allowed = _allow_open_files(wanted)
    if allowed >= wanted:
        return settings, ACCEPT_BATCH
    fitting, batch = fitting_open_files(allowed)
    writer.warning("open-file limit is below --connection-limit plus spare fds; "
                   "the connection limit is lowered to fit",
                   limit=allowed, wanted=wanted, connection_limit=fitting)
    return dataclasses.replace(settings, connection_limit=fitting), batch


def fitting_open_files(allowed: int) -> tuple[int, int]:
    """(connection limit, accept batch) that `allowed` fds hold: the batch scaled to
    the limit (an eighth), the rest connections after their headroom and SPARE_FDS."""
    batch = max(MIN_ACCEPT_BATCH, min(ACCEPT_BATCH, allowed // 8))
    room = allowed - SPARE_FDS - batch - CONNECTION_HEADROOM * FDS_PER_CONNECTION
    return max(1, room // FDS_PER_CONNECTION), batch


def _allow_open_files(wanted: int) -> int:
    """The soft RLIMIT_NOFILE, raised towards wanted as far as the hard limit lets it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return wanted
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        return soft
    return target


def fit_memory(settings, writer: LogWriter, reading: memory.Reading):
    """(settings, budget): connections and the largest body inside the memory limit."""
    plan = memory.plan(reading, settings.connection_limit)
    lowered = {}
    if plan.connection_limit < settings.connection_limit:
        lowered["connection_limit"] = plan.connection_limit
    largest_body = plan.buffer_bytes // memory.BODY_COPIES
    if settings.max_body_bytes > largest_body:
        lowered["max_body_bytes"] = largest_body
    if lowered:
        writer.warning("the memory limit cannot hold what the settings allow; lowered to fit",
                       limit=reading.limit, used=reading.used, source=reading.source, **lowered)
    return dataclasses.replace(settings, **lowered), memory.Budget(plan.buffer_bytes)
