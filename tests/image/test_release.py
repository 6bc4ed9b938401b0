"""A release as the pipeline makes it (build/binary-in-docker, the image from those
bytes, provenance, SHA256SUMS, signature), verified the way docs/verify.md tells a
user to, `--rebuild` included: the commit rebuilt from `git archive` in the pinned
builder (here the stand-in base) with no cache gives the same bytes."""

from __future__ import annotations

import os
import pathlib
import subprocess

import pytest

from tests.conftest import ROOT, git_head, require
from tests.image.conftest import build_image
from tests.pipeline.release import make_key, sign, verify

pytestmark = [pytest.mark.engine, pytest.mark.slow]


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=60,
                          check=True).stdout.strip()


@pytest.fixture(scope="module")
def pipeline_release(docker, base_image, tmp_path_factory) -> tuple[pathlib.Path, str, object]:
    """dist/ as sign-release leaves it, for this checkout's HEAD (committed files only)."""
    commit = git_head()
    require(commit is not None, "not a git checkout: --rebuild rebuilds a commit")
    epoch = _git("log", "-1", "--format=%ct", commit)
    tree = tmp_path_factory.mktemp("release") / "src"
    tree.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", commit], capture_output=True,
                             timeout=120, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, timeout=120, check=True)
    env = {**docker.env, "PYTHON_IMAGE": base_image, "HELLO_COMMIT": commit, "SOURCE_DATE_EPOCH": epoch}
    made = subprocess.run([str(tree / "build" / "binary-in-docker")], env=env, cwd=tree, capture_output=True,
                          text=True, timeout=1800, check=False)
    assert made.returncode == 0, made.stderr[-5000:]
    built = build_image(docker, base_image, "hello-release", tree / "dist" / "hello-image.tar", commit, epoch,
                        tree, binary_from="dist")
    assert built.returncode == 0, built.stderr[-5000:]
    key = make_key(tmp_path_factory.mktemp("key"))
    sign(tree / "dist", key, commit)
    return tree / "dist", commit, key


def rebuild(folder: pathlib.Path, key, commit: str, docker, base_image: str) -> subprocess.CompletedProcess:
    """verify-release --rebuild, in the session's engine and stand-in builder base."""
    env = {**os.environ, **docker.env, "PYTHON_IMAGE": base_image}
    return subprocess.run([str(ROOT / "build" / "verify-release"), str(folder), "--signers", str(key.signers),
                           "--commit", commit, "--rebuild"], env=env, capture_output=True, text=True,
                          timeout=2400, check=False)


def test_what_the_pipeline_makes_verifies(pipeline_release):
    dist, commit, key = pipeline_release
    done = verify(dist, key, commit)
    assert done.returncode == 0, done.stderr
    # hello, .sha256, .cdx.json, their release names (binary, SBOM), image tar and json, provenance
    assert "8 files match" in done.stderr


def test_rebuild_in_the_pinned_builder_gives_the_same_bytes(pipeline_release, docker, base_image):
    dist, commit, key = pipeline_release
    done = rebuild(dist, key, commit, docker, base_image)
    assert done.returncode == 0, done.stderr
    assert f"built from commit {commit} (rebuilt: same bytes)" in done.stderr


def test_rebuild_of_a_commit_this_clone_lacks_says_so(pipeline_release, tmp_path):
    """A release that says it comes from a commit nobody has: signed, and yet unprovable."""
    dist, _, key = pipeline_release
    other = tmp_path / "dist"
    other.mkdir()
    (other / "hello").write_bytes((dist / "hello").read_bytes())
    missing = "f" * 40
    sign(other, key, missing)
    done = verify(other, key, missing, "--rebuild")
    assert done.returncode == 1
    assert f"--rebuild: commit {missing} is not in" in done.stderr.splitlines()[-1]


def test_rebuild_refuses_a_signed_file_the_commit_does_not_build(pipeline_release, docker, base_image,
                                                                  tmp_path):
    """Signed, listed, named in the provenance, and still not what the commit builds."""
    dist, commit, key = pipeline_release
    other = tmp_path / "dist"
    other.mkdir()
    for name in ("hello", "hello.sha256", "hello.cdx.json"):
        (other / name).write_bytes((dist / name).read_bytes())
    with (other / "hello.cdx.json").open("a") as sbom:
        sbom.write("\n")
    sign(other, key, commit)
    done = rebuild(other, key, commit, docker, base_image)
    assert done.returncode == 1, done.stderr
    last = done.stderr.splitlines()[-1]
    assert f"--rebuild: hello.cdx.json rebuilt from {commit[:12]} has other bytes" in last
