"""Fixtures and helpers every suite shares.

`require(ok, reason)` is how a suite says it needs a component (an engine, sshd,
dist/hello): on a laptop without it the test skips with the reason printed; under
HELLO_REQUIRE_ALL=1 (what .ci/run sets) the skip becomes a failure.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

from hello.app import create_app
from hello.config import load

ROOT = pathlib.Path(__file__).resolve().parent.parent
REQUIRE_ALL = os.environ.get("HELLO_REQUIRE_ALL") == "1"
DOCKERD = ROOT / "tests" / "infra" / "dockerd"
MUTATION_HOOKS = ROOT / "tests" / "mutation"
MUTATION_HITS = ROOT / ".mutmut-hits"


# Per-test timeouts (pytest-timeout) for suites whose first test may build an image
# or a binary in a session fixture (build/image and build/binary run with 900-1800 s
# subprocess timeouts); every other test gets setup.cfg's 300 s.
# Time limits in the black-box suites are written for native speed. Through qemu's
# emulation (make verify-binary-arm64 on x86_64 sets it) they are multiplied by this:
# what must hold still holds, only later.
TIME_SCALE = float(os.environ.get("HELLO_TIME_SCALE", "1"))
SUITE_TIMEOUTS = {"binary": 2400, "image": 2400, "deploy": 2400}


def pytest_collection_modifyitems(items):
    under_mutation = "MUTANT_UNDER_TEST" in os.environ  # set by mutmut and tests/mutation/run.py
    for item in items:
        if under_mutation and item.get_closest_marker("load"):
            item.add_marker(pytest.mark.skip(reason="a load test: not run under mutation testing"))
        suite = item.path.parent.name
        if suite in SUITE_TIMEOUTS and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(SUITE_TIMEOUTS[suite]))


def require(ok: bool, reason: str) -> None:
    """Skip when a component is missing, or fail under HELLO_REQUIRE_ALL=1."""
    if ok:
        return
    if REQUIRE_ALL:
        pytest.fail(f"HELLO_REQUIRE_ALL=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def wait_until(predicate, timeout: float, interval: float = 0.02, what: str = "condition"):
    """Poll predicate() until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def at_once(target, count: int, timeout: float = 60.0) -> None:
    """Run target in count threads at once and wait for them all (at most timeout each)."""
    threads = [threading.Thread(target=target) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)


def git_head() -> str | None:
    """The commit of this checkout (git rev-parse HEAD), or None outside one."""
    try:
        result = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"],
                                capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def release_binary(platform: str) -> pathlib.Path:
    """dist/hello-<version>-linux-<platform>, as build/binary names it (the arm64 one is
    built here under emulation: make binary-arm64), or $HELLO_<PLATFORM>_BINARY."""
    from hello import __version__

    named = os.environ.get(f"HELLO_{platform.upper()}_BINARY")
    path = pathlib.Path(named) if named else ROOT / "dist" / f"hello-{__version__}-linux-{platform}"
    require(path.is_file(), f"{path} is not built (make binary-{platform} for arm64, make binary for amd64)")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def full_listen_backlog():
    """A loopback port whose listen backlog is full: a new connect waits (Linux drops
    its SYN), as on a server too busy to accept. Yields the port."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=2):  # takes the one slot
            yield port


def http_get(url: str, timeout: float = 5.0, headers: dict | None = None):
    """(status, headers, body) for a GET; HTTP errors are answers, not exceptions."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def http_status(url: str, timeout: float = 1.0) -> int | None:
    try:
        return http_get(url, timeout=timeout)[0]
    except (OSError, ValueError):
        return None


class Service:
    """A `hello serve`-like command run as a child process, ended by its PID."""

    def __init__(self, argv: list[str], port: int, env: dict | None = None, **popen):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        popen.setdefault("stdout", subprocess.PIPE)
        popen.setdefault("stderr", subprocess.PIPE)
        self.process = subprocess.Popen(
            argv, env={**os.environ, **(env or {})}, text=True, **popen)

    def wait_healthy(self, timeout: float = 30.0) -> Service:
        def healthy():
            if self.process.poll() is not None:
                raise AssertionError(f"exited {self.process.returncode}: {self.process.stderr.read()}")
            return http_status(self.url + "/healthz", timeout=0.5) == 200
        wait_until(healthy, timeout, what=f"{self.url}/healthz")
        return self

    def stop(self, timeout: float = 15.0) -> tuple[int, str, str]:
        """SIGTERM (unless already exited), then collect exit code and output."""
        if self.process.poll() is None:
            self.process.terminate()
        return self.wait(timeout)

    def wait(self, timeout: float = 30.0) -> tuple[int, str, str]:
        """Wait for exit without signalling; killed if it outlives timeout."""
        try:
            out, err = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            out, err = self.process.communicate(timeout=10)
        return self.process.returncode, out, err


def child_env(env: dict | None = None) -> dict:
    """What a child `python -m hello` from this checkout needs: PYTHONPATH. Under
    `make mutation` (mutmut sets MUTANT_UNDER_TEST) also the mutant to activate and
    the start-up hook that reports which functions the child ran (tests/mutation)."""
    extra = {"PYTHONPATH": str(ROOT)}
    mutant = os.environ.get("MUTANT_UNDER_TEST")
    if mutant is not None:
        MUTATION_HITS.mkdir(exist_ok=True)
        extra = {"PYTHONPATH": f"{ROOT}{os.pathsep}{MUTATION_HOOKS}", "MUTANT_UNDER_TEST": mutant,
                 "HELLO_MUTMUT_HITS": str(MUTATION_HITS)}
    return {**extra, **(env or {})}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item):
    """Under mutmut's coverage pass, credit this test with what its children ran
    (after fixture teardown, so servers stopped there have written their hits)."""
    yield
    if os.environ.get("MUTANT_UNDER_TEST") != "stats" or not MUTATION_HITS.is_dir():
        return
    from mutmut.state import state

    for hits in MUTATION_HITS.glob("*.hits"):
        for name in hits.read_text(encoding="utf-8").split():
            state().tests_by_mangled_function_name[name].add(item.nodeid.removeprefix("mutants/"))
        hits.unlink()


def python_hello(*args: str) -> list[str]:
    """The unfrozen service, the way `python -m hello` runs it from this checkout."""
    return [sys.executable, "-m", "hello", *args]


@pytest.fixture
def settings():
    return load({}, {})


@pytest.fixture
def app(settings):
    return create_app(settings)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def serve_unfrozen():
    """Start `python -m hello serve` on a free port; stopped by PID afterwards."""
    started: list[Service] = []

    def start(*args: str, env: dict | None = None) -> Service:
        port = free_port()
        service = Service(python_hello("serve", "--host", "127.0.0.1", "--port", str(port), *args),
                          port, env=child_env(env), cwd=ROOT)
        started.append(service)
        return service.wait_healthy()

    yield start
    for service in started:
        service.stop()


def docker_client() -> str | None:
    """Debian's 20.10 client when present: it builds with BuildKit without buildx."""
    if os.access("/usr/bin/docker", os.X_OK):
        return "/usr/bin/docker"
    return shutil.which("docker")


@dataclasses.dataclass
class Docker:
    """The docker CLI bound to one engine."""

    client: str
    host: str

    @property
    def env(self) -> dict:
        return {**os.environ, "DOCKER_HOST": self.host}

    def run(self, *args: str, check: bool = True, timeout: float = 120,
            text: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([self.client, *args], check=False, env=self.env, capture_output=True,
                                text=text, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} exited {result.returncode}: "
                                 f"{result.stderr}")
        return result

    def out(self, *args: str, **kwargs) -> str:
        return self.run(*args, **kwargs).stdout.strip()

    def inspect(self, ref: str) -> dict:
        return json.loads(self.out("inspect", ref))[0]

    def answers(self) -> bool:
        try:
            return self.run("version", "--format", "{{.Server.Version}}",
                            check=False, timeout=10).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return False


@pytest.fixture(scope="session")
def docker_engine():
    """The one docker engine every suite shares: DOCKER_HOST if it answers (.ci/run
    starts one), else tests/infra/dockerd's default one, started here if needed and
    then stopped by PID at the end of the session."""
    client = docker_client()
    require(client is not None or os.geteuid() == 0,
            "no docker client, and not root to install one (tests/infra/dockerd)")
    if client and os.environ.get("DOCKER_HOST"):
        given = Docker(client, os.environ["DOCKER_HOST"])
        if given.answers():
            yield given
            return
    status = subprocess.run([str(DOCKERD), "status"], capture_output=True, text=True,
                            check=False, timeout=60)
    if status.returncode == 0:
        yield Docker(docker_client(), status.stdout.strip())
        return
    require(os.geteuid() == 0, "no docker engine answers, and starting one "
            "(tests/infra/dockerd) needs root")
    started = subprocess.run([str(DOCKERD), "start"], check=False, capture_output=True, text=True,
                             timeout=600)
    require(started.returncode == 0, f"tests/infra/dockerd start failed: {started.stderr}")
    try:
        yield Docker(docker_client(), started.stdout.strip())
    finally:
        subprocess.run([str(DOCKERD), "stop"], capture_output=True, timeout=120, check=False)
