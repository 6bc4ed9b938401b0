"""Session fixtures of the swarm suite: three real dockerds in network namespaces
(tests/infra/swarm) with a local registry, the image built from this checkout, and
"releases" made from it.

- `swarm`: the nodes' Docker hosts, started once per session and stopped by PID
  at the end (its state under /var/tmp/hello-swarm-test).
- `releases`: image IDs in the session's engine. v1 is build/image's image; the
  others are one-line Dockerfiles FROM it, so /hello is the same verified binary:
  wrong-port runs `serve --port 8081` (the trap: tasks share the port, so the old
  one answers a naive probe), never-ready listens only on 127.0.0.2 (alive, never
  reachable on the service's address).
- `layouts`: what CI pushes, build/image-index's OCI layout (linux/amd64 and
  linux/arm64, from the release binaries), and v2, the same layout with
  HELLO_MESSAGE set in each image (a release a client can tell apart).
- `login_registry`: Debian's docker-registry on a loopback port that wants a login
  (htpasswd), one per test, stopped by PID.
- `pollers`: one HTTP client per node, in the swarm's switch namespace, each polling
  every 20 ms on a new connection; stopped by PID, each reports its counts.

Needs root (namespaces, dockerd): skips without it, fails under HELLO_REQUIRE_ALL=1.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import warnings

import pytest

from hello import __version__
from tests.conftest import ROOT, Docker, free_port, release_binary, require, wait_until
from tests.swarm import layout

SWARM = ROOT / "tests" / "infra" / "swarm"
DEPLOY = ROOT / "deploy" / "swarm" / "deploy"
PUSH = ROOT / "build" / "ci-push-image"
INDEX = ROOT / "build" / "image-index"
BASE_IMAGE = ROOT / "tests" / "infra" / "base-image"
POLLER = pathlib.Path(__file__).with_name("poller.py")
STATE = os.environ.get("HELLO_SWARM_TEST_DIR", "/var/tmp/hello-swarm-test")
# Clear of the droplet suite (10.231.x) and the shared engines (172.29.77-78.x).
SUBNET = os.environ.get("HELLO_SWARM_TEST_SUBNET", "10.232.1")
NAME = os.environ.get("HELLO_SWARM_TEST_NAME", "hswt")


@dataclasses.dataclass
class Swarm:
    nodes: list[str]          # Docker hosts, the manager first
    registry: str             # host:port of the local registry
    name: str                 # namespace prefix (NAME-n1.., NAME-sw)
    subnet: str
    state: str

    @property
    def manager(self) -> str:
        return self.nodes[0]

    def address(self, k: int) -> str:
        """Node k's address (1-based)."""
        return f"{self.subnet}.{10 + k}"

    def docker(self, k: int) -> Docker:
        return Docker(_client(), self.nodes[k - 1])

    def deploy(self, image: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run([str(DEPLOY), self.manager, "--image", image, *args], check=False,
                              capture_output=True, text=True, timeout=timeout)

    def load_args(self) -> list[str]:
        return [arg for node in self.nodes for arg in ("--load", node)]


def _client() -> str:
    return "/usr/bin/docker" if os.access("/usr/bin/docker", os.X_OK) else shutil.which("docker") or "docker"


def _can_run() -> bool:
    return os.geteuid() == 0 and all(shutil.which(tool) for tool in ("ip", "unshare"))


@pytest.fixture(scope="session")
def swarm():
    require(_can_run(), "the swarm suite needs root, ip (iproute2) and unshare (util-linux)")
    args = ["--dir", STATE, "--subnet", SUBNET, "--name", NAME, "--registry"]
    # A new swarm every session: what a killed run left behind goes first.
    subprocess.run([str(SWARM), "stop", "--dir", STATE, "--purge"], check=False, capture_output=True,
                   timeout=300)
    started = subprocess.run([str(SWARM), "start", *args], check=False, capture_output=True,
                             text=True, timeout=600)
    try:
        require(started.returncode == 0, f"tests/infra/swarm start failed: {started.stderr[-2000:]}")
        lines = dict(line.split("=", 1) for line in started.stdout.split())
        nodes = [lines[key] for key in sorted(lines) if key.startswith("NODE_")]
        yield Swarm(nodes, lines["REGISTRY"], NAME, SUBNET, STATE)
    finally:
        subprocess.run([str(SWARM), "stop", "--dir", STATE, "--purge"], check=False,
                       capture_output=True, timeout=300)


@dataclasses.dataclass
class Releases:
    v1: str
    wrong_port: str
    never_ready: str


def _derive(docker: Docker, base: str, lines: str) -> str:
    dockerfile = f"FROM {base}\n{lines}\n"
    result = subprocess.run([docker.client, "build", "-q", "-"], input=dockerfile, check=False,
                            capture_output=True, text=True, timeout=300, env=docker.env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def releases(docker_engine) -> Releases:
    """The image of this checkout (build/image, layers cached), and releases FROM it."""
    base = subprocess.run([str(BASE_IMAGE)], check=False, capture_output=True, text=True,
                          timeout=900, env=docker_engine.env)
    require(base.returncode == 0, f"tests/infra/base-image failed: {base.stderr[-2000:]}")
    built = subprocess.run([str(ROOT / "build" / "image")], check=False, capture_output=True,
                           text=True, timeout=900, cwd=ROOT,
                           env={**docker_engine.env, "PYTHON_IMAGE": base.stdout.strip(),
                                "IMAGE_NAME": "hello-swarm-test"})
    assert built.returncode == 0, built.stderr[-3000:]
    v1 = built.stdout.strip().splitlines()[-1]
    assert v1.startswith("sha256:"), built.stdout
    return Releases(
        v1=v1,
        wrong_port=_derive(docker_engine, v1, 'CMD ["serve", "--port", "8081"]'),
        never_ready=_derive(docker_engine, v1, "ENV HELLO_HOST=127.0.0.2"),
    )


@dataclasses.dataclass
class Layouts:
    release: pathlib.Path     # build/image-index's dist/hello-oci.tar
    release_digest: str       # the index digest it printed
    v2: pathlib.Path          # the same with HELLO_MESSAGE="hello v2" in each image
    v2_digest: str


@pytest.fixture(scope="session")
def layouts(tmp_path_factory) -> Layouts:
    """build/image-index over the release binaries of both platforms, as CI's
    image-index job runs it (a folder of their own: dist/ is left alone)."""
    folder = tmp_path_factory.mktemp("index")
    for platform in ("amd64", "arm64"):
        shutil.copy(release_binary(platform), folder / f"hello-{__version__}-linux-{platform}")  # 0755 too
    made = subprocess.run([str(INDEX), str(folder)], check=False, capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert made.returncode == 0, made.stderr
    release = folder / "hello-oci.tar"
    v2 = folder / "hello-oci-v2.tar"
    return Layouts(release, made.stdout.strip(), v2, layout.with_env(release, v2, "HELLO_MESSAGE=hello v2"))


def push_env() -> dict:
    """The environment build/ci-push-image gets here: never a login of the caller's."""
    return {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_REGISTRY_")}


@dataclasses.dataclass
class LoginRegistry:
    address: str              # 127.0.0.1:PORT
    user: str
    token: str


def _bcrypt(secret: str) -> str:
    with warnings.catch_warnings():  # crypt: deprecated in 3.11, and the one bcrypt in the stdlib
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt
    hashed = crypt.crypt(secret, crypt.mksalt(crypt.METHOD_BLOWFISH))  # noqa: S324 (htpasswd wants bcrypt)
    require(bool(hashed) and hashed.startswith("$2"), "this libcrypt makes no bcrypt hash (htpasswd)")
    return hashed


@pytest.fixture
def login_registry(tmp_path):
    require(shutil.which("docker-registry") is not None,
            "docker-registry is not installed (apt-get install docker-registry)")
    port = free_port()
    registry = LoginRegistry(f"127.0.0.1:{port}", "ci", "token-" + os.urandom(8).hex())
    (tmp_path / "htpasswd").write_text(f"{registry.user}:{_bcrypt(registry.token)}\n")
    (tmp_path / "registry.yml").write_text(
        "version: 0.1\nlog: {level: warn}\n"
        f"storage: {{filesystem: {{rootdirectory: {tmp_path / 'data'}}}}}\n"
        f"http: {{addr: '{registry.address}'}}\n"
        f"auth: {{htpasswd: {{realm: hello-test, path: {tmp_path / 'htpasswd'}}}}}\n")
    with (tmp_path / "registry.log").open("w") as log:
        process = subprocess.Popen(["docker-registry", "serve", str(tmp_path / "registry.yml")],
                                   stdin=subprocess.DEVNULL, stdout=log, stderr=log)

    def listening():
        assert process.poll() is None, (tmp_path / "registry.log").read_text()
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", port)) == 0
    try:
        wait_until(listening, 20, 0.05, f"docker-registry on {registry.address}")
        yield registry
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


class Pollers:
    """One poller per node address, in the switch namespace; ended by PID."""

    def __init__(self, swarm: Swarm, interval: float = 0.02):
        self.processes = [
            subprocess.Popen(["ip", "netns", "exec", f"{swarm.name}-sw", sys.executable, str(POLLER),
                              "--host", swarm.address(k), "--interval", str(interval)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for k in range(1, len(swarm.nodes) + 1)]

    def stop(self) -> list[dict]:
        reports = []
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            out, err = process.communicate(timeout=30)
            assert process.returncode == 0, err
            reports.append(json.loads(out))
        return reports


@pytest.fixture
def pollers(swarm):
    started: list[Pollers] = []

    def start() -> Pollers:
        group = Pollers(swarm)
        started.append(group)
        return group

    yield start
    for group in started:
        for process in group.processes:
            if process.poll() is None:
                process.kill()
                process.communicate(timeout=10)
