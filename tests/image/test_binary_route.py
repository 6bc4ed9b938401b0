"""The image carries the verified bytes: the binary route, its check, and the source
route giving the same /hello on the same builder base; a bare `docker build`.

The session's `image` fixture is the source route (a --no-cache build in the
stand-in builder). These tests add the routes CI and a new user take:
- dist route (make image, CI's build-image): the context's dist/hello, unchanged,
  checked by build/verify-image-binary against dist/hello.sha256;
- build/binary-in-docker (CI's build-binary): dist/hello made in the Dockerfile's
  builder, which must equal the source route's /hello;
- `docker build` with no build args at all (only PYTHON_IMAGE, because this machine
  cannot pull python:3.11.7-slim-bookworm).
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess

import pytest

from hello import __version__
from tests.conftest import ROOT, http_get, require
from tests.image.conftest import (
    TEST_SOURCE,
    build_identity,
    build_image,
    hello_sha256,
    snapshot,
)

pytestmark = pytest.mark.engine

OCI = "org.opencontainers.image."


def _sha_file(path: pathlib.Path) -> str:
    return path.read_text().split()[0]


def _tree_with_dist(tmp_path: pathlib.Path, hello: pathlib.Path) -> pathlib.Path:
    """A fresh copy of the checkout whose dist/ holds `hello` and its checksum."""
    tree = snapshot(tmp_path / "hello")
    (tree / "dist").mkdir()
    shutil.copy2(hello, tree / "dist" / "hello")
    sums = subprocess.run(["sha256sum", "hello"], cwd=tree / "dist", capture_output=True,
                          text=True, check=True).stdout
    (tree / "dist" / "hello.sha256").write_text(sums)
    return tree


def _verify(docker, ref: str, sums: pathlib.Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(ROOT / "build" / "verify-image-binary"), ref, str(sums)],
                          env=docker.env, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def host_binary() -> pathlib.Path:
    """dist/hello built on this host (make test builds it first): a pyenv-built
    binary, so its bytes differ from anything the stand-in builder makes."""
    hello = ROOT / "dist" / "hello"
    require(hello.is_file(), "no dist/hello (make binary, or make test which builds it)")
    return hello


@pytest.fixture(scope="module")
def dist_image(docker, base_image, host_binary, tmp_path_factory):
    """build/image's default route on a context holding the host's dist/hello."""
    tree = _tree_with_dist(tmp_path_factory.mktemp("dist-route"), host_binary)
    commit, epoch = build_identity()
    tar = tree / "dist" / "hello-image.tar"
    built = build_image(docker, base_image, "hello-dist", tar, commit, epoch, tree, binary_from="dist")
    assert built.returncode == 0, f"build/image (dist route) failed:\n{built.stderr[-5000:]}"
    yield tree, built
    docker.run("rmi", f"hello-dist:{__version__}", "hello-dist:latest", check=False)


def test_make_image_ships_dist_hello_unchanged_and_says_so(docker, dist_image, host_binary):
    tree, built = dist_image
    want = _sha_file(tree / "dist" / "hello.sha256")
    ref = f"hello-dist:{__version__}"
    assert hello_sha256(docker, ref) == want
    assert f"carries the verified binary: /hello sha256 {want}" in built.stderr
    manifest = json.loads((tree / "dist" / "hello-image.json").read_text())
    image_id = built.stdout.strip().splitlines()[-1]
    assert manifest == {"image_id": image_id, "tags": [ref, "hello-dist:latest"],
                        "version": __version__, "commit": manifest["commit"],
                        "created": manifest["created"], "binary_from": "dist",
                        "hello_sha256": want}
    stamped = json.loads(subprocess.run([str(host_binary), "version", "--json"], capture_output=True,
                                        text=True, timeout=30, check=True).stdout)
    labels = docker.inspect(ref)["Config"]["Labels"]
    assert (labels[OCI + "version"], labels[OCI + "revision"], labels[OCI + "created"]) == (
        stamped["version"], stamped["commit"], stamped["build_date"])
    assert (manifest["commit"], manifest["created"]) == (stamped["commit"], stamped["build_date"])
    assert labels[OCI + "source"] == TEST_SOURCE


def test_an_image_with_another_binary_fails_the_check(docker, dist_image, tmp_path):
    """What CI's build-image step runs, on an image whose /hello was swapped."""
    tree, _ = dist_image
    sums = tree / "dist" / "hello.sha256"
    assert _verify(docker, f"hello-dist:{__version__}", sums).returncode == 0
    context = tmp_path / "swap"
    context.mkdir()
    other = (tree / "dist" / "hello").read_bytes() + b"\0"
    (context / "hello").write_bytes(other)
    os.chmod(context / "hello", 0o755)  # noqa: S103 (an executable, as in the image)
    (context / "Dockerfile").write_text(f"FROM hello-dist:{__version__}\nCOPY hello /hello\n")
    docker.run("build", "-t", "hello-swapped:test", str(context), timeout=300)
    try:
        result = _verify(docker, "hello-swapped:test", sums)
    finally:
        docker.run("rmi", "hello-swapped:test", check=False)
    assert result.returncode == 1, result.stderr
    assert "is NOT the binary in" in result.stderr and _sha_file(sums) in result.stderr


def test_build_image_refuses_a_dist_hello_that_does_not_match_its_checksum(docker, base_image, host_binary,
                                                                         tmp_path):
    tree = _tree_with_dist(tmp_path, host_binary)
    with open(tree / "dist" / "hello", "ab") as hello:
        hello.write(b"\0")
    commit, epoch = build_identity()
    built = build_image(docker, base_image, "hello-bad", None, commit, epoch, tree, binary_from="dist")
    assert built.returncode == 1
    assert "dist/hello does not match dist/hello.sha256" in built.stderr.splitlines()[-1]


@pytest.mark.slow
def test_builder_binary_and_source_route_image_hold_the_same_hello(docker, base_image, image, source_tree,
                                                                   tmp_path):
    """CI's path (build/binary-in-docker, then the dist route) against a user's
    (`docker build` from source): two --no-cache builds in one builder base, of the
    same files (a copy of the source-route image's context) and the same stamp."""
    tree = pathlib.Path(shutil.copytree(source_tree, tmp_path / "hello", symlinks=True))
    commit, epoch = image.commit, image.source_date_epoch  # the stamp the source route got
    env = {**docker.env, "PYTHON_IMAGE": base_image, "HELLO_COMMIT": commit,
           "SOURCE_DATE_EPOCH": epoch, "BUILD_ARGS": "--no-cache"}
    made = subprocess.run([str(tree / "build" / "binary-in-docker")], env=env, cwd=tree,
                          capture_output=True, text=True, timeout=900, check=False)
    assert made.returncode == 0, made.stderr[-5000:]
    builder_sha = _sha_file(tree / "dist" / "hello.sha256")
    built = build_image(docker, base_image, "hello-ci", None, commit, epoch, tree, binary_from="dist")
    assert built.returncode == 0, built.stderr[-5000:]
    try:
        source_sha = hello_sha256(docker, image.ref)
        assert hello_sha256(docker, f"hello-ci:{__version__}") == builder_sha
        assert source_sha == builder_sha, "the source route and the builder's dist/hello differ"
    finally:
        docker.run("rmi", f"hello-ci:{__version__}", "hello-ci:latest", check=False)


@pytest.mark.slow
def test_docker_build_without_arguments_serves_and_says_unknown(docker, base_image, run_container, tmp_path):
    """`docker build -t hello .` as a new user types it, the base aside: the context
    has no .git, so the commit and build date are honestly unknown."""
    tree = snapshot(tmp_path / "hello")
    client, buildkit = ("/usr/bin/docker", "1") if os.path.exists("/usr/bin/docker") else ("docker", "0")
    built = subprocess.run([client, "build", "-t", "hello-bare:test", "--build-arg",
                            f"PYTHON_IMAGE={base_image}", "."], cwd=tree,
                           env={**docker.env, "DOCKER_BUILDKIT": buildkit},
                           capture_output=True, text=True, timeout=900, check=False)
    assert built.returncode == 0, built.stderr[-5000:]
    container = None
    try:
        container = run_container(image_ref="hello-bare:test").wait_serving()
        status, _, body = http_get(container.url + "/version")
        served = json.loads(body)
        assert status == 200
        assert (served["version"], served["commit"], served["build_date"], served["frozen"]) == (
            __version__, "unknown", "unknown", True)
        printed = docker.out("run", "--rm", "--read-only", "--tmpfs", "/tmp:exec", "hello-bare:test",
                             "version", "--json", timeout=60)
        assert json.loads(printed) == served
        labels = docker.inspect("hello-bare:test")["Config"]["Labels"]
        assert labels[OCI + "revision"] == "unknown"
    finally:
        if container is not None:
            docker.run("rm", "-f", container.id, check=False)
        docker.run("rmi", "hello-bare:test", check=False)
