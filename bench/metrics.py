"""The metrics middleware and the loop's health answers, before and after, in one run:
cold start and req/s of the unfrozen service, the cost of /metrics, and what
prometheus-client's import would add to every start.

    python bench/metrics.py [--before REF] [--prometheus-path DIR]

`--before` (default: the commit before the metrics middleware and the loop's
health answers) is checked out with
`git archive` into a temp dir and served from there, interleaved with this
checkout. prometheus-client is not a dependency; to measure its import, install it
somewhere (`pip install --target DIR prometheus-client`) and pass DIR. Results:
the `## Metrics and hostile clients` section of RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tarfile
import tempfile
import time

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent.parent))

from bench.common import ROOT, free_port, machine, median, start, stop, table, write_section, wrk  # noqa: E402

BEFORE = "26e1706"
NOTE = """\
"after" carries: /healthz and /readyz answered in the event loop,
the deadlines and eviction, the RFC checks in the parser, the metrics middleware on
every request, the extra routes. GET /metrics itself is a JSON-free text render under
one lock. /metrics is written by hand (hello/metrics.py, four metric families):
prometheus-client's import is measured above against what `serve` imports anyway, and
every start of the binary would pay it for nothing hello uses. On this shared 2-core
machine other jobs ran at the same time (load average 7-11), so compare ratios within
one run, and expect a few percent of noise in each."""


def serve_from(tree: str):
    return lambda port: [sys.executable, "-m", "hello", "serve", "--host", "127.0.0.1",
                         "--port", str(port), "--no-access-log"]


def env_for(tree: str, extra: str = "") -> dict:
    return {"PYTHONPATH": os.pathsep.join(part for part in (tree, extra) if part),
            "HELLO_ACCESS_LOG": "false"}


def import_times(statement: str, env: dict, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        subprocess.run([sys.executable, "-c", statement], env={**os.environ, **env}, check=True,
                       capture_output=True, timeout=60)
        times.append(time.perf_counter() - began)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default=BEFORE)
    parser.add_argument("--prometheus-path", default="")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved wrk rounds")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as before_tree:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.before, "hello"],
                                 capture_output=True, check=True).stdout
        with tarfile.open(fileobj=__import__("io").BytesIO(archive)) as tar:
            tar.extractall(before_tree, filter="data")
        trees = {f"before ({args.before})": before_tree, "after (this checkout)": str(ROOT)}

        starts: dict[str, list[float]] = {name: [] for name in trees}
        for _ in range(args.runs):  # interleaved: load changes hit both alike
            for name, tree in trees.items():
                port = free_port()
                process, took = start(serve_from(tree)(port), port, env=env_for(tree))
                stop(process)
                starts[name].append(took)

        rows = []
        base_start = median(starts[next(iter(trees))])
        servers, urls = [], {}
        try:  # both serve at once; wrk rounds alternate between them (median round shown)
            for name, tree in trees.items():
                port = free_port()
                servers.append(start(serve_from(tree)(port), port, env=env_for(tree))[0])
                urls[name] = f"http://127.0.0.1:{port}/"
                wrk(urls[name], seconds=1)  # warm-up
            urls["after: GET /metrics"] = urls["after (this checkout)"] + "metrics"
            loads: dict[str, list[dict]] = {name: [] for name in urls}
            for _ in range(args.rounds):
                for name, url in urls.items():
                    loads[name].append(wrk(url, seconds=args.seconds))
        finally:
            for process in servers:
                stop(process)
        chosen = {name: sorted(results, key=lambda r: r["rps"])[len(results) // 2]
                  for name, results in loads.items()}
        base_rps = chosen[next(iter(trees))]["rps"]
        for name in urls:
            result = chosen[name]
            start_ms = f"{median(starts[name]) * 1000:.0f}" if name in starts else "-"
            ratio = f"{median(starts[name]) / base_start:.2f}x" if name in starts else "-"
            rows.append([name, start_ms, ratio, f"{result['rps']:.0f}",
                         f"{result['rps'] / base_rps:.2f}x", result["p99_ms"], result["errors"]])

        base = "import flask, waitress"
        imports = [("flask + waitress (what serve imports anyway)", base, {}),
                   ("+ hello.metrics (hand-written, this checkout)", base + ", hello.metrics",
                    {"PYTHONPATH": str(ROOT)})]
        if args.prometheus_path:
            imports.append(("+ prometheus_client", base + ", prometheus_client",
                            {"PYTHONPATH": args.prometheus_path}))
        measured = {name: [] for name, _, _ in imports}
        for _ in range(args.runs):
            for name, statement, env in imports:
                measured[name] += import_times(statement, env, 1)
        base_import = median(measured[imports[0][0]])
        import_rows = [[name, f"{median(times) * 1000:.0f}",
                        f"{(median(times) - base_import) * 1000:+.0f}"]
                       for name, times in measured.items()]

    body = (f"Machine: {machine()}. Python {sys.version.split()[0]}. {args.runs} cold starts per"
            f" variant, interleaved (exec -> first 200 on /healthz); wrk -t2 -c32 -d{args.seconds}s"
            f" on the same cores, {args.rounds} interleaved rounds, the median round shown;"
            f" access log off.\n\n"
            + table(["variant", "start ms (median)", "start vs before", "req/s", "req/s vs before",
                     "p99 ms", "non-2xx"], rows)
            + "\n\nImport cost (whole `python -c` run, median):\n\n"
            + table(["imports", "ms", "added ms"], import_rows)
            + "\n\n" + NOTE)
    print(body)
    if not args.no_write:
        write_section("Metrics and hostile clients", body)


if __name__ == "__main__":
    main()
