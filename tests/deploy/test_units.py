"""The systemd units deploy/droplet ships, and build/deploy's usage errors (no droplet)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.conftest import ROOT, require
from tests.deploy.conftest import DEPLOY

UNITS = ("hello.service", "hello.socket")


def test_units_pass_systemd_analyze_verify(tmp_path):
    analyze = shutil.which("systemd-analyze")
    require(analyze is not None, "systemd-analyze is missing (apt-get install systemd)")
    # At a temporary base, which must hold an executable current/hello (verify
    # checks ExecStart exists); hello-ctl points them there with a drop-in.
    (tmp_path / "releases" / "r").mkdir(parents=True)
    (tmp_path / "releases" / "r" / "hello").write_text("#!/bin/sh\n")
    (tmp_path / "releases" / "r" / "hello").chmod(0o755)
    (tmp_path / "current").symlink_to("releases/r")
    for unit in UNITS:
        text = (ROOT / "deploy" / "droplet" / unit).read_text()
        (tmp_path / unit).write_text(text.replace("/opt/hello", str(tmp_path)))
    result = subprocess.run([analyze, "verify", *(str(tmp_path / unit) for unit in UNITS)],
                            check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def test_service_unit_is_hardened_and_outlasts_the_drain():
    text = (ROOT / "deploy" / "droplet" / "hello.service").read_text()
    settings = dict(line.split("=", 1) for line in text.splitlines()
                    if "=" in line and not line.startswith("#"))
    for key, value in {"DynamicUser": "yes", "NoNewPrivileges": "yes", "ProtectSystem": "strict",
                       "PrivateTmp": "yes", "Restart": "on-failure", "KillMode": "mixed"}.items():
        assert settings.get(key) == value, key
    assert settings["ExecStart"] == "/opt/hello/current/hello serve"
    # hello ends its own drain (HELLO_DRAIN_TIMEOUT, at most 3600 s): systemd's SIGKILL
    # must never come first.
    assert int(settings["TimeoutStopSec"].rstrip("s")) > 3600


@pytest.mark.parametrize("args, message", [
    ([], "expected: build/deploy binary|image|rollback HOST"),
    (["ship", "droplet"], "'ship' is not binary, image or rollback"),
    (["binary", "droplet", "--port", "abc"], "--port: 'abc' is not a port number"),
    (["binary", "droplet", "--keep", "1"], "--keep: '1' is not a number from 2 to 999"),
    (["binary", "droplet", "--lock-wait", "soon"], "--lock-wait: 'soon' is not whole seconds"),
    (["rollback", "droplet", "--release", "../../x"], "--release: '../../x' is not"),
    (["binary", "droplet", "--base", "relative"], "--base: 'relative' is not an absolute path"),
    (["binary", "droplet", "-F", "/nonexistent"], "-F: '/nonexistent' is not a file"),
    (["binary", "droplet", "--bogus", "x"], "unknown option '--bogus'"),
])
def test_usage_errors_exit_2_with_one_line(args, message):
    result = subprocess.run([str(DEPLOY), *args], check=False, capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
