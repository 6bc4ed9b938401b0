"""build/image-index: one OCI image index for linux/amd64 and linux/arm64, written
without an engine or registry, then loaded per platform with skopeo into a real
engine and run: the arm64 image under qemu's binfmt emulation.

Needs both release binaries (dist/hello-<version>-linux-amd64 and -arm64: make
binary, make binary-arm64), skopeo, an engine, and binfmt for aarch64.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import shutil
import subprocess

import pytest

from hello import __version__
from tests.conftest import ROOT, http_status, release_binary, require, wait_until
from tests.image.conftest import hello_sha256

INDEX = ROOT / "build" / "image-index"
PLATFORMS = ("amd64", "arm64")


def build_index(into: pathlib.Path, env: dict | None = None, umask: int = 0o022) -> str:
    """Copy both release binaries into `into` and run build/image-index there."""
    into.mkdir(parents=True, exist_ok=True)
    for platform in PLATFORMS:
        shutil.copyfile(release_binary(platform), into / f"hello-{__version__}-linux-{platform}")
        (into / f"hello-{__version__}-linux-{platform}").chmod(0o755)
    result = subprocess.run(
        ["sh", "-c", f"umask {umask:03o} && exec \"$@\"", "sh", str(INDEX), str(into),
         "--source", "https://example.invalid/hello.git"],
        capture_output=True, text=True, timeout=300, check=False, cwd=into,
        env={**os.environ, **(env or {})})
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> tuple[pathlib.Path, str]:
    require(shutil.which("skopeo") is not None, "needs skopeo (apt-get install skopeo)")
    require(pathlib.Path("/proc/sys/fs/binfmt_misc/qemu-aarch64").exists(),
            "needs qemu-aarch64 in binfmt_misc (tests/infra/arm64-binfmt)")
    folder = tmp_path_factory.mktemp("index")
    return folder / "hello-oci.tar", build_index(folder)


@pytest.fixture(scope="module")
def loaded(docker, index, tmp_path_factory) -> dict[str, str]:
    """platform -> the image ID the engine gave each platform's image, via skopeo."""
    layout, _ = index
    ids = {}
    for platform in PLATFORMS:
        archive = tmp_path_factory.mktemp("load") / f"{platform}.tar"
        copied = subprocess.run(
            ["skopeo", "--override-arch", platform, "copy", "--quiet",
             f"oci-archive:{layout}:{__version__}",
             f"docker-archive:{archive}:hello-index:{platform}"],
            capture_output=True, text=True, timeout=300, check=False)
        assert copied.returncode == 0, copied.stderr
        docker.out("load", "--quiet", "--input", str(archive))
        ids[platform] = docker.inspect(f"hello-index:{platform}")["Id"]
    return ids


def test_the_same_binaries_give_the_same_index_bytes_from_any_folder_umask_and_zone(
        index, tmp_path):
    layout, digest = index
    again = build_index(tmp_path / "elsewhere" / "deeper", env={"TZ": "Pacific/Kiritimati",
                                                                "LC_ALL": "POSIX"}, umask=0o077)
    assert again == digest
    assert (tmp_path / "elsewhere" / "deeper" / "hello-oci.tar").read_bytes() == layout.read_bytes()
    assert digest.startswith("sha256:") and len(digest) == 71


def test_each_platforms_image_carries_that_platforms_binary_unchanged(docker, loaded):
    for platform, image_id in loaded.items():
        inspected = docker.inspect(image_id)
        assert (inspected["Os"], inspected["Architecture"]) == ("linux", platform)
        want = hashlib.sha256(release_binary(platform).read_bytes()).hexdigest()
        assert hello_sha256(docker, image_id) == want, platform


def test_the_index_images_are_configured_as_the_dockerfile_configures_its_image(
        docker, loaded, image):
    built = docker.inspect(image.ref)["Config"]
    for platform, image_id in loaded.items():
        config = docker.inspect(image_id)["Config"]
        for key in ("User", "Env", "Entrypoint", "Cmd", "ExposedPorts", "StopSignal", "Healthcheck"):
            assert config.get(key) == built.get(key), f"{platform}: {key}"
        assert sorted(config["Labels"]) == sorted(built["Labels"])
        for label in ("title", "description", "licenses", "version", "revision", "source"):
            key = f"org.opencontainers.image.{label}"
            assert config["Labels"][key] == built["Labels"][key], f"{platform}: {key}"


@pytest.mark.parametrize("platform", PLATFORMS)
def test_each_platforms_image_serves_probes_healthy_and_drains(docker, loaded, run_container,
                                                                platform):
    """The image's own healthcheck command, sooner: the arm64 one runs under qemu."""
    container = run_container("--platform", f"linux/{platform}", "--health-interval", "1s",
                              image_ref=loaded[platform])
    container.wait_serving("/healthz", timeout=60)
    assert http_status(container.url + "/readyz", timeout=5) == 200

    def healthy():
        return container.state()["Health"]["Status"] == "healthy"
    wait_until(healthy, 60, interval=0.2, what=f"{platform} container healthy")
    docker.run("stop", "--time", "30", container.id, timeout=60)
    state = container.state()
    assert (state["Running"], state["ExitCode"]) == (False, 0), container.logs()
