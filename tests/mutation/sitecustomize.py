"""Imported at start-up by the test suite's child processes, only under `make mutation`.

mutmut learns which tests cover which function by recording calls in its own
process; a `python -m hello` child (a served process, a CLI run) records them in
its own memory, which mutmut never sees. Without this, functions that only ever run
in a child (the drain, the signal handler) would count as covered by no test.
At exit (os._exit too), the child writes the functions it ran to $HELLO_MUTMUT_HITS/<pid>.hits;
tests/conftest.py adds them to the test that started the child.
"""

import atexit
import os


def _report_hits() -> None:
    from mutmut.state import state

    hits = sorted(state()._stats)
    if hits:
        # a process in its own PID namespace may be pid 1 like another: the name must not clash
        path = os.path.join(os.environ["HELLO_MUTMUT_HITS"], f"{os.getpid()}-{os.urandom(8).hex()}.hits")
        with open(path, "w", encoding="utf-8") as out:
            out.write("\n".join(hits) + "\n")


def _exit_reporting_hits(code: int) -> None:
    """os._exit skips atexit: the second signal's exit would report nothing."""
    _report_hits()
    _os_exit(code)


if os.environ.get("MUTANT_UNDER_TEST") == "stats" and os.environ.get("HELLO_MUTMUT_HITS"):
    atexit.register(_report_hits)
    _os_exit = os._exit
    os._exit = _exit_reporting_hits
