"""No file in the repository turns ssh host key checking off, by any spelling.

What counts as off (case-insensitive, `=` or blanks between name and value, optional
quotes), spelled out in the patterns below:
- the strict checking option set to no, off or false, and also to accept-new: every
  CI run starts with an empty known_hosts, so "accept new keys" accepts whatever
  answers, every time;
- the user known-hosts file set to /dev/null: nothing is ever known, so nothing is
  checked (the global one set to /dev/null is fine: the pinned user file still is);
- a host key scan written straight into a known_hosts file (trust on first use, in
  a script), paramiko's auto-add or warning policies, Ansible's checking switched off.

The patterns below are assembled from pieces so that this file holds none of the
spellings it looks for, and is scanned like every other file, with no exclusions.
"""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.conftest import ROOT

_SHKC = "Strict" + "HostKeyChecking"
_UKHF = "UserKnown" + "HostsFile"
_SEP = r"""["']?\s*[=\s:]\s*["']?"""
FORBIDDEN = [
    re.compile(_SHKC + _SEP + r"(no|off|false|accept-new)\b", re.I),
    re.compile(r"(?<!Global)" + _UKHF + _SEP + r"/dev/null\b", re.I),
    re.compile(r"ssh-key" + r"scan\b[^\n|;]*>>?\s*\S*known_hosts", re.I),
    re.compile(r"(AutoAdd|Warning)" + r"Policy\b"),
    re.compile(r"host_key_" + r"checking" + _SEP + r"(false|no|0)\b", re.I),
]


def offending_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if any(p.search(line) for p in FORBIDDEN)]


def repository_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                         cwd=ROOT, capture_output=True, check=True, timeout=60).stdout
    return sorted({n for n in out.decode().split("\0") if n and (ROOT / n).is_file()})


def test_no_file_disables_host_key_checking():
    files = repository_files()
    assert ".circleci/config.yml" in files and "build/ci-ssh-config" in files
    found = {}
    for name in files:
        data = (ROOT / name).read_bytes()
        if b"\0" in data:
            continue
        lines = offending_lines(data.decode("utf-8", "replace"))
        if lines:
            found[name] = lines
    assert not found, f"host key checking turned off in: {found}"


@pytest.mark.parametrize("line", [
    "ssh -o " + _SHKC + "=no user@host",
    "ssh -o " + _SHKC.lower() + "=NO host",
    "    " + _SHKC + " no",
    "\t" + _SHKC + "\toff",
    "ssh -o '" + _SHKC + " accept-new' host",
    _SHKC + ' = "no"',
    "ssh -o " + _UKHF + "=/dev/null host",
    "  " + _UKHF + " /dev/null",
    "ssh-key" + "scan -H droplet >> ~/.ssh/known_hosts",
    "client.set_missing_host_key_policy(paramiko.AutoAdd" + "Policy())",
    "ANSIBLE_HOST_KEY_" + "CHECKING=False",
    "host_key_" + "checking = False",
])
def test_each_spelling_is_caught(line):
    assert offending_lines(line) == [line.strip()]


@pytest.mark.parametrize("line", [
    "    " + _SHKC + " yes",
    "ssh -o " + _SHKC + "=yes host",
    "    GlobalKnownHostsFile /dev/null",
    "    " + _UKHF + " /home/circleci/.ssh/hello/known_hosts",
    "ssh-key" + "scan -t ed25519 droplet   # compare with the droplet console, then paste",
    "Host key checking stays on.",
])
def test_safe_settings_are_not_flagged(line):
    assert offending_lines(line) == []
