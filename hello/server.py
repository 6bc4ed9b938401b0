"""Run the app under waitress: limits, signals, readiness and graceful drain.

The waitress event loop runs in a thread of its own so the main thread is free
to wait for SIGTERM/SIGINT/SIGHUP. The first signal turns /readyz to 503, accepts
what is already queued on the listener and closes it, asks keep-alive clients to
close, and waits (up to --drain-timeout) until no connection is left; then the
process exits 0. A second signal exits at once. SIGHUP drains like SIGTERM: a
service manager that sends it (a closed terminal, `systemctl reload` without
ExecReload) must not drop requests in flight, and `hello` has nothing to reload.

Loop-owned objects are only touched from the loop thread, through waitress's
trigger (`pull_trigger(thunk)`), never from the signal handler. What happens
inside waitress lives in hello/event_loop.py and the modules it names; the drain's
steps in the loop are hello/drain.py's.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time

from hello import activation, buildinfo, bundles, drain, limits, memory
from hello.connection_limit import ACCEPT_BATCH
from hello.event_loop import HelloServer
from hello.forwarded import ForwardedMiddleware
from hello.lifecycle import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, STOP_SIGNALS
from hello.logs import AccessLogMiddleware, LogWriter

DRAIN_POLL_SECONDS = 0.02
# The same waitress complaint (queue depth under load, a socket error) at most once
# per this many seconds; the next line says how many were left out.
REPEAT_SECONDS = 10.0
# The same signal again within this long is the same signal: sent to the process group
# (Ctrl-C, `timeout`, `kill -- -PGID`), it reaches hello directly and again through the
# binary's bootloader, which forwards it; taken as a second signal, it cut the drain.
SAME_SIGNAL_SECONDS = 0.25
# A connection accepted just before the drain may not have sent its request yet;
# idle connections get this long before they are closed, so that request is served.
IDLE_GRACE_SECONDS = 0.5
# At exit, queued stdout lines get this long to be written (a stalled reader may never take them).
FLUSH_SECONDS = 2.0


class _ErrorsToWriter(logging.Handler):
    """Routes waitress's and Flask's logging records to our stderr lines, at their
    own level, and at most one line per message per REPEAT_SECONDS (waitress logs
    "Task queue depth is N" for every queued request while all workers are busy)."""

    def __init__(self, writer: LogWriter):
        super().__init__(logging.WARNING)
        self.writer = writer
        self._last: dict[tuple[str, str], float] = {}
        self._left_out: dict[tuple[str, str], int] = {}
        self._guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        key = (record.name, str(record.msg))
        now = time.monotonic()
        with self._guard:
            last = self._last.get(key)
            if last is not None and now - last < REPEAT_SECONDS:
                self._left_out[key] = self._left_out.get(key, 0) + 1
                return
            self._last[key] = now
            left_out = self._left_out.pop(key, 0)
        message = record.getMessage()
        if record.exc_info:
            message += " | " + self.format(record).splitlines()[-1]
        fields = {"logger": record.name}
        if left_out:
            fields["repeats_left_out"] = left_out
        if record.levelno >= logging.ERROR:
            self.writer.error(message, **fields)
        else:
            self.writer.warning(message, **fields)


def bind_listener(host: str, port: int, reuse_port: bool) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    return sock


class Server:
    """One listening waitress server and its drain."""

    def __init__(self, settings, writer: LogWriter, sock: socket.socket,
                 budget: memory.Budget | None = None,
                 accept_batch: int = ACCEPT_BATCH):
        from hello.app import create_app  # Flask only when we really serve

        self.settings = settings
        self.writer = writer
        self.stop_requested = threading.Event()
        self._signals = 0
        self._signal_name = ""
        self._signal_number = 0
        self._signal_at = 0.0
        self.app = app = create_app(settings, is_ready=lambda: not self.http.draining.is_set(),
                                    is_saturated=lambda: self.http.saturated())
        if settings.access_log:
            app.wsgi_app = AccessLogMiddleware(app.wsgi_app, writer)
        if settings.trusted_proxies:
            app.wsgi_app = ForwardedMiddleware(app.wsgi_app, settings.trusted_proxies)
        self.sock = sock
        self.http = HelloServer(
            app, sock,
            writer=writer if settings.access_log else None,
            header_timeout=settings.header_timeout,
            body_timeout=settings.body_timeout,
            budget=budget,
            accept_batch=accept_batch,
            threads=settings.threads,
            ident="hello",
            max_request_header_size=settings.max_header_bytes,
            # waitress answers 413 at a body *equal* to its limit; ours is the largest accepted
            max_request_body_size=settings.max_body_bytes + 1,
            channel_timeout=settings.channel_timeout,
            connection_limit=settings.connection_limit,
            queue_timeout=settings.queue_timeout,
            expose_tracebacks=False,
            # with --trusted-proxies, ForwardedMiddleware drops them for untrusted peers
            clear_untrusted_proxy_headers=not settings.trusted_proxies,
        )
        self._loop = threading.Thread(target=self.http.run, name="hello-loop",
                                      daemon=True)

    @property
    def port(self) -> int:
        return self.sock.getsockname()[1]

    def on_signal(self, signum, _frame) -> None:
        """Only flags: the main thread may hold the log lock when a signal lands."""
        now = time.monotonic()
        if signum == self._signal_number and now - self._signal_at < SAME_SIGNAL_SECONDS:
            return
        self._signal_number, self._signal_at = signum, now
        self._signals += 1
        if self._signals > 1:
            self.writer.raw_stdout_line({"level": "info", "event": "second signal, exiting now",
                                         "signal": signal.Signals(signum).name})
            os._exit(128 + signum)
        self._signal_name = signal.Signals(signum).name
        self.http.draining.set()
        self.stop_requested.set()

    def run(self) -> int:
        # The socket already listens (waitress called listen()); log before the loop
        # serves anything, so `listening` is always the first line.
        self.writer.event("listening", host=self.sock.getsockname()[0], port=self.port,
                          pid=os.getpid(), threads=self.settings.threads,
                          version=buildinfo.build_info()["version"])
        self._loop.start()
        next_sweep = time.monotonic()
        while not self.stop_requested.wait(1.0):
            if not self._loop.is_alive():
                self.writer.error("server loop died")
                return EXIT_FAILURE
            if time.monotonic() >= next_sweep:
                next_sweep = time.monotonic() + bundles.SWEEP_SECONDS
                sweep_dead_unpacks(self.writer, bundles.own_bundle())
        return self.drain()

    def _call_in_loop(self, thunk, timeout: float = 5.0) -> bool:
        """Run thunk in the loop thread and wait for it; False if it did not run."""
        done = threading.Event()

        def run():
            try:
                thunk()
            finally:
                done.set()

        self.http.trigger.pull_trigger(run)
        return done.wait(timeout)

    def drain(self) -> int:
        self.writer.event("draining", signal=self._signal_name,
                          timeout_s=self.settings.drain_timeout)
        started = time.monotonic()
        deadline = started + self.settings.drain_timeout
        server = self.http
        self._call_in_loop(lambda: drain.accept_queued_and_stop_listening(server))
        while drain.busy_connections(server) and time.monotonic() < deadline:
            self._call_in_loop(lambda: drain.close_idle(server, IDLE_GRACE_SECONDS))
            time.sleep(DRAIN_POLL_SECONDS)
        left = drain.busy_connections(server)
        if left:
            self.writer.error("drain timeout, closing connections", connections=left)
        self._call_in_loop(lambda: drain.close_all(server), timeout=1.0)
        self._loop.join(2.0)
        self.http.task_dispatcher.shutdown(timeout=1.0)
        drain.close_trigger(self.http)
        others = [t.name for t in threading.enumerate()
                  if t is not threading.current_thread()
                  and t.name not in (LogWriter.THREAD_NAME, LogWriter.ERR_THREAD_NAME)]
        self.writer.event("stopped", drained_ms=round((time.monotonic() - started) * 1000),
                          threads_left=len(others))
        return EXIT_OK


def sweep_dead_unpacks(writer: LogWriter, own: str | None) -> None:
    """The frozen binary's: unpack folders beside its own that starts killed outright
    left (hello/bundles.py), removed while it serves, not only at the next start."""
    if own is None:
        return
    removed = bundles.sweep(os.path.dirname(own), own)
    if removed:
        writer.warning("removed the unpack folders of starts killed outright",
                       folders=len(removed), tmpdir=os.path.dirname(own))


def serve(settings, held_signals: list[int]) -> int:
    """held_signals: those that landed while hello started (cli keeps them), acted on
    as soon as the server's handlers are in. Log lines go through a queue: a stdout
    nobody reads costs lines, not requests."""
    writer = LogWriter(settings.log_format, queued=True)
    try:
        return _serve(settings, writer, held_signals)
    finally:
        writer.flush(FLUSH_SECONDS)


def _serve(settings, writer: LogWriter, held_signals: list[int]) -> int:
    handler = _ErrorsToWriter(writer)
    for name in ("waitress", "hello"):
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.propagate = False
    try:
        sock = activation.inherited_listener() or bind_listener(settings.host, settings.port,
                                                                settings.reuse_port)
    except activation.NotServable as error:
        writer.error(f"cannot serve fd {activation.LISTEN_FD} from LISTEN_FDS: {error}")
        return EXIT_FAILURE
    except (socket.gaierror, UnicodeError):
        # the name does not resolve: a usage error, like any other bad --host
        print(f"hello: --host: {settings.host!r} does not resolve to an address",
              file=sys.stderr)
        return EXIT_USAGE
    except OSError as error:
        writer.error(f"cannot listen on {settings.host}:{settings.port}: {error.strerror}")
        return EXIT_FAILURE
    import hello.app  # noqa: F401 (Flask's own memory is in the reading limits.fit takes)

    fitted = limits.fit(settings, writer)
    server = Server(fitted.settings, writer, sock, fitted.budget, fitted.accept_batch)
    for signum in STOP_SIGNALS:
        signal.signal(signum, server.on_signal)
    for signum in list(held_signals):
        server.on_signal(signum, None)
    return server.run()
