"""docs/tutorial.md, run as it is written: every `sh` block in a fresh clone of this
checkout, `sh fails` blocks expected to fail, `sh ci-only` blocks held to what exists
(they need CircleCI). The deploy steps go to a test droplet of the tutorial's own.

What the runner gives the blocks, and nothing else: the checkout's venvs (VENV and
HELLO_BUILD_VENV) and staticx sdist (STATICX_SDIST), so the clone builds nothing twice
and needs no network; a /30 of its own for its droplet (HELLO_DROPLET_NET); and for
step 1 a network namespace of its own, where port 8080 is free whatever runs here.
"""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest

from tests.conftest import ROOT, require

pytestmark = [pytest.mark.droplet, pytest.mark.slow]

TUTORIAL = ROOT / "docs" / "tutorial.md"
BLOCK = re.compile(r"^```sh( [a-z-]+)?\n(.*?)^```$", re.M | re.S)
DROPLET_DIR = "/tmp/hello-droplet"


def blocks() -> list[tuple[str, str]]:
    """(kind, code) for each sh block, in order: kind '' (run), 'fails' or 'ci-only'."""
    return [((kind or "").strip(), code) for kind, code in BLOCK.findall(TUTORIAL.read_text())]


def test_the_tutorial_has_runnable_and_offline_steps():
    kinds = [kind for kind, _ in blocks()]
    assert kinds.count("") >= 5 and "fails" in kinds and "ci-only" in kinds
    assert set(kinds) <= {"", "fails", "ci-only"}


def test_its_ci_only_steps_name_what_exists():
    """What CI alone can run, checked offline: the make targets and scripts exist."""
    ci_only = "\n".join(code for kind, code in blocks() if kind == "ci-only")
    makefile = (ROOT / "Makefile").read_text()
    for target in re.findall(r"make ([a-z-]+)", ci_only):
        assert re.search(rf"^{target}:", makefile, re.M), target
    assert "bash .ci/run" in ci_only and (ROOT / ".ci" / "run").exists()
    assert "rollback-to" in (ROOT / ".circleci" / "config.yml").read_text()


def version_of(output: str) -> dict:
    """The last /version answer a block printed: a JSON object with a commit and
    `frozen`, wherever it stands (a log line is JSON too, and the server's log lines
    share stdout with curl's answer, which need not start a line)."""
    found = []
    for text in re.findall(r'\{[^{}\n]*"commit"[^{}\n]*\}', output):
        try:
            found.append(json.loads(text))
        except ValueError:
            continue
    return [each for each in found if "frozen" in each][-1]


@pytest.mark.timeout(1800)
def test_the_tutorial_runs_as_written(tmp_path):
    require(os.geteuid() == 0, "needs root (a network namespace, the test droplet)")
    sdists = sorted((ROOT / ".pyinstaller").glob("staticx-*.tar.gz"))
    require(bool(sdists) and all(os.path.exists(path) for path in (
        ROOT / ".venv" / "bin" / "ruff", ROOT / ".pyinstaller" / "venv")),
        "needs the checkout's venvs and staticx sdist (make venv, make binary)")
    clone = tmp_path / "hello"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=120)
    for made in ("requirements/test.txt", "setup.cfg", "pyproject.toml"):
        os.utime(clone / made, (0, 0))  # older than the checkout's venv: make reuses it
    env = {**os.environ, "VENV": str(ROOT / ".venv"),
           "HELLO_BUILD_VENV": str(ROOT / ".pyinstaller" / "venv"),
           "STATICX_SDIST": str(sdists[-1]),
           "HELLO_DROPLET_NET": "10.231.7"}
    env.pop("HELLO_COMMIT", None)
    first = subprocess.run(["git", "rev-parse", "HEAD"], cwd=clone, capture_output=True,
                           text=True, check=True, timeout=30).stdout.strip()
    outputs = []
    try:
        for number, (kind, code) in enumerate(blocks()):
            if kind == "ci-only":
                continue
            argv = ["bash", "-euo", "pipefail", "-c", code]
            if number == 0:  # step 1 serves on 8080: in a network of its own
                argv = ["unshare", "--net", "bash", "-c", 'ip link set lo up && exec "$@"', "--",
                        *argv]
            result = subprocess.run(argv, cwd=clone, env=env, capture_output=True, text=True,
                                    timeout=900, check=False)
            failed = result.returncode != 0
            assert failed == (kind == "fails"), (number, code, result.stdout[-2000:],
                                                 result.stderr[-3000:])
            outputs.append(result.stdout)
    finally:
        subprocess.run([str(clone / "tests" / "infra" / "droplet"), "down", DROPLET_DIR],
                       env=env, capture_output=True, timeout=300, check=False)
    served = [version_of(output) for output in outputs if '"commit"' in output]
    assert len(served) == 4  # step 1, the first deploy, the new release, the rollback
    new = subprocess.run(["git", "rev-parse", "HEAD"], cwd=clone, capture_output=True,
                         text=True, check=True, timeout=30).stdout.strip()
    assert new != first
    assert [info["commit"] for info in served] == [first, first, new, first]
    assert all(info["frozen"] for info in served)
