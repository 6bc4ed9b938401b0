"""When resources run out: the binary before and after, side by side, in one run.

    python bench/resources.py [--baseline-ref REF] [--quick]

Each row is a reproduction from the issue "When resources run out, hello holds",
run against a baseline dist/hello (built here from REF, a `git archive` of it in .bench/,
cached there; default: the commit before hello/bundles.py existed, i.e. before this work)
and the candidate (dist/hello as it is). Real parts: a real tmpfs, a real v1 memory
cgroup, real killed process groups, real clients on loopback. Needs root. Writes the
`## Resources` section of bench/RESULTS.md. --quick runs fewer rounds (a smoke run).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pathlib
import random
import resource
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from common import ROOT, free_port, machine, table, write_section  # noqa: E402

MIB = 1 << 20
CGROUP_MEMORY = pathlib.Path("/sys/fs/cgroup/memory")
CGROUP_CPU = pathlib.Path("/sys/fs/cgroup/cpu")


def baseline_binary(ref: str | None) -> tuple[pathlib.Path, str]:
    if ref is None:
        added = subprocess.run(["git", "log", "--diff-filter=A", "--format=%H", "--",
                                "hello/bundles.py"], cwd=ROOT, capture_output=True, text=True,
                               check=True, timeout=30).stdout.split()
        ref = f"{added[-1]}~1" if added else "HEAD"
    sha = subprocess.run(["git", "rev-parse", ref], cwd=ROOT, capture_output=True, text=True,
                         check=True, timeout=30).stdout.strip()
    tree = ROOT / ".bench" / f"baseline-{sha[:12]}"
    binary = tree / "dist" / "hello"
    if not binary.exists():
        tree.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", sha], cwd=ROOT, capture_output=True,
                                 check=True, timeout=120).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True, timeout=120)
        date = subprocess.run(["git", "log", "-1", "--format=%ct", sha], cwd=ROOT,
                              capture_output=True, text=True, check=True, timeout=30).stdout.strip()
        print(f"bench: building the baseline {sha[:12]} in {tree}", file=sys.stderr)
        subprocess.run([str(tree / "build" / "binary")], cwd=tree, check=True, timeout=1800,
                       env={**os.environ, "HELLO_COMMIT": sha, "SOURCE_DATE_EPOCH": date})
    return binary, sha[:12]


@contextlib.contextmanager
def cgroup(hierarchy: pathlib.Path, settings: dict[str, str]):
    """A cgroup of our own in a v1 hierarchy: (the folder, the argv prefix that runs a
    command inside it); removed once its processes are gone."""
    group = hierarchy / f"hello-bench-{os.getpid()}-{free_port()}"
    group.mkdir()
    for name, value in settings.items():
        (group / name).write_text(value)
    try:
        yield group, ["sh", "-c", f'echo $$ > {group}/cgroup.procs && exec "$@"', "sh"]
    finally:
        deadline = time.monotonic() + 10
        while (group / "cgroup.procs").read_text().strip() and time.monotonic() < deadline:
            time.sleep(0.1)
        group.rmdir()


@contextlib.contextmanager
def tmpfs(size: str):
    where = pathlib.Path(subprocess.run(["mktemp", "-d"], capture_output=True, text=True,
                                        check=True).stdout.strip())
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=1777", "tmpfs", str(where)],
                   check=True, timeout=30)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False, timeout=30)
        where.rmdir()


def used_mb(where: pathlib.Path) -> float:
    stat = os.statvfs(where)
    return (stat.f_blocks - stat.f_bfree) * stat.f_frsize / MIB


def status_of(port: int, path: str, timeout: float = 2.0) -> int | None:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        return int(data.split()[1]) if data else None
    except (OSError, IndexError, ValueError):
        return None


def serve(binary, tmpdir, *args, enter: list[str] | None = None, preexec=None):
    """(group process, port): the binary serving, in a session of its own."""
    port = free_port()
    process = subprocess.Popen(
        [*(enter or []), str(binary), "serve", "--host", "127.0.0.1", "--port", str(port),
         "--no-access-log", *args], env={**os.environ, "TMPDIR": str(tmpdir)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        preexec_fn=preexec)
    deadline = time.monotonic() + 30
    while status_of(port, "/healthz", 0.5) != 200:
        if process.poll() is not None or time.monotonic() > deadline:
            return process, None
        time.sleep(0.02)
    return process, port


def end(process) -> int | None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    return process.wait(30)


def restarts(binary, rounds: int) -> str:
    """SIGKILL of the whole group, again and again, on a 64 MiB tmpfs (an emptyDir)."""
    with tmpfs("64m") as tmpdir:
        for attempt in range(rounds):
            process, port = serve(binary, tmpdir)
            if port is None:
                end(process)
                return f"{attempt} of {rounds}"
            end(process)
    return f"{rounds} of {rounds}"


def killed_probes(binary, probes: int, wait: float) -> str:
    """probes killed mid-start beside a live server: MB left beyond its own unpack."""
    with tmpfs("64m") as tmpdir:
        server, port = serve(binary, tmpdir)
        own = used_mb(tmpdir)
        chance = random.Random(20)
        for _ in range(probes):
            probe = subprocess.Popen([str(binary), "healthcheck", "--port", str(port)],
                                     env={**os.environ, "TMPDIR": str(tmpdir)},
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
            time.sleep(chance.uniform(0, 0.15))
            end(probe)
        deadline = time.monotonic() + wait
        while used_mb(tmpdir) > own + 1 and time.monotonic() < deadline:
            time.sleep(1)
        left = used_mb(tmpdir) - own
        end(server)
    return f"{left:.0f} MB"


def memory_flood(binary, payload: bytes, clients: int = 300) -> str:
    """The binary in a 160 MiB v1 memory cgroup (its unpack too): killed? peak MB."""
    socks: list[socket.socket] = []
    with cgroup(CGROUP_MEMORY, {"memory.limit_in_bytes": str(160 * MIB)}) as (group, enter):
        with tmpfs("256m") as tmpdir:
            server, port = serve(binary, tmpdir, enter=enter)

            def client():
                sock = socket.socket()
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.settimeout(20)
                with contextlib.suppress(OSError):
                    sock.connect(("127.0.0.1", port))
                    sock.sendall(payload)
                socks.append(sock)
            threads = [threading.Thread(target=client) for _ in range(clients)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
            probes = []
            for _ in range(25):
                probes.append(status_of(port, "/healthz", 1.0) == 200)
                time.sleep(0.4)
            for sock in socks:
                sock.close()
            killed = int(dict(line.split() for line in (group / "memory.oom_control")
                              .read_text().splitlines())["oom_kill"])
            peak = int((group / "memory.max_usage_in_bytes").read_text()) / MIB
            end(server)
    return f"{'OOM-killed' if killed else 'alive'}, peak {peak:.0f} MB, probes {sum(probes)}/25"


def idle_memory(binary) -> str:
    """What a serving binary holds at rest in a memory cgroup: anonymous memory and
    tmpfs pages (its unpack), which a container's limit counts; page cache is not."""
    with cgroup(CGROUP_MEMORY, {}) as (group, enter), tmpfs("64m") as tmpdir:
        server, port = serve(binary, tmpdir, enter=enter)
        for _ in range(20):
            status_of(port, "/")
        time.sleep(1)
        stat = dict(line.split() for line in (group / "memory.stat").read_text().splitlines())
        end(server)
    return f"{int(stat['rss']) / MIB:.1f} + {int(stat['shmem']) / MIB:.1f} MB"


def full_tmp(binary) -> str:
    """A 48 MiB tmpfs holding the unpack and all but 4 MiB of filler (as a container's
    only /tmp fills up), then 60 concurrent 1 MiB echoes: whole 200s, and the rest."""
    with tmpfs("48m") as tmpdir:
        server, port = serve(binary, tmpdir)
        stat = os.statvfs(tmpdir)
        subprocess.run(["dd", "if=/dev/zero", f"of={tmpdir}/filler", "bs=1M",
                        f"count={stat.f_bavail * stat.f_frsize // MIB - 4}"],
                       capture_output=True, timeout=60, check=True)
        body = os.urandom(MIB)
        outcomes: list[str] = []

        def upload():
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
                    sock.sendall(b"POST /echo HTTP/1.1\r\nHost: b\r\nConnection: close\r\n"
                                 b"Content-Length: %d\r\n\r\n" % MIB + body)
                    reply = b""
                    while chunk := sock.recv(65536):
                        reply += chunk
                outcomes.append("whole" if reply.endswith(body) else "cut" if reply else "empty")
            except TimeoutError:
                outcomes.append("hung")
            except OSError:
                outcomes.append("reset")
        threads = [threading.Thread(target=upload) for _ in range(60)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(90)
        end(server)
    return ", ".join(f"{outcomes.count(kind)} {kind}" for kind in
                     ("whole", "cut", "empty", "reset", "hung") if outcomes.count(kind))


def stalled_logs(binary) -> str:
    """stdout and stderr pipes nobody reads, on a nearly full 48 MiB tmpfs (as in
    full_tmp: the old binary wrote an error line for each upload it could not spill),
    300 uploads in waves: then /healthz, then SIGTERM."""
    with tmpfs("48m") as tmpdir:
        out_read, out_write = os.pipe()
        err_read, err_write = os.pipe()
        port = free_port()
        process = subprocess.Popen([str(binary), "serve", "--host", "127.0.0.1", "--port",
                                    str(port)], env={**os.environ, "TMPDIR": str(tmpdir)},
                                   stdout=out_write, stderr=err_write, start_new_session=True)
        os.close(out_write)
        os.close(err_write)
        try:
            deadline = time.monotonic() + 30
            while status_of(port, "/healthz", 0.5) != 200 and time.monotonic() < deadline:
                time.sleep(0.05)
            stat = os.statvfs(tmpdir)
            subprocess.run(["dd", "if=/dev/zero", f"of={tmpdir}/filler", "bs=1M",
                            f"count={stat.f_bavail * stat.f_frsize // MIB - 4}"],
                           capture_output=True, timeout=60, check=True)
            payload = (b"POST /echo HTTP/1.1\r\nHost: b\r\nConnection: close\r\n"
                       b"Content-Length: %d\r\n\r\n" % MIB + os.urandom(MIB))

            def upload():
                with contextlib.suppress(OSError):
                    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                        sock.sendall(payload)
                        while sock.recv(65536):
                            pass
            for _ in range(5):
                threads = [threading.Thread(target=upload) for _ in range(60)]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join(30)
            health = status_of(port, "/healthz", 2)
            began = time.monotonic()
            process.send_signal(signal.SIGTERM)
            try:
                code = process.wait(15)
                ended = f"SIGTERM: exit {code} in {time.monotonic() - began:.1f} s"
            except subprocess.TimeoutExpired:
                ended = "SIGTERM: still running after 15 s"
        finally:
            end(process)
            os.close(out_read)
            os.close(err_read)
    return f"/healthz {health}; {ended}"


def gave_up(binary, clients: int) -> str:
    """clients ask ?wait=30s and give up after 3 s: CLOSE-WAIT left, then GET /."""
    with tmpfs("64m") as tmpdir:
        server, port = serve(binary, tmpdir)
        socks = []
        for _ in range(clients):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(b"GET /whoami?wait=30s HTTP/1.1\r\nHost: b\r\n\r\n")
            socks.append(sock)
        time.sleep(3)
        ready = status_of(port, "/readyz", 2)
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        time.sleep(1)
        waiting = subprocess.run(["ss", "-tnH", "state", "close-wait", f"sport = :{port}"],
                                 capture_output=True, text=True, timeout=10,
                                 check=False).stdout.count("\n")
        began = time.monotonic()
        answered = status_of(port, "/", 10)
        took = time.monotonic() - began
        end(server)
    shown = f"{took * 1000:.0f} ms" if answered == 200 else f"none in {took:.0f} s"
    return f"{waiting} CLOSE-WAIT; GET / {shown}; /readyz while flooded {ready}"


def after_flood(binary, clients: int, seconds: float) -> str:
    """clients ask ?wait=2s over and over, then all leave: seconds to a GET / 200."""
    with tmpfs("64m") as tmpdir:
        server, port = serve(binary, tmpdir)
        stop, guard, live = threading.Event(), threading.Lock(), set()

        def flooder():
            while not stop.is_set():
                try:
                    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
                except OSError:
                    continue
                with guard:
                    live.add(sock)
                with contextlib.suppress(OSError):
                    sock.sendall(b"GET /whoami?wait=2s HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n")
                    sock.recv(64)
                with guard:
                    live.discard(sock)
                sock.close()
        threads = [threading.Thread(target=flooder, daemon=True) for _ in range(clients)]
        for thread in threads:
            thread.start()
        time.sleep(seconds)
        stop.set()
        with guard:
            for sock in live:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        began = time.monotonic()
        while status_of(port, "/", 1.0) != 200 and time.monotonic() - began < 180:
            pass
        took = time.monotonic() - began
        end(server)
        for thread in threads:
            thread.join(5)
    return f"{took:.2f} s"


def probe_lane(binary, probes: int) -> str:
    """--connection-limit 20, 300 clients reconnecting at once: probes answered."""
    with tmpfs("64m") as tmpdir:
        server, port = serve(binary, tmpdir, "--connection-limit", "20")
        stop = threading.Event()

        def reconnecting():
            while not stop.is_set():
                status_of(port, "/", 30)
        threads = [threading.Thread(target=reconnecting, daemon=True) for _ in range(300)]
        for thread in threads:
            thread.start()
        time.sleep(2)
        answered = 0
        for _ in range(probes):
            answered += status_of(port, "/healthz", 1.0) == 200
            time.sleep(0.02)
        stop.set()
        end(server)
    return f"{answered} of {probes}"


def low_fds(binary) -> str:
    """nofile=64 (soft and hard), 200 clients at once: 200s and answers of any kind."""
    with tmpfs("64m") as tmpdir:
        server, port = serve(binary, tmpdir, preexec=lambda: resource.setrlimit(
            resource.RLIMIT_NOFILE, (64, 64)))
        codes: list[int | None] = []
        threads = [threading.Thread(target=lambda: codes.append(status_of(port, "/", 20)))
                   for _ in range(200)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        end(server)
    return f"{codes.count(200)} x 200, {sum(code is not None for code in codes)} answered"


def probe_cost(binary, quota: float | None, rounds: int) -> str:
    """`hello healthcheck` wall time, probe and server in one CPU cgroup of `quota`
    CPUs, the server under load (wrk on /whoami): median / max."""
    quota_us = str(int(quota * 100000)) if quota else "-1"
    with cgroup(CGROUP_CPU, {"cpu.cfs_quota_us": quota_us}) as (_, enter):
        with tmpfs("128m") as tmpdir:
            server, port = serve(binary, tmpdir, enter=enter)
            load = subprocess.Popen(["wrk", "-t1", "-c16", "-d600s",
                                     f"http://127.0.0.1:{port}/whoami"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(2)
            times = []
            for _ in range(rounds):
                began = time.monotonic()
                subprocess.run([*enter, str(binary), "healthcheck", "--port", str(port),
                                "--timeout", "60s"], env={**os.environ, "TMPDIR": str(tmpdir)},
                               capture_output=True, timeout=120, check=False)
                times.append(time.monotonic() - began)
                time.sleep(0.3)
            load.kill()
            load.wait()
            end(server)
    return f"{statistics.median(times):.2f} / {max(times):.2f} s"


def exit_statuses(binary) -> str:
    with tmpfs("8m") as tmpdir:
        full = subprocess.run([str(binary), "version"], env={**os.environ, "TMPDIR": str(tmpdir)},
                              capture_output=True, timeout=60, check=False).returncode
    with tmpfs("64m") as tmpdir:
        process = subprocess.Popen(["unshare", "--pid", "--fork", str(binary), "serve", "--port",
                                    str(free_port())], env={**os.environ, "TMPDIR": str(tmpdir)},
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(2)
        kids = pathlib.Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
        bootloader = int(kids[0])
        hello = int(pathlib.Path(f"/proc/{bootloader}/task/{bootloader}/children").read_text().split()[0])
        os.kill(hello, signal.SIGKILL)  # as an OOM kill would, under PID 1
        killed = process.wait(30)
    return f"full /tmp: {full}; hello SIGKILLed under PID 1: {killed}"


def no_store(binary) -> str:
    with tmpfs("64m") as tmpdir:
        server, port = serve(binary, tmpdir)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET /readyz HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n")
            head = sock.recv(4096).split(b"\r\n\r\n")[0]
        end(server)
    found = [line for line in head.split(b"\r\n") if line.lower().startswith(b"cache-control")]
    return found[0].decode() if found else "no Cache-Control"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline-ref")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/resources.py: needs root (tmpfs, cgroups, PID namespaces)", file=sys.stderr)
        return 2
    baseline, sha = baseline_binary(args.baseline_ref)
    candidate = ROOT / "dist" / "hello"
    quick = args.quick
    rows_spec = [
        ("1. SIGKILL restarts on a 64 MiB tmpfs, came up",
         lambda b: restarts(b, 5 if quick else 20)),
        ("1. 50 probes killed mid-start: left after 60 s",
         lambda b: killed_probes(b, 10 if quick else 50, 60)),
        ("memory at rest: anonymous + its unpack (tmpfs)", idle_memory),
        ("3. 160 MiB cgroup, 300 slow 600 KB uploads",
         lambda b: memory_flood(b, b"POST /echo HTTP/1.1\r\nHost: b\r\nContent-Length: 615400\r\n\r\n"
                                + b"x" * 614400)),
        ("3. 160 MiB cgroup, 300 unread 1 MiB echoes",
         lambda b: memory_flood(b, b"POST /echo HTTP/1.1\r\nHost: b\r\nContent-Length: 1048576\r\n\r\n"
                                + b"x" * MIB)),
        ("3. 160 MiB cgroup, 300 unread pipelines of 200",
         lambda b: memory_flood(b, b"GET /openapi.json HTTP/1.1\r\nHost: b\r\n\r\n" * 200)),
        ("2. full 48 MiB /tmp, 60 concurrent 1 MiB echoes", full_tmp),
        ("4. 1000 clients give up on ?wait=30s", lambda b: gave_up(b, 1000)),
        ("4. after 300 flooders of ?wait=2s leave, GET / 200 in",
         lambda b: after_flood(b, 300, 10 if quick else 30)),
        ("5. probes at --connection-limit 20, 300 reconnecting",
         lambda b: probe_lane(b, 200 if quick else 1000)),
        ("6. nofile=64, 200 clients at once", low_fds),
        ("7. both log pipes unread, nearly full /tmp, 300 uploads", stalled_logs),
        ("8. exit statuses", exit_statuses),
        ("9. /readyz caching", no_store),
        ("probe wall time, no CPU limit, server loaded", lambda b: probe_cost(b, None, 5 if quick else 15)),
        ("probe wall time, 0.25 CPU, server loaded", lambda b: probe_cost(b, 0.25, 5 if quick else 15)),
    ]
    rows = []
    for name, measure in rows_spec:
        print(f"bench: {name}", file=sys.stderr)
        rows.append([name, measure(baseline), measure(candidate)])
        print(f"  {rows[-1][1]}  |  {rows[-1][2]}", file=sys.stderr)
    text = table(["reproduction (issue item)", f"baseline {sha}", "dist/hello"], rows)
    print(text)
    write_section("Resources", f"""Machine: {machine()}. bench/resources.py: each of the issue's reproductions
against the baseline binary (commit {sha}, before this work) and dist/hello, side by
side in one run, as root: real tmpfs mounts, a real v1 memory cgroup of 160 MiB (the
Kubernetes manifest's limit) holding the binary and its unpack, process groups killed
with SIGKILL, clients on loopback. Probe wall time: `hello healthcheck` and its server
in one CPU cgroup, the server under wrk load (median / max of the rounds).

{text}""")
    return 0


if __name__ == "__main__":
    sys.exit(main())
