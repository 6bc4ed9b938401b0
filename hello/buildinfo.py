"""Version, commit and build date: stamped at freeze time, discovered otherwise.

The frozen binary carries `hello-build.json` (written by spec/hello.spec) next to
its modules. An unfrozen run reports what it can: the package version, the git
commit of the checkout it runs from when there is one, else "unknown".
"""

from __future__ import annotations

import functools
import json
import os
import platform
import subprocess
import sys

from hello import __version__

STAMP_NAME = "hello-build.json"
UNKNOWN = "unknown"


def is_frozen() -> bool:
    return bool(getattr(sys, "frozen", False))


def _stamp() -> dict:
    bundle = getattr(sys, "_MEIPASS", None)
    if not bundle:
        return {}
    try:
        with open(os.path.join(bundle, STAMP_NAME), encoding="utf-8") as stamp:
            return json.load(stamp)
    except (OSError, ValueError):
        return {}


def _git_commit() -> str:
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        result = subprocess.run(
            ["git", "-C", here, "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=2, check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return UNKNOWN
    return result.stdout.strip() or UNKNOWN


@functools.lru_cache(maxsize=1)
def build_info() -> dict:
    """What /version and `hello version` report; computed once per process."""
    stamp = _stamp()
    return {
        "name": "hello",
        "version": stamp.get("version", __version__),
        "commit": stamp.get("commit") or (UNKNOWN if is_frozen() else _git_commit()),
        "build_date": stamp.get("build_date", UNKNOWN),
        "python": platform.python_version(),
        "frozen": is_frozen(),
    }


def version_line() -> str:
    info = build_info()
    return (f"hello {info['version']} (commit {info['commit']}, "
            f"built {info['build_date']}, python {info['python']}, "
            f"{'frozen' if info['frozen'] else 'unfrozen'})")
