"""Baseline: the unfrozen service's cold start and throughput (threads 4 vs 8).

Cold start is exec -> first 200 on /healthz, 10 runs. Throughput is wrk -t2 -c32
on the same 2 cores, against threads=4 (waitress's default, the baseline) and
threads=8 (our default). Results: the `## Service (unfrozen)` section of RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    ROOT,
    cold_starts,
    free_port,
    machine,
    median,
    rss_mb,
    start,
    stop,
    table,
    write_section,
    wrk,
)

ENV = {"PYTHONPATH": str(ROOT), "HELLO_ACCESS_LOG": "false"}


def unfrozen(*args: str):
    return lambda port: [sys.executable, "-m", "hello", "serve", "--host", "127.0.0.1",
                         "--port", str(port), *args]


def command_times(argv: list[str], runs: int) -> list[float]:
    """Wall time of whole runs of argv, which must exit 0."""
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        subprocess.run(argv, env={**os.environ, **ENV}, check=True, capture_output=True)
        times.append(time.perf_counter() - began)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--seconds", type=int, default=8, help="wrk duration per variant")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()

    starts = cold_starts(unfrozen(), runs=args.runs, env=ENV)
    port = free_port()
    process, _ = start(unfrozen()(port), port, env=ENV)
    try:
        probe = command_times([sys.executable, "-m", "hello", "healthcheck", "--port", str(port)],
                              args.runs)
    finally:
        stop(process)
    version = command_times([sys.executable, "-m", "hello", "version"], args.runs)
    rows = []
    baseline = None
    for threads in (4, 8):
        port = free_port()
        process, _ = start(unfrozen("--threads", str(threads))(port), port, env=ENV)
        try:
            time.sleep(0.2)
            idle = rss_mb(process.pid)
            wrk(f"http://127.0.0.1:{port}/", seconds=1)  # warm-up
            result = wrk(f"http://127.0.0.1:{port}/", seconds=args.seconds)
        finally:
            stop(process)
        baseline = baseline or result
        rows.append([f"threads={threads}", f"{result['rps']:.0f}",
                     f"{result['rps'] / baseline['rps']:.2f}x", result["p50_ms"],
                     result["p99_ms"], f"{result['p99_ms'] / baseline['p99_ms']:.2f}x",
                     result["errors"], f"{idle:.1f}"])
    start_table = table(["variant", "runs", "median ms", "max ms"],
                        [[name, args.runs, f"{median(times) * 1000:.0f}", f"{max(times) * 1000:.0f}"]
                         for name, times in [("python -m hello serve (to first 200)", starts),
                                             ("python -m hello healthcheck (whole run)", probe),
                                             ("python -m hello version (whole run)", version)]])
    load_table = table(["threads", "req/s", "vs 4", "p50 ms", "p99 ms", "p99 vs 4",
                        "non-2xx", "idle RSS MB"], rows)
    body = (f"Machine: {machine()}. Python {sys.version.split()[0]}. "
            f"wrk -t2 -c32 -d{args.seconds}s on the same cores.\n\n"
            f"Start-up (serve: exec -> first 200 on /healthz; the others: exec -> exit):\n\n{start_table}\n\n"
            f"Throughput on GET /:\n\n{load_table}")
    print(body)
    if not args.no_write:
        write_section("Service (unfrozen)", body)


if __name__ == "__main__":
    main()
