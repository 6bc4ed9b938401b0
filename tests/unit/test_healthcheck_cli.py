"""hello/healthcheck_cli.py: the probe's fast command line reads what cli.main would
read, declines everything else to it, and imports none of what it exists to skip."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hello import cli, healthcheck, healthcheck_cli, ownprobe
from tests.conftest import ROOT, child_env, free_port


@pytest.fixture
def calls(monkeypatch):
    """The probes each path would run, recorded instead of sent."""
    made: list[tuple] = []
    monkeypatch.setattr(healthcheck, "probe_local", lambda *a: made.append(("local", *a)) or (True, "ok"))
    monkeypatch.setattr(ownprobe, "probe_own", lambda *a: made.append(("own", *a)) or (False, "no"))
    return made


@pytest.mark.parametrize("argv, env", [
    ([], {}),
    (["--port", "9000"], {}),
    (["--port=9000", "--timeout=250ms"], {}),
    (["--timeout", "1.5m"], {"PORT": "7000"}),
    ([], {"HELLO_PORT": "7001", "PORT": "7000"}),
    ([], {"HELLO_PORT": "", "PORT": "7000"}),
    ([], {"HELLO_HOST": "10.0.0.5"}),
    ([], {"HELLO_HOST": "::"}),
    (["--commit", "0123456789ab"], {}),
    (["--own", "/readyz", "--port", "8081"], {}),
    (["--timeout", "3600"], {}),
])
def test_the_fast_path_runs_the_probe_the_full_path_would(calls, argv, env):
    fast = healthcheck_cli.run(argv, env)
    assert fast is not None, "declined"
    full = cli.main(["healthcheck", *argv], env)
    assert fast == full
    assert len(calls) == 2 and calls[0] == calls[1]


@pytest.mark.parametrize("argv, env", [
    (["--help"], {}),
    (["-h"], {}),
    (["--url", "http://127.0.0.1:1/healthz"], {}),
    (["--por", "9000"], {}),
    (["--port", "9000", "--port", "9001"], {}),
    (["--port"], {}),
    (["--port", "-1"], {}),
    (["--port", "0"], {}),
    (["--port", "65536"], {}),
    (["--port", "٨٠"], {}),
    (["--timeout", "0"], {}),
    (["--timeout", "3601"], {}),
    (["--timeout", "1h"], {}),
    (["--timeout", " 2s"], {}),
    (["--commit", "XYZ1234"], {}),
    (["--commit", "012345"], {}),
    (["--own", "readyz"], {}),
    (["--own", "/a b"], {}),
    (["--own", "/readyz", "--commit", "0123456"], {}),
    (["extra"], {}),
    ([], {"PORT": "http"}),
    ([], {"HELLO_HOST": "localhost"}),
    ([], {"HELLO_HOST": "010.0.0.1"}),
    ([], {"HELLO_HOST": "::1"}),
])
def test_what_it_does_not_take_whole_goes_to_the_full_command_line(calls, argv, env):
    assert healthcheck_cli.run(argv, env) is None
    assert calls == []


def test_a_probe_imports_nothing_it_exists_to_skip():
    """argparse, the settings table, http.client (email, ssl), Flask: none of them.
    (-S: the venv's editable-install hook imports urllib.parse itself.)"""
    done = subprocess.run([sys.executable, "-S", "-X", "importtime", "-m", "hello", "healthcheck", "--port",
                           str(free_port()), "--timeout", "1s"], capture_output=True, text=True, cwd=ROOT,
                          timeout=60, check=False, env=child_env())
    assert done.returncode == 1, done.stderr
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines()
                if line.startswith("import time:")}
    assert "hello.healthcheck" in imported
    for module in ("argparse", "hello.cli", "hello.config", "dataclasses", "http.client", "email", "ssl",
                   "urllib.parse", "json", "flask"):
        assert module not in imported, module
    assert done.stderr.splitlines()[-1].startswith("hello healthcheck: http://127.0.0.1:")
