"""A droplet that pins the release key (/etc/hello/allowed_signers) takes only
releases whose SHA256SUMS the key signed (build/sign-release): build/deploy sends the
signed files with the release, hello-ctl checks them before a byte of the upload is
stored or an image is run. Real keys, real ssh-keygen, the systemd droplet.

Bases and ports of their own, apart from test_binary.py's and test_image.py's; the
pin is the host's, so the module removes it when it is done."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from tests.conftest import release_binary, require
from tests.deploy.conftest import deploy, tree
from tests.pipeline.release import make_key, sign

pytestmark = [pytest.mark.droplet, pytest.mark.slow]

BASE = "/opt/hello-signed"
PORT = 8093
IMAGE_BASE = "/opt/hello-signed-image"
IMAGE_PORT = 8094


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    folder = tmp_path_factory.mktemp("keys")
    return make_key(folder, "release"), make_key(folder, "stranger")


def pin_path(droplet):
    return droplet.root / "etc" / "hello" / "allowed_signers"


def pin(droplet, key) -> None:
    path = pin_path(droplet)
    path.parent.mkdir(exist_ok=True)
    shutil.copy(key.signers, path)
    path.chmod(0o644)


def signed_folder(tmp_path, release, key, extra: dict | None = None):
    """release as `hello`, and any extra files, signed with key."""
    folder = tmp_path / "signed"
    folder.mkdir()
    shutil.copy2(release.path, folder / "hello")
    for name, path in (extra or {}).items():
        shutil.copy2(path, folder / name)
    sign(folder, key, release.commit)
    return folder


def binary_deploy(droplet, folder, *args):
    return deploy(droplet, "binary", "-b", BASE, "-p", str(PORT), "-a", str(folder / "hello"), *args)


def refused(result, text: str) -> None:
    assert result.returncode == 1, result.stderr
    assert text in result.stderr.strip().splitlines()[-1], result.stderr


def state(droplet, base) -> tuple:
    """What a refused deploy must leave as it was: the releases, the links, who serves."""
    return tree(base / "releases"), tree(base).get("current"), droplet.commit(PORT)


def refused_and_unchanged(droplet, base, folder, text: str) -> None:
    before = state(droplet, base)
    refused(binary_deploy(droplet, folder), text)
    assert state(droplet, base) == before


@pytest.fixture(scope="module")
def pinned(droplet, keys):
    """The pin on the host; the base the binary tests deploy to."""
    pin(droplet, keys[0])
    yield droplet.root / BASE.lstrip("/")
    pin_path(droplet).unlink()


def test_an_unpinned_host_takes_an_unsigned_release(droplet, releases):
    """Pinning is the operator's choice: without it, the signed files are not asked for."""
    old, _ = releases
    result = deploy(droplet, "binary", "-b", "/opt/hello-unpinned", "-p", "8095", "-a", str(old.path))
    assert result.returncode == 0, result.stderr
    assert droplet.commit(8095) == old.commit


def test_a_release_signed_by_the_pinned_key_serves(droplet, pinned, releases, keys, tmp_path):
    old, _ = releases
    result = binary_deploy(droplet, signed_folder(tmp_path, old, keys[0]))
    assert result.returncode == 0, result.stderr
    assert "in SHA256SUMS signed by the pinned key" in result.stderr
    assert droplet.commit(PORT) == old.commit


def test_a_release_signed_under_its_platform_name_only_serves(droplet, pinned, releases, keys,
                                                               tmp_path):
    """A release folder of another platform's build: SHA256SUMS names this host's binary
    only as hello-<version>-linux-amd64 (its `hello` is the arm64 build)."""
    old, _ = releases
    folder = tmp_path / "release"
    folder.mkdir()
    shutil.copy2(release_binary("arm64"), folder / "hello")
    shutil.copy2(old.path, folder / f"hello-{old.version}-linux-amd64")
    sign(folder, keys[0], old.commit)
    result = deploy(droplet, "binary", "-b", BASE, "-p", str(PORT), "-a",
                    str(folder / f"hello-{old.version}-linux-amd64"))
    assert result.returncode == 0, result.stderr
    assert f"or hello-{old.version}-linux-amd64: sha256 " in result.stderr
    assert droplet.commit(PORT) == old.commit


def test_an_unsigned_release_is_refused_and_nothing_changes(droplet, pinned, releases, tmp_path):
    _, new = releases
    folder = tmp_path / "unsigned"
    folder.mkdir()
    shutil.copy2(new.path, folder / "hello")
    refused_and_unchanged(droplet, pinned, folder, "must come with its signed SHA256SUMS")


def test_a_release_signed_by_another_key_is_refused(droplet, pinned, releases, keys, tmp_path):
    _, new = releases
    refused_and_unchanged(droplet, pinned, signed_folder(tmp_path, new, keys[1]),
                          "does not verify with the key pinned")


def test_a_binary_the_signed_sums_do_not_list_is_refused(droplet, pinned, releases, keys, tmp_path):
    """A genuine signature, of another release: the upload is not one it lists."""
    old, new = releases
    folder = signed_folder(tmp_path, old, keys[0])
    shutil.copy2(new.path, folder / "hello")
    refused_and_unchanged(droplet, pinned, folder,
                          f"does not list hello or hello-{new.version}-linux-amd64 with sha256")


def test_a_binary_signed_under_another_name_is_refused(droplet, pinned, releases, keys, tmp_path):
    """Its sha256 is a line of the signed SHA256SUMS, but not the line of `hello` nor
    of this host's release name."""
    old, new = releases
    folder = signed_folder(tmp_path, old, keys[0], extra={"hello.extra": new.path})
    before = state(droplet, pinned)
    result = deploy(droplet, "binary", "-b", BASE, "-p", str(PORT), "-a", str(folder / "hello.extra"))
    refused(result, f"does not list hello or hello-{new.version}-linux-amd64 with sha256")
    assert state(droplet, pinned) == before


def test_a_pin_another_user_could_write_is_refused(droplet, pinned, releases, keys, tmp_path):
    _, new = releases
    pin_path(droplet).chmod(0o666)
    try:
        refused(binary_deploy(droplet, signed_folder(tmp_path, new, keys[0])), "writable by no one else")
    finally:
        pin_path(droplet).chmod(0o644)


def test_the_pin_holds_for_every_base(droplet, pinned, releases, tmp_path):
    """Units are the host's: an unsigned release under another --base would take the port."""
    _, new = releases
    folder = tmp_path / "unsigned"
    folder.mkdir()
    shutil.copy2(new.path, folder / "hello")
    result = deploy(droplet, "binary", "-b", "/opt/hello-unpinned", "-p", "8095", "-a", str(folder / "hello"))
    refused(result, "must come with its signed SHA256SUMS")
    assert droplet.commit(PORT) != new.commit


def test_signed_option_needs_the_signed_files(droplet, tmp_path):
    result = deploy(droplet, "binary", "-s", str(tmp_path))
    assert result.returncode == 2 and "holds no SHA256SUMS and SHA256SUMS.sig" in result.stderr


def image_manifest(folder, image_id: str, commit: str) -> None:
    """What build/image writes next to IMAGE_TAR (its format, indent and all)."""
    fields = {"binary_from": "dist", "commit": commit, "created": "2026-01-01T00:00:00Z",
              "hello_sha256": "0" * 64, "image_id": image_id, "tags": ["hello:9.9.9"], "version": "9.9.9"}
    (folder / "hello-image.json").write_text(json.dumps(fields, indent=2, sort_keys=True) + "\n")


@pytest.mark.engine
def test_a_pinned_host_runs_only_the_image_the_signed_manifest_names(
        droplet, pinned, keys, images, local_engine, tmp_path):
    require(droplet.docker, "the droplet has no dockerd (apt-get install docker.io)")
    env = {"DOCKER_HOST": local_engine}
    ids = {name: subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", image.tag], check=True,
                                capture_output=True, text=True, timeout=60,
                                env={**os.environ, **env}).stdout.strip()
           for name, image in images.items()}
    folder = tmp_path / "dist"
    folder.mkdir()
    image_manifest(folder, ids["new"], images["new"].commit)
    sign(folder, keys[0], images["new"].commit)

    def image_deploy(tag):
        return deploy(droplet, "image", "-b", IMAGE_BASE, "-p", str(IMAGE_PORT), "-a", tag, "-s", str(folder),
                      env=env)

    refused(image_deploy(images["old"].tag), f"the signed hello-image.json does not name image {ids['old']}")
    (folder / "hello-image.json").rename(tmp_path / "aside.json")
    refused(image_deploy(images["new"].tag), "must come with its signed hello-image.json")
    (tmp_path / "aside.json").rename(folder / "hello-image.json")
    result = image_deploy(images["new"].tag)
    assert result.returncode == 0, result.stderr
    assert droplet.commit(IMAGE_PORT) == images["new"].commit
    droplet.ssh(f"docker rm -f $(docker ps -aq --filter label=org.hello.base={IMAGE_BASE}) >/dev/null",
                check=False)
