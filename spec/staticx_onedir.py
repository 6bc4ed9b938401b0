"""Wrap PyInstaller's onedir tree into ONE static executable with staticx, reproducibly.

    python spec/staticx_onedir.py ONEDIR BOOTLOADER OUTPUT

Run by build/binary with the build venv's Python (staticx 0.14.2, pinned in
requirements/build.txt). It uses staticx internals (StaticxGenerator, its
SxArchive and its hook list), so it checks the version and refuses any other.

Why not plain `staticx ONEDIR/hello OUTPUT`:
1. One extraction. `staticx -l` takes only ELF files and stores them flat, so a
   onedir tree cannot go in through the CLI, and a onefile input is unpacked twice
   per start (staticx's bundle, then PyInstaller's `_MEI` copy of the same
   libraries). Here the tree goes into staticx's archive as it is: the bootloader
   unpacks `hello` and `_internal/...` into one temp dir, runs `hello` from there
   (PyInstaller's onedir bootloader finds `_internal` next to itself) and removes
   the whole tree when the child exits.
2. Reproducible output. staticx writes its tar from temp files, so member mtimes,
   owners and permission bits vary from run to run (it ignores SOURCE_DATE_EPOCH).
   Every member goes through `_normalise`: mtime = SOURCE_DATE_EPOCH, owner
   root:root with no names, mode 0755 or 0644. Members are added in sorted order.
   The rest of staticx's output (its bootloader, patchelf's edit of the program,
   objcopy) is deterministic.
3. Our bootloader. BOOTLOADER is staticx's, built from its pinned sdist with
   spec/staticx-bootloader.patch (spec/staticx_bootloader.py): it leaves no unpack
   behind for long, and says what to do when $TMPDIR is unusable. It replaces the
   copy of the wheel's bootloader that staticx starts from.

4. A tail read in place. PyInstaller's PKG archive (`hello.pkg`, every module:
   hello.spec asks for it beside the program, not appended to it) and
   `_internal/base_library.zip` go last in the archive, after an empty
   `.staticx.tail`: our bootloader links them to the executable itself instead
   of copying them out (spec/staticx-bootloader.patch), about 3 MB less written to
   $TMPDIR at every start. That works because their readers find their data from
   the end of the file they open: PyInstaller scans back for the last cookie of a
   PKG, zipimport looks for the zip's end record in the last 64 KB (and allows
   bytes before the zip). So the zip is the very last member and no byte after the
   PKG's cookie may look like one; _check_tail() proves both on the output.

Shared libraries the tree needs from the build system (libc, libm, libz, ...)
are resolved with ldd against the tree and added flat next to the program, where
the patched RPATH of the program (the bundle dir) finds them. Binaries must carry
no RPATH/RUNPATH (build/binary removes them with patchelf first): a RUNPATH
naming the build machine would load the host's libc beside the bundled one.
"""

from __future__ import annotations

import logging
import os
import pathlib
import sys
import tarfile

STATICX_VERSION = "0.14.2"
# Read in place from the executable, in this order (see 4. above and _check_tail)
TAIL = ("hello.pkg", "_internal/base_library.zip")
TAIL_MARKER = ".staticx.tail"  # TAR_TAIL_MARKER in spec/staticx-bootloader.patch
PKG_COOKIE = b"MEI\x0c\x0b\x0a\x0b\x0e"  # PyInstaller's bootloader scans back for it
ZIP_END = b"PK\x05\x06"  # the end of central directory record
ZIP_END_WINDOW = 22 + 0xFFFF  # zipimport looks for ZIP_END only this far from the end


def _normalise(info: tarfile.TarInfo, mtime: int) -> tarfile.TarInfo:
    info.mtime = mtime
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if info.isdir() or info.mode & 0o111:
        info.mode = 0o755
    elif info.isreg():
        info.mode = 0o644
    else:
        info.mode = 0o777  # symlinks
    return info


def _is_elf(path: str) -> bool:
    if os.path.islink(path) or not os.path.isfile(path):
        return False
    with open(path, "rb") as handle:
        return handle.read(4) == b"\x7fELF"


def _tree(root: str) -> list[str]:
    """Every path under root (dirs before their contents), sorted, relative to root."""
    found = []
    for here, dirs, files in os.walk(root):
        dirs.sort()
        rel = os.path.relpath(here, root)
        if rel != ".":
            found.append(rel)
        found.extend(os.path.normpath(os.path.join(rel, name)) for name in sorted(files))
    return found


def _check_tail(output: str, onedir: str) -> None:
    """Refuse an output whose tail PyInstaller or zipimport would not find from its end."""
    with open(output, "rb") as handle:
        data = handle.read()
    pkg, zipped = (pathlib.Path(onedir, rel).read_bytes() for rel in TAIL)
    pkg_at = data.find(pkg)
    zip_at = data.find(zipped, max(pkg_at, 0))
    problems = []
    if pkg_at < 0 or zip_at < 0:
        problems.append("the tail members are not stored as they are (a compressed archive?)")
    else:
        if data.rfind(PKG_COOKIE) != pkg_at + pkg.rfind(PKG_COOKIE):
            problems.append("a byte run after the PKG looks like its cookie")
        if data.rfind(ZIP_END, len(data) - ZIP_END_WINDOW) != zip_at + zipped.rfind(ZIP_END):
            problems.append(f"the zip's end record is not the last one in the last {ZIP_END_WINDOW} bytes")
    if problems:
        raise SystemExit(f"staticx_onedir.py: {output}: {'; '.join(problems)}")


def build(onedir: str, bootloader: str, output: str, mtime: int) -> None:
    import staticx.api as sx_api
    from staticx.elf import get_machine, get_shobj_deps
    from staticx.version import __version__

    if __version__ != STATICX_VERSION:
        raise SystemExit(f"staticx_onedir.py: needs staticx {STATICX_VERSION} (uses its internals),"
                         f" found {__version__}: check requirements/build.txt")
    program = os.path.join(onedir, "hello")
    internal = os.path.join(onedir, "_internal")
    if not (os.path.isfile(program) and os.path.isdir(internal)):
        raise SystemExit(f"staticx_onedir.py: {onedir} is not a PyInstaller onedir tree")
    if not all(os.path.isfile(os.path.join(onedir, rel)) for rel in TAIL):
        raise SystemExit(f"staticx_onedir.py: {onedir} lacks one of {', '.join(TAIL)}"
                         " (hello.spec: EXE(append_pkg=False))")
    tree = [rel for rel in _tree(onedir) if rel != "hello" and rel not in TAIL]

    original_hooks = sx_api.run_hooks

    def add_tree(sx) -> None:
        original_hooks(sx)  # staticx's glibc hook (libnssfix); its PyInstaller hook finds nothing
        for rel in tree:
            sx.sxar.tar.add(os.path.join(onedir, rel), arcname=rel, recursive=False)
        for rel in tree:
            path = os.path.join(onedir, rel)
            if not _is_elf(path):
                continue
            for dep in get_shobj_deps(path, libpath=[internal]):
                if not os.path.realpath(dep).startswith(os.path.realpath(onedir) + os.sep):
                    sx.add_library(dep, exist_ok=True)

    class Generator(sx_api.StaticxGenerator):
        def _get_bootloader(self):
            super()._get_bootloader()  # the temp file staticx builds the output in
            if get_machine(bootloader) != get_machine(self.orig_prog):
                raise SystemExit(f"staticx_onedir.py: {bootloader} is not for the program's machine")
            with open(bootloader, "rb") as ours, open(self.tmpoutput, "wb") as copy:
                copy.write(ours.read())

    sx_api.run_hooks = add_tree
    sx_api.verify_tools()
    generator = Generator(prog=program, strip=False, compress=False)
    tar = generator.sxar.tar
    addfile = tar.addfile
    tar.addfile = lambda info, fileobj=None: addfile(_normalise(info, mtime), fileobj)
    sxar = generator.sxar
    close = sxar.close

    def close_after_tail() -> None:
        if sxar.tar is not None:  # staticx closes the archive when it has added all else
            sxar.tar.addfile(tarfile.TarInfo(TAIL_MARKER))
            for rel in TAIL:
                sxar.tar.add(os.path.join(onedir, rel), arcname=rel, recursive=False)
        close()

    sxar.close = close_after_tail
    with generator:
        generator.generate(output=output)
    _check_tail(output, onedir)
    os.chmod(output, 0o755)  # noqa: S103 (an executable for everyone; staticx leaves 0700)


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="staticx: %(message)s")
    # staticx finds the libraries to bundle with ldd, which lists LD_PRELOAD's too
    # (faketime's, in build/verify-rebuild): those are the build machine's, not ours.
    os.environ.pop("LD_PRELOAD", None)
    mtime = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    build(argv[0], argv[1], argv[2], mtime)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
