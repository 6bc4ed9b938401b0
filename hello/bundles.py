"""The binary's unpack folders in $TMPDIR: telling the dead from the live, removing the dead.

dist/hello's bootloader (staticx, patched: spec/staticx-bootloader.patch) unpacks
about 12 MB into $TMPDIR/staticx-XXXXXX at every start. It locks that folder
(flock) as soon as it exists, through an fd hello inherits, so the lock is held
while either process lives; then it creates LOCK_FILE in it. A folder holding
LOCK_FILE whose lock is free was left by a start killed outright (a SIGKILL of the
group, an OOM kill, a probe killed at its timeout): nothing can be using it.
Every start removes those before it unpacks; `hello serve` also sweeps here every
SWEEP_SECONDS, so a killed probe's folder is gone within that time even when no
start follows it. An empty folder named like a bundle without LOCK_FILE,
unlocked, older than UNMARKED_DEAD_SECONDS, was left by a start killed before it
marked it: removed too. A folder still being made, a live one (lock held, also by another container
sharing the volume: flock is the file system's), another user's, a symlink, and
other staticx programs' folders are never touched.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import stat
import time

PREFIX = "staticx-"
LOCK_FILE = ".staticx.lock"
SWEEP_SECONDS = 15.0
UNMARKED_DEAD_SECONDS = 30  # as in spec/staticx-bootloader.patch
# PREFIX and the 6 characters mkdtemp() adds: staticx's build tool makes empty
# folders such as staticx-archive-XXXXXXXX, never swept unmarked
BUNDLE_NAME = re.compile(re.escape(PREFIX) + "[A-Za-z0-9]{6}")


def own_bundle() -> str | None:
    """This process's own unpack folder, set by the bootloader; None when unfrozen."""
    return os.environ.get("STATICX_BUNDLE_DIR") or None


def sweep(root: str, own: str | None = None) -> list[str]:
    """Remove the dead unpack folders in root (never own); their names."""
    try:
        root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return []
    own_name = os.path.basename(own) if own else None
    removed = []
    try:
        for name in os.listdir(root_fd):
            if name.startswith(PREFIX) and name != own_name and _remove_if_dead(root_fd, name):
                removed.append(name)
    finally:
        os.close(root_fd)
    return sorted(removed)


def _remove_if_dead(root_fd: int, name: str) -> bool:
    try:
        info = os.stat(name, dir_fd=root_fd, follow_symlinks=False)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
            return False
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                     dir_fd=root_fd)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held: someone lives in it
        try:
            marker = os.stat(LOCK_FILE, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            young = time.time() - info.st_mtime <= UNMARKED_DEAD_SECONDS
            if young or not BUNDLE_NAME.fullmatch(name):
                return False
            # Unmarked, and empty (rmdir refuses anything else) for so long: left by
            # a start killed between creating its folder and marking it. One being
            # made is empty for microseconds (other staticx programs' included).
            os.rmdir(name, dir_fd=root_fd)
            return True
        if not stat.S_ISREG(marker.st_mode):
            return False
        _empty(fd)
        os.unlink(LOCK_FILE, dir_fd=fd)  # last: a sweep killed before here is finished later
        os.rmdir(name, dir_fd=root_fd)
        return True
    except (OSError, RecursionError):  # alive, not marked, gone already (another sweep
        return False  # was faster), or too deep for rmtree this time (what it removed stays removed)
    finally:
        os.close(fd)


def _empty(fd: int) -> None:
    """Everything in the folder but LOCK_FILE, without following a symlink anywhere."""
    for entry in os.listdir(fd):
        if entry == LOCK_FILE:
            continue
        if stat.S_ISDIR(os.stat(entry, dir_fd=fd, follow_symlinks=False).st_mode):
            shutil.rmtree(entry, dir_fd=fd)
        else:
            os.unlink(entry, dir_fd=fd)
