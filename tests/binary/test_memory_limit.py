"""dist/hello under a real memory cgroup of 160 MiB (the Kubernetes manifest's limit), its
unpack on a tmpfs charged to the same cgroup, against clients that would make it hold
more than that: it answers 503 past its budget and /healthz throughout, and is never
OOM-killed. Load-shaped: 300 clients each; the figures are bench/memory.py's.
"""

from __future__ import annotations

import os
import pathlib
import socket
import subprocess
import threading
import time

import pytest

from tests.conftest import TIME_SCALE, free_port, require, wait_until

pytestmark = [pytest.mark.binary, pytest.mark.slow, pytest.mark.load]

CGROUP_V1 = pathlib.Path("/sys/fs/cgroup/memory")
LIMIT = 160 << 20
CLIENTS = 300


class Contained:
    """The binary as the only process of a v1 memory cgroup with LIMIT, TMPDIR a tmpfs."""

    def __init__(self, binary, tmp_path: pathlib.Path):
        self.group = CGROUP_V1 / f"hello-test-{os.getpid()}-{free_port()}"
        self.group.mkdir()
        (self.group / "memory.limit_in_bytes").write_text(str(LIMIT))
        self.tmpdir = tmp_path / "tmpfs"
        self.tmpdir.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256m,mode=1777", "tmpfs",
                        str(self.tmpdir)], check=True, timeout=30)
        self.port = free_port()
        enter = 'echo $$ > "$0/cgroup.procs" && exec "$@"'
        self.process = subprocess.Popen(
            ["sh", "-c", enter, str(self.group), str(binary), "serve", "--host", "127.0.0.1",
             "--port", str(self.port), "--no-access-log"],
            env={**os.environ, "TMPDIR": str(self.tmpdir)}, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True)
        wait_until(lambda: self.health() == 200, 30, what="the contained server")

    def health(self) -> int | None:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2 * TIME_SCALE) as probe:
                probe.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
                return int(probe.recv(64).split()[1])
        except (OSError, IndexError, ValueError):
            return None

    def oom_kills(self) -> int:
        fields = dict(line.split() for line in (self.group / "memory.oom_control").read_text()
                      .splitlines())
        return int(fields["oom_kill"])

    def close(self) -> str:
        """Stop it; its stderr. The OOM kill count stays readable in self.killed."""
        if self.process.poll() is None:
            self.process.terminate()
        try:
            _, err = self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, err = self.process.communicate(timeout=10)
        subprocess.run(["umount", "-l", str(self.tmpdir)], check=False, timeout=30)
        wait_until(lambda: not (self.group / "cgroup.procs").read_text().strip(), 10,
                   what="the cgroup to empty")
        self.killed = self.oom_kills()
        self.group.rmdir()
        return err


@pytest.fixture
def contained(binary, tmp_path):
    require(os.geteuid() == 0 and (CGROUP_V1 / "cgroup.procs").exists(),
            "needs root and a cgroup v1 memory hierarchy at /sys/fs/cgroup/memory")
    made: list[Contained] = []

    def make() -> Contained:
        made.append(Contained(binary, tmp_path))
        return made[-1]

    yield make
    for each in made:
        if each.group.exists():
            each.close()


def flood(port: int, payload: bytes, count: int = CLIENTS) -> list[socket.socket]:
    """count clients that each send payload (as far as the server takes it) and never read."""
    clients: list[socket.socket] = []
    lock = threading.Lock()

    def client():
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(20)
        try:
            sock.connect(("127.0.0.1", port))
            sock.sendall(payload)
        except OSError:
            pass
        with lock:
            clients.append(sock)

    threads = [threading.Thread(target=client) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return clients


SHAPES = {
    # 600 KB of a body each, then nothing: held while they wait (was OOM-killed in 15 s)
    "slow uploads": b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 615400\r\n\r\n" + b"x" * 614400,
    # whole 1 MiB bodies echoed to clients that never read the answer
    "unread echoes": b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n" + b"x" * (1 << 20),
    # 200 pipelined requests each, answers never read
    "pipeliners": b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n" * 200,
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_past_its_budget_it_answers_probes_and_is_never_oom_killed(contained, shape):
    server = contained()
    clients = flood(server.port, SHAPES[shape])
    try:
        deadline = time.monotonic() + 10
        probes = []
        while time.monotonic() < deadline:
            probes.append(server.health())
            time.sleep(0.2)
        assert server.process.poll() is None, "the server died"
        assert server.oom_kills() == 0
        assert probes.count(200) == len(probes), probes
    finally:
        for client in clients:
            client.close()
    wait_until(lambda: server.health() == 200, 10 * TIME_SCALE, what="the server after the flood")
    err = server.close()
    assert server.killed == 0 and server.process.returncode == 0, err
