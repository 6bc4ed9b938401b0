"""What the process promises whoever starts it: its exit statuses, and the signals
that stop `serve` (each one a drain: see hello/server.py)."""

from __future__ import annotations

import signal

EXIT_OK = 0
EXIT_FAILURE = 1  # a failed health check, a port in use, a server loop that died
EXIT_USAGE = 2  # a bad flag, variable or value: one line on stderr naming it
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
