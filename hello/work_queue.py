"""The workers' queue: waitress's task dispatcher, read and taken from by the event loop.

Each connection in it carries when it was queued (channel.queued_at, set by
HelloServer.to_workers): /readyz says "saturated" while the oldest has waited too
long, and the loop takes out what waited past --queue-timeout, or whose client left,
to answer it at once instead of late (1000 clients that gave up on ?wait=30s left an
hour of work).
"""

from __future__ import annotations

from hello import waitress_version

waitress_version.check()
# Imported after the check: an unknown waitress may not even have these names.
from waitress.task import ThreadedTaskDispatcher  # noqa: E402


class WorkQueue(ThreadedTaskDispatcher):
    """A connection taken out of the queue is the taker's: no worker can get it."""

    def longest_wait(self, mono: float) -> float:
        """How long the oldest queued connection has waited (0 when none waits)."""
        with self.lock:
            oldest = self.queue[0].queued_at if self.queue else None
        return 0.0 if oldest is None else mono - oldest

    def take_stale(self, mono: float, timeout: float) -> list:
        """Take out those whose client left or that waited longer than timeout."""
        with self.lock:
            stale = [channel for channel in self.queue
                     if not channel.connected or channel.queued_at is None
                     or mono - channel.queued_at > timeout]
            for channel in stale:
                self.queue.remove(channel)
        return stale

    def take_newest(self):
        """Take out the connection queued last, or None."""
        with self.lock:
            return self.queue.pop() if self.queue else None
