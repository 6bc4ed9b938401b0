"""hello/__init__.py: one version, one place. Everything else reads it."""

import json
import re
import subprocess

from hello import __version__
from tests.conftest import ROOT, require

# Files that may spell the version out, and why: measured figures name the image
# tag they measured; the deploy suite's stand-in release prints a fixed `version`
# line of its own (it is not this package).
# bench/RESULTS.md and the deploy suite name builds; the OCI image layout's own version
# (`imageLayoutVersion`, fixed by the OCI spec) is written where a layout is made.
MAY_MENTION = {"bench/RESULTS.md", "tests/deploy/conftest.py", "build/image-index", "tests/swarm/layout.py"}


def test_the_version_is_written_only_in_hello_init():
    assert re.fullmatch(r"[0-9]+\.[0-9]+\.[0-9]+", __version__)
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                           cwd=ROOT, capture_output=True, check=True, timeout=30).stdout.decode()
    # mutmut runs the suite in a copy git ignores (mutants/): nothing to list there.
    require("hello/__init__.py" in files.split("\0"), f"{ROOT} is not a git checkout of hello")
    literal = re.compile(r"(?<![0-9.])" + re.escape(__version__) + r"(?![0-9])")
    found = []
    for name in filter(None, files.split("\0")):
        path = ROOT / name
        if name in MAY_MENTION or not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        if literal.search(text):
            found.append(name)
    assert found == ["hello/__init__.py"], found


def test_openapi_json_leaves_the_version_to_the_package(client):
    shipped = json.loads((ROOT / "hello" / "openapi.json").read_text())
    assert "version" not in shipped["info"]
    served = client.get("/openapi.json").get_json()
    assert served["info"]["version"] == __version__
    assert {key: value for key, value in served["info"].items() if key != "version"} == shipped["info"]
