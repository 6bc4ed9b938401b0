"""`hello healthcheck --own`: pass only if this container's own server answered.

Why: on a host network with --reuse-port (a Swarm start-first update), several
tasks listen on one port, and a probe of 127.0.0.1:PORT is answered by whichever
the kernel picks. A new release that listens on the wrong port, or never turns
ready, was then marked healthy by the old task's answer (measured: the update
completed and 1152 requests failed). So the probe keeps its connection open after
the answer, finds the server's end of it in /proc/net/tcp, and checks that a
process it can see holds that socket. In a container /proc shows only the
container's own PID namespace, so "a process I can see" is "my own server".

Linux only, IPv4 loopback (a server listening on `::` takes it too: its end is
then in /proc/net/tcp6, as ::ffff:127.0.0.1); http.client is not used because the check needs the
socket's local port while the server still holds its end (HTTP/1.1 keep-alive).
"""

from __future__ import annotations

import os
import socket
import time


def _hex_endpoint(address: str, port: int) -> str:
    """/proc/net/tcp's spelling of an IPv4 endpoint: little-endian hex, then port."""
    packed = socket.inet_aton(address)
    return f"{int.from_bytes(packed, 'little'):08X}:{port:04X}"


def _hex_endpoint6(address: str, port: int) -> str:
    """/proc/net/tcp6's spelling of an IPv4 endpoint seen by a dual-stack socket
    (::ffff:a.b.c.d): four 32-bit words, each little-endian hex, then the port."""
    packed = socket.inet_pton(socket.AF_INET6, "::ffff:" + address)
    words = (int.from_bytes(packed[i:i + 4], "little") for i in range(0, 16, 4))
    return "".join(f"{word:08X}" for word in words) + f":{port:04X}"


def _socket_inode(server: tuple[str, int], client: tuple[str, int],
                  tables: tuple[str, str] = ("/proc/net/tcp", "/proc/net/tcp6")) -> int | None:
    """Inode of the socket whose ends are server -> client, if a process accepted it."""
    for table, spell in zip(tables, (_hex_endpoint, _hex_endpoint6), strict=True):
        local, remote = spell(*server), spell(*client)
        try:
            with open(table, encoding="ascii") as rows:
                next(rows)
                for row in rows:
                    fields = row.split()
                    if fields[1] == local and fields[2] == remote and fields[9] != "0":
                        return int(fields[9])
        except FileNotFoundError:  # a kernel without IPv6
            continue
    return None


def _held_by_visible_process(inode: int, proc: str = "/proc") -> bool:
    """True if a process in this PID namespace (as /proc shows it) holds the socket."""
    target = f"socket:[{inode}]"
    for pid in os.listdir(proc):
        if not pid.isdigit():
            continue
        fd_dir = f"{proc}/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:  # gone, or another user's
            continue
        for fd in fds:
            try:
                if os.readlink(f"{fd_dir}/{fd}") == target:
                    return True
            except OSError:
                continue
    return False


def _ask(port: int, path: str, deadline: float) -> tuple[str, bool]:
    """One GET on a new connection: (status line, answered by our own process)."""
    with socket.create_connection(("127.0.0.1", port),
                                  timeout=max(0.001, deadline - time.monotonic())) as conn:
        conn.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                     "User-Agent: hello-healthcheck\r\n\r\n".encode("ascii"))
        head = b""
        while b"\r\n" not in head:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            conn.settimeout(remaining)
            chunk = conn.recv(1024)
            if not chunk:
                raise ConnectionError("connection closed before an answer")
            head += chunk
        mine = conn.getsockname()
        inode = _socket_inode(("127.0.0.1", port), (mine[0], mine[1]))
        owned = inode is not None and _held_by_visible_process(inode)
    return head.split(b"\r\n", 1)[0].decode("latin-1"), owned


def probe_own(port: int, path: str, timeout: float, attempts: int = 32) -> tuple[bool, str]:
    """GET http://127.0.0.1:PORT/PATH; ok only if our own process answers 200.

    The kernel spreads new connections over the sockets sharing the port (by a hash
    of the client's port), so a connection answered by another task is retried on a
    new one: with two tasks sharing the port, 32 misses in a row happen once in 4e9
    checks; a task that does not listen on the port is never reached at all.
    """
    url = f"http://127.0.0.1:{port}{path}"
    deadline = time.monotonic() + timeout
    for _ in range(attempts):
        try:
            status_line, owned = _ask(port, path, deadline)
        except TimeoutError:
            return False, f"{url}: no answer within {timeout:g}s"
        except OSError as error:
            return False, f"{url}: {error.strerror or error}"
        if owned:
            parts = status_line.split()
            if len(parts) < 2 or not parts[0].startswith("HTTP/"):
                return False, f"{url}: bad HTTP answer"
            if parts[1] != "200":
                return False, f"{url}: status {parts[1]}, expected 200"
            return True, f"{url}: 200 from this container's own server"
        if time.monotonic() >= deadline:
            break
    return False, (f"{url}: answered only by processes outside this container "
                   "(another task sharing the port; this one does not listen there)")
