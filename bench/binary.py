"""The one static executable against unfrozen Python and a naive freeze, in one run.

Variants, baseline first:
  unfrozen   `python -m hello` from this checkout (no build)
  naive      default `pyinstaller --onefile` + default `staticx` (xz), built here into
             a temp dir; only RPATH/RUNPATH is removed from the collected binaries,
             the minimum staticx accepts (staticx issue 188)
  dist/hello build/binary, run clean in a temp copy of the sources (same inputs);
             started twice per round: $TMPDIR under /tmp, and on a tmpfs (/dev/shm)
For each: file size, gzip -6 size, clean build time (build venv already made),
cold start (exec -> first 200 on /healthz; rounds interleave the variants so load
on a shared machine hits them alike), idle RSS summed over the process chain,
bytes written to the temp dir per start, wrk req/s and p99, and ratios to
unfrozen. Results: the `## Binary` section of bench/RESULTS.md.

    python bench/binary.py [--runs 10] [--seconds 5]
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

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    ROOT,
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

VENV = ROOT / ".pyinstaller" / "venv"
SOURCES = ("hello", "spec", "build", "requirements", "setup.cfg", "pyproject.toml", "README.md")
ENV = {"HELLO_ACCESS_LOG": "false"}
# The same binary with $TMPDIR on a tmpfs (as /tmp is in many containers and on
# systemd hosts); the other variants unpack into the bench's folder under /tmp.
SHM = pathlib.Path("/dev/shm")
TMPFS_VARIANT = "dist/hello, TMPDIR on tmpfs"

# Same RUNPATH removal as build/binary, applied inside a onefile spec because a
# onefile archive cannot be patched after the fact, and the one data file the service
# reads; everything else is the default.
NAIVE_SPEC = """
import os, shutil, subprocess, tempfile
from PyInstaller.utils.hooks import copy_metadata
# waitress's dist-info: hello/waitress_version.py checks the version at import
a = Analysis([{entry!r}], pathex=[{root!r}],
             datas=[({openapi!r}, "hello"), *copy_metadata("waitress")])
fixed = tempfile.mkdtemp(prefix="naive-bins-")
def _no_runpath(toc):
    out = []
    for dest, src, kind in toc:
        if kind in ("BINARY", "EXTENSION") and subprocess.run(
                ["patchelf", "--print-rpath", src], capture_output=True, text=True).stdout.strip():
            copy = os.path.join(fixed, dest)
            os.makedirs(os.path.dirname(copy), exist_ok=True)
            shutil.copy(src, copy)
            subprocess.run(["patchelf", "--remove-rpath", copy], check=True)
            src = copy
        out.append((dest, src, kind))
    return out
a.binaries = _no_runpath(a.binaries)
pyz = PYZ(a.pure)
pyz.dependencies = _no_runpath(pyz.dependencies)  # the bootstrap _struct and zlib
exe = EXE(pyz, a.scripts, a.binaries, a.datas, [], name="hello", console=True)
"""


NOTES = """\
What dist/hello is (spec/hello.spec, spec/staticx_onedir.py, build/binary): a PyInstaller
onedir tree carried inside staticx's one uncompressed archive, so a start unpacks once, and
only the shared libraries and the program: the modules (stored) and base_library.zip are
read in place from the executable; bytecode at optimize=2, binaries stripped, unused stdlib
(and OpenSSL) excluded, and a runtime hook that defers what Flask imports but a server never
calls (werkzeug's dev server and test client, importlib.metadata, jinja2, ...). The naive
build unpacks twice per start (staticx's xz archive, then PyInstaller's `_MEI` copy), which is
where its start time and temp bytes go.
On a shared 2-core machine absolute times swing with load; compare ratios within one run.\
"""


def copy_sources(target: pathlib.Path) -> None:
    target.mkdir(parents=True)
    for name in SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif source.exists():
            shutil.copy2(source, target / name)


def stamp_env() -> dict:
    env = dict(os.environ)
    if not env.get("HELLO_COMMIT"):
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"],
                              capture_output=True, text=True, check=False)
        env["HELLO_COMMIT"] = head.stdout.strip() if head.returncode == 0 else "0" * 40
    env.setdefault("SOURCE_DATE_EPOCH", str(int(time.time())))
    env["HELLO_BUILD_VENV"] = str(VENV)
    return env


def build_ours(work: pathlib.Path) -> tuple[pathlib.Path, float]:
    tree = work / "ours"
    copy_sources(tree)
    began = time.perf_counter()
    subprocess.run([str(tree / "build" / "binary")], cwd=tree, env=stamp_env(), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return tree / "dist" / "hello", time.perf_counter() - began


def build_naive(work: pathlib.Path) -> tuple[pathlib.Path, float]:
    tree = work / "naive"
    tree.mkdir()
    spec = tree / "naive.spec"
    spec.write_text(NAIVE_SPEC.format(entry=str(ROOT / "hello" / "__main__.py"), root=str(ROOT),
                                      openapi=str(ROOT / "hello" / "openapi.json")))
    env = {**os.environ, "PATH": f"{VENV / 'bin'}:{os.environ['PATH']}"}
    began = time.perf_counter()
    subprocess.run([str(VENV / "bin" / "pyinstaller"), "--noconfirm", "--clean",
                    "--log-level", "WARN", "--workpath", str(tree / "work"),
                    "--distpath", str(tree / "onefile"), str(spec)],
                   cwd=tree, env=env, check=True, stdout=subprocess.DEVNULL)
    subprocess.run([str(VENV / "bin" / "staticx"), str(tree / "onefile" / "hello"),
                    str(tree / "hello")], env=env, check=True, stdout=subprocess.DEVNULL)
    took = time.perf_counter() - began
    (tree / "hello").chmod(0o755)
    return tree / "hello", took


def gzip_size(path: pathlib.Path) -> int:
    return len(gzip.compress(path.read_bytes(), compresslevel=6))


def bytes_under(path: pathlib.Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def one_start(argv_for_port, tmpdir: pathlib.Path) -> tuple[float, float, int]:
    """(seconds to first 200, idle RSS MB over the chain, bytes in the temp dir)."""
    port = free_port()
    process, took = start(argv_for_port(port), port, {**ENV, "TMPDIR": str(tmpdir)})
    try:
        written = bytes_under(tmpdir)
        time.sleep(0.3)  # idle: let start-up garbage settle before reading RSS
        rss = rss_mb(process.pid)
    finally:
        stop(process)
    return took, rss, written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--seconds", type=int, default=5)
    args = parser.parse_args()
    if not (VENV / "bin" / "pyinstaller").exists():
        print("bench/binary: no build venv; run build/binary once first", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="hello-bench-binary-") as temp:
        work = pathlib.Path(temp)
        print("bench/binary: building dist/hello (clean, temp copy)", file=sys.stderr)
        ours, ours_build = build_ours(work)
        print("bench/binary: building the naive onefile + staticx", file=sys.stderr)
        naive, naive_build = build_naive(work)

        def serve(binary):
            return lambda port: [str(binary), "serve", "--host", "127.0.0.1", "--port", str(port)]

        variants = {
            "unfrozen `python -m hello`": (lambda port: [
                sys.executable, "-m", "hello", "serve", "--host", "127.0.0.1",
                "--port", str(port)], None, None),
            "naive onefile + staticx": (serve(naive), naive, naive_build),
            "dist/hello": (serve(ours), ours, ours_build),
            TMPFS_VARIANT: (serve(ours), ours, ours_build),
        }
        if not SHM.is_dir():
            del variants[TMPFS_VARIANT]
        os.environ["PYTHONPATH"] = str(ROOT)  # for the unfrozen variant; the frozen ignore it
        samples = {name: [] for name in variants}
        for round_ in range(args.runs + 1):  # round 0 warms the page cache, not counted
            for name, (argv, _, _) in variants.items():
                tmp_root = SHM if name == TMPFS_VARIANT else work
                tmpdir = pathlib.Path(tempfile.mkdtemp(prefix="hello-bench-tmp-", dir=tmp_root))
                result = one_start(argv, tmpdir)
                if round_:
                    samples[name].append(result)
                shutil.rmtree(tmpdir, ignore_errors=True)
            print(f"bench/binary: start round {round_}/{args.runs}", file=sys.stderr)

        # wrk: three interleaved rounds per variant, the median round reported
        rounds = {name: [] for name in variants if name != TMPFS_VARIANT}
        for _ in range(3):
            for name in rounds:
                argv = variants[name][0]
                port = free_port()
                process, _ = start(argv(port), port, ENV)
                try:
                    rounds[name].append(wrk(f"http://127.0.0.1:{port}/healthz",
                                            seconds=args.seconds))
                finally:
                    stop(process)
        loads = {name: sorted(runs, key=lambda r: r["rps"])[1] for name, runs in rounds.items()}
        if TMPFS_VARIANT in variants:  # the same binary, the same process once started
            loads[TMPFS_VARIANT] = loads["dist/hello"]

        base_start = median([s[0] for s in samples[next(iter(variants))]])
        base_rps = loads[next(iter(variants))]["rps"]
        base_rss = median([s[1] for s in samples[next(iter(variants))]])
        rows = []
        for name, (_, binary, build) in variants.items():
            starts = [s[0] * 1000 for s in samples[name]]
            rss = median([s[1] for s in samples[name]])
            rows.append([
                name,
                f"{binary.stat().st_size / 1e6:.1f}" if binary else "-",
                f"{gzip_size(binary) / 1e6:.2f}" if binary else "-",
                f"{build:.0f}" if build else "-",
                round(median(starts)), round(max(starts)),
                f"{median(starts) / 1000 / base_start:.2f}x",
                f"{rss:.1f}", f"{rss / base_rss:.2f}x",
                f"{median([s[2] for s in samples[name]]) / 1e6:.1f}",
                round(loads[name]["rps"]), f"{loads[name]['rps'] / base_rps:.2f}x",
                f"{loads[name]['p99_ms']:.1f}", loads[name]["errors"],
            ])
        headers = ["variant", "file MB", "gzip MB", "build s", "start ms (median)",
                   "start ms (max)", "start vs unfrozen", "idle RSS MB (chain)", "RSS vs unfrozen",
                   "temp MB per start", "req/s", "req/s vs unfrozen", "p99 ms", "non-2xx"]
        result = table(headers, rows)

    print(result)
    body = "\n".join([
        f"Machine: {machine()}. Python {sys.version.split()[0]}. "
        f"Cold start: {args.runs} rounds, variants interleaved, exec -> first 200 on /healthz. "
        f"wrk -t2 -c32 -d{args.seconds}s on GET /healthz, on the same cores, 3 interleaved "
        "rounds per variant, the median round shown. "
        "MB = 10^6 bytes; build = PyInstaller + staticx (+ checksum, SBOM for dist/hello), "
        "build venv already made. Temp MB = what one start writes into $TMPDIR "
        "(on a tmpfs, that is memory).",
        "",
        result,
        "",
        "Targets: start <= 1.2x unfrozen (aim 1.05x), gzip <= 8 MB, file <= 20 MB, "
        "RSS <= 48 MB, req/s >= 0.95x unfrozen.",
        "",
        NOTES,
    ])
    write_section("Binary", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
