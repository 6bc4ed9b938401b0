"""The one waitress version `hello serve` is written for, checked before its internals
are touched.

hello subclasses waitress's parser, task, channel, dispatcher and server classes
(hello/http_parser.py, tasks.py, channel.py, work_queue.py, connection_limit.py,
event_loop.py). They are internals: a new waitress may rename any of them, so each
of those modules calls check() before it imports them, and a mismatch stops `hello
serve` with one line instead of failing under load (the way spec/staticx_onedir.py
refuses an unknown staticx). setup.cfg and requirements/ pin the same version.
"""

from __future__ import annotations

import functools
import pathlib
import sys

import waitress

WAITRESS_VERSION = "3.0.2"


def installed_waitress_version() -> str | None:
    """The version of the waitress that is imported, from its dist-info folder name.

    Read from the folder name, not importlib.metadata: that import costs start time
    and is deferred in the binary (spec/rthook_defer_imports.py). The spec copies
    waitress's dist-info next to the package. The expected name is checked first:
    globbing a big site-packages costs ~7 ms of every start.
    """
    package = pathlib.Path(waitress.__file__).resolve().parent
    folders = (package.parent, pathlib.Path(getattr(sys, "_MEIPASS", package.parent)))
    for folder in folders:
        if (folder / f"waitress-{WAITRESS_VERSION}.dist-info").is_dir():
            return WAITRESS_VERSION
    for folder in folders:
        for info in folder.glob("waitress-*.dist-info"):
            return info.name[len("waitress-"):-len(".dist-info")]
    return None



@functools.cache
def check() -> None:
    found = installed_waitress_version()
    if found != WAITRESS_VERSION:
        raise ImportError(f"hello needs waitress {WAITRESS_VERSION} (it uses its internals), "
                          f"found {found or 'an unknown version'}: check requirements/runtime.txt")
