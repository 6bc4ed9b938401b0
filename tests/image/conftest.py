"""Session fixtures of the image suite: an engine, a builder base, one built image.

- `docker`: the session's engine (tests/conftest.py's `docker_engine`).
- `base_image`: $PYTHON_IMAGE if given (e.g. the real python:3.11-slim-bookworm on
  a machine that can pull), else the local stand-in from tests/infra/base-image
  (cached in the engine by tag).
- `image`: build/image from source (HELLO_BINARY_FROM=source) run once per session
  with --no-cache, so it is a real build in the builder that test_binary_route
  compares with; its `docker save` tar too. Built from `source_tree`, a copy of the
  checkout taken once per session.
- `run_container`: `docker run -d` with a port on 127.0.0.1, removed by id afterwards.

Without root and without a reachable engine the suite skips (fails under
HELLO_REQUIRE_ALL=1, as in .ci/run).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import pathlib
import shutil
import subprocess
import tarfile
import time

import pytest

from hello import __version__
from tests.conftest import ROOT, Docker, free_port, http_status, require, wait_until

BASE_IMAGE = ROOT / "tests" / "infra" / "base-image"
TEST_SOURCE = "https://example.invalid/hello.git"


@dataclasses.dataclass
class BuiltImage:
    ref: str            # hello:<version>
    id: str
    version: str
    commit: str
    source_date_epoch: str
    tar: pathlib.Path   # docker save output
    build_seconds: float


def build_identity() -> tuple[str, str]:
    """(commit, SOURCE_DATE_EPOCH) to build with: HEAD and its date, or the env's."""
    commit = os.environ.get("HELLO_COMMIT") or _git("rev-parse", "HEAD")
    epoch = os.environ.get("SOURCE_DATE_EPOCH") or (
        _git("log", "-1", "--format=%ct", commit) if commit else None)
    require(bool(commit and epoch),
            "no git commit to build (git rev-parse HEAD failed); set HELLO_COMMIT "
            "and SOURCE_DATE_EPOCH")
    return commit, epoch


def _git(*args: str) -> str | None:
    result = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                            check=False, timeout=30)
    if result.returncode != 0:
        return None
    return result.stdout.strip() or None


def snapshot(into: pathlib.Path) -> pathlib.Path:
    """A copy of the checkout to build from, so that both builds of the
    reproducibility check see the same files even while someone edits the tree."""
    shutil.copytree(ROOT, into, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "dist", ".pyinstaller", ".pyinstaller-arm64", "test-results", ".pytest_cache",
        ".ruff_cache", "__pycache__", "*.egg-info", ".bench", ".schemathesis"))
    return into


def build_image(docker: Docker, base: str, name: str, tar: pathlib.Path | None,
                commit: str, epoch: str, tree: pathlib.Path,
                binary_from: str = "source") -> subprocess.CompletedProcess:
    env = {**docker.env, "PYTHON_IMAGE": base, "IMAGE_NAME": name, "HELLO_COMMIT": commit,
           "SOURCE_DATE_EPOCH": epoch, "HELLO_SOURCE": TEST_SOURCE,
           "BUILD_ARGS": "--no-cache", "HELLO_BINARY_FROM": binary_from}
    if tar:
        env["IMAGE_TAR"] = str(tar)
    return subprocess.run([str(tree / "build" / "image")], check=False, env=env,
                          capture_output=True, text=True, timeout=900, cwd=tree)


def hello_sha256(docker: Docker, ref: str) -> str:
    """sha256 of /hello in an image, read with `docker cp` (no shell needed), by this
    test's own code rather than build/verify-image-binary's."""
    cid = docker.out("create", ref)
    try:
        stream = docker.run("cp", f"{cid}:/hello", "-", text=False).stdout
    finally:
        docker.run("rm", "-f", cid, check=False)
    with tarfile.open(fileobj=io.BytesIO(stream)) as archive:
        return hashlib.sha256(archive.extractfile("hello").read()).hexdigest()


@pytest.fixture(scope="session")
def docker(docker_engine) -> Docker:
    return docker_engine


@pytest.fixture(scope="session")
def base_image(docker) -> str:
    if os.environ.get("PYTHON_IMAGE"):
        return os.environ["PYTHON_IMAGE"]
    made = subprocess.run([str(BASE_IMAGE)], check=False, env=docker.env, capture_output=True,
                          text=True, timeout=900)
    require(made.returncode == 0, f"tests/infra/base-image failed: {made.stderr[-3000:]}")
    return made.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def source_tree(tmp_path_factory) -> pathlib.Path:
    return snapshot(tmp_path_factory.mktemp("context") / "hello")


@pytest.fixture(scope="session")
def image(docker, base_image, source_tree, tmp_path_factory) -> BuiltImage:
    commit, epoch = build_identity()
    tar = tmp_path_factory.mktemp("image") / "hello-image.tar"
    began = time.monotonic()
    built = build_image(docker, base_image, "hello", tar, commit, epoch, source_tree)
    took = time.monotonic() - began
    assert built.returncode == 0, f"build/image failed:\n{built.stderr[-5000:]}"
    ref = f"hello:{__version__}"
    return BuiltImage(ref=ref, id=built.stdout.strip().splitlines()[-1], version=__version__,
                      commit=commit, source_date_epoch=epoch, tar=tar, build_seconds=took)


@dataclasses.dataclass
class Container:
    docker: Docker
    id: str
    port: int | None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def state(self) -> dict:
        return self.docker.inspect(self.id)["State"]

    def logs(self) -> str:
        result = self.docker.run("logs", self.id, check=False)
        return result.stdout + result.stderr

    def wait_serving(self, path: str = "/healthz", timeout: float = 30.0) -> Container:
        def serving():
            status = http_status(self.url + path, timeout=0.5)
            if status == 200:
                return True
            if not self.state()["Running"]:
                raise AssertionError(f"container exited {self.state()['ExitCode']}: {self.logs()}")
            return False
        wait_until(serving, timeout, interval=0.05, what=f"{self.url}{path}")
        return self


@pytest.fixture
def run_container(docker, image):
    """Start the image (`docker run -d`), publishing container_port on 127.0.0.1."""
    started: list[str] = []

    def start(*run_args: str, container_port: int | None = 8080,
              image_ref: str | None = None, command: tuple = ()) -> Container:
        port = free_port() if container_port else None
        publish = ["-p", f"127.0.0.1:{port}:{container_port}"] if container_port else []
        cid = docker.out("run", "-d", *publish, *run_args, image_ref or image.ref, *command)
        started.append(cid)
        return Container(docker, cid, port)

    yield start
    for cid in started:
        docker.run("rm", "-f", cid, check=False)
