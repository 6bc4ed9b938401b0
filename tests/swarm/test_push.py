"""build/ci-push-image against a real registry (Debian's docker-registry on a loopback
port, with a login), on a small two-platform layout made here: what it pushes, what it
prints, and what it refuses. Needs no root and no engine; the push of the real index
to the swarm's registry is in test_swarm.py."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
import urllib.error
import urllib.request

import pytest

from tests.conftest import require
from tests.swarm import layout
from tests.swarm.conftest import PUSH, push_env


@pytest.fixture(autouse=True)
def _skopeo():
    require(shutil.which("skopeo") is not None, "skopeo is not installed (apt-get install skopeo)")


def push(*args: str, env: dict | None = None, tmp=None) -> subprocess.CompletedProcess:
    extra = {"TMPDIR": str(tmp)} if tmp else {}
    return subprocess.run([str(PUSH), *args], check=False, capture_output=True, text=True, timeout=300,
                          env={**push_env(), **extra, **(env or {})})


def login(registry) -> dict:
    return {"DOCKER_REGISTRY_USER": registry.user, "DOCKER_REGISTRY_TOKEN": registry.token}


def fetch(registry, reference: str) -> bytes | None:
    """GET /v2/hello/manifests/<reference> with the login, or None when absent."""
    request = urllib.request.Request(
        f"http://{registry.address}/v2/hello/manifests/{reference}",
        headers={"Accept": f"{layout.INDEX}, {layout.MANIFEST}",
                 "Authorization": "Basic " + base64.b64encode(
                     f"{registry.user}:{registry.token}".encode()).decode()})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.read()
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return None
        raise


@pytest.mark.parametrize("args", [
    [],
    ["a.example", "dist/hello-oci.tar", "extra"],
    ["Not A Host"],
    ["registry.example/team", "/nonexistent/hello-oci.tar"],
    ["--insecure", "registry.example/team"],
    ["myteam"],                    # no dot, no port: Docker Hub's namespace
    ["registry.example:99999"],
    ["registry.example/a/..", "dist/hello-oci.tar"],
])
def test_usage_errors_are_one_line_and_exit_2(args):
    result = push(*args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("ci-push-image: ") and result.stderr.count("\n") == 1, result.stderr


def test_with_a_login_it_pushes_the_index_and_prints_it_by_digest(login_registry, tmp_path):
    digest = layout.small(tmp_path / "hello-oci.tar", version="9.9.9")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    result = push("--no-tls-verify", login_registry.address, str(tmp_path / "hello-oci.tar"),
                  env=login(login_registry), tmp=scratch)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{login_registry.address}/hello@{digest}\n"
    assert login_registry.token not in result.stdout + result.stderr
    assert list(scratch.iterdir()) == [], "the login's auth file outlived the run"
    index = fetch(login_registry, digest)
    assert index is not None and "sha256:" + hashlib.sha256(index).hexdigest() == digest
    assert fetch(login_registry, "9.9.9") == index
    for entry in json.loads(index)["manifests"]:  # every platform's image, by its own digest
        assert fetch(login_registry, entry["digest"]) is not None, entry["platform"]


def test_a_wrong_token_fails_and_pushes_nothing(login_registry, tmp_path):
    digest = layout.small(tmp_path / "hello-oci.tar")
    result = push("--no-tls-verify", login_registry.address, str(tmp_path / "hello-oci.tar"),
                  env={**login(login_registry), "DOCKER_REGISTRY_TOKEN": "not-the-token"})
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        f"ci-push-image: error: skopeo login to {login_registry.address} as ci failed (its reason above)")
    assert fetch(login_registry, digest) is None


def test_plain_http_is_refused_unless_asked_for(login_registry, tmp_path):
    """TLS is verified by default: a registry without it is not reached."""
    digest = layout.small(tmp_path / "hello-oci.tar")
    result = push(login_registry.address, str(tmp_path / "hello-oci.tar"), env=login(login_registry))
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].startswith("ci-push-image: error: skopeo login to ")
    assert fetch(login_registry, digest) is None


def test_a_layout_whose_index_is_not_its_digest_is_refused_before_any_contact(tmp_path):
    """The digest printed is the layout's own: an index blob changed after
    build/image-index wrote it is refused (the registry named does not exist)."""
    layout.small(tmp_path / "hello-oci.tar")
    files = layout.read(tmp_path / "hello-oci.tar")
    name = "blobs/sha256/" + layout.top(files)["digest"].removeprefix("sha256:")
    files[name] = files[name].replace(b'"amd64"', b'"s390x"')
    with tarfile.open(tmp_path / "changed.tar", "w") as tar:
        for member, data in files.items():
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    result = push("--no-tls-verify", "registry.invalid", str(tmp_path / "changed.tar"))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"ci-push-image: error: {tmp_path / 'changed.tar'} is not an OCI layout of one image index "
        f"(ValueError: its index blob does not hash to {layout.top(files)['digest']}, or its size "
        f"is not {layout.top(files)['size']}): make image-index writes one"]


def test_a_second_index_json_later_in_the_tar_is_refused_before_any_contact(tmp_path):
    """skopeo's own unpacking lets the last `./index.json` win: the layout is unpacked
    once by the script, and a name seen twice is refused."""
    layout.small(tmp_path / "hello-oci.tar")
    files = layout.read(tmp_path / "hello-oci.tar")
    with tarfile.open(tmp_path / "twice.tar", "w") as tar:
        for member, data in [*files.items(), ("./index.json", b'{"manifests": []}')]:
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    result = push("--no-tls-verify", "registry.invalid", str(tmp_path / "twice.tar"))
    assert result.returncode == 1
    assert "member './index.json' is a link, a device, a duplicate or outside the layout" in result.stderr
