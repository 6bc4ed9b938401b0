"""Probe, memory, start and size: what a container runtime pays to keep hello.

Side by side in one run:
- probe CPU (user + system of the whole process tree, from wait4) per run, medians
  of --runs: the baseline binary (built from --base, default HEAD), the candidate
  (this tree's build), the unfrozen `python -m hello healthcheck`, a bare
  `python3 -S` raw-socket GET (the interpreter's floor) and curl; all probe one
  server. Where the candidate's milliseconds go: the bootloader's unpack (the whole
  binary less its unpacked program run directly), the unpacked program, the bare
  interpreter (`python3 -S -c pass`).
- memory of one idle serving instance: anonymous RSS of its processes, plus the
  bytes it unpacked (on a tmpfs that is memory too; mapped, those pages are the
  same pages, so they are counted once, as the files), against the unfrozen RSS.
  The links to the executable itself (its modules, read in place) are not bytes
  in $TMPDIR: what is read through them is the executable's own page cache;
- start: exec to the first 200 (interleaved rounds);
- size: file and gzip -6 bytes.

    .venv/bin/python bench/probe.py [--base REF] [--runs N] [--rounds N]

Writes the `Probe, memory, start and size` section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import gzip
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

import common
from common import ROOT

VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
PYTHON = os.path.realpath(VENV_PYTHON)  # the interpreter itself: a pyenv shim costs more than a probe
FLOOR = ("import socket\n"
         "s = socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
         "s.sendall(b'GET /healthz HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n')\n"
         "data = b''\n"
         "while True:\n"
         "    chunk = s.recv(65536)\n"
         "    if not chunk: break\n"
         "    data += chunk\n"
         "raise SystemExit(0 if data.startswith(b'HTTP/1.1 200') else 1)\n")
ENV = {"HELLO_ACCESS_LOG": "false"}
ROUTES = ("/", "/healthz")


def build_base(ref: str, work: pathlib.Path) -> pathlib.Path:
    """dist/hello of commit ref, built from `git archive` in a folder of its own."""
    tree = work / "base"
    tree.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", ref], capture_output=True,
                             check=True, timeout=120).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True, timeout=120)
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", ref], capture_output=True, text=True,
                            check=True, timeout=30).stdout.strip()
    env = {**os.environ, "HELLO_COMMIT": commit, "SOURCE_DATE_EPOCH": str(int(time.time())),
           "HELLO_BUILD_DIR": str(work / "base-build"),
           "HELLO_BUILD_VENV": str(ROOT / ".pyinstaller" / "venv")}
    sdist = sorted((ROOT / ".pyinstaller").glob("staticx-*.tar.gz"))
    if sdist:
        env["STATICX_SDIST"] = str(sdist[-1])
    subprocess.run([str(tree / "build" / "binary")], cwd=tree, env=env, check=True, timeout=1800,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return tree / "dist" / "hello"


def cpu_ms(argv: list[str], env: dict | None = None, pass_fds: tuple = ()) -> tuple[float, int]:
    """(user + system ms of argv and every child it waited for, exit status)."""
    process = subprocess.Popen(argv, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, pass_fds=pass_fds)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return (usage.ru_utime + usage.ru_stime) * 1000, process.returncode


def probe_rows(variants: dict[str, list[str]], runs: int, env: dict,
               pass_fds: tuple = ()) -> dict[str, float]:
    """Median CPU ms per variant, runs interleaved; every probe must pass."""
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(runs):
        for name, argv in variants.items():
            took, status = cpu_ms(argv, env, pass_fds)
            if status != 0:
                raise RuntimeError(f"{name}: exit {status}")
            samples[name].append(took)
    return {name: common.median(values) for name, values in samples.items()}


def anon_and_unpacked(pid: int, tmpdir: pathlib.Path) -> tuple[float, float]:
    """(anonymous MB over pid's tree, MB of files under tmpdir)."""
    files = sum(p.stat().st_size for p in tmpdir.rglob("*") if p.is_file() and not p.is_symlink())
    return common.anonymous_mb_and_fds(pid)[0], files / 1e6


def idle_memory(argv_for_port, tmpdir: pathlib.Path) -> tuple[float, float, float]:
    """(anonymous MB, unpacked MB, whole RSS MB) of one idle serving instance."""
    port = common.free_port()
    process, _ = common.start(argv_for_port(port), port, {**ENV, "TMPDIR": str(tmpdir)})
    try:
        time.sleep(0.5)
        return (*anon_and_unpacked(process.pid, tmpdir), common.rss_mb(process.pid))
    finally:
        common.stop(process)


def starts(variants: dict, runs: int, tmpdir: pathlib.Path) -> dict[str, float]:
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(runs):
        for name, argv_for_port in variants.items():
            port = common.free_port()
            process, took = common.start(argv_for_port(port), port, {**ENV, "TMPDIR": str(tmpdir)})
            common.stop(process)
            samples[name].append(took * 1000)
    return {name: common.median(values) for name, values in samples.items()}


def gzip_mb(path: pathlib.Path) -> float:
    return len(gzip.compress(path.read_bytes(), 6)) / 1e6


def throughput(variants: dict, rounds: int, tmpdir: pathlib.Path) -> dict[tuple[str, str], list[float]]:
    """req/s of wrk -t2 -c32 -d5s per (variant, route), each round's, rounds interleaved.

    GET / is answered by a worker thread (GET /healthz by the event loop, hello's fast
    path): with 32 clients on 2 cores its rate swings between rounds (500 to 1500
    req/s measured, frozen or not: the GIL passing between threads), so it takes
    several rounds, and the table shows their spread beside the median."""
    samples: dict[tuple[str, str], list[float]] = {}
    for _ in range(rounds):
        for name, (argv_for_port, env) in variants.items():
            port = common.free_port()
            process, _ = common.start(argv_for_port(port), port, {**ENV, **env, "TMPDIR": str(tmpdir)})
            try:
                for route in ROUTES:
                    result = common.wrk(f"http://127.0.0.1:{port}{route}")
                    samples.setdefault((name, route), []).append(result["rps"])
            finally:
                common.stop(process)
    return samples


def inner_program(tmpdir: pathlib.Path, binary: pathlib.Path) -> tuple[pathlib.Path, tuple]:
    """The unpacked program of a serving binary, and the fds it must be given: its
    modules are read through a link to the fd the bootloader opens on the binary
    (spec/staticx-bootloader.patch), so the same fd number is opened on it here."""
    (bundle,) = [p for p in tmpdir.iterdir() if p.name.startswith("staticx-")]
    target = os.readlink(bundle / "hello.pkg")
    number = int(target.removeprefix("/proc/self/fd/"))
    held = os.open(binary, os.O_RDONLY)
    if held != number:
        try:
            os.fstat(number)
        except OSError:
            os.dup2(held, number)
            os.close(held)
        else:
            raise RuntimeError(f"bench/probe: fd {number} is taken here; the unpacked program needs it")
    return bundle / "hello", (number,)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="HEAD", help="git ref of the baseline binary (default HEAD)")
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=7, help="wrk rounds per server (default 7)")
    args = parser.parse_args()
    candidate = ROOT / "dist" / "hello"
    if not candidate.exists():
        print("bench/probe: no dist/hello (make binary)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="hello-bench-probe-") as temp:
        work = pathlib.Path(temp)
        print(f"bench/probe: building the baseline from {args.base}", file=sys.stderr)
        base = build_base(args.base, work)
        serve_dir = work / "serve"
        serve_dir.mkdir()
        port = common.free_port()
        server, _ = common.start([str(candidate), "serve", "--port", str(port)], port,
                          {**ENV, "TMPDIR": str(serve_dir)})
        try:
            probe_env = {"HELLO_PORT": str(port), "TMPDIR": str(work)}
            inner, inner_fds = inner_program(serve_dir, candidate)
            variants = {
                "baseline binary": [str(base), "healthcheck"],
                "candidate binary": [str(candidate), "healthcheck"],
                "candidate, unpacked program run directly": [str(inner), "healthcheck"],
                "unfrozen `python -m hello healthcheck`": [str(VENV_PYTHON), "-m", "hello", "healthcheck"],
                "`python3 -S` raw-socket GET (floor)": [PYTHON, "-S", "-c", FLOOR.format(port=port)],
                "`python3 -S -c pass` (bare interpreter)": [PYTHON, "-S", "-c", "pass"],
            }
            if shutil.which("curl"):
                variants["`curl -fsS` (C)"] = ["curl", "-fsS", "-o", "/dev/null",
                                               f"http://127.0.0.1:{port}/healthz"]
            cpu = probe_rows(variants, args.runs, probe_env, inner_fds)
        finally:
            common.stop(server)
        floor = cpu["`python3 -S` raw-socket GET (floor)"]
        probe_table = common.table(["probe", "CPU ms (median)", "vs floor"],
                            [[name, f"{ms:.1f}", f"{ms / floor:.2f}x"] for name, ms in cpu.items()])
        unpack = cpu["candidate binary"] - cpu["candidate, unpacked program run directly"]

        memory_rows = []
        unfrozen_rss = None
        for name, argv_for_port in (
                ("unfrozen `python -m hello serve`",
                 lambda p: [str(VENV_PYTHON), "-m", "hello", "serve", "--port", str(p)]),
                ("baseline binary", lambda p: [str(base), "serve", "--port", str(p)]),
                ("candidate binary", lambda p: [str(candidate), "serve", "--port", str(p)])):
            tmpdir = work / f"mem-{len(memory_rows)}"
            tmpdir.mkdir()
            anon, unpacked, rss = idle_memory(argv_for_port, tmpdir)
            unfrozen_rss = unfrozen_rss or rss  # the first row: the unfrozen service's whole RSS
            total = anon + unpacked
            memory_rows.append([name, f"{anon:.1f}", f"{unpacked:.1f}", f"{rss:.1f}", f"{total:.1f}",
                                f"{total / unfrozen_rss:.2f}x"])
        memory_table = common.table(["serving instance", "anonymous MB", "unpacked MB", "RSS MB",
                              "anonymous + unpacked MB", "vs unfrozen RSS"], memory_rows)

        start_dir = work / "starts"
        start_dir.mkdir()
        start_ms = starts({
            "unfrozen `python -m hello serve`":
                lambda p: [str(VENV_PYTHON), "-m", "hello", "serve", "--port", str(p)],
            "baseline binary": lambda p: [str(base), "serve", "--port", str(p)],
            "candidate binary": lambda p: [str(candidate), "serve", "--port", str(p)],
        }, max(args.runs // 2, 5), start_dir)
        unfrozen_start = start_ms["unfrozen `python -m hello serve`"]
        start_table = common.table(["start", "exec to first 200, ms (median)", "vs unfrozen"],
                            [[name, f"{ms:.0f}", f"{ms / unfrozen_start:.2f}x"]
                             for name, ms in start_ms.items()])

        rps_dir = work / "rps"
        rps_dir.mkdir()
        rps_rounds = throughput({
            "unfrozen `python -m hello serve`":
                (lambda p: [str(VENV_PYTHON), "-m", "hello", "serve", "--port", str(p)], {}),
            "candidate binary": (lambda p: [str(candidate), "serve", "--port", str(p)], {}),
            # any GLIBC_TUNABLES: the bootloader then leaves glibc's malloc threshold alone
            "candidate binary, glibc's default malloc threshold":
                (lambda p: [str(candidate), "serve", "--port", str(p)],
                 {"GLIBC_TUNABLES": "glibc.malloc.check=0"}),
        }, args.rounds, rps_dir)
        rps = {key: common.median(values) for key, values in rps_rounds.items()}
        unfrozen_rps = {route: rps[("unfrozen `python -m hello serve`", route)] for route in ROUTES}
        headers = ["server", *[f"GET {r} req/s (median)" for r in ROUTES],
                   *[f"GET {r} req/s (min-max)" for r in ROUTES], *[f"{r} vs unfrozen" for r in ROUTES]]
        rps_table = common.table(headers,
                          [[name, *[f"{rps[(name, r)]:.0f}" for r in ROUTES],
                            *[f"{min(rps_rounds[(name, r)]):.0f}-{max(rps_rounds[(name, r)]):.0f}"
                              for r in ROUTES],
                            *[f"{rps[(name, r)] / unfrozen_rps[r]:.2f}x" for r in ROUTES]]
                           for name in dict.fromkeys(key[0] for key in rps)])

        size_table = common.table(["binary", "file MB", "gzip -6 MB"], [
            [name, f"{path.stat().st_size / 1e6:.2f}", f"{gzip_mb(path):.2f}"]
            for name, path in (("baseline", base), ("candidate", candidate))])

    body = "\n\n".join([
        f"Machine: {common.machine()}. Baseline: `{args.base}` built from `git archive`; candidate: this "
        f"tree's dist/hello. Probe CPU: user + system of the whole process tree (wait4), median of "
        f"{args.runs} interleaved runs against one serving candidate. The candidate's unpack (its whole "
        f"binary less its unpacked program run directly): {unpack:.1f} ms.",
        probe_table, memory_table, start_table, rps_table, size_table])
    print(body)
    common.write_section("Probe, memory, start and size", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
