"""build/checksums: the SHA256SUMS CI writes in build-image and checks in deploy
before anything is copied, run on real files as CircleCI would run it."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import ROOT

SCRIPT = ROOT / "build" / "checksums"


def checksums(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
def dist(tmp_path):
    folder = tmp_path / "dist"
    folder.mkdir()
    for name, data in {"hello": b"\x7fELF binary", "hello.sha256": b"x  hello\n",
                       "hello.cdx.json": b"{}", "hello-image.tar": b"tar", "hello-image.json": b"{}"}.items():
        (folder / name).write_bytes(data)
    written = checksums("write", str(folder))
    assert written.returncode == 0, written.stderr
    return folder


def test_every_artifact_is_summed_and_checks(dist):
    listed = sorted(line.split("  ", 1)[1] for line in (dist / "SHA256SUMS").read_text().splitlines())
    assert listed == ["hello", "hello-image.json", "hello-image.tar", "hello.cdx.json", "hello.sha256"]
    verify = subprocess.run(["sha256sum", "--check", "--strict", "SHA256SUMS"], cwd=dist,
                            capture_output=True, text=True, timeout=60, check=False)
    assert verify.returncode == 0, verify.stdout
    result = checksums("check", str(dist))
    assert result.returncode == 0, result.stderr
    assert "5 files match" in result.stderr


def test_a_changed_artifact_is_refused(dist):
    (dist / "hello-image.tar").write_bytes(b"another tar")
    result = checksums("check", str(dist))
    assert result.returncode == 1
    assert "does not match; refusing" in result.stderr and "hello-image.tar: FAILED" in result.stderr


def test_an_artifact_nobody_summed_is_refused(dist):
    (dist / "extra").write_bytes(b"?")
    result = checksums("check", str(dist))
    assert result.returncode == 1
    assert "not in SHA256SUMS; refusing: extra" in result.stderr


def test_without_sha256sums_nothing_is_trusted(dist):
    (dist / "SHA256SUMS").unlink()
    result = checksums("check", str(dist))
    assert result.returncode == 1
    assert "nothing can be trusted" in result.stderr


def test_usage_is_exit_2(tmp_path):
    assert checksums().returncode == 2
    assert checksums("verify", str(tmp_path)).returncode == 2
    assert checksums("check", str(tmp_path / "nope")).returncode == 2


@pytest.mark.parametrize("name", ["../outside", "/etc/hostname", "sub/inner"])
def test_a_line_naming_a_file_outside_the_folder_is_refused(dist, name):
    """SHA256SUMS is about DIR's own files: a line that reaches elsewhere (it checks
    out, and `N files match` counted it) is a forged or wrong file, refused."""
    (dist / "sub").mkdir()
    (dist / "sub" / "inner").write_bytes(b"inner")
    (dist.parent / "outside").write_bytes(b"outside")
    line = subprocess.run(["sha256sum", name], cwd=dist, capture_output=True, text=True,
                          timeout=60, check=True).stdout
    with (dist / "SHA256SUMS").open("a") as sums:
        sums.write(line)
    result = checksums("check", str(dist))
    assert result.returncode == 1, result.stderr
    assert "not a file of" in result.stderr


@pytest.mark.parametrize("name", ["new\nline", "group\x1cseparator", "carriage\rreturn"])
def test_a_file_name_with_a_control_character_is_refused_by_write_with_one_line(dist, name):
    """Python's splitlines() splits where sha256sum does not: such a name is two lines to one reader."""
    (dist / name).write_bytes(b"?")
    result = checksums("write", str(dist))
    assert result.returncode == 1
    assert result.stderr.startswith("checksums: ") and result.stderr.count("\n") == 1, result.stderr
    assert not (dist / "SHA256SUMS.tmp").exists()


def test_a_temporary_file_a_killed_write_left_is_not_listed(dist):
    (dist / "SHA256SUMS.tmp").write_bytes(b"")
    assert checksums("write", str(dist)).returncode == 0
    assert "SHA256SUMS.tmp" not in (dist / "SHA256SUMS").read_text()
