"""build/sign-release: the signature over SHA256SUMS, made with a key given as text
(CircleCI's context) or as a file, never printed."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.conftest import ROOT
from tests.pipeline.release import make_key, step


@pytest.fixture
def dist(tmp_path):
    folder = tmp_path / "dist"
    folder.mkdir()
    (folder / "hello").write_bytes(b"binary")
    step("checksums", "write", str(folder))
    return folder


@pytest.fixture(scope="module")
def key(tmp_path_factory):
    return make_key(tmp_path_factory.mktemp("key"))


def check(folder, key) -> subprocess.CompletedProcess:
    with (folder / "SHA256SUMS").open("rb") as sums:
        return subprocess.run(["ssh-keygen", "-Y", "verify", "-f", str(key.signers), "-I", "hello-release",
                               "-n", "hello-release", "-s", str(folder / "SHA256SUMS.sig")],
                              stdin=sums, capture_output=True, timeout=30, check=False)


def test_the_key_as_text_signs_and_is_never_printed(dist, key):
    text = key.private.read_text()
    done = step("sign-release", str(dist), env={"HELLO_SIGNING_KEY": text})
    assert check(dist, key).returncode == 0
    body = "".join(text.splitlines()[1:-1])
    assert body[:40] not in done.stderr + done.stdout
    assert "signed" in done.stderr and "SHA256:" in done.stderr


def test_the_key_as_a_file_signs(dist, key):
    step("sign-release", str(dist), env={"HELLO_SIGNING_KEY_FILE": str(key.private)})
    assert check(dist, key).returncode == 0


def test_rewriting_sha256sums_drops_the_signature_it_no_longer_matches(dist, key):
    step("sign-release", str(dist), env={"HELLO_SIGNING_KEY_FILE": str(key.private)})
    (dist / "hello").write_bytes(b"rebuilt")
    step("checksums", "write", str(dist))
    assert not (dist / "SHA256SUMS.sig").exists()


def test_without_a_key_it_fails_in_one_line(dist):
    done = step("sign-release", str(dist), env={"HELLO_SIGNING_KEY": "", "HELLO_SIGNING_KEY_FILE": ""},
                check=False)
    assert done.returncode == 1 and "no signing key" in done.stderr and len(done.stderr.splitlines()) == 1


def test_a_key_with_a_passphrase_is_refused_not_prompted_for(dist, tmp_path):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "secret", "-f", str(tmp_path / "locked")],
                   check=True, timeout=30, capture_output=True)
    done = step("sign-release", str(dist), env={"HELLO_SIGNING_KEY_FILE": str(tmp_path / "locked")},
                check=False)
    assert done.returncode == 1 and "without a passphrase" in done.stderr
    assert not (dist / "SHA256SUMS.sig").exists()


def test_nothing_to_sign_fails_and_bad_usage_is_exit_2(tmp_path, key):
    done = step("sign-release", str(tmp_path), env={"HELLO_SIGNING_KEY_FILE": str(key.private)}, check=False)
    assert done.returncode == 1 and "no " in done.stderr and "SHA256SUMS to sign" in done.stderr
    assert step("sign-release", "a", "b", check=False).returncode == 2


def test_a_signature_path_that_is_a_symlink_is_replaced_not_followed(dist, key, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (dist / "SHA256SUMS.sig").symlink_to(outside)
    step("sign-release", str(dist), env={"HELLO_SIGNING_KEY_FILE": str(key.private)})
    assert not (dist / "SHA256SUMS.sig").is_symlink() and list(outside.iterdir()) == []
    assert check(dist, key).returncode == 0


def test_the_key_is_written_to_no_file(dist, key, tmp_path):
    """It goes to an agent on a pipe: nothing under TMPDIR holds it, even for a moment
    (the only files made there are the copy of SHA256SUMS, the public key, the result)."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    seen: set[str] = set()
    env = {**os.environ, "TMPDIR": str(scratch), "HELLO_SIGNING_KEY_FILE": str(key.private)}
    proc = subprocess.Popen([str(ROOT / "build" / "sign-release"), str(dist)], stderr=subprocess.DEVNULL,
                            env=env)
    while proc.poll() is None:
        for _, _, files in os.walk(scratch):  # files come and go as it runs
            seen.update(files)
    assert proc.wait(timeout=30) == 0
    assert seen <= {"SHA256SUMS", "key.pub", "err", "SHA256SUMS.sig"}, seen
    assert list(scratch.iterdir()) == []
