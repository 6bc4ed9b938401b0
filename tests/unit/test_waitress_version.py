"""hello is written for one waitress: setup.cfg, the pins and hello/waitress_version.py agree,
and the modules that use its internals refuse another."""

import re
import subprocess
import sys

import pytest

from hello import waitress_version
from tests.conftest import ROOT


def test_the_check_setup_cfg_and_every_pin_name_one_version():
    version = waitress_version.WAITRESS_VERSION
    assert waitress_version.installed_waitress_version() == version
    assert f"waitress=={version}" in (ROOT / "setup.cfg").read_text()
    for name in ("runtime", "build", "test"):
        pins = re.findall(r"^waitress==(\S+)", (ROOT / "requirements" / f"{name}.txt").read_text(), re.M)
        assert pins == [version], name


@pytest.mark.parametrize("module", ["http_parser", "tasks", "channel", "connection_limit", "event_loop",
                                    "drain"])
def test_another_waitress_refuses_to_import(module):
    """Each module that uses waitress's internals checks the version before it imports them."""
    code = ("from hello import waitress_version\n"
            "waitress_version.WAITRESS_VERSION = '0.0.1'\n"
            f"import hello.{module}\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=30, check=False, cwd=ROOT)
    assert result.returncode != 0
    assert "ImportError: hello needs waitress 0.0.1 (it uses its internals), found 3." in result.stderr


def test_another_installed_waitress_is_named_by_its_folder(monkeypatch):
    """The version hello was not written for is found by its dist-info folder's name."""
    monkeypatch.setattr(waitress_version, "WAITRESS_VERSION", "0.0.1")
    assert waitress_version.installed_waitress_version() == "3.0.2"


def test_the_version_is_found_in_the_binarys_bundle_too(tmp_path, monkeypatch):
    """Frozen, waitress's dist-info lies in the bundle (sys._MEIPASS), not beside it."""
    (tmp_path / "waitress-9.9.9.dist-info").mkdir()
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    monkeypatch.setattr(waitress_version, "WAITRESS_VERSION", "9.9.9")
    assert waitress_version.installed_waitress_version() == "9.9.9"
