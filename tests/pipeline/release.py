"""A signed release made the way the pipeline makes one (build/provenance, then
build/checksums write, then build/sign-release), with a key made for the test:
shared by the suites that verify or deploy signed releases."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import subprocess

from tests.conftest import ROOT

BUILD = ROOT / "build"


@dataclasses.dataclass(frozen=True)
class Key:
    private: pathlib.Path
    signers: pathlib.Path  # its allowed_signers line, as keys/allowed_signers holds one


def make_key(folder: pathlib.Path, name: str = "release") -> Key:
    """An ed25519 key without a passphrase, and its allowed_signers file."""
    folder.mkdir(parents=True, exist_ok=True)
    private = folder / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"test {name}", "-f", str(private)],
                   check=True, timeout=30, capture_output=True)
    public = (folder / f"{name}.pub").read_text().split()
    signers = folder / f"{name}.allowed_signers"
    signers.write_text(f'hello-release namespaces="hello-release" {public[0]} {public[1]}\n')
    return Key(private, signers)


def step(script: str, *args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([str(BUILD / script), *args], capture_output=True, text=True, timeout=120,
                          check=False, env={**os.environ, **(env or {})})
    if check:
        assert done.returncode == 0, f"build/{script} {' '.join(args)}: {done.stderr}"
    return done


def sign(folder: pathlib.Path, key: Key, commit: str) -> None:
    """Provenance for `commit`, SHA256SUMS over the folder, its signature."""
    step("provenance", str(folder), "--commit", commit, "--ref", "refs/heads/main",
         "--repository", "https://example.test/hello")
    resign(folder, key)


def resign(folder: pathlib.Path, key: Key) -> None:
    """SHA256SUMS and its signature made again over the folder as it is now."""
    step("checksums", "write", str(folder))
    step("sign-release", str(folder), env={"HELLO_SIGNING_KEY_FILE": str(key.private)})


def verify(folder: pathlib.Path, key: Key, commit: str, *args: str) -> subprocess.CompletedProcess:
    return step("verify-release", str(folder), "--signers", str(key.signers), "--commit", commit, *args,
                check=False)
