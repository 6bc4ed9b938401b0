"""A slowloris attacker for tests/server/test_hostile.py, run as its own process.

    python -m tests.server.drips PORT COUNT EVERY_SECONDS MAX_SECONDS

Opens COUNT connections that each send a request head one byte per EVERY_SECONDS,
reconnecting whenever the server closes one. Prints `connected` once all are
open; on a line on stdin (or after MAX_SECONDS) prints `closed N`: how many the
server closed.
"""

from __future__ import annotations

import resource
import select
import socket
import sys
import threading


class Drips:
    """`count` connections that each send a request head one byte per `every` seconds,
    reconnecting whenever the server closes one (a slowloris keeps the pressure on)."""

    HEAD = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 4096

    def __init__(self, port: int, count: int, every: float):
        self.port, self.count, self.every = port, count, every
        self.socks: list[tuple[socket.socket, int]] = []
        self.closed_by_server = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _open(self) -> tuple[socket.socket, int]:
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", self.port))
        return sock, 0

    def start(self) -> Drips:
        self.socks = [self._open() for _ in range(self.count)]
        self.thread.start()
        return self

    def _run(self) -> None:
        while not self.stopping.is_set():
            for index, (sock, sent) in enumerate(self.socks):
                try:
                    if sent and sock.recv(1, socket.MSG_DONTWAIT) == b"":
                        raise ConnectionResetError  # the server closed it (FIN)
                    sent += sock.send(self.HEAD[sent % len(self.HEAD):][:1])
                    self.socks[index] = (sock, sent)
                except BlockingIOError:
                    pass  # still connecting
                except OSError:
                    sock.close()
                    self.closed_by_server += 1
                    self.socks[index] = self._open()
            self.stopping.wait(self.every)

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(10)
        for sock, _ in self.socks:
            sock.close()


def main() -> int:
    port, count, every, limit = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < count + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 256), hard))
    drips = Drips(port, count, every).start()
    print("connected", flush=True)
    select.select([sys.stdin], [], [], limit)
    drips.stop()
    print("closed", drips.closed_by_server, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
