"""build/image-smoke through a real engine, with stand-in images.

The smoke script is what build-image runs against a remote engine; here it runs
against a private dockerd (tests/infra/dockerd, its own state dir, bridge and
subnet so it never meets the image suite's engine), started and stopped by PID.
The images are stand-ins (a static busybox and a /hello script that serves,
answers `healthcheck` and drains on SIGTERM, or fails one of them), so this suite
tests the script, not the product: tests/image tests the real image.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import textwrap
import uuid

import pytest

from tests.conftest import ROOT, require

SMOKE = ROOT / "build" / "image-smoke"

GOOD = """\
    case "${1:-serve}" in
        healthcheck) [ -e /tmp/up ] ;;
        serve) trap 'exit 0' TERM; touch /tmp/up; while :; do sleep 0.1; done ;;
    esac
"""
NEVER_HEALTHY = GOOD.replace("[ -e /tmp/up ]", "exit 1")
BAD_DRAIN = GOOD.replace("trap 'exit 0' TERM", "trap 'exit 3' TERM")
DIES = GOOD.replace("trap 'exit 0' TERM; touch /tmp/up; while :; do sleep 0.1; done", "exit 4")


@pytest.fixture(scope="module")
def engine(docker_engine):
    """The session's engine (tests/conftest.py), as an environment for build/image-smoke."""
    busybox = shutil.which("busybox")
    require(busybox is not None and "statically linked" in subprocess.run(
        ["file", "-L", busybox], capture_output=True, text=True, check=False,
        timeout=30).stdout,
        "a static busybox is needed for the stand-in images (apt-get install busybox-static)")
    return docker_engine.env


def stand_in(env, tmp_path, script: str) -> str:
    """Import a two-file image: a static busybox and /hello running `script`."""
    root = tmp_path / f"root-{uuid.uuid4().hex[:8]}"
    (root / "bin").mkdir(parents=True)
    (root / "tmp").mkdir()
    (root / "tmp").chmod(0o1777)  # the engine copies it up under --tmpfs /tmp; mkdir's mode obeys umask
    shutil.copy(shutil.which("busybox"), root / "bin" / "busybox")
    for applet in ("sh", "touch", "sleep"):
        os.symlink("busybox", root / "bin" / applet)
    hello = root / "hello"
    hello.write_text("#!/bin/busybox sh\nexport PATH=/bin\n" + textwrap.dedent(script))
    hello.chmod(0o755)
    archive = tmp_path / "root.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(root, arcname=".")
    tag = f"hello-smoke-standin:{uuid.uuid4().hex[:12]}"
    subprocess.run(["docker", "import", "-c", 'ENTRYPOINT ["/hello"]', "-c", 'CMD ["serve"]',
                    "-c", "USER 65534:65534", str(archive), tag],
                   env=env, check=True, capture_output=True, timeout=120)
    return tag


def smoke(env, tag):
    return subprocess.run([str(SMOKE), tag], env={**env, "SMOKE_TIMEOUT": "3"},
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def image(engine, tmp_path):
    tags = []

    def make(script):
        tags.append(stand_in(engine, tmp_path, script))
        return tags[-1]
    yield make
    for tag in tags:
        subprocess.run(["docker", "rmi", "-f", tag], env=engine, capture_output=True, check=False,
                       timeout=120)


def leftover_containers(env):
    out = subprocess.run(["docker", "ps", "-aq", "--filter", "name=hello-smoke-"], env=env,
                         capture_output=True, text=True, check=True, timeout=60).stdout
    return out.split()


def test_a_healthy_image_that_drains_passes(engine, image):
    result = smoke(engine, image(GOOD))
    assert result.returncode == 0, result.stderr
    assert "passed its healthcheck and stopped cleanly" in result.stderr
    assert leftover_containers(engine) == []


@pytest.mark.parametrize("script, reason", [
    (NEVER_HEALTHY, "was not healthy after 3s"),
    (BAD_DRAIN, "exited with code 3 after SIGTERM, expected 0"),
    (DIES, "exited before it was healthy"),
])
def test_a_broken_image_fails_with_the_reason(engine, image, script, reason):
    result = smoke(engine, image(script))
    assert result.returncode == 1
    assert reason in result.stderr
    assert leftover_containers(engine) == []
