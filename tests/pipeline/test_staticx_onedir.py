"""spec/staticx_onedir.py's check of the archive's tail: its readers find it from the
end of the executable, or the build stops."""

from __future__ import annotations

import importlib.util
import io
import zipfile

import pytest

from tests.conftest import ROOT

_SPEC = importlib.util.spec_from_file_location("staticx_onedir", ROOT / "spec" / "staticx_onedir.py")
onedir_module = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(onedir_module)

COOKIE = onedir_module.PKG_COOKIE


@pytest.fixture
def onedir(tmp_path):
    """A onedir tree with a PKG (a cookie at its end) and a real base_library.zip."""
    tree = tmp_path / "onedir"
    (tree / "_internal").mkdir(parents=True)
    (tree / "hello.pkg").write_bytes(b"\x01" * 4000 + COOKIE + b"\x02" * 80)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("encodings/__init__.pyc", b"\x03" * 3000)
    (tree / "_internal" / "base_library.zip").write_bytes(buffer.getvalue())
    return tree


def tail(tree) -> bytes:
    return b"".join((tree / rel).read_bytes() for rel in onedir_module.TAIL)


def check(tmp_path, tree, data: bytes) -> None:
    output = tmp_path / "hello"
    output.write_bytes(data)
    onedir_module._check_tail(str(output), str(tree))


def test_a_tail_at_the_end_passes(tmp_path, onedir):
    check(tmp_path, onedir, b"\x7fELF" + b"\x00" * 9000 + tail(onedir) + b"\x00" * 10240 + b"\x05" * 2000)


def test_a_cookie_after_the_pkg_is_refused(tmp_path, onedir):
    with pytest.raises(SystemExit, match="looks like its cookie"):
        check(tmp_path, onedir, b"\x7fELF" + tail(onedir) + COOKIE + b"\x00" * 100)


def test_a_zip_too_far_from_the_end_is_refused(tmp_path, onedir):
    with pytest.raises(SystemExit, match="end record"):
        check(tmp_path, onedir, b"\x7fELF" + tail(onedir) + b"\x00" * 70000)


def test_a_zip_before_the_pkg_is_refused(tmp_path, onedir):
    pkg, zipped = ((onedir / rel).read_bytes() for rel in onedir_module.TAIL)
    with pytest.raises(SystemExit):
        check(tmp_path, onedir, b"\x7fELF" + zipped + pkg)


def test_a_tail_not_stored_as_it_is_is_refused(tmp_path, onedir):
    with pytest.raises(SystemExit, match="not stored as they are"):
        check(tmp_path, onedir, b"\x7fELF" + b"\xfd7zXZ" + b"\x00" * 5000)
