"""The connection limit, acted on: waitress's TCP server, accepting as hello/admission.py
decides (evict, probe lane, shed, refuse), in batches, and out of fds without spinning.
"""

from __future__ import annotations

import errno
import socket
import time

from hello import admission, waitress_version
from hello.admission import Admission
from hello.channel import LOOP_ANSWERED_PATHS, HelloChannel
from hello.http_parser import Overloaded

waitress_version.check()
# Imported after the check: an unknown waitress may not even have these names.
from waitress.server import TcpWSGIServer  # noqa: E402

ACCEPT_BATCH = 128
# Out of fds with nothing to evict or shed: how long the listener is left alone.
FDS_RETRY_SECONDS = 0.1
# How a probe's request starts (with its query or protocol next), peeked at the limit.
PROBE_STARTS = tuple(f"{method} {path}{after}".encode() for method in ("GET", "HEAD")
                     for path in sorted(LOOP_ANSWERED_PATHS) for after in (" ", "?"))
PROBE_PEEK_BYTES = 16


def is_probe(conn: socket.socket) -> bool:
    """The connection's first bytes, already here, are a health request: past the limit
    and its headroom it is let in all the same (answered in the loop at once, it costs
    an fd for a moment). Refused with the rest, probes failed under clients reconnecting
    at once at the limit (1 in 70 at --connection-limit 20)."""
    try:
        start = conn.recv(PROBE_PEEK_BYTES, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except OSError:
        return False
    return start.startswith(PROBE_STARTS)


class LimitedServer(TcpWSGIServer):
    """waitress's TCP server, held to --connection-limit without locking probes out.
    What a turn evicts or sheds is closed at the turn's end (close_evicted)."""

    channel_class = HelloChannel

    def __init__(self, *args, accept_batch: int = ACCEPT_BATCH, **kwargs):
        self.accept_batch = accept_batch
        self._evicting: list[HelloChannel] = []  # closed when the loop's turn ends
        self._accept_paused_until = 0.0  # out of fds with nothing to close: wait a little
        super().__init__(*args, **kwargs)

    def close_evicted(self) -> None:
        """The end of a loop turn: the connections evicted or shed in it are closed. One
        that got a whole request since (read again in this turn: its last bytes came after
        the eviction's read) is kept: closed, that request went unanswered. A shed one has
        none left (its 503 ends it)."""
        while self._evicting:
            channel = self._evicting.pop()
            if channel.connected and not channel.requests:
                channel.handle_close()

    def _lane_connections(self) -> int:
        return sum(1 for channel in list(self.active_channels.values()) if channel.lane_only)

    def _open_connections(self) -> int:
        """Open and not about to close. A shed connection whose 503 went out at once is
        closed already (out of active_channels): it must not be taken off twice."""
        return len(self.active_channels) - sum(1 for channel in self._evicting
                                               if channel.connected)

    def handle_accept(self):
        """Accept up to accept_batch (ACCEPT_BATCH unless the fds are few) queued
        connections per loop turn (waitress takes one: with 1000 connections to poll per
        turn, a probe queued behind a burst of reconnecting slow clients waited seconds
        in the listen backlog)."""
        candidates = Candidates(self)
        for _ in range(self.accept_batch):
            try:
                pair = self.accept()
                if pair is None:
                    return
                conn, addr = pair
                self.set_socket_options(conn)
            except OSError as error:
                if error.errno in (errno.EMFILE, errno.ENFILE):
                    self._make_room_for_fds(candidates)
                    return
                continue  # the peer went away before we got to it
            stalest, open_before = None, self._open_connections()
            if open_before >= self.adj.connection_limit:
                stalest = candidates.stalest()
            decision = self._admit(conn, open_before, stalest)
            if decision is Admission.REFUSE:
                conn.close()
                continue
            channel = self.channel_class(self, conn, self.fix_addr(addr), self.adj, map=self._map)
            channel.lane_only = decision is Admission.PROBE_LANE  # one health answer, then closed
            channel.read_if_waiting()
            candidates.accepted(channel)

    def _admit(self, conn: socket.socket, open_before: int,
               stalest: HelloChannel | None) -> Admission:
        """admission.admit, acted on: the stalest evicted or the newest queued shed (both
        closed at the end of this turn); REFUSE if that found nothing to shed. The count
        is taken again when nothing was found to evict: reading candidates can close some."""
        open_now = open_before if stalest is not None else self._open_connections()
        limit = self.adj.connection_limit
        beyond = stalest is None and open_now >= limit + admission.CONNECTION_HEADROOM
        decision = admission.admit(
            open_now, limit, evictable=stalest is not None,
            probe=beyond and is_probe(conn), lanes=self._lane_connections() if beyond else 0,
            queued=beyond and bool(self.task_dispatcher.queue))
        if decision is Admission.EVICT_STALEST:
            self._evicting.append(stalest)
        elif decision is Admission.SHED_NEWEST_QUEUED and not self._shed_newest_queued():
            return Admission.REFUSE  # a worker took it meanwhile: nothing to shed
        return decision

    def handle_error(self):
        """An error in handle_accept: logged, and the server goes on listening. waitress's
        closes the dispatcher, here the listener: the server accepted nothing more, for
        good, while it looked alive."""
        _, kind, value, where = self.compact_traceback()
        self.log_info(f"error while accepting, still listening ({kind}:{value} {where})", "error")

    def _make_room_for_fds(self, candidates: Candidates) -> None:
        """Out of fds (a hard open-file limit too small for the limit and its headroom):
        make room as at the limit, or stop listening for a moment (admission.out_of_fds)."""
        stalest = candidates.stalest()
        decision = admission.out_of_fds(evictable=stalest is not None,
                                        queued=bool(self.task_dispatcher.queue))
        if decision is Admission.EVICT_STALEST:
            self._evicting.append(stalest)
        elif decision is Admission.PAUSE or not self._shed_newest_queued():
            self._accept_paused_until = time.monotonic() + FDS_RETRY_SECONDS

    def _shed_newest_queued(self) -> bool:
        """Every connection has a request: turn away the newest one still waiting for a
        worker with a 503 (it has not started, and the older ones are served first),
        so a health probe always gets in however long the queue is."""
        channel = self.task_dispatcher.take_newest()
        if channel is None:
            return False
        if channel.requests:  # (none if it was cancelled meanwhile)
            channel.requests[0].error = Overloaded("the server is at its connection limit")
        channel.answer_now()
        self._evicting.append(channel)
        return True



class Candidates:
    """The connections one handle_accept may evict: admission.stalest_last of all of
    them, listed when first needed; when those run out, the turn's own newcomers,
    earliest first (a burst bigger than the limit and headroom refused a probe behind
    it). Each is read just before it is taken: a client that sent its whole request
    just after we accepted it is not idle, and closing it would drop that request."""

    def __init__(self, server: LimitedServer):
        self.server = server
        self.listed: list[HelloChannel] | None = None  # stalest last
        self.fresh: list[HelloChannel] = []  # accepted since the list was made

    def accepted(self, channel: HelloChannel) -> None:
        if self.listed is not None:
            self.fresh.append(channel)

    def stalest(self) -> HelloChannel | None:
        if self.listed is None:
            self.listed = admission.stalest_last(list(self.server.active_channels.values()),
                                                 time.monotonic(), time.time())
        found = self._pop()
        if found is None and self.fresh:
            self.listed, self.fresh = self.fresh[::-1], []
            found = self._pop()
        return found

    def _pop(self) -> HelloChannel | None:
        while self.listed:
            channel = self.listed.pop()
            if not channel.read_whole_request():
                return channel  # broken: closed with the evicted at the end of the turn,
                # not now, where a newcomer could get its fd and its events
            if channel.connected and admission.may_be_evicted(channel):
                return channel
        return None
