"""A pipelining attacker for tests/server/test_hostile.py, run as its own process.

    python -m tests.server.pipeliners PORT COUNT PATH SECONDS

Opens COUNT connections that each send `GET PATH` requests back to back, 64 KiB
of them per write, and read every answer as fast as they can, for SECONDS.
Prints `connected` once all are open, then `answers N` at the end.
"""

from __future__ import annotations

import socket
import sys
import threading
import time

from tests.server.rawhttp import STATUS_LINE


def main() -> int:
    port, count, path, seconds = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
    request = f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    batch = request * (65536 // len(request))
    stop_at = time.monotonic() + seconds
    answers = [0] * count
    socks = [socket.create_connection(("127.0.0.1", port), timeout=seconds + 5)
             for _ in range(count)]

    def read(index: int) -> None:
        tail = b""
        try:
            while time.monotonic() < stop_at:
                chunk = socks[index].recv(1 << 20)
                if not chunk:
                    return
                answers[index] += len(STATUS_LINE.findall(tail + chunk))
                tail = chunk[-16:]
        except OSError:
            pass

    def write(index: int) -> None:
        try:
            while time.monotonic() < stop_at:
                socks[index].sendall(batch)
        except OSError:
            pass

    threads = [threading.Thread(target=target, args=(index,), daemon=True)
               for index in range(count) for target in (read, write)]
    for thread in threads:
        thread.start()
    print("connected", flush=True)
    for thread in threads:
        thread.join(max(0.0, stop_at - time.monotonic()) + 1)
    for sock in socks:
        sock.close()
    print("answers", sum(answers), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
