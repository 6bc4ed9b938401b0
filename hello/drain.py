"""The drain's steps inside the event loop (hello/server.py runs them in order, each
in the loop thread but busy_connections): what the kernel queued is served, idle
keep-alive connections close, and at the end every connection does."""

from __future__ import annotations

import time

from hello import waitress_version
from hello.event_loop import HelloServer

waitress_version.check()
# Imported after the check: an unknown waitress may not even have these names.
from waitress import wasyncore  # noqa: E402
from waitress.channel import HTTPChannel  # noqa: E402


def accept_queued_and_stop_listening(server: HelloServer) -> None:
    """Drain step 1 (loop thread): what the kernel already queued is served, not reset.

    The listener closes whatever happens: out of fds (the backlog can hold more than the
    soft limit leaves), the rest of the backlog is reset rather than served all drain long.
    """
    try:
        while True:
            try:
                pair = server.accept()
            except OSError:  # EMFILE, ENFILE, ENOBUFS: no room for more
                break
            if pair is None:
                break
            conn, addr = pair
            try:
                server.set_socket_options(conn)
            except OSError:  # the peer went away before we got to it
                conn.close()
                continue
            server.channel_class(server, conn, server.fix_addr(addr), server.adj, map=server._map)
    finally:
        wasyncore.dispatcher.close(server)  # and accepting is False


def close_idle(server: HelloServer, grace_seconds: float) -> None:
    """Drain step 2 (loop thread): close keep-alive connections with nothing in progress."""
    cutoff = time.time() - grace_seconds
    for channel in list(server.active_channels.values()):
        idle = (not channel.requests and channel.request is None
                and not channel.unparsed and not channel.total_outbufs_len)
        if idle and channel.last_activity <= cutoff:
            channel.will_close = True
            server.trigger.pull_trigger()


def close_all(server: HelloServer) -> None:
    """Drain's last step (loop thread): every connection is closed and the loop ends.

    The trigger stays open: a worker that just sent its last response still pulls it
    (waitress's HTTPChannel.service() ends `if self.connected: self.server.pull_trigger()`),
    and its connection can close, and this run, between that check and the write, which
    then raised EBADF in the worker. close_trigger closes it once the workers are gone.

    Connections close through handle_close, as waitress's own loop closes them: it takes
    the outbuf lock, so a worker still flushing (past a drain timeout) finishes its send
    before the socket goes, and it wakes a worker waiting on that lock for the loop.
    """
    for obj in list(server._map.values()):
        if isinstance(obj, HTTPChannel):
            obj.handle_close()
        elif obj is not server.trigger:  # the listener, if drain's first step did not run:
            wasyncore.dispatcher.close(obj)  # its own close() closes the trigger too
    server._map.clear()  # the trigger too: the loop ends


def close_trigger(server: HelloServer) -> None:
    """After the workers stopped. One still running (past the shutdown timeout) may yet
    pull it: then the pipe is left to the process's exit."""
    with server.task_dispatcher.lock:
        if server.task_dispatcher.threads:
            return
    server.trigger.close()


def busy_connections(server: HelloServer) -> int:
    """From the main thread: len() of the loop thread's dict is one step, never torn."""
    return len(server.active_channels)

