"""hello/bundles.py: which unpack folders are dead, and removing only those.

Real folders, real flock held by a real other process (the way a live bootloader or
a hello in another container holds it), and the server's periodic sweep logging.
"""

from __future__ import annotations

import io
import json
import os
import pathlib
import subprocess
import sys

import pytest

from hello import bundles
from hello.logs import LogWriter

HOLD_LOCK = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.read()
"""


def unpack(root: pathlib.Path, name: str, marked: bool = True) -> pathlib.Path:
    """A folder shaped like the bootloader's: files, a subfolder, symlinks, the marker."""
    folder = root / name
    (folder / "_internal" / "lib").mkdir(parents=True)
    (folder / "hello").write_bytes(b"\x7fELF" + b"x" * 1000)
    (folder / "_internal" / "lib" / "module.so").write_bytes(b"y" * 100)
    (folder / ".staticx.prog").symlink_to("hello")
    if marked:
        (folder / bundles.LOCK_FILE).touch()
    return folder


@pytest.fixture
def holder():
    """hold(folder): another process holds the folder's lock until the test ends."""
    held: list[subprocess.Popen] = []

    def hold(folder: pathlib.Path) -> None:
        process = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(folder)],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        held.append(process)
        assert process.stdout.readline() == "held\n"

    yield hold
    for process in held:
        process.communicate(timeout=10)


def test_a_dead_marked_folder_is_removed_with_everything_in_it(tmp_path):
    unpack(tmp_path, "staticx-dead01")
    assert bundles.sweep(str(tmp_path)) == ["staticx-dead01"]
    assert list(tmp_path.iterdir()) == []


def test_a_folder_whose_lock_another_process_holds_is_kept(tmp_path, holder):
    live = unpack(tmp_path, "staticx-live01")
    unpack(tmp_path, "staticx-dead01")
    holder(live)
    assert bundles.sweep(str(tmp_path)) == ["staticx-dead01"]
    assert (live / "hello").is_file() and (live / bundles.LOCK_FILE).is_file()


def test_a_folder_without_the_marker_is_kept(tmp_path):
    # one still being made (locked, not yet marked), or another staticx program's
    unpack(tmp_path, "staticx-other1", marked=False)
    assert bundles.sweep(str(tmp_path)) == []
    assert (tmp_path / "staticx-other1" / "hello").is_file()


def aged(folder: pathlib.Path, seconds: float) -> pathlib.Path:
    when = os.stat(folder).st_mtime - seconds
    os.utime(folder, (when, when))
    return folder


def test_an_empty_unmarked_folder_left_long_ago_is_removed(tmp_path):
    # a start killed between creating its folder and marking it
    (tmp_path / "staticx-early1").mkdir()
    aged(tmp_path / "staticx-early1", bundles.UNMARKED_DEAD_SECONDS + 5)
    assert bundles.sweep(str(tmp_path)) == ["staticx-early1"]
    assert list(tmp_path.iterdir()) == []


def test_an_empty_unmarked_folder_not_named_like_a_bundle_is_kept(tmp_path):
    # staticx's build tool works in an empty staticx-archive-XXXXXXXX for minutes
    folder = tmp_path / "staticx-archive-l_ll3j03"
    folder.mkdir()
    aged(folder, 3600)
    assert bundles.sweep(str(tmp_path)) == []
    assert folder.is_dir()


def test_an_empty_unmarked_folder_made_just_now_is_kept(tmp_path):
    (tmp_path / "staticx-making").mkdir()  # a start between mkdtemp and its marker
    assert bundles.sweep(str(tmp_path)) == []
    assert (tmp_path / "staticx-making").is_dir()


def test_an_old_unmarked_folder_with_files_is_kept(tmp_path):
    aged(unpack(tmp_path, "staticx-other2", marked=False), 3600)  # another staticx program's
    assert bundles.sweep(str(tmp_path)) == []
    assert (tmp_path / "staticx-other2" / "hello").is_file()


def test_an_old_empty_unmarked_folder_whose_lock_is_held_is_kept(tmp_path, holder):
    folder = tmp_path / "staticx-held01"
    folder.mkdir()
    holder(folder)
    aged(folder, 3600)
    assert bundles.sweep(str(tmp_path)) == []
    assert folder.is_dir()


def test_a_marker_that_is_not_a_file_does_not_count(tmp_path):
    folder = unpack(tmp_path, "staticx-odd001", marked=False)
    (folder / bundles.LOCK_FILE).mkdir()
    assert bundles.sweep(str(tmp_path)) == []


def test_its_own_folder_is_kept_even_unlocked(tmp_path):
    own = unpack(tmp_path, "staticx-own001")
    unpack(tmp_path, "staticx-dead01")
    assert bundles.sweep(str(tmp_path), own=str(own)) == ["staticx-dead01"]
    assert own.is_dir()


def test_a_symlink_is_never_followed(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    target = unpack(elsewhere, "target")
    root = tmp_path / "tmp"
    root.mkdir()
    (root / "staticx-link01").symlink_to(target)
    dead = unpack(root, "staticx-dead01")
    outside = tmp_path / "precious"
    outside.write_text("keep")
    (dead / "_internal" / "to-outside").symlink_to(outside)
    (dead / "_internal" / "dir-outside").symlink_to(elsewhere)

    assert bundles.sweep(str(root)) == ["staticx-dead01"]
    assert (root / "staticx-link01").is_symlink() and (target / "hello").is_file()
    assert outside.read_text() == "keep"


def test_only_staticx_folders_are_looked_at(tmp_path):
    unpack(tmp_path, "hello-dead01")
    unpack(tmp_path, "xstaticx-dead")
    (tmp_path / "staticx-file01").write_text("a file, not a folder")
    assert bundles.sweep(str(tmp_path)) == []
    assert sorted(entry.name for entry in tmp_path.iterdir()) == [
        "hello-dead01", "staticx-file01", "xstaticx-dead"]


def test_what_a_killed_sweep_left_is_finished(tmp_path):
    folder = tmp_path / "staticx-half01"
    folder.mkdir()
    (folder / bundles.LOCK_FILE).touch()  # everything else went before the kill
    assert bundles.sweep(str(tmp_path)) == ["staticx-half01"]
    assert not folder.exists()


def test_another_users_folder_is_kept(tmp_path, monkeypatch):
    folder = unpack(tmp_path, "staticx-other1")
    monkeypatch.setattr(bundles.os, "geteuid", lambda: os.getuid() + 1)  # as another user sees it
    assert bundles.sweep(str(tmp_path)) == []
    assert (folder / "hello").is_file()


def test_a_missing_temp_dir_sweeps_nothing(tmp_path):
    assert bundles.sweep(str(tmp_path / "absent")) == []


def test_the_bootloaders_folder_is_its_own(monkeypatch):
    monkeypatch.setenv("STATICX_BUNDLE_DIR", "/tmp/staticx-abc123")
    assert bundles.own_bundle() == "/tmp/staticx-abc123"
    monkeypatch.setenv("STATICX_BUNDLE_DIR", "")
    assert bundles.own_bundle() is None
    monkeypatch.delenv("STATICX_BUNDLE_DIR")
    assert bundles.own_bundle() is None


def sweep_as_the_server(err: io.StringIO, own: str | None) -> None:
    """What the server runs every bundles.SWEEP_SECONDS, its lines written to err."""
    from hello.server import sweep_dead_unpacks

    sweep_dead_unpacks(LogWriter("json", out=io.StringIO(), err=err), own)


def test_the_server_sweeps_beside_its_own_folder_and_says_so(tmp_path):
    own = unpack(tmp_path, "staticx-own001")
    unpack(tmp_path, "staticx-dead01")
    unpack(tmp_path, "staticx-dead02")
    err = io.StringIO()
    sweep_as_the_server(err, str(own))
    assert sorted(entry.name for entry in tmp_path.iterdir()) == ["staticx-own001"]
    line = json.loads(err.getvalue())
    assert line["level"] == "warning" and line["folders"] == 2 and line["tmpdir"] == str(tmp_path)
    assert line["event"] == "removed the unpack folders of starts killed outright"


def test_the_server_is_quiet_when_nothing_is_dead_or_unfrozen(tmp_path):
    own = unpack(tmp_path, "staticx-own001")
    unpack(tmp_path, "staticx-dead01")
    err = io.StringIO()
    sweep_as_the_server(err, None)  # unfrozen: no unpack folder, nothing to sweep
    assert (tmp_path / "staticx-dead01").is_dir()
    bundles.sweep(str(tmp_path), str(own))
    sweep_as_the_server(err, str(own))
    assert err.getvalue() == ""


def test_a_tree_too_deep_to_remove_at_once_never_raises(tmp_path):
    """shutil.rmtree recurses: a dead folder 1200 levels deep (only its own user can make
    one) raised RecursionError out of the server's sweep, and hello exited 1 right after
    `listening`, at every start. It is left where it is now."""
    folder = unpack(tmp_path, "staticx-deep01")
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(1200):
        os.mkdir("d", dir_fd=fd)
        inner = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = inner
    os.close(fd)
    try:
        assert bundles.sweep(str(tmp_path)) == []  # it stays (marked: a later sweep may retry)
        sweep_as_the_server(io.StringIO(), str(tmp_path / "staticx-own001"))
        assert (folder / bundles.LOCK_FILE).is_file()
    finally:
        flatten(folder)


def flatten(folder: pathlib.Path) -> None:
    """Remove a chain of nested `d` folders without recursion (pytest's own cleanup
    recurses too): pull each inner one up, then remove the outer."""
    while (folder / "d").is_dir():
        os.rename(folder / "d" / "d", folder / "next") if (folder / "d" / "d").exists() else None
        os.rmdir(folder / "d")
        if (folder / "next").exists():
            os.rename(folder / "next", folder / "d")
