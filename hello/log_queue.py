"""LogWriter's queued path (hello/logs.py): under `hello serve`, each stream's lines wait
in a bounded queue that a thread of its own writes out, so a log reader that stalls
(a pipe nobody reads is full after ~64 KiB) costs lines, not requests: it used to
block every request, /healthz included, and SIGTERM's drain. Past the queue, lines
are dropped and counted: stdout's on stderr (at most once per DROPPED_REPORT_SECONDS),
stderr's in one line when stderr is read again.
"""

from __future__ import annotations

import io
import os
import queue
import threading
import time

STDOUT_QUEUE_LINES = 2000  # ~0.5 MB of usual lines; a reader that keeps up never fills it
STDERR_QUEUE_LINES = 500  # errors and warnings: rarer, and rate-limited at their source
# ...and in bytes: a client picks its path (up to 32 KiB, six times that JSON-escaped),
# so 2000 lines could hold 130 MB: with stdout unread, that OOM-killed a 160 MiB container.
STDOUT_QUEUE_BYTES = 1 << 20
STDERR_QUEUE_BYTES = 256 << 10
DROPPED_REPORT_SECONDS = 10.0  # at most one "lines dropped" line on stderr per this long


class LineQueue(queue.Queue):
    """Log lines waiting for their writer, bounded in lines and in bytes (put_nowait
    raises queue.Full past either)."""

    def __init__(self, lines: int, max_bytes: int):
        super().__init__(lines)
        self.max_bytes = max_bytes
        self.bytes = 0

    def put(self, item: str, block: bool = True, timeout: float | None = None) -> None:
        with self.mutex:
            if self.bytes + len(item) > self.max_bytes:
                raise queue.Full
        super().put(item, block, timeout)

    def _put(self, item: str) -> None:  # under the queue's own lock
        self.bytes += len(item)
        super()._put(item)

    def _get(self) -> str:
        item = super()._get()
        self.bytes -= len(item)
        return item


class QueuedStreams:
    """The queues and their writer threads; LogWriter provides out, err, format(),
    warning(), _lost() and _lock."""

    THREAD_NAME = "hello-stdout"  # the writer of a queued stdout; it lives until exit
    ERR_THREAD_NAME = "hello-stderr"  # and of a queued stderr
    _queue: queue.Queue[str] | None = None
    _err_queue: queue.Queue[str] | None = None
    _dropped = 0
    _err_dropped = 0
    _dropped_reported_at = -DROPPED_REPORT_SECONDS

    def _start_queues(self) -> None:
        self._queue = LineQueue(STDOUT_QUEUE_LINES, STDOUT_QUEUE_BYTES)
        self._err_queue = LineQueue(STDERR_QUEUE_LINES, STDERR_QUEUE_BYTES)
        threading.Thread(target=self._write_queued, name=self.THREAD_NAME, daemon=True).start()
        threading.Thread(target=self._write_queued_errors, name=self.ERR_THREAD_NAME,
                         daemon=True).start()

    def _enqueue(self, line: str) -> None:
        try:
            self._queue.put_nowait(line)
            return
        except queue.Full:
            pass
        now = time.monotonic()
        with self._lock:
            self._dropped += 1
            if now - self._dropped_reported_at < DROPPED_REPORT_SECONDS:
                return
            self._dropped_reported_at, dropped, self._dropped = now, self._dropped, 0
        self.warning("stdout is not being read; its log lines are dropped", dropped=dropped)

    def _write_queued(self) -> None:
        """The one writer of a queued stdout: raw writes (no buffer lock for a stuck
        write to hold at exit), blocking only this thread when nobody reads."""
        while True:
            line = self._queue.get()
            stream = self.out
            try:
                if stream is not None:
                    data = (line + "\n").encode()
                    while data:
                        data = data[os.write(stream.fileno(), data):]
            except (OSError, ValueError) as error:
                with self._lock:
                    self._lost(stream, error)
            finally:
                self._queue.task_done()

    def _write_queued_errors(self) -> None:
        """The one writer of a queued stderr; back after lines were dropped (nobody read
        stderr), it says how many."""
        while True:
            line = self._err_queue.get()
            try:
                if self._raw_err(line):
                    with self._lock:
                        dropped, self._err_dropped = self._err_dropped, 0
                    if dropped:
                        self._raw_err(self.format({
                            "level": "warning", "event": "stderr was not being read; "
                            "its lines were dropped", "dropped": dropped}))
            finally:
                self._err_queue.task_done()

    def _raw_err(self, line: str) -> bool:
        """Write one stderr line from its writer thread; False if stderr is gone."""
        stream = self.err
        if stream is None:
            return False
        try:
            try:
                fd = stream.fileno()
            except (AttributeError, io.UnsupportedOperation):  # not a file: a test's buffer
                stream.write(line + "\n")
                stream.flush()
                return True
            data = (line + "\n").encode()
            while data:
                data = data[os.write(fd, data):]
            return True
        except (OSError, ValueError):
            self.err = None  # stderr lost costs nothing more
            return False

    def flush(self, timeout: float) -> None:
        """Wait (at most timeout) until queued stdout and stderr lines are written."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(
                waiting is not None and waiting.unfinished_tasks
                for waiting in (self._queue, self._err_queue)):
            time.sleep(0.01)
