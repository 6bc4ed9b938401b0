"""Soak: dist/hello under mixed traffic for --minutes; memory and open files stay flat.

At once, for the whole run, against one serving dist/hello:
- keep-alive clients: GET / on persistent connections;
- new connections: GET /whoami, one connection each;
- slow clients: a request sent a few bytes at a time over about two seconds;
- bodies: POST /echo with 64 KiB;
- scrapes: GET /metrics every 5 s;
- probes: `dist/hello healthcheck` every second, as a container runtime runs it.

Every 30 s: the server's anonymous memory (its process tree, smaps_rollup) and open
fds. Flat means: after the first minute (warm-up: caches, arenas, the worker pool),
neither grows by 5 % or more to the end (the median of the last three samples against
the first three: open fds count the connections in flight at that instant); and no
probe fails.

    .venv/bin/python bench/soak.py [--minutes 10]

Writes the `Soak` section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from common import ROOT, anonymous_mb_and_fds, free_port, machine, start, stop, table, write_section

BINARY = ROOT / "dist" / "hello"
SAMPLE_S = 30
WARM_UP_S = 60


class Counts:
    def __init__(self):
        self.lock = threading.Lock()
        self.ok: dict[str, int] = {}
        self.failed: dict[str, int] = {}

    def add(self, kind: str, ok: bool) -> None:
        with self.lock:
            target = self.ok if ok else self.failed
            target[kind] = target.get(kind, 0) + 1


def keep_alive(port: int, stop_at: float, counts: Counts) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    while time.monotonic() < stop_at:
        try:
            connection.request("GET", "/")
            response = connection.getresponse()
            response.read()
            counts.add("keep-alive GET /", response.status == 200)
        except OSError:
            counts.add("keep-alive GET /", False)
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        time.sleep(0.005)
    connection.close()


def each_new(port: int, stop_at: float, counts: Counts, method: str, path: str, body: bytes | None,
             pause: float, kind: str) -> None:
    while time.monotonic() < stop_at:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            connection.request(method, path, body=body)
            response = connection.getresponse()
            data = response.read()
            counts.add(kind, response.status == 200 and (body is None or data == body))
        except OSError:
            counts.add(kind, False)
        finally:
            connection.close()
        time.sleep(pause)


def slow(port: int, stop_at: float, counts: Counts) -> None:
    request = b"GET /whoami HTTP/1.1\r\nHost: soak\r\nUser-Agent: slow-client\r\nConnection: close\r\n\r\n"
    while time.monotonic() < stop_at:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                for i in range(0, len(request), 4):
                    sock.sendall(request[i:i + 4])
                    time.sleep(2 / (len(request) / 4))
                answer = b""
                while chunk := sock.recv(65536):
                    answer += chunk
            counts.add("slow client", answer.startswith(b"HTTP/1.1 200"))
        except OSError:
            counts.add("slow client", False)


def probes(port: int, stop_at: float, counts: Counts, tmpdir: str) -> None:
    env = {**os.environ, "TMPDIR": tmpdir}
    while time.monotonic() < stop_at:
        began = time.monotonic()
        done = subprocess.run([str(BINARY), "healthcheck", "--port", str(port)], env=env,
                              capture_output=True, timeout=30, check=False)
        counts.add("probe (hello healthcheck)", done.returncode == 0)
        time.sleep(max(0.0, 1.0 - (time.monotonic() - began)))


def growth(values: list[float]) -> float:
    """How much the last three values' median exceeds the first three's, as a fraction."""
    first, last = statistics.median(values[:3]), statistics.median(values[-3:])
    return (last - first) / first


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10)
    args = parser.parse_args()
    if not BINARY.exists():
        print("bench/soak: no dist/hello (make binary)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="hello-soak-") as tmpdir:
        port = free_port()
        server, _ = start([str(BINARY), "serve", "--port", str(port)], port,
                          {"TMPDIR": tmpdir, "HELLO_ACCESS_LOG": "true"})
        counts = Counts()
        began = time.monotonic()
        stop_at = began + args.minutes * 60
        body = os.urandom(64 * 1024)
        workers = [threading.Thread(target=keep_alive, args=(port, stop_at, counts)) for _ in range(2)]
        workers += [
            threading.Thread(target=each_new, args=(port, stop_at, counts, "GET", "/whoami", None, 0.02,
                                                    "new connection GET /whoami")),
            threading.Thread(target=each_new, args=(port, stop_at, counts, "POST", "/echo", body, 0.1,
                                                    "POST /echo 64 KiB")),
            threading.Thread(target=each_new, args=(port, stop_at, counts, "GET", "/metrics", None, 5,
                                                    "GET /metrics")),
            threading.Thread(target=slow, args=(port, stop_at, counts)),
            threading.Thread(target=slow, args=(port, stop_at, counts)),
            threading.Thread(target=probes, args=(port, stop_at, counts, tmpdir)),
        ]
        for worker in workers:
            worker.start()
        samples = []
        try:
            while time.monotonic() < stop_at:
                samples.append((time.monotonic() - began, *anonymous_mb_and_fds(server.pid)))
                seconds, anon, fds = samples[-1]
                print(f"bench/soak: {seconds:5.0f} s  anon {anon:.1f} MB  fds {fds}", file=sys.stderr)
                time.sleep(min(SAMPLE_S, max(0.0, stop_at - time.monotonic())))
            samples.append((time.monotonic() - began, *anonymous_mb_and_fds(server.pid)))
            for worker in workers:
                worker.join(60)
        finally:
            stop(server)
    # After the warm-up: the median of the last three samples against the first three
    # (open fds include the connections in flight at that instant, which come and go)
    warm = [s for s in samples if s[0] >= WARM_UP_S] or samples[-1:]
    anon_growth = growth([s[1] for s in warm])
    fd_growth = growth([s[2] for s in warm])
    failed_probes = counts.failed.get("probe (hello healthcheck)", 0)
    sample_table = table(["s", "anonymous MB", "open fds"],
                         [[f"{t:.0f}", f"{anon:.1f}", fds] for t, anon, fds in samples])
    traffic_table = table(["traffic", "answered", "failed"],
                          [[kind, counts.ok.get(kind, 0), counts.failed.get(kind, 0)]
                           for kind in sorted(set(counts.ok) | set(counts.failed))])
    verdict = (f"After the first minute (median of the last three samples against the first three): "
               f"anonymous memory {anon_growth:+.1%}, open fds {fd_growth:+.1%}; "
               f"{failed_probes} probes failed. "
               "Flat means under 5 % and 0: "
               f"{'flat' if anon_growth < 0.05 and fd_growth < 0.05 and failed_probes == 0 else 'NOT flat'}.")
    body_text = "\n\n".join([
        f"Machine: {machine()}. dist/hello serving for {args.minutes:g} minutes under the traffic "
        "bench/soak.py describes, sampled every 30 s.", verdict, traffic_table, sample_table])
    print(body_text)
    write_section("Soak", body_text)
    return 0 if "NOT" not in verdict else 1


if __name__ == "__main__":
    sys.exit(main())
