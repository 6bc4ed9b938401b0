"""Measuring helpers every benchmark shares: cold start, RSS, wrk, tables.

Each benchmark runs its baseline and candidates side by side in one run, on one
machine, and reports ratios to the baseline: absolute times on a shared machine
are noise, ratios are the signal.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import signal
import socket
import statistics
import subprocess
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers_200(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=0.5) as response:
            return response.status == 200
    except OSError:
        return False


def start(argv: list[str], port: int, env: dict | None = None,
          timeout: float = 30.0) -> tuple[subprocess.Popen, float]:
    """Exec argv, poll /healthz every 2 ms; (process, seconds from exec to first 200)."""
    url = f"http://127.0.0.1:{port}/healthz"
    began = time.perf_counter()
    process = subprocess.Popen(argv, env={**os.environ, **(env or {})},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    deadline = began + timeout
    while not _answers_200(url):
        if process.poll() is not None or time.perf_counter() > deadline:
            stop(process)
            raise RuntimeError(f"{argv[0]} did not answer {url} (exit {process.returncode})")
        time.sleep(0.002)
    return process, time.perf_counter() - began


def stop(process: subprocess.Popen, timeout: float = 15.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def cold_starts(argv_for_port, runs: int = 10, env: dict | None = None) -> list[float]:
    """Start and stop `runs` times; the seconds each took to first 200."""
    times = []
    for _ in range(runs):
        port = free_port()
        process, took = start(argv_for_port(port), port, env)
        stop(process)
        times.append(took)
    return times


def process_tree(pid: int) -> list[int]:
    """pid and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def rss_mb(pid: int) -> float:
    """Resident memory summed over pid and its descendants, in MB."""
    total_kb = 0
    for member in process_tree(pid):
        try:
            status = pathlib.Path(f"/proc/{member}/status").read_text()
        except OSError:
            continue
        match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
        total_kb += int(match.group(1)) if match else 0
    return total_kb / 1024


def anonymous_mb_and_fds(pid: int) -> tuple[float, int]:
    """Anonymous memory (smaps_rollup, MB) and open fds, summed over pid and its
    descendants: what a process holds apart from the files it maps."""
    anon_kb, fds = 0, 0
    for member in process_tree(pid):
        try:
            rollup = pathlib.Path(f"/proc/{member}/smaps_rollup").read_text()
            fds += len(os.listdir(f"/proc/{member}/fd"))
        except OSError:
            continue
        match = re.search(r"^Anonymous:\s+(\d+) kB", rollup, re.M)
        anon_kb += int(match.group(1)) if match else 0
    return anon_kb / 1000, fds


def wrk(url: str, threads: int = 2, connections: int = 32, seconds: int = 5) -> dict:
    """req/s and latency percentiles (ms) from Debian's wrk."""
    if not shutil.which("wrk"):
        raise RuntimeError("wrk is not installed (apt-get install wrk)")
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s",
                          "--latency", url], capture_output=True, text=True,
                         check=True, timeout=seconds + 30).stdout
    def ms(text: str) -> float:
        value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}
    for percent in ("50", "99"):
        result[f"p{percent}_ms"] = ms(re.search(rf"^\s+{percent}%\s+(\S+)", out, re.M).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["errors"] = int(errors.group(1)) if errors else 0
    return result


def median(values: list[float]) -> float:
    return statistics.median(values)


def table(headers: list[str], rows: list[list]) -> str:
    """A Markdown table: printed, and pasted as it is into bench/RESULTS.md."""
    cells = [[str(c) for c in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def machine() -> str:
    """One line naming the machine the figures came from."""
    cpu = "unknown cpu"
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.uname().sysname} {os.uname().release}, {os.cpu_count()} cores ({cpu}), {mem:.0f} GiB"


RESULTS = ROOT / "bench" / "RESULTS.md"


def write_section(title: str, body: str) -> None:
    """Replace (or append) the `## title` section of bench/RESULTS.md."""
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.M | re.S)
    section = f"## {title}\n\n{body.strip()}\n\n"
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else \
        text.rstrip("\n") + "\n\n" + section
    RESULTS.write_text(text.rstrip("\n") + "\n")
