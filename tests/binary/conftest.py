"""Fixtures for the black-box suite of the one static executable (dist/hello).

The binary is $HELLO_BINARY, default dist/hello. When that default is missing it is
built once per session with build/binary; a binary named by $HELLO_BINARY is
never built, only required. Every process is started here and ended by its PID.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import signal
import subprocess

import pytest

from tests.conftest import ROOT, Service, free_port, git_head, require, wait_until

DEFAULT_BINARY = ROOT / "dist" / "hello"


@pytest.fixture(scope="session")
def binary() -> pathlib.Path:
    named = os.environ.get("HELLO_BINARY")
    path = pathlib.Path(named) if named else DEFAULT_BINARY
    if not path.exists() and not named:
        result = subprocess.run([str(ROOT / "build" / "binary")], cwd=ROOT,
                                capture_output=True, text=True, timeout=1800, check=False)
        tail = " | ".join(result.stderr.strip().splitlines()[-3:])
        require(result.returncode == 0, f"build/binary failed: {tail}")
    require(path.is_file() and os.access(path, os.X_OK), f"{path} is not built (make binary)")
    return path


@pytest.fixture(scope="session")
def expected_commit() -> str | None:
    """The commit dist/hello should report: $HELLO_COMMIT, else git HEAD, else unknown."""
    return os.environ.get("HELLO_COMMIT") or git_head()


def descendants(pid: int) -> list[int]:
    """pid and everything below it, read from /proc (threads' children included)."""
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        for task in pathlib.Path(f"/proc/{current}/task").glob("*"):
            try:
                todo.extend(int(c) for c in (task / "children").read_text().split())
            except OSError:
                pass
    return tree


def alive(pid: int) -> bool:
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class Running(Service):
    """A started binary: the outermost process, its port and its private temp dir."""

    def __init__(self, argv: list[str], port: int, tmpdir: pathlib.Path | None,
                 env: dict | None = None):
        self.tmpdir = tmpdir
        env = {**(env or {}), **({"TMPDIR": str(tmpdir)} if tmpdir is not None else {})}
        super().__init__(argv, port, env=env)

    @property
    def pid(self) -> int:
        return self.process.pid

    def signal(self, signum: int, pid: int | None = None) -> None:
        os.kill(pid or self.process.pid, signum)

    def end(self) -> None:
        """Last resort after a failed test: SIGKILL what is left, by PID, bottom up."""
        if self.process.poll() is None:
            for pid in reversed(descendants(self.process.pid)):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.process.communicate(timeout=10)


def root_tools_ok() -> tuple[bool, str]:
    missing = [tool for tool in ("unshare", "chroot", "mount") if not shutil.which(tool)]
    if missing:
        return False, f"needs {', '.join(missing)}"
    if os.geteuid() != 0:
        return False, "needs root (unshare --pid --mount, chroot)"
    return True, ""


@pytest.fixture
def start_binary(binary, tmp_path):
    """start(args, pid1=False, root=None) -> Running, serving on a free loopback port.

    pid1=True runs it as PID 1 of a new PID namespace with its own /proc
    (unshare --pid --fork --mount-proc);
    root=DIR runs it in that empty root as uid 65534 (which implies pid1).
    """
    started: list[Running] = []

    def start(*args: str, pid1: bool = False, root: pathlib.Path | None = None) -> Running:
        port = free_port()
        serve = ["serve", "--host", "127.0.0.1", "--port", str(port), *args]
        tmpdir = None
        if root is not None:
            argv = in_root(root, *serve)
        else:
            tmpdir = tmp_path / f"tmp-{len(started)}"
            tmpdir.mkdir()
            argv = [str(binary), *serve]
            if pid1:
                # Its own /proc, as a container gives PID 1: under qemu's binfmt a
                # /proc of the host's PIDs names qemu as /proc/self/exe's owner.
                argv = ["unshare", "--pid", "--fork", "--mount-proc", *argv]
        running = Running(argv, port, tmpdir)
        started.append(running)
        return running

    yield start
    for running in started:
        running.end()


def in_root(root: pathlib.Path, *args: str) -> list[str]:
    """argv running /hello ARGS in root: new PID and mount namespaces, proc, uid 65534."""
    script = 'mount -t proc proc "$0/proc" && exec chroot --userspec=65534:65534 "$0" /hello "$@"'
    return ["unshare", "--pid", "--fork", "--mount", "sh", "-c", script, str(root), *args]


@pytest.fixture
def empty_root(binary, tmp_path):
    """make(tmp=True) -> a root holding only /hello, /proc and (if tmp) /tmp with mode 1777."""

    def make(tmp: bool = True) -> pathlib.Path:
        ok, why = root_tools_ok()
        require(ok, why)
        root = tmp_path / "root"
        root.mkdir(mode=0o755)
        root.chmod(0o755)
        shutil.copy2(binary, root / "hello")
        (root / "proc").mkdir()
        if tmp:
            (root / "tmp").mkdir()
            (root / "tmp").chmod(0o1777)
        return root

    return make


def pid1_of(running: Running, timeout: float = 10.0) -> int:
    """The PID (as seen here) of the process unshare --fork started: PID 1 inside."""
    def child():
        kids = descendants(running.pid)[1:]
        return kids[0] if kids else None
    return wait_until(child, timeout, what="the namespace's PID 1")


COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
