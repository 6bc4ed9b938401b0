"""systemd socket activation: the listener on fd 3, when LISTEN_FDS and LISTEN_PID say
it is ours (the rules of systemd's sd_listen_fds), and only if hello can serve it.

Everything here comes from the environment and the fd table a parent chose: a count
that is not one, or a LISTEN_PID naming another process, means "not ours" (hello binds
its own socket); a socket hello cannot serve is one clear error, never a traceback.
"""

from __future__ import annotations

import os
import socket

LISTEN_FD = 3  # SD_LISTEN_FDS_START
MAX_COUNT_DIGITS = 9  # int() refuses over 4300 digits; no fd table is that long anyway


class NotServable(Exception):
    """The fd handed to hello is not a listening TCP socket."""


def inherited_listener() -> socket.socket | None:
    """The listener systemd handed over, or None when there is none for hello.

    In the frozen binary the bootloaders sit between systemd and Python, so the PID
    systemd names may be our parent or grandparent.
    """
    if not _count_given() or not _meant_for_us(os.environ.get("LISTEN_PID", "")):
        return None
    for name in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)  # not for hello's children
    return _listener_at_fd3()


def _count_given() -> bool:
    count = os.environ.get("LISTEN_FDS", "")
    return (count.isascii() and count.isdigit()  # isdigit alone: "²" (int refuses), "١"
            and len(count) <= MAX_COUNT_DIGITS and int(count) >= 1)


def _meant_for_us(listen_pid: str) -> bool:
    """LISTEN_PID names us, our parent or our grandparent (unset: nobody, as systemd says)."""
    return listen_pid in (str(os.getpid()), str(os.getppid()), _grandparent())


def _grandparent() -> str | None:
    """Our parent's parent PID, from /proc; None if it cannot be read. The parent's name
    comes first in the file, in parentheses, and may hold ")", spaces or any bytes."""
    try:
        with open(f"/proc/{os.getppid()}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[1].decode()
    except (OSError, IndexError):
        return None


def _listener_at_fd3() -> socket.socket:
    try:
        sock = socket.socket(fileno=LISTEN_FD)
    except OSError as error:  # closed, or not a socket
        raise NotServable(error.strerror) from None
    listening = bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))  # any socket has it
    if sock.family in (socket.AF_INET, socket.AF_INET6) and listening:  # so a stream: TCP
        return sock
    # a unix socket (ListenStream=/path), UDP, a connection (Accept=yes), one not bound
    family = getattr(sock.family, "name", sock.family)
    kind = getattr(sock.type, "name", sock.type)
    raise NotServable(f"not a listening TCP socket ({family}, {kind}"
                      f"{'' if listening else ', not listening'})")
