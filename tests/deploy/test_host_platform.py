"""build/deploy binary reads the host's machine from its first round trip (`uname -m`)
and refuses a binary of another machine before anything is sent. The host's answer is
hostile input: here a stand-in `ssh` first on PATH gives it, and records every call,
so nothing but this folder is touched. (The real droplet: tests/deploy/test_binary.py.)
"""

from __future__ import annotations

import os
import pathlib
import subprocess

import pytest

from tests.conftest import release_binary
from tests.deploy.conftest import DEPLOY

FAKE_SSH = """#!/bin/sh
# a host whose `uname -m` prints the file ANSWER; any later call is recorded and fails
echo "$*" >>"$(dirname "$0")/calls"
case "$*" in
    *"uname -m") cat "$(dirname "$0")/answer"; exit 0 ;;
esac
exit 99
"""


def deploy_to_fake(tmp_path: pathlib.Path, answer: bytes, artifact: pathlib.Path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ssh").write_text(FAKE_SSH)
    (bin_dir / "ssh").chmod(0o755)
    (bin_dir / "answer").write_bytes(answer)
    result = subprocess.run([str(DEPLOY), "binary", "fakehost", "-a", str(artifact)],
                            capture_output=True, text=True, timeout=30, check=False,
                            env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"})
    calls = (bin_dir / "calls").read_text().splitlines()
    return result, calls


@pytest.mark.parametrize("answer, machine", [
    (b"x86_64\n", "linux-amd64"),
    (b"Welcome to the droplet\r\nx86_64\r\n", "linux-amd64"),  # a MOTD, CRLF
    (b"a" * 1_000_000 + b"\naarch64\n", "linux-arm64"),        # an endless first line
])
def test_the_hosts_machine_decides_and_another_machines_binary_is_refused_at_once(
        tmp_path, answer, machine):
    other = "arm64" if machine == "linux-amd64" else "amd64"
    artifact = release_binary(other)
    result, calls = deploy_to_fake(tmp_path, answer, artifact)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"deploy: error: {artifact} is linux-{other}, and fakehost is {machine}: deploy the "
        f"{machine} binary (dist/hello-<version>-{machine}, docs/binary.md); nothing was copied")
    assert len(calls) == 1


@pytest.mark.parametrize("answer, said", [
    (b"riscv64\n", "riscv64"),
    (b"", "unknown"),
    (b"$(id) * ../x86_64\n", "idx86_64"),
])
def test_a_machine_hello_is_not_built_for_is_named_and_nothing_is_sent(tmp_path, answer, said):
    result, calls = deploy_to_fake(tmp_path, answer, release_binary("amd64"))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"deploy: error: fakehost's machine is '{said}': hello is built for x86_64 (amd64) and "
        "aarch64 (arm64) only; nothing was copied")
    assert len(calls) == 1
