"""The event loop hello serves from: waitress's, with what a turn of it must also do.

- health requests, and 503s that cost nothing, are answered in the loop thread (the
  channel serves them in the read that brought them); everything else goes to the
  workers, a request's wait for one timed;
- every MAINTENANCE_SECONDS, the header and body deadlines and --queue-timeout are
  enforced: a request queued too long is answered 503 without waiting for a worker,
  and one whose client left is dropped; /readyz says "saturated" while a request has
  waited over SATURATED_SECONDS;
- at the end of each turn, what the connection limit evicted is closed, and
  connections holding the rest of a pipelined batch parse on;
- nothing spills to temp files ($TMPDIR is a tmpfs charged to the same memory limit in
  every shape hello ships in, and a full one reset uploads); poll(), not select(),
  which fails past fd 1023.
"""

from __future__ import annotations

import threading
import time

from hello import memory, waitress_version
from hello.channel import HelloChannel, answered_in_loop
from hello.connection_limit import ACCEPT_BATCH, LimitedServer
from hello.http_parser import Overloaded
from hello.work_queue import WorkQueue

waitress_version.check()
# Imported after the check: an unknown waitress may not even have these names.
from waitress import wasyncore  # noqa: E402
from waitress.adjustments import Adjustments  # noqa: E402

# How often the deadlines and the idle timeout are checked (waitress's default is 30 s).
MAINTENANCE_SECONDS = 1.0
# A request that waited this long for a worker makes the server "saturated" (/readyz 503).
SATURATED_SECONDS = 1.0
# waitress spills a body past 512 KB and a response past 1 MB to temp files: never here.
NEVER_SPILL = 1 << 62


class HelloServer(LimitedServer):
    """waitress's TCP server with loop-thread health, deadlines and a memory budget."""

    def __init__(self, application, sock, *, writer, header_timeout: float,
                 body_timeout: float, budget: memory.Budget | None = None,
                 accept_batch: int = ACCEPT_BATCH, queue_timeout: float = 10.0, **adjustments):
        # channel_request_lookahead=1: a connection stays readable while its request
        # waits or runs, so a client that leaves is seen (its request is then not run,
        # and a running one can tell: waitress.client_disconnected)
        adj = Adjustments(cleanup_interval=MAINTENANCE_SECONDS, inbuf_overflow=NEVER_SPILL,
                          outbuf_overflow=NEVER_SPILL, channel_request_lookahead=1,
                          **adjustments)  # run() polls
        self.budget = budget or memory.Budget(memory.UNLIMITED)
        self.queue_timeout = queue_timeout
        dispatcher = WorkQueue()
        dispatcher.set_thread_count(adj.threads)
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.draining = threading.Event()  # set by the first stop signal: /readyz 503
        self.hello_writer = writer
        # holding the rest of a pipelined batch (a dict: oldest first), loop thread only
        self.unparsed_channels: dict[HelloChannel, None] = {}
        # sock is bound and listening already: waitress neither makes nor binds one
        super().__init__(application, _sock=sock, dispatcher=dispatcher, adj=adj,
                         bind_socket=False, accept_batch=accept_batch)
        self._loop_thread: threading.Thread | None = None


    def run(self):
        """waitress's loop, plus closing evicted connections between turns: closed in
        the middle of a turn, an evicted connection's fd could be reused by a connection
        accepted in the same turn and get the old one's pending events (a hang-up)."""
        self._loop_thread = threading.current_thread()
        try:
            while self._map:
                wasyncore.poll2(self.adj.asyncore_loop_timeout, self._map)
                self.close_evicted()
                self.parse_unparsed()
        except (SystemExit, KeyboardInterrupt):
            self.task_dispatcher.shutdown()

    def parse_unparsed(self) -> None:
        """The end of a loop turn: connections holding the rest of a pipelined batch
        parse on where their queue has room (a worker that finishes one pulls the
        trigger, so the loop turns)."""
        for channel in list(self.unparsed_channels):
            if not channel.connected or not channel.unparsed:
                del self.unparsed_channels[channel]
            elif channel.takes_input():
                del self.unparsed_channels[channel]
                try:
                    channel.received(b"", loop_answers=0)
                except Exception:  # as wasyncore's readwrite() does: that connection only
                    channel.handle_error()

    def add_task(self, channel):
        request = channel.requests[0]
        if channel.lane_only and request.error is None and not answered_in_loop(request):
            # let in past the limit for a probe, it sent something else behind it
            request.error = Overloaded("the server is at its connection limit")
        if (request.error is None and not request.body_reserved
                and not answered_in_loop(request) and self.budget.exhausted()):
            request.error = Overloaded("the server's memory budget is spent")
        in_loop = threading.current_thread() is self._loop_thread
        if in_loop and (answered_in_loop(request) or isinstance(request.error, Overloaded)):
            channel.loop_service_pending = True  # a 503 costs nothing: not behind the queue
        else:
            self.to_workers(channel)

    def to_workers(self, channel) -> None:
        channel.queued_at = time.monotonic()
        super().add_task(channel)

    def saturated(self) -> bool:
        """A request has waited for a worker longer than SATURATED_SECONDS: /readyz says
        so, so that a load balancer sends the next ones to another instance."""
        return self.task_dispatcher.longest_wait(time.monotonic()) > SATURATED_SECONDS

    def shed_stale_queue(self, mono: float) -> None:
        """Loop thread, every MAINTENANCE_SECONDS: queued requests whose client has gone
        are dropped (logged 499), and those past --queue-timeout answered 503, now
        (HelloChannel.service tells which), without waiting for a worker."""
        for channel in self.task_dispatcher.take_stale(mono, self.queue_timeout):
            channel.answer_now()

    def readable(self):
        """Listen always: at the limit, handle_accept makes room instead."""
        now = time.time()
        if now >= self.next_channel_cleanup:
            self.next_channel_cleanup = now + self.adj.cleanup_interval
            self.maintenance(now)
        return self.accepting and time.monotonic() >= self._accept_paused_until

    def maintenance(self, now):
        super().maintenance(now)  # --channel-timeout: idle keep-alive connections
        mono = time.monotonic()
        self.shed_stale_queue(mono)
        for channel in list(self.active_channels.values()):
            if channel.requests:
                continue
            if self._past_deadline(channel, mono):
                channel.will_close = True  # closed by the loop's next write pass

    def _past_deadline(self, channel: HelloChannel, mono: float) -> bool:
        request = channel.request
        if request is None:
            # a fresh connection that never sent a byte is held to the header deadline
            if channel.served_any:
                return False
            return time.time() - channel.creation_time > self.header_timeout
        if request.head_done_at is None:
            return mono - request.started > self.header_timeout
        return mono - request.head_done_at > self.body_timeout


