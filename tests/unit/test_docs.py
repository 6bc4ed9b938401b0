"""README.md and docs/ point at things that exist: every relative link, every `make`
target, every script or file they name in backticks. (test_readme.py holds the README's
routes and settings tables to the code.)"""

from __future__ import annotations

import os
import re

import pytest

from tests.conftest import ROOT

# mutmut runs the tests in its copy, mutants/, which holds hello/, tests/ and setup.cfg
# but not docs/ or the Makefile; these check the docs, which no mutant of hello/ changes.
pytestmark = pytest.mark.skipif("MUTANT_UNDER_TEST" in os.environ,
                                reason="the docs are not in mutmut's copy (mutants/)")

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
MAKE = re.compile(r"`make ([a-z][a-z0-9-]*)")
# a path in backticks under one of the project's folders, like `build/deploy` or
# `tests/infra/droplet up DIR` (the first word)
NAMED_PATH = re.compile(r"`((?:build|spec|hello|deploy|tests|bench|requirements|docs|keys|\.ci|\.do)"
                        r"/[A-Za-z0-9_./-]+)")


def targets() -> set[str]:
    makefile = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([a-z][a-z0-9-]*):", makefile, re.M))


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_relative_link_leads_to_a_file(page):
    text = page.read_text()
    broken = [target for target in LINK.findall(text)
              if "://" not in target and not (page.parent / target).exists()]
    assert broken == []


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_make_target_named_exists(page):
    missing = sorted(set(MAKE.findall(page.read_text())) - targets())
    assert missing == []


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_script_and_file_named_exists(page):
    missing = sorted({path for path in NAMED_PATH.findall(page.read_text())
                      if not (ROOT / path.rstrip(".")).exists() and "<" not in path})
    assert missing == []


def test_the_manual_has_the_pages_the_readme_links():
    linked = {target for target in LINK.findall((ROOT / "README.md").read_text())
              if target.startswith("docs/")}
    assert linked == {f"docs/{page.name}" for page in (ROOT / "docs").glob("*.md")}


def test_the_readme_is_a_front_door():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 200
    fences = 0
    for number, line in enumerate(lines, 1):
        fences += line.startswith("```")
        if fences % 2 == 0:  # prose and tables, not the pictures in code blocks
            assert len(line) <= 200, f"README.md:{number} is {len(line)} characters"


def test_the_release_key_is_printed_in_the_docs_as_committed():
    """docs/verify.md shows keys/allowed_signers in full: a user compares the two."""
    key = (ROOT / "keys" / "allowed_signers").read_text()
    blocks = re.findall(r"^```\n(.*?)^```$", (ROOT / "docs" / "verify.md").read_text(), re.M | re.S)
    assert key in blocks
