"""Build info: the frozen stamp when there is one, else what the checkout says."""

import json
import os
import pathlib
import sys
import time

from hello import __version__, buildinfo, netinfo
from tests.conftest import git_head, require


def fresh_info():
    buildinfo.build_info.cache_clear()
    try:
        return buildinfo.build_info()
    finally:
        buildinfo.build_info.cache_clear()


def test_unfrozen_reports_package_version_and_git_commit():
    info = fresh_info()
    assert info["version"] == __version__
    assert info["frozen"] is False
    head = git_head()
    require(head is not None, "not a git checkout: nothing to compare the commit with")
    assert info["commit"] == head


def test_frozen_reads_the_stamp(tmp_path, monkeypatch):
    stamp = {"version": "9.9.9", "commit": "a" * 40, "build_date": "2026-01-02T03:04:05Z"}
    (tmp_path / buildinfo.STAMP_NAME).write_text(json.dumps(stamp))
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    info = fresh_info()
    assert (info["version"], info["commit"], info["build_date"]) == \
        ("9.9.9", "a" * 40, "2026-01-02T03:04:05Z")
    assert info["frozen"] is True


def test_unfrozen_outside_a_checkout_says_unknown(monkeypatch):
    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")
    monkeypatch.setattr(buildinfo.subprocess, "run", no_git)
    assert fresh_info()["commit"] == "unknown"


def test_frozen_without_stamp_says_unknown(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    info = fresh_info()
    assert info["commit"] == "unknown"
    assert info["build_date"] == "unknown"


def test_version_line_mentions_everything():
    info = fresh_info()
    line = buildinfo.version_line()
    assert line == (f"hello {__version__} (commit {info['commit']}, built unknown, "
                    f"python {info['python']}, unfrozen)")


def test_host_addresses_include_loopback():
    addresses = netinfo.host_addresses()
    assert "127.0.0.1" in addresses
    table = pathlib.Path("/proc/net/if_inet6")
    if table.exists() and "0" * 31 + "1" in table.read_text():
        assert "::1" in addresses  # IPv6 from /proc/net/if_inet6


def test_version_line_of_a_frozen_build(tmp_path, monkeypatch):
    stamp = {"version": "9.9.9", "commit": "b" * 40, "build_date": "2026-01-02T03:04:05Z"}
    (tmp_path / buildinfo.STAMP_NAME).write_text(json.dumps(stamp))
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    buildinfo.build_info.cache_clear()
    try:
        line = buildinfo.version_line()
    finally:
        buildinfo.build_info.cache_clear()
    assert line == (f"hello 9.9.9 (commit {'b' * 40}, built 2026-01-02T03:04:05Z, "
                    f"python {buildinfo.platform.python_version()}, frozen)")


def test_a_repository_without_a_commit_is_an_unknown_commit_not_head(tmp_path, monkeypatch):
    """`git rev-parse HEAD` there prints `HEAD` on stdout and fails: its exit code counts."""
    import subprocess
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True, timeout=30)
    monkeypatch.setattr(buildinfo, "__file__", str(tmp_path / "buildinfo.py"))
    assert buildinfo._git_commit() == buildinfo.UNKNOWN


def test_a_git_that_hangs_costs_two_seconds_then_an_unknown_commit(tmp_path, monkeypatch):
    """/version and `hello version` in a checkout ask git once; a git stuck on a network
    filesystem or a lock must not hang the first answer (nor `hello version`)."""
    git = tmp_path / "git"
    git.write_text("#!/bin/sh\nexec sleep 30\n")
    git.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    started = time.monotonic()
    assert buildinfo._git_commit() == buildinfo.UNKNOWN
    assert 2.0 <= time.monotonic() - started < 2.8


def test_without_netlink_the_addresses_are_the_ipv6_ones(monkeypatch):
    """socket.if_nameindex() asks the kernel over netlink; a sandbox that refuses it
    (seccomp, gVisor) costs the IPv4 addresses, not /whoami."""
    def refused():
        raise OSError(97, "Address family not supported by protocol")

    monkeypatch.setattr(netinfo.socket, "if_nameindex", refused)
    assert netinfo.host_addresses() == netinfo._ipv6()
