"""build/verify-release on releases signed as the pipeline signs them, with real
ssh-keygen: a good release passes, and each kind of tampering is refused in one
line that names what did not match."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from tests.conftest import git_head
from tests.pipeline.release import BUILD, make_key, resign, sign, step, verify

COMMIT = "0123456789abcdef0123456789abcdef01234567"
OTHER = "fedcba9876543210fedcba9876543210fedcba98"
IMAGE_ID = "sha256:" + "ab" * 32


@pytest.fixture(scope="module")
def key(tmp_path_factory):
    return make_key(tmp_path_factory.mktemp("key"))


@pytest.fixture(scope="module")
def stranger(tmp_path_factory):
    return make_key(tmp_path_factory.mktemp("stranger"), "stranger")


@pytest.fixture
def release(tmp_path, key):
    folder = tmp_path / "dist"
    folder.mkdir()
    (folder / "hello").write_bytes(b"\x7fELF a static binary" * 1000)
    (folder / "hello.sha256").write_text("x  hello\n")
    (folder / "hello.cdx.json").write_text("{}\n")
    (folder / "hello-image.tar").write_bytes(b"image layers")
    (folder / "hello-image.json").write_text(json.dumps({"image_id": IMAGE_ID, "tags": ["hello:9.9.9"]}))
    sign(folder, key, COMMIT)
    return folder


def refused(done: subprocess.CompletedProcess) -> str:
    """The one line a refusal prints."""
    assert done.returncode == 1, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("verify-release: REFUSED: "), done.stderr
    return lines[0]


def test_a_release_signed_by_the_key_verifies(release, key):
    done = verify(release, key, COMMIT)
    assert done.returncode == 0, done.stderr
    assert 'Good "hello-release" signature' in done.stderr
    assert "6 files match" in done.stderr and f"built from commit {COMMIT}" in done.stderr


def test_a_short_commit_is_enough(release, key):
    assert verify(release, key, COMMIT[:12]).returncode == 0


@pytest.mark.parametrize("how", ["changed", "truncated"])
def test_a_changed_or_truncated_binary_is_refused(release, key, how):
    data = (release / "hello").read_bytes()
    (release / "hello").write_bytes(data[:-1] + b"!" if how == "changed" else data[: len(data) // 2])
    assert "hello: sha256" in refused(verify(release, key, COMMIT))


def test_sha256sums_edited_to_match_another_binary_is_refused(release, key):
    (release / "hello").write_bytes(b"another binary")
    new_sum = subprocess.run(["sha256sum", "hello"], cwd=release, capture_output=True, text=True,
                             check=True, timeout=30).stdout
    lines = (release / "SHA256SUMS").read_text().splitlines()
    sums = [line for line in lines if not line.endswith("  hello")]
    (release / "SHA256SUMS").write_text("\n".join([new_sum.strip(), *sums]) + "\n")
    assert "is not a good signature of SHA256SUMS" in refused(verify(release, key, COMMIT))


def test_a_truncated_signature_is_refused(release, key):
    signature = (release / "SHA256SUMS.sig").read_bytes()
    (release / "SHA256SUMS.sig").write_bytes(signature[: len(signature) // 2])
    assert "is not a good signature" in refused(verify(release, key, COMMIT))


def test_a_signature_by_another_key_is_refused(release, key, stranger):
    step("sign-release", str(release), env={"HELLO_SIGNING_KEY_FILE": str(stranger.private)})
    assert "is not a good signature" in refused(verify(release, key, COMMIT))
    assert verify(release, stranger, COMMIT).returncode == 0  # the stranger's own key accepts it


def test_the_right_key_signing_for_another_purpose_is_refused(release, key):
    """A signature in another namespace (say, a git commit's) is not a release's."""
    (release / "SHA256SUMS.sig").unlink()
    subprocess.run(["ssh-keygen", "-q", "-Y", "sign", "-f", str(key.private), "-n", "git",
                    str(release / "SHA256SUMS")], check=True, timeout=30, capture_output=True)
    assert "is not a good signature" in refused(verify(release, key, COMMIT))


def test_an_unsigned_release_is_refused(release, key):
    (release / "SHA256SUMS.sig").unlink()
    assert "SHA256SUMS.sig is missing: the release is unsigned" in refused(verify(release, key, COMMIT))


def test_a_genuine_release_of_another_commit_is_refused(release, key):
    sign(release, key, OTHER)
    line = refused(verify(release, key, COMMIT))
    assert f"built from commit {OTHER}, not {COMMIT}" in line


def test_a_provenance_changed_after_signing_is_refused(release, key):
    path = release / "provenance.intoto.json"
    path.write_text(path.read_text().replace(COMMIT, OTHER))
    assert "provenance.intoto.json: sha256" in refused(verify(release, key, OTHER))


def test_a_truncated_provenance_signed_anyway_is_refused(release, key):
    path = release / "provenance.intoto.json"
    path.write_text(path.read_text()[:100])
    resign(release, key)
    assert "provenance.intoto.json is not JSON" in refused(verify(release, key, COMMIT))


def test_a_provenance_that_does_not_name_a_file_is_refused(release, key):
    path = release / "provenance.intoto.json"
    statement = json.loads(path.read_text())
    statement["subject"] = [s for s in statement["subject"] if s["name"] != "hello-image.tar"]
    path.write_text(json.dumps(statement))
    resign(release, key)
    assert "does not name hello-image.tar" in refused(verify(release, key, COMMIT))


def test_a_file_nobody_signed_is_refused(release, key):
    (release / "README").write_text("trust me")
    assert "not in SHA256SUMS, so not signed: README" in refused(verify(release, key, COMMIT))


def test_a_partial_download_verifies_only_with_ignore_missing(release, key):
    for name in ("hello-image.tar", "hello-image.json", "hello.cdx.json"):
        (release / name).unlink()
    assert "hello-image.json is listed in SHA256SUMS but not in" in refused(verify(release, key, COMMIT))
    done = verify(release, key, COMMIT, "--ignore-missing")
    assert done.returncode == 0, done.stderr
    assert "3 files match" in done.stderr


def test_the_committed_key_file_without_a_key_says_how_to_set_one_up(release, tmp_path):
    placeholder = tmp_path / "allowed_signers"
    placeholder.write_text("# no key yet\n")
    done = step("verify-release", str(release), "--signers", str(placeholder), "--commit", COMMIT,
                check=False)
    assert "holds no public key yet: set up the release key (docs/verify.md)" in refused(done)


def test_it_runs_with_the_system_python_and_no_venv(release, key):
    """What a user downloading has: a checkout, python3 and ssh-keygen."""
    python = shutil.which("python3", path="/usr/bin:/bin")
    assert python, "no system python3"
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root")}
    done = subprocess.run([python, "-I", str(BUILD / "verify-release"), str(release), "--signers",
                           str(key.signers), "--commit", COMMIT], env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("args", [[], ["a", "b"], ["--commit", "xyz", "."], ["/nonexistent"]])
def test_usage_errors_are_one_line_and_exit_2(args):
    done = subprocess.run([str(BUILD / "verify-release"), *args], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 2
    assert len(done.stderr.splitlines()) == 1, done.stderr


@pytest.mark.parametrize("kind", ["fifo", "symlink"])
def test_a_listed_name_that_is_no_regular_file_is_refused_without_hanging(release, key, tmp_path, kind):
    (release / "hello.cdx.json").unlink()
    if kind == "fifo":
        os.mkfifo(release / "hello.cdx.json")
    else:
        (tmp_path / "elsewhere").write_text("{}\n")
        (release / "hello.cdx.json").symlink_to(tmp_path / "elsewhere")
    assert "hello.cdx.json is " in refused(verify(release, key, COMMIT))


def test_sha256sums_lines_split_only_on_newlines(release, key):
    """A separator sha256sum does not split on (\\x1c) must not make two lines here."""
    sums = (release / "SHA256SUMS").read_text().splitlines()
    (release / "SHA256SUMS").write_text("\x1c".join(sums[:2]) + "\n" + "\n".join(sums[2:]) + "\n")
    step("sign-release", str(release), env={"HELLO_SIGNING_KEY_FILE": str(key.private)})
    assert "SHA256SUMS line 1 is not" in refused(verify(release, key, COMMIT))


@pytest.mark.parametrize("statement", ['{"_type": "https://in-toto.io/Statement/v1", "subject": 5, '
                                       '"predicateType": "https://slsa.dev/provenance/v1"}',
                                       "[" * 100000 + "]" * 100000])
def test_a_signed_provenance_of_the_wrong_shape_is_one_line(release, key, statement):
    (release / "provenance.intoto.json").write_text(statement)
    resign(release, key)
    assert "provenance.intoto.json is not" in refused(verify(release, key, COMMIT))


def test_commit_may_be_a_ref_of_this_clone(release, key):
    head = git_head()
    assert head, "not a git checkout"
    sign(release, key, head)
    done = step("verify-release", str(release), "--signers", str(key.signers), "--commit", "HEAD",
                check=False)
    assert done.returncode == 0, done.stderr
    unknown = step("verify-release", str(release), "--signers", str(key.signers), "--commit", "v0.0.0-nope",
                   check=False)
    assert unknown.returncode == 2 and "is not a commit (7 to 40 hex) nor a tag" in unknown.stderr
