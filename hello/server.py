"""Run the app under waitress: limits, signals, readiness and graceful drain.

The waitress event loop runs in a thread of its own so the main thread is free
to wait for SIGTERM/SIGINT. The first signal turns /readyz to 503, accepts what
is already queued on the listener and closes it, asks keep-alive clients to
close, and waits (up to --drain-timeout) until no connection is left; then the
process exits 0. A second signal exits at once.

Loop-owned objects are only touched from the loop thread, through waitress's
trigger (`pull_trigger(thunk)`), never from the signal handler.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time

from waitress import create_server, wasyncore
from waitress.channel import HTTPChannel
from waitress.task import ErrorTask, WSGITask

from hello import buildinfo
from hello.logs import AccessLogMiddleware, LogWriter

DRAIN_POLL_SECONDS = 0.02
# A connection accepted just before the drain may not have sent its request yet;
# idle connections get this long before they are closed, so that request is served.
IDLE_GRACE_SECONDS = 0.5


class _ErrorsToWriter(logging.Handler):
    """Routes waitress's and Flask's logging records to our stderr lines."""

    def __init__(self, writer: LogWriter):
        super().__init__(logging.WARNING)
        self.writer = writer

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.exc_info:
            message += " | " + self.format(record).splitlines()[-1]
        self.writer.error(message, logger=record.name)


def _inherited_socket() -> socket.socket | None:
    """A listener handed over by systemd socket activation (LISTEN_FDS), if any.

    In the frozen binary the bootloaders sit between systemd and Python, so the
    PID systemd names may be our parent or grandparent.
    """
    count = os.environ.get("LISTEN_FDS", "")
    if not count.isdigit() or int(count) < 1:
        return None  # absent or not a count: bind our own socket, as systemd's sd_listen_fds does
    listen_pid = os.environ.get("LISTEN_PID", "")
    family = {str(os.getpid()), str(os.getppid())}
    if listen_pid and listen_pid not in family:
        try:
            with open(f"/proc/{os.getppid()}/stat", encoding="ascii") as stat:
                family.add(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError):
            pass
        if listen_pid not in family:
            return None
    for name in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    return socket.socket(fileno=3)


def bind_listener(host: str, port: int, reuse_port: bool) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    return sock


class _DrainAwareTask(WSGITask):
    """Once drain has begun, every response says `Connection: close`.

    A WSGI app may not set hop-by-hop headers (PEP 3333), so this is done where
    waitress builds the response head. Relies on waitress 3.0's task API
    (build_response_header, set_close_on_finish), pinned in requirements/.
    """

    def build_response_header(self):
        if self.channel.server.hello_draining.is_set():
            self.set_close_on_finish()
        return super().build_response_header()


class _ErrorTask(ErrorTask):
    """The 400/413/431 answers waitress gives itself, before any WSGI app runs:
    the same nosniff header as every other response, and an access-log line."""

    def execute(self):
        self.response_headers.append(("X-Content-Type-Options", "nosniff"))
        started = time.perf_counter()
        super().execute()
        writer = getattr(self.channel.server, "hello_writer", None)
        if writer is not None:
            request = self.request
            writer.access(method=getattr(request, "command", None) or None,
                          path=getattr(request, "path", None) or None,
                          status=int(self.status.split(" ", 1)[0]),
                          bytes=self.content_length or 0,
                          duration_ms=round((time.perf_counter() - started) * 1000, 3),
                          remote=self.channel.addr[0] if self.channel.addr else None)


class _DrainAwareChannel(HTTPChannel):
    task_class = _DrainAwareTask
    error_task_class = _ErrorTask


class Server:
    """One listening waitress server and its drain."""

    def __init__(self, settings, writer: LogWriter, sock: socket.socket):
        from hello.app import create_app  # Flask only when we really serve

        self.settings = settings
        self.writer = writer
        self.draining = threading.Event()
        self.stop_requested = threading.Event()
        self._signals = 0
        self._signal_name = ""
        self.app = app = create_app(settings, is_ready=lambda: not self.draining.is_set())
        if settings.access_log:
            app.wsgi_app = AccessLogMiddleware(app.wsgi_app, writer)
        self.sock = sock
        self.waitress = create_server(
            app,
            sockets=[self.sock],
            threads=settings.threads,
            ident="hello",
            max_request_header_size=settings.max_header_bytes,
            max_request_body_size=settings.max_body_bytes,
            channel_timeout=settings.channel_timeout,
            connection_limit=settings.connection_limit,
            expose_tracebacks=False,
        )
        self.waitress.channel_class = _DrainAwareChannel
        self.waitress.hello_draining = self.draining
        self.waitress.hello_writer = writer if settings.access_log else None
        self._loop = threading.Thread(target=self.waitress.run, name="hello-loop",
                                      daemon=True)

    @property
    def port(self) -> int:
        return self.sock.getsockname()[1]

    def on_signal(self, signum, _frame) -> None:
        """Only flags: the main thread may hold the log lock when a signal lands."""
        self._signals += 1
        if self._signals > 1:
            line = self.writer.format({"level": "info", "event": "second signal, exiting now",
                                       "signal": signal.Signals(signum).name})
            os.write(1, (line + "\n").encode())  # no lock: the main thread may hold it
            os._exit(128 + signum)
        self._signal_name = signal.Signals(signum).name
        self.draining.set()
        self.stop_requested.set()

    def run(self) -> int:
        # The socket already listens (waitress called listen()); log before the loop
        # serves anything, so `listening` is always the first line.
        self.writer.event("listening", host=self.sock.getsockname()[0], port=self.port,
                          pid=os.getpid(), threads=self.settings.threads,
                          version=buildinfo.build_info()["version"])
        self._loop.start()
        while not self.stop_requested.wait(1.0):
            if not self._loop.is_alive():
                self.writer.error("server loop died")
                return 1
        return self.drain()

    def _call_in_loop(self, thunk, timeout: float = 5.0) -> bool:
        """Run thunk in the loop thread and wait for it; False if it did not run."""
        done = threading.Event()

        def run():
            try:
                thunk()
            finally:
                done.set()

        self.waitress.trigger.pull_trigger(run)
        return done.wait(timeout)

    def _stop_accepting(self) -> None:
        server = self.waitress
        while True:  # what the kernel already queued is served, not reset
            pair = server.accept()
            if pair is None:
                break
            conn, addr = pair
            server.set_socket_options(conn)
            server.channel_class(server, conn, server.fix_addr(addr), server.adj,
                                 map=server._map)
        server.accepting = False
        wasyncore.dispatcher.close(server)

    def _close_idle(self) -> None:
        """Close keep-alive connections that have nothing in progress."""
        cutoff = time.time() - IDLE_GRACE_SECONDS
        for channel in list(self.waitress.active_channels.values()):
            idle = (not channel.requests and getattr(channel, "request", None) is None
                    and not channel.total_outbufs_len)
            if idle and channel.last_activity <= cutoff:
                channel.will_close = True
                self.waitress.trigger.pull_trigger()

    def _busy_connections(self) -> int:
        try:
            return len(self.waitress.active_channels)
        except RuntimeError:  # resized by the loop thread while we looked
            return 1

    def drain(self) -> int:
        self.writer.event("draining", signal=self._signal_name,
                          timeout_s=self.settings.drain_timeout)
        started = time.monotonic()
        deadline = started + self.settings.drain_timeout
        self._call_in_loop(self._stop_accepting)
        while self._busy_connections() and time.monotonic() < deadline:
            self._call_in_loop(self._close_idle)
            time.sleep(DRAIN_POLL_SECONDS)
        left = self._busy_connections()
        if left:
            self.writer.error("drain timeout, closing connections", connections=left)
        self._call_in_loop(lambda: wasyncore.close_all(self.waitress._map), timeout=1.0)
        self._loop.join(2.0)
        self.waitress.task_dispatcher.shutdown(timeout=1.0)
        others = [t.name for t in threading.enumerate() if t is not threading.current_thread()]
        self.writer.event("stopped", drained_ms=round((time.monotonic() - started) * 1000),
                          threads_left=len(others))
        return 0


def serve(settings, writer: LogWriter | None = None) -> int:
    writer = writer or LogWriter(settings.log_format)
    handler = _ErrorsToWriter(writer)
    for name in ("waitress", "hello"):
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.propagate = False
    try:
        sock = _inherited_socket() or bind_listener(settings.host, settings.port,
                                                    settings.reuse_port)
    except OSError as error:
        writer.error(f"cannot listen on {settings.host}:{settings.port}: {error.strerror}")
        return 1
    server = Server(settings, writer, sock)
    signal.signal(signal.SIGTERM, server.on_signal)
    signal.signal(signal.SIGINT, server.on_signal)
    return server.run()
