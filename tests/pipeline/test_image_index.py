"""build/image-index refuses what is not one release of both platforms, in one line,
before it writes anything (the multi-arch image itself: tests/image/test_index.py)."""

from __future__ import annotations

import pathlib
import shutil
import subprocess

from hello import __version__
from tests.conftest import ROOT, release_binary

INDEX = ROOT / "build" / "image-index"


def run(folder: pathlib.Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(INDEX), str(folder)], capture_output=True, text=True,
                          timeout=120, check=False)


def put(folder: pathlib.Path, name: str, source: pathlib.Path) -> None:
    shutil.copyfile(source, folder / name)
    (folder / name).chmod(0o755)


def test_a_folder_without_the_arm64_binary_is_refused(tmp_path):
    put(tmp_path, f"hello-{__version__}-linux-amd64", release_binary("amd64"))
    result = run(tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"image-index: error: {tmp_path} must hold hello-<version>-linux-amd64 and -linux-arm64 "
        f"of one version and no other (found: hello-{__version__}-linux-amd64); build both "
        "(docs/binary.md, Platforms)"]
    assert not (tmp_path / "hello-oci.tar").exists()


def test_an_amd64_binary_under_the_arm64_name_is_refused(tmp_path):
    put(tmp_path, f"hello-{__version__}-linux-amd64", release_binary("amd64"))
    put(tmp_path, f"hello-{__version__}-linux-arm64", release_binary("amd64"))
    result = run(tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == (f"image-index: error: hello-{__version__}-linux-arm64 is not a "
                                     "64-bit ELF executable for arm64")
    assert not (tmp_path / "hello-oci.tar").exists()


def test_binaries_of_two_versions_are_refused(tmp_path):
    put(tmp_path, f"hello-{__version__}-linux-amd64", release_binary("amd64"))
    put(tmp_path, "hello-0.0.1-linux-arm64", release_binary("amd64"))
    assert run(tmp_path).returncode == 1


def test_a_missing_folder_is_a_usage_error(tmp_path):
    result = run(tmp_path / "nowhere")
    assert result.returncode == 2
    assert "is not a folder" in result.stderr.strip().splitlines()[-1]


def test_a_cut_arm64_binary_is_refused(tmp_path):
    put(tmp_path, f"hello-{__version__}-linux-amd64", release_binary("amd64"))
    (tmp_path / f"hello-{__version__}-linux-arm64").write_bytes(release_binary("arm64").read_bytes()[:4096])
    result = run(tmp_path)
    assert result.returncode == 1
    assert "is not a 64-bit ELF executable for arm64" in result.stderr
    assert not (tmp_path / "hello-oci.tar").exists()


def test_binaries_renamed_to_another_version_are_refused(tmp_path):
    put(tmp_path, "hello-9.9.9-linux-amd64", release_binary("amd64"))
    put(tmp_path, "hello-9.9.9-linux-arm64", release_binary("arm64"))
    result = run(tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == ("image-index: error: hello-9.9.9-linux-amd64 says it is version "
                                     f"'{__version__}' (exit 0), not 9.9.9")


def test_a_link_at_the_output_name_is_replaced_not_written_through(tmp_path):
    put(tmp_path, f"hello-{__version__}-linux-amd64", release_binary("amd64"))
    put(tmp_path, f"hello-{__version__}-linux-arm64", release_binary("arm64"))
    victim = tmp_path / "victim"
    victim.write_text("keep")
    (tmp_path / "hello-oci.tar").symlink_to(victim)
    assert run(tmp_path).returncode == 0
    assert victim.read_text() == "keep"
    assert not (tmp_path / "hello-oci.tar").is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
