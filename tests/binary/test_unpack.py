"""dist/hello's unpack in $TMPDIR: nothing left behind for long, whatever kills a start.

Real kills of the whole process group (what an OOM kill or a probe timeout does to
the staticx bootloader and hello together), on a real 64 MiB tmpfs (the Kubernetes
manifest's emptyDir), with starts sharing one folder the way Swarm tasks share their
volume. The lock protocol itself is spec/staticx-bootloader.patch and hello/bundles.py.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import random
import signal
import subprocess
import threading
import time

import pytest

from tests.binary.conftest import alive, descendants, pid1_of
from tests.conftest import at_once, free_port, http_status, require, wait_until
from tests.server.rawhttp import exchange, statuses

pytestmark = [pytest.mark.binary, pytest.mark.slow]

MIB = 1 << 20


@pytest.fixture
def tmpfs(tmp_path):
    """mount(size) -> a fresh tmpfs (mode 1777) of that size; unmounted afterwards."""
    mounted: list[pathlib.Path] = []

    def mount(size: str, options: str = "") -> pathlib.Path:
        require(os.geteuid() == 0, "needs root to mount a tmpfs")
        where = tmp_path / f"tmpfs-{len(mounted)}"
        where.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=1777{options}",
                        "tmpfs", str(where)], check=True, timeout=30)
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], check=False, timeout=30)


_STARTED: list[Group] = []


@pytest.fixture(autouse=True)
def _end_what_the_test_started():
    """A test that fails midway still ends every start it made (its own process group)."""
    yield
    while _STARTED:
        group = _STARTED.pop()
        if group.process.poll() is None:
            group.kill()


class Group:
    """A start of the binary in a session of its own, so that one killpg ends the
    bootloader and hello together, as an OOM kill or a runtime's timeout does."""

    def __init__(self, binary, tmpdir: pathlib.Path, *args: str):
        _STARTED.append(self)
        self.process = subprocess.Popen(
            [str(binary), *args], env={**os.environ, "TMPDIR": str(tmpdir)},
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            start_new_session=True)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.communicate(timeout=10)

    def stop(self) -> int:
        """SIGTERM, then its exit code; its stderr is kept in self.err."""
        if self.process.poll() is None:
            self.process.terminate()
        self.err = self.process.communicate(timeout=20)[1].decode(errors="replace")
        return self.process.returncode


def serving(binary, tmpdir: pathlib.Path, timeout: float = 20.0) -> tuple[Group, int]:
    port = free_port()
    group = Group(binary, tmpdir, "serve", "--host", "127.0.0.1", "--port", str(port),
                  "--no-access-log")

    def up():
        if group.process.poll() is not None:
            raise AssertionError(f"exited {group.process.returncode}: "
                                 f"{group.process.stderr.read().decode()}")
        return http_status(f"http://127.0.0.1:{port}/healthz", timeout=0.5) == 200
    wait_until(up, timeout, what="the server to answer /healthz")
    return group, port


def unpacks(tmpdir: pathlib.Path) -> list[str]:
    return sorted(entry.name for entry in tmpdir.iterdir() if entry.name.startswith("staticx-"))


def used_bytes(tmpdir: pathlib.Path) -> int:
    stat = os.statvfs(tmpdir)
    return (stat.f_blocks - stat.f_bfree) * stat.f_frsize


def test_a_start_removes_what_a_start_killed_outright_left(binary, tmp_path):
    group, _ = serving(binary, tmp_path)
    left = unpacks(tmp_path)
    group.kill()
    assert unpacks(tmp_path) == left and len(left) == 1, "SIGKILL leaves the unpack"

    result = subprocess.run([str(binary), "version"], env={**os.environ, "TMPDIR": str(tmp_path)},
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert unpacks(tmp_path) == []


def test_a_start_after_a_sweep_comes_up_whatever_the_length_of_tmpdir(binary, tmp_path):
    """The sweep frees path strings; the extraction's context came from malloc with
    its xz decoder pointer unset (the archive is uncompressed), so for some TMPDIR
    lengths it held that text, and tar_close() crashed on it: SIGSEGV at every start
    after a dead bundle, for as long as the bundle's copies kept being swept."""
    (tmp_path / "template").mkdir()
    group, _ = serving(binary, tmp_path / "template")
    group.kill()
    (dead,) = unpacks(tmp_path / "template")
    crashed = []
    for extra in range(2, 62):
        tmpdir = tmp_path / ("d" * extra)
        tmpdir.mkdir()
        subprocess.run(["cp", "-a", str(tmp_path / "template" / dead), str(tmpdir)], check=True, timeout=30)
        result = subprocess.run([str(binary), "version"], env={**os.environ, "TMPDIR": str(tmpdir)},
                                capture_output=True, timeout=60, check=False)
        if result.returncode != 0 or unpacks(tmpdir):
            crashed.append(f"{len(str(tmpdir))}: exit {result.returncode}")
    assert crashed == [], f"TMPDIR lengths that failed: {crashed}"


def test_twenty_restarts_killed_outright_on_a_64_mib_tmpfs_each_come_up(binary, tmpfs):
    tmpdir = tmpfs("64m")
    for attempt in range(20):
        group, port = serving(binary, tmpdir)
        assert http_status(f"http://127.0.0.1:{port}/") == 200, f"restart {attempt}"
        assert len(unpacks(tmpdir)) <= 2, unpacks(tmpdir)  # its own, at most the last dead one
        group.kill()
    group, _ = serving(binary, tmpdir)
    assert len(unpacks(tmpdir)) == 1
    assert group.stop() == 0
    assert unpacks(tmpdir) == []


@pytest.mark.timeout(600)
def test_probes_killed_mid_start_leave_only_the_live_unpack_within_a_minute(binary, tmpfs):
    tmpdir = tmpfs("64m")
    server, port = serving(binary, tmpdir)
    own = unpacks(tmpdir)
    chance = random.Random(20)
    for _ in range(50):
        probe = Group(binary, tmpdir, "healthcheck", "--port", str(port))
        time.sleep(chance.uniform(0.0, 0.15))  # mid-unpack, mid-import or done
        probe.kill()
        assert http_status(f"http://127.0.0.1:{port}/healthz") == 200
    wait_until(lambda: unpacks(tmpdir) == own, 60, interval=0.5,
               what="only the live instance's unpack to be left")
    assert used_bytes(tmpdir) < 20 * MIB
    assert server.stop() == 0
    assert unpacks(tmpdir) == []


def test_starts_sharing_a_temp_dir_never_take_each_others_unpack(binary, tmp_path):
    """Tasks of a Swarm node share one tmpfs volume: a live server's unpack survives
    every other start's sweep, and 60 starts racing each other all succeed."""
    server, port = serving(binary, tmp_path)
    dead, _ = serving(binary, tmp_path)
    dead.kill()
    starts = [subprocess.Popen([str(binary), "version"], env={**os.environ, "TMPDIR": str(tmp_path)},
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
              for _ in range(60)]
    codes = [(start.wait(timeout=120), start.stderr.read()) for start in starts]
    assert [code for code, _ in codes] == [0] * 60, codes
    assert len(unpacks(tmp_path)) == 1, "the dead unpack is gone, the live one stays"
    assert http_status(f"http://127.0.0.1:{port}/healthz") == 200
    assert server.stop() == 0
    assert unpacks(tmp_path) == []


def test_a_bootloader_killed_alone_takes_hello_with_it(binary, tmp_path):
    """Only the bootloader killed: hello (its child) gets SIGTERM, drains and exits 0
    rather than run on with nobody to remove its unpack or to keep its executable
    busy; the folder it leaves is dead, and the next start removes it."""
    server, port = serving(binary, tmp_path)
    hello = descendants(server.process.pid)[1]
    os.kill(server.process.pid, signal.SIGKILL)
    server.process.wait(timeout=10)  # hello may still hold the stderr pipe: no communicate()
    try:
        wait_until(lambda: not alive(hello), 15, what="hello to drain and exit after its bootloader")
        assert http_status(f"http://127.0.0.1:{port}/healthz") is None
        assert len(unpacks(tmp_path)) == 1
        result = subprocess.run([str(binary), "version"], env={**os.environ, "TMPDIR": str(tmp_path)},
                                capture_output=True, timeout=60, check=False)
        assert result.returncode == 0
        assert unpacks(tmp_path) == []
    finally:
        if alive(hello):
            os.kill(hello, signal.SIGKILL)


@pytest.mark.parametrize("options, message", [
    ("", "cannot unpack into"),
    (",noexec", "(is $TMPDIR mounted noexec?)"),
    (",ro", "needs a writable /tmp or $TMPDIR"),
], ids=["full", "noexec", "read-only"])
def test_an_unusable_temp_dir_is_exit_3_with_one_line_and_nothing_left(binary, tmpfs, options,
                                                                        message):
    tmpdir = tmpfs("8m" if options == "" else "64m", options)
    result = subprocess.run([str(binary), "serve"], env={**os.environ, "TMPDIR": str(tmpdir)},
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 3, result.stderr
    lines = result.stderr.strip().splitlines()
    # The bootloader names itself as it was run: hello, or hello-<version>-linux-<arch>.
    assert len(lines) == 1 and lines[0].startswith(f"{binary.name}: ") and message in lines[0], lines
    if options == "":
        assert "No space left on device" in lines[0]
    assert list(tmpdir.iterdir()) == []


def test_hello_killed_by_a_signal_as_pid_1_exits_128_plus_the_signal(start_binary):
    """An OOM kill of hello under a container's PID 1 (the bootloader) said exit 2."""
    require(os.geteuid() == 0, "needs root for a PID namespace")
    service = start_binary(pid1=True).wait_healthy()
    bootloader = pid1_of(service)
    hello = descendants(bootloader)[1]
    os.kill(hello, signal.SIGKILL)
    code, _, err = service.wait()
    assert code == 128 + signal.SIGKILL, err
    assert list(service.tmpdir.iterdir()) == []


def test_an_empty_tmpdir_means_tmp_not_the_root_directory(binary):
    """TMPDIR set but empty unpacked into /staticx-XXXXXX (and as root, it could)."""
    before = set(pathlib.Path("/").glob("staticx-*"))
    group, port = serving(binary, "")  # type: ignore[arg-type] (TMPDIR="")
    try:
        assert set(pathlib.Path("/").glob("staticx-*")) == before
        own = [path for path in pathlib.Path("/tmp").glob("staticx-*") if path.is_dir()]
        assert own, "not in /tmp either"
    finally:
        assert group.stop() == 0


def test_a_full_tmp_does_not_touch_uploads_or_the_servers_health(binary, tmpfs):
    """Bodies past 512 KB and answers past 1 MiB waited in temp files: on a full 48 MiB
    tmpfs, 60 concurrent 1 MiB uploads got resets, truncated 200s and 60 s hangs, the
    access log said 200 for each, and every connection logged a traceback. Nothing but
    the unpack goes to $TMPDIR now."""
    tmpdir = tmpfs("48m")
    server, port = serving(binary, tmpdir)  # its unpack first
    free_mb = os.statvfs(tmpdir).f_bavail * os.statvfs(tmpdir).f_frsize // MIB
    # then all but 4 MiB taken: room for what Python's tempfile checks before it picks a
    # folder (a full one it passes over, for /tmp), none for 60 bodies and answers
    subprocess.run(["dd", "if=/dev/zero", f"of={tmpdir}/filler", "bs=1M", f"count={free_mb - 4}"],
                   capture_output=True, timeout=60, check=True)
    body = os.urandom(1 << 20)
    results = []
    guard = threading.Lock()

    def upload():
        payload = (b"POST /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                   b"Content-Length: %d\r\n\r\n" % len(body)) + body
        reply, closed = exchange(port, payload, timeout=30)
        with guard:
            results.append((statuses(reply)[:1], reply.endswith(body), closed))

    at_once(upload, 60)
    assert http_status(f"http://127.0.0.1:{port}/healthz") == 200
    assert server.stop() == 0
    assert results == [([200], True, True)] * 60
    assert '"level":"error"' not in server.err and "No space" not in server.err, server.err


TAIL = ("hello.pkg", "_internal/base_library.zip")  # spec/staticx_onedir.py


def test_the_modules_are_read_in_place_not_copied_into_tmpdir(binary, tmp_path):
    """PyInstaller's PKG (every module) and base_library.zip stay in the executable:
    each is a link to an fd that the bootloader and hello hold on the executable."""
    group, _ = serving(binary, tmp_path)
    try:
        (bundle,) = [tmp_path / name for name in unpacks(tmp_path)]
        own = os.stat(binary)
        for rel in TAIL:
            target = os.readlink(bundle / rel)
            assert target.startswith("/proc/self/fd/"), (rel, target)
            holders = []
            for pid in descendants(group.process.pid):
                with contextlib.suppress(OSError):
                    held = os.stat(f"/proc/{pid}/fd/{target.rsplit('/', 1)[1]}")
                    if (held.st_dev, held.st_ino) == (own.st_dev, own.st_ino):
                        holders.append(pid)
            assert len(holders) >= 2, f"{rel}: the bootloader and hello should hold {target}"
        copied = sum(path.stat().st_size for path in bundle.rglob("*")
                     if path.is_file() and not path.is_symlink())
        assert copied < binary.stat().st_size - 3 * MIB, "the tail was copied"
    finally:
        assert group.stop() == 0, group.err


def test_a_server_whose_executable_is_deleted_still_imports_what_it_needs_later(binary, tmp_path):
    """The modules are read through the fd, not the path: a release removed (or
    replaced) under a running server does not break its next import."""
    copy = tmp_path / "hello"
    copy.write_bytes(binary.read_bytes())
    copy.chmod(0o755)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    group, port = serving(copy, tmpdir)
    try:
        copy.unlink()
        # A path with an empty segment: werkzeug redirects it (308), and the redirect
        # imports werkzeug.test, which nothing imported before (the runtime hook
        # deferred it), from the PKG, read through the fd.
        reply, _ = exchange(port, b"GET /status//200 HTTP/1.1\r\nHost: x\r\n"
                                  b"Connection: close\r\n\r\n")
        assert statuses(reply) == [308], reply[:300]
    finally:
        assert group.stop() == 0, group.err


def test_a_folder_a_start_left_before_marking_it_is_removed_by_the_next(binary, tmp_path):
    """Killed between mkdtemp() and its marker (seen under emulation), a start leaves
    an empty, unmarked folder: the next start removes it once it is 10 s old, and
    never a fresh one (another start may be making it)."""
    stale, fresh = tmp_path / "staticx-early1", tmp_path / "staticx-fresh1"
    stale.mkdir()
    fresh.mkdir()
    old = time.time() - 60
    os.utime(stale, (old, old))
    result = subprocess.run([str(binary), "version"], env={**os.environ, "TMPDIR": str(tmp_path)},
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert unpacks(tmp_path) == ["staticx-fresh1"]
