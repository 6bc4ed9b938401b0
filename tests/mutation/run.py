"""`make mutation`: mutmut over hello/ against the fast suites (tests/unit, tests/server).

Runs `mutmut run` from a clean mutants/ folder, then writes tests/mutation/REPORT.md: the
date, commit, tool version, run time, the count per outcome, the score (killed of
all mutants) and every mutant that was not killed, with its diff and, when it is
one we judged equivalent (no test could tell it from the original), the reason.
mutmut's configuration is the [mutmut] section of setup.cfg; child processes of
the tests report what they ran through tests/mutation/sitecustomize.py.

`make mutation ARGS=--resume` keeps mutants/ from the last run: mutmut keeps the
kills, and the survivors listed as equivalent, of functions whose code did not change,
and checks the rest (new, changed, or not reached when that run was stopped), with the
tests as they are now.

`make mutation ARGS=--again` re-runs only the mutants not killed last time against
the tests as they are now (after adding some), each with pytest -x over the fast
suites directly (mutmut would first re-map every test, and ran them in random
order), keeping the other results, and rewrites tests/mutation/REPORT.md; `ARGS="--again
TESTS..."` re-checks them against those tests only (pytest arguments), and
MUTATION_NAMES=REGEX only the mutants whose names it matches;
`ARGS="--report MINUTES"` only rewrites it from the results in mutants/ (a run made
by hand with `.venv/bin/mutmut run`, which took MINUTES); `ARGS=--report` with the
run times recorded (tests/mutation/REPORT.runs).

Not run by .ci/run or CircleCI: it takes tens of minutes (see tests/mutation/REPORT.md).
"""

from __future__ import annotations

import collections
import concurrent.futures
import datetime
import functools
import importlib.metadata
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from equivalent import NOT_EQUIVALENT, REASONS, key  # noqa: E402 (beside this file)

ROOT = pathlib.Path(__file__).resolve().parents[2]
MUTANTS = ROOT / "mutants"
RESULTS = pathlib.Path(__file__).with_name("REPORT.md")
MUTMUT = pathlib.Path(sys.executable).with_name("mutmut")
TARGET = 0.90
# A mutant is caught when a test fails, or when the tests under it use up mutmut's CPU-time
# limit (SIGXCPU: CPU seconds, not wall time, so a slow machine does not cause it).
CAUGHT = ("killed", "timeout")

def _status(code) -> str:
    from mutmut.stats import status_by_exit_code
    return status_by_exit_code[code]


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                          check=True, timeout=30).stdout.strip()


def _measured_commit() -> str:
    """The commit mutmut recorded when it copied hello/ and tests/ (HEAD otherwise)."""
    try:
        return json.loads((MUTANTS / "mutmut-stats.json").read_text())["git_commit"]
    except (OSError, ValueError, KeyError):
        return _git("rev-parse", "HEAD")


def _results() -> dict[str, str]:
    """mutant name -> outcome (killed, survived, no tests, timeout, ...)."""
    outcome = {}
    for meta in sorted((MUTANTS / "hello").glob("*.py.meta")):
        for name, code in json.loads(meta.read_text())["exit_code_by_key"].items():
            outcome[name] = _status(code)
    return outcome


@functools.cache
def _diff(name: str) -> str:
    shown = subprocess.run([str(MUTMUT), "show", name], cwd=ROOT, capture_output=True, text=True,
                           check=False, timeout=120).stdout
    return "\n".join(line for line in shown.splitlines()[1:] if line.strip())


def _function(name: str) -> str:
    """`Class.method` or `function`, from mutmut's name (hello.mod.xǁClassǁmethod__mutmut_3,
    hello.mod.x_function__mutmut_3)."""
    mangled = re.sub(r"__mutmut_\d+$", "", name.split(".", 2)[2])
    if mangled.startswith("xǁ"):
        return ".".join(mangled[2:].split("ǁ"))
    return mangled[2:]


def reason(name: str) -> str | None:
    """Why the survivor `name` is left alive (tests/mutation/equivalent.py), found by its
    function and the lines its diff changes; None when no reason was written for it."""
    diff = _diff(name).splitlines()
    before = "\n".join(line[1:].strip() for line in diff
                       if line.startswith("-") and not line.startswith("---"))
    after = "\n".join(line[1:].strip() for line in diff
                      if line.startswith("+") and not line.startswith("+++"))
    return REASONS.get(key(_function(name), before, after))


def _keep_only_kills() -> None:
    """Before a resumed run: a kill stands, and so does a survivor with a reason in equivalent.py
    with its reason (mutmut drops both when their function changes); every other verdict
    is checked again, against a fresh copy of tests/ and a fresh map of which test runs
    which function."""
    shutil.rmtree(MUTANTS / "tests", ignore_errors=True)
    (MUTANTS / "mutmut-stats.json").unlink(missing_ok=True)
    for meta in (MUTANTS / "hello").glob("*.py.meta"):
        data = json.loads(meta.read_text())
        data["exit_code_by_key"] = {
            name: code if code is not None and (_status(code) in CAUGHT or reason(name) is not None)
            else None for name, code in data["exit_code_by_key"].items()}
        meta.write_text(json.dumps(data, indent=4))


def main(argv: list[str]) -> int:
    again = argv[:1] == ["--again"]
    resume = argv == ["--resume"]
    if len(argv) == 2 and argv[0] == "--report":
        return report([f"by hand: {float(argv[1]):.1f} min"])
    if argv == ["--report"]:  # again, from the results and the runs recorded
        history = RESULTS.with_suffix(".runs")
        return report(history.read_text().splitlines() if history.exists() else ["unknown"])
    if argv and not (again or resume):
        print("usage: tests/mutation/run.py [--resume | --again [TESTS...] | --report [MINUTES]]",
              file=sys.stderr)
        return 2
    shutil.rmtree(ROOT / ".mutmut-hits", ignore_errors=True)
    children = os.environ.get("MUTATION_CHILDREN", str(os.cpu_count() or 1))
    began = time.monotonic()
    if again:
        only = re.compile(os.environ.get("MUTATION_NAMES", ""))  # a regex: some mutants only
        names = [name for name, status in _results().items()
                 if status not in (*CAUGHT, "not checked") and only.search(name) and reason(name) is None]
        rerun(names, int(children), argv[1:])
        run = subprocess.CompletedProcess([], 0)
    else:
        if resume:
            _keep_only_kills()
        else:
            shutil.rmtree(MUTANTS, ignore_errors=True)
        run = subprocess.run([str(MUTMUT), "run", "--max-children", children], cwd=ROOT,
                             check=False, timeout=4 * 3600, stdout=subprocess.DEVNULL)
    took = time.monotonic() - began
    history = RESULTS.with_suffix(".runs")
    runs = history.read_text().splitlines() if (again or resume) and history.exists() else []
    kind = ("again (the survivors)" if again else
            f"resumed at {_git('rev-parse', '--short=12', 'HEAD')}" if resume else "full")
    runs.append(f"{kind}: {took / 60:.1f} min")
    history.write_text("\n".join(runs) + "\n")
    if run.returncode != 0 or not MUTANTS.is_dir():
        print(f"mutation: mutmut run exited {run.returncode}", file=sys.stderr)
        return 1
    return report(runs, children)


# The unit tests of a module run first in a re-run (pytest -x stops at the first kill).
FIRST_TESTS = {"netinfo": "buildinfo"}


def rerun(names: list[str], children: int, tests: list[str]) -> None:
    """Each mutant again, against a fresh copy of tests/: killed (exit 1) or not (0).
    With TESTS (pytest arguments: files, node IDs, --deselect ...), only those run:
    quick when new tests aim at the survivors. They must pass without a mutant (on the
    code mutmut measured, which may be older than the tests), or nothing is re-checked."""
    shutil.copytree(ROOT / "tests", MUTANTS / "tests", dirs_exist_ok=True)
    for name in ("setup.cfg", "README.md"):
        shutil.copy2(ROOT / name, MUTANTS / name)
    python = pathlib.Path(sys.executable)
    if tests:
        clean = subprocess.run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
                               cwd=MUTANTS, env={**os.environ, "MUTANT_UNDER_TEST": "",
                                                 "PYTHONPATH": str(MUTANTS)},
                               check=False, timeout=1200, capture_output=True, text=True)
        if clean.returncode != 0:
            sys.exit("mutation: the tests fail without a mutant (deselect those):\n"
                     + "\n".join(clean.stdout.splitlines()[-15:]))

    def check(name: str) -> int:
        module = name.split(".")[1]
        first = f"tests/unit/test_{FIRST_TESTS.get(module, module)}.py"
        suites = [first, "tests/server", "tests/unit"] if (ROOT / first).exists() else \
            ["tests/server", "tests/unit"]
        suites = tests or suites
        env = {**os.environ, "MUTANT_UNDER_TEST": name, "PYTHONPATH": str(MUTANTS)}
        try:
            return subprocess.run([str(python), "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                                   *suites], cwd=MUTANTS, env=env, check=False, timeout=1200,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
        except subprocess.TimeoutExpired:
            return 36  # mutmut's "timeout"

    with concurrent.futures.ThreadPoolExecutor(children) as pool:
        codes = dict(zip(names, pool.map(check, names), strict=True))
    for meta in (MUTANTS / "hello").glob("*.py.meta"):
        data = json.loads(meta.read_text())
        for name in data["exit_code_by_key"].keys() & codes.keys():
            data["exit_code_by_key"][name] = codes[name]
        meta.write_text(json.dumps(data, indent=4))
    for name, code in codes.items():
        print(f"mutation: {name}: {_status(code)}", file=sys.stderr)


def report(runs: list[str], children: str = "1") -> int:
    outcome = _results()
    counts = collections.Counter(outcome.values())
    total = len(outcome)
    killed = sum(counts[status] for status in CAUGHT)
    checked = total - counts["not checked"]
    score = killed / total if total else 0.0
    not_killed = sorted(name for name, status in outcome.items()
                        if status not in (*CAUGHT, "not checked"))
    why = {name: reason(name) for name in not_killed}
    unexplained = [name for name in not_killed if why[name] is None]
    untested = [name for name in not_killed if (why[name] or "").startswith(NOT_EQUIVALENT)]
    equivalent = len(not_killed) - len(unexplained) - len(untested)
    score_with_equivalent = (killed + equivalent) / total if total else 0.0

    lines = [
        "# Mutation score",
        "",
        "`make mutation`: mutmut over `hello/` against `tests/unit` and `tests/server` "
        "(setup.cfg `[mutmut]`). Written by tests/mutation/run.py; not run in CI.",
        "",
        f"- date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        f"- commit: {_measured_commit()} (mutmut's record when its run began)",
        f"- tool: mutmut {importlib.metadata.version('mutmut')}, Python "
        f"{sys.version.split()[0]}, --max-children {children}",
        f"- run time on {os.cpu_count()} cores: {'; '.join(runs)}",
        f"- mutants: {total}; " + ", ".join(f"{status} {count}"
                                            for status, count in counts.most_common()),
        f"- checked: {checked} of {total}"
        + (" (**partial run**: the mutants not checked are listed as such below)"
           if checked < total else ""),
        "- caught: killed (a test failed) or timeout (the tests used up mutmut's CPU-time "
        "limit); load tests (`-m load`) are skipped under mutation: on a shared machine "
        "their timing would read as kills",
        f"- **score: {killed}/{total} caught = {score:.1%}**; of those checked: "
        f"{killed / checked if checked else 0:.1%} (target {TARGET:.0%}); "
        f"counting the {equivalent} judged equivalent as killed: {score_with_equivalent:.1%}",
        f"- not killed: {len(not_killed)}: {equivalent} equivalent, {len(untested)} not "
        f"equivalent and not tested (each with what a test would need), "
        f"{len(unexplained)} unexplained",
        "",
        "## Checked and not killed",
        "",
    ]
    if not not_killed:
        lines.append("None.")
    for name in not_killed:
        lines += [f"### `{name}`: {outcome[name]}", "",
                  f"Why: {why[name] or 'not explained yet: a missing test'}", "", "```diff",
                  _diff(name), "```", ""]
    unchecked = sorted(name for name, status in outcome.items() if status == "not checked")
    if unchecked:
        lines += ["## Not checked", "", ", ".join(f"`{name}`" for name in unchecked), ""]
    RESULTS.write_text("\n".join(lines).rstrip() + "\n")
    print(f"mutation: {killed}/{total} killed ({score:.1%}), {len(unexplained)} unexplained; "
          f"see {RESULTS.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
