"""Build staticx's bootloader from its pinned sdist, with spec/staticx-bootloader.patch.

    python spec/staticx_bootloader.py WORKDIR OUTPUT

Run by build/binary. The bootloader is the C program at the front of dist/hello
that unpacks the bundle into $TMPDIR, runs hello from there and removes it at
exit. The patch (its header says what it changes and why) makes a start killed
outright leave nothing for long: each bundle folder is locked while in use, the
next start removes the dead ones before it unpacks, a failed unpack removes what
it wrote, and the bootloader's own exit statuses are told apart from hello's.

Steps, all reproducible (no path, time or host reaches the output):
1. the sdist: WORKDIR/staticx-<version>.tar.gz, else STATICX_SDIST (a local copy,
   for a builder without network), else downloaded from PyPI's file host; its
   sha256 must be one of staticx's hashes in requirements/build.txt (the wheel's
   and the sdist's are both pinned there);
2. its C sources unpacked to a fresh folder, the patch applied with `patch`;
3. compiled and linked statically with BOOTLOADER_CC (default musl-gcc, Debian's
   musl-tools: about 100 KB, as the bootloader in staticx's own wheel; glibc's
   static libc makes it 870 KB), flags as staticx's SConstruct gives a release
   build, and stripped.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request

STATICX_VERSION = "0.14.2"
SDIST = f"staticx-{STATICX_VERSION}.tar.gz"
SDIST_URL = ("https://files.pythonhosted.org/packages/73/47/"
             "bd8f50b3aeae7ec294aeeb14607951f8971fb3196064dd547f2c513b31df/" + SDIST)
ROOT = pathlib.Path(__file__).resolve().parent.parent
PATCH = ROOT / "spec" / "staticx-bootloader.patch"
DOWNLOAD_SECONDS = 120
# The sources of a release bootloader, in link order (bootloader/, libtar/, libxz/
# SConscripts), named one by one: a glob's order would follow the build's locale.
SOURCES = (
    "bootloader/error.c", "bootloader/elfutil.c", "bootloader/extract.c",
    "bootloader/main.c", "bootloader/mmap.c", "bootloader/util.c",
    "libtar/block.c", "libtar/decode.c", "libtar/extract.c", "libtar/handle.c",
    "libtar/output.c", "libtar/util.c", "libtar/compat/strlcpy.c", "libtar/compat/strmode.c",
    "libxz/xz_crc32.c", "libxz/xz_dec_lzma2.c", "libxz/xz_dec_stream.c", "libxz/xz_dec_bcj.c",
)
# libxz's branch filter for this machine's code, as staticx/bcjfilter.py picks it
# (none for aarch64); dist/hello's archive is not compressed, so this only keeps
# the decoder as staticx builds it.
BCJ_FILTERS = {"x86_64": "X86", "i686": "X86"}


def fail(message: str) -> None:
    raise SystemExit(f"staticx_bootloader.py: {message}")


def pinned_hashes() -> set[str]:
    """staticx's sha256 hashes in requirements/build.txt (wheel and sdist)."""
    text = (ROOT / "requirements" / "build.txt").read_text(encoding="utf-8")
    block = re.search(rf"^staticx=={re.escape(STATICX_VERSION)}((?:\s*\\\n\s+--hash=\S+)+)",
                      text, re.M)
    if block is None:
        fail(f"requirements/build.txt does not pin staticx=={STATICX_VERSION} with hashes")
    return set(re.findall(r"--hash=sha256:([0-9a-f]{64})", block.group(1)))


def sdist(workdir: pathlib.Path) -> pathlib.Path:
    """The pinned sdist, checked against its hash: cached, given, or downloaded."""
    cached = workdir / SDIST
    if not cached.is_file():
        given = os.environ.get("STATICX_SDIST")
        partial = cached.with_suffix(".part")
        if given:
            shutil.copyfile(given, partial)
        else:
            print(f"staticx_bootloader.py: downloading {SDIST_URL}", file=sys.stderr)
            with urllib.request.urlopen(SDIST_URL, timeout=DOWNLOAD_SECONDS) as answer, \
                    open(partial, "wb") as out:
                shutil.copyfileobj(answer, out)
        partial.replace(cached)
    digest = hashlib.sha256(cached.read_bytes()).hexdigest()
    if digest not in pinned_hashes():
        cached.unlink()
        fail(f"{SDIST} has sha256 {digest}, not one requirements/build.txt pins")
    return cached


def unpack(archive: pathlib.Path, into: str) -> None:
    """The sdist's files and folders, nothing that could land outside `into`."""
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
        for member in members:  # Python < 3.11.4 (Debian's 3.11.2) has no filter="data"
            parts = member.name.split("/")
            if member.name.startswith("/") or ".." in parts or not (member.isfile() or member.isdir()):
                fail(f"{archive.name}: unexpected member {member.name!r}")
        tar.extractall(into, members=members)  # noqa: S202 (each member checked above)


def compiler_flags(cc: str) -> list[str]:
    """staticx's SConstruct for a release build (tool_release, bootloader/SConscript)."""
    flags = ["-std=gnu99", "-Wall", "-Werror", "-Wmissing-prototypes", "-Wstrict-prototypes",
             "-Os", "-DNDEBUG", "-static", "-s",
             f'-DSTATICX_VERSION="{STATICX_VERSION}"', f'-DCOMPILER_PATH="{cc}"',
             "-Ilibtar", "-Ilibtar/compat", "-Ilibxz"]
    bcj = BCJ_FILTERS.get(platform.machine())
    if bcj:
        flags.append(f"-DXZ_DEC_{bcj}=1")
    return flags


def build(workdir: pathlib.Path, output: pathlib.Path) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    archive = sdist(workdir)
    cc = os.environ.get("BOOTLOADER_CC", "musl-gcc")
    if shutil.which(cc) is None:
        fail(f"no C compiler {cc!r} (Debian: apt-get install musl-tools; or set BOOTLOADER_CC)")
    if shutil.which("patch") is None:
        fail("no `patch` (Debian: apt-get install patch)")
    with tempfile.TemporaryDirectory(prefix="staticx-src-", dir=workdir) as scratch:
        unpack(archive, scratch)
        source = pathlib.Path(scratch) / f"staticx-{STATICX_VERSION}"
        with open(PATCH, "rb") as patch:
            subprocess.run(["patch", "-p1", "--quiet", "--no-backup-if-mismatch", "--forward"],
                           stdin=patch, cwd=source, check=True, timeout=60)
        built = source / "bootloader.out"
        subprocess.run([cc, *compiler_flags(cc), *SOURCES, "-o", str(built)],
                       cwd=source, check=True, timeout=300)
        shutil.copyfile(built, output)
    output.chmod(0o755)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    build(pathlib.Path(argv[0]), pathlib.Path(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
