"""List what is inside dist/hello, member by member, to find where two builds differ.

    python spec/binary_contents.py BINARY            one line per member
    python spec/binary_contents.py BINARY OTHER      only the lines that differ

Run with build/binary's venv (PyInstaller's archive readers and pyelftools, both
pinned in requirements/build.txt); build/verify-rebuild calls it when two builds of
one commit disagree, so the next leak is found in minutes, not by bisecting bytes.

The layers, each line naming its path through them with `!`:
- the staticx executable: its ELF sections (bootloader, patched program headers)
  and the tar in its `.staticx.archive` section (staticx_onedir.py writes it);
- each tar member: name, mode, owner, mtime, size, sha256;
- an ELF member: its sections; PyInstaller's PKG archive `hello.pkg`: its TOC,
  and that of the PYZ inside it (every module);
- a zip member (base_library.zip): every entry with its date, mode and sha256.
Exit 0 when the listings are equal (or one binary was listed), 1 when they differ.
"""

from __future__ import annotations

import difflib
import hashlib
import io
import os
import sys
import tarfile
import zipfile

from elftools.elf.elffile import ELFFile

MAX_DIFF_LINES = 200


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _elf_sections(prefix: str, data: bytes) -> list[str]:
    elf = ELFFile(io.BytesIO(data))
    lines = []
    for section in elf.iter_sections():
        if section.name and section["sh_type"] != "SHT_NOBITS":
            lines.append(f"{prefix}!{section.name} size={section['sh_size']} sha256={_sha(section.data())}")
    return lines


def _pyinstaller_toc(prefix: str, path_for_reader: str) -> list[str]:
    from PyInstaller.archive.readers import CArchiveReader, NotAnArchiveError

    try:
        pkg = CArchiveReader(path_for_reader)
    except Exception as error:  # noqa: BLE001 (not a PyInstaller executable: say so, go on)
        return [f"{prefix}!<no PKG archive: {type(error).__name__}>"]
    lines = []
    for name, (_offset, length, full_length, compressed, typecode) in sorted(pkg.toc.items()):
        data = pkg.extract(name)
        lines.append(f"{prefix}!{name} type={typecode} stored={length} size={full_length}"
                     f" zlib={compressed} sha256={_sha(data)}")
        try:
            pyz = pkg.open_embedded_archive(name)
        except NotAnArchiveError:
            continue
        for module in sorted(pyz.toc):
            lines.append(f"{prefix}!{name}!{module} entry={pyz.toc[module][0]}"
                         f" sha256={_sha(pyz.extract(module, raw=True) or b'')}")
    return lines


def _zip_entries(prefix: str, data: bytes) -> list[str]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return [f"{prefix}!{info.filename} date={info.date_time} attr={info.external_attr:o}"
                f" sha256={_sha(archive.read(info))}" for info in archive.infolist()]


def _member_lines(name: str, data: bytes, scratch: str) -> list[str]:
    lines = []
    if data[:4] == b"\x7fELF":
        lines += _elf_sections(name, data)
    if name == "hello.pkg":  # PyInstaller's PKG archive, beside its bootloader `hello`
        with open(scratch, "wb") as handle:
            handle.write(data)
        lines += _pyinstaller_toc(name, scratch)
    elif data[:4] == b"PK\x03\x04":
        lines += _zip_entries(name, data)
    return lines


def listing(binary: str) -> list[str]:
    with open(binary, "rb") as handle:
        blob = handle.read()
    lines = [f"<file> size={len(blob)} sha256={_sha(blob)}"]
    elf = ELFFile(io.BytesIO(blob))
    lines += _elf_sections("<staticx>", blob)
    section = elf.get_section_by_name(".staticx.archive")
    if section is None:
        return [*lines, "<staticx>!<no .staticx.archive section>"]
    scratch = binary + ".member.tmp"
    try:
        with tarfile.open(fileobj=io.BytesIO(section.data()), mode="r:*") as tar:
            for member in tar.getmembers():
                data = tar.extractfile(member).read() if member.isreg() else b""
                lines.append(f"{member.name} type={member.type!r} mode={member.mode:o}"
                             f" owner={member.uid}:{member.gid}/{member.uname}:{member.gname}"
                             f" mtime={member.mtime} size={member.size} linkname={member.linkname!r}"
                             f" sha256={_sha(data)}")
                lines += _member_lines(member.name, data, scratch)
    finally:
        if os.path.exists(scratch):
            os.remove(scratch)
    return lines


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2):
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    first = listing(argv[0])
    if len(argv) == 1:
        print("\n".join(first))
        return 0
    second = listing(argv[1])
    diff = list(difflib.unified_diff(first, second, argv[0], argv[1], n=0, lineterm=""))
    for line in diff[:MAX_DIFF_LINES]:
        print(line)
    if len(diff) > MAX_DIFF_LINES:
        print(f"... {len(diff) - MAX_DIFF_LINES} more lines")
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
