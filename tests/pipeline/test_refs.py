"""The reference checker: clean on the real config, and each rule catches a broken one.

Every broken variant is the real config with one mistake people make, written to a
temporary file and checked from there, so the test reads what the checker reads.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.pipeline import circleci_refs
from tests.pipeline.conftest import CONFIG

CHECKER = ROOT / "tests" / "pipeline" / "circleci_refs.py"


def workflow_entry(config, workflow, job):
    """The body of `job`'s entry in a workflow (created if it was a bare name)."""
    entries = config["workflows"][workflow]["jobs"]
    for index, entry in enumerate(entries):
        if entry == job:
            entries[index] = {job: {}}
            return entries[index][job]
        if isinstance(entry, dict) and job in entry:
            if entry[job] is None:
                entry[job] = {}
            return entry[job]
    raise KeyError(job)


def run_step(job_or_command, needle):
    """The first run step whose command contains needle."""
    for step in job_or_command["steps"]:
        if isinstance(step, dict) and "run" in step:
            body = step["run"]
            if needle in (body if isinstance(body, str) else body["command"]):
                return step
    raise KeyError(needle)


def set_command(step, command):
    if isinstance(step["run"], str):
        step["run"] = command
    else:
        step["run"]["command"] = command


def test_the_real_config_has_no_findings():
    assert circleci_refs.check_file(CONFIG, ROOT) == []


def test_the_command_line_exits_0_on_the_real_config():
    result = subprocess.run([sys.executable, str(CHECKER)], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stderr


def test_the_command_line_exits_1_and_names_the_finding(config, dump):
    config["jobs"]["lint"]["executor"] = "pyhton"
    result = subprocess.run([sys.executable, str(CHECKER), str(dump(config)), "--root", str(ROOT)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert "undefined-executor: job 'lint': executor 'pyhton'" in result.stderr


def test_makefile_targets_are_read_from_the_makefile():
    targets = circleci_refs.makefile_targets(ROOT / "Makefile")
    assert {"lint", "test-service", "binary", "verify-binary", "image", "deploy",
            "test-pipeline", "venv"} <= targets
    assert not {t for t in targets if t.startswith("$") or t in ("VENV", "PY", ".PHONY", "\\")}


def test_shell_words_and_operators():
    words = circleci_refs._tokens('A=1 make lint && build/deploy x -F "$HOME/c" # make nothing\nfoo \\\nbar')
    assert words == ["A=1", "make", "lint", "&&", "build/deploy", "x", "-F", "$HOME/c", "\n",
                     "foo", "bar", "\n"]


def _rename_workflow_job(c):
    workflow_entry(c, "pipeline", "build-image")
    entries = c["workflows"]["pipeline"]["jobs"]
    for entry in entries:
        if "build-image" in entry:
            entry["build-imgae"] = entry.pop("build-image")
    workflow_entry(c, "pipeline", "hold-deploy")["requires"] = ["verify-binary"]


def _requires_other_workflow(c):
    workflow_entry(c, "rollback", "rollback")["requires"] = ["hold-deploy"]


def _misspelled_builtin(c):
    c["jobs"]["test"]["steps"] = [
        {"store_test_result": s["store_test_results"]} if isinstance(s, dict) and "store_test_results" in s
        else s for s in c["jobs"]["test"]["steps"]]
    c["jobs"]["test"]["steps"].append({"store_test_result": {"path": "test-results"}})


def _verify_without_build(c):
    workflow_entry(c, "pipeline", "verify-binary")["requires"] = ["test"]


def _deploy_without_image(c):
    workflow_entry(c, "pipeline", "hold-deploy")["requires"] = ["verify-binary"]


def _deploy_without_attach(c):
    c["jobs"]["deploy"]["steps"] = [s for s in c["jobs"]["deploy"]["steps"]
                                    if not (isinstance(s, dict) and "attach_workspace" in s)]


def _binary_persists_nothing(c):
    c["jobs"]["build-binary"]["steps"] = [s for s in c["jobs"]["build-binary"]["steps"]
                                          if not (isinstance(s, dict) and "persist_to_workspace" in s)]


def _upstream_without_tags(c):
    del workflow_entry(c, "pipeline", "test")["filters"]


BROKEN = {
    # rule: a workflow names an undefined job
    "workflow names an undefined job": (
        _rename_workflow_job,
        "undefined-job: workflow 'pipeline' job 'build-imgae': 'build-imgae' is not defined in jobs:"),
    "workflow names an undefined job (typo in a bare entry)": (
        lambda c: c["workflows"]["pipeline"]["jobs"].append("lnit"),
        "undefined-job: workflow 'pipeline' job 'lnit'"),
    # rule: requires names a job that is not in the workflow
    "requires names a job that does not exist": (
        lambda c: workflow_entry(c, "pipeline", "verify-binary").update(requires=["build-binaries"]),
        "undefined-requires: workflow 'pipeline' job 'verify-binary': requires 'build-binaries'"),
    "requires names a job of another workflow": (
        _requires_other_workflow,
        "undefined-requires: workflow 'rollback' job 'rollback': requires 'hold-deploy', "
        "which is not a job of workflow 'rollback'"),
    # rule: a job names an undefined executor or command
    "job names an undefined executor": (
        lambda c: c["jobs"]["lint"].update(executor="pyhton"),
        "undefined-executor: job 'lint': executor 'pyhton' is not defined in executors:"),
    "job has no executor at all": (
        lambda c: c["jobs"]["lint"].pop("executor"),
        "no-executor: job 'lint'"),
    "job names an undefined command": (
        lambda c: c["jobs"]["test"]["steps"].__setitem__(1, "venvs"),
        "undefined-step: job 'test' step 2: 'venvs' is neither a built-in step nor a command"),
    # rule: a step is neither built-in nor a defined command
    "misspelled built-in step": (
        _misspelled_builtin,
        "undefined-step: job 'test' step 5: 'store_test_result' is neither a built-in step "
        "nor a command defined in commands:"),
    "misspelled step inside a command": (
        lambda c: c["commands"]["results"]["steps"].__setitem__(1, {"store_artifact": {"path": "x"}}),
        "undefined-step: job 'test' step 4 -> results step 2: 'store_artifact' is neither a built-in step"),
    # rule: make X names no Makefile target
    "make names no target": (
        lambda c: set_command(run_step(c["jobs"]["lint"], "make lint"), "make lints"),
        "undefined-make-target: job 'lint' step 3 (run): make lints: the Makefile has no target 'lints'"),
    "make in a command names no target": (
        lambda c: set_command(run_step(c["commands"]["venv"], "make venv"), "make venvs"),
        "undefined-make-target: job 'lint' step 2 -> venv step 2 (run): make venvs"),
    # rule: a script path does not exist
    "script path does not exist": (
        lambda c: set_command(run_step(c["jobs"]["build-image"], "build/image-smoke"),
                              "build/image-smoek hello:latest"),
        "missing-script: job 'build-image' step 5 (run): build/image-smoek does not exist"),
    "script run as a command is not executable": (
        lambda c: set_command(run_step(c["jobs"]["build-image"], "build/image-smoke"),
                              "tests/conftest.py hello:latest"),
        "missing-script: job 'build-image' step 5 (run): tests/conftest.py is run as a command "
        "but is not an executable file"),
    # rule: attach_workspace reads what no upstream persisted
    "verify-binary attaches with no build upstream": (
        _verify_without_build,
        "unpersisted-workspace: workflow 'pipeline' job 'verify-binary': attaches a workspace "
        "but no upstream job persists anything"),
    "build-binary persists nothing": (
        _binary_persists_nothing,
        "unpersisted-workspace: workflow 'pipeline' job 'verify-binary': attaches a workspace"),
    "deploy reads the image tar that no upstream persisted": (
        _deploy_without_image,
        "unpersisted-workspace: workflow 'pipeline' job 'deploy': reads 'dist/hello-image.tar', "
        "which no upstream job in workflow 'pipeline' persists"),
    "deploy reads a workspace path without attaching": (
        _deploy_without_attach,
        "unpersisted-workspace: workflow 'pipeline' job 'deploy': reads 'dist/hello-image.tar', "
        "a workspace path, without attach_workspace"),
    # the rest of what the schema cannot see
    "run step is not thin": (
        lambda c: c["jobs"]["lint"]["steps"].append({"run": "pip install ruff && ruff check ."}),
        "not-thin: job 'lint' step 4 (run): 'pip install ruff && ruff check .' calls neither"),
    "upstream job misses the tags filter": (
        _upstream_without_tags,
        "tags-filter: workflow 'pipeline' job 'deploy': runs on tags but its upstream 'test' "
        "has no tags filter"),
    "undefined pipeline parameter": (
        lambda c: c["workflows"]["pipeline"]["jobs"][-1]["deploy"].update(
            artifact="<< pipeline.parameters.artefact >>"),
        "undefined-parameter: workflow 'pipeline': << pipeline.parameters.artefact >>"),
    "undefined job parameter": (
        lambda c: c["jobs"]["rollback"]["steps"].append(
            {"run": "build/deploy rollback droplet --release << parameters.relase >>"}),
        "undefined-parameter: job 'rollback': << parameters.relase >>"),
    "required job parameter not passed": (
        lambda c: c["workflows"]["pipeline"]["jobs"][-1]["deploy"].pop("artifact"),
        "bad-argument: workflow 'pipeline' job 'deploy': does not pass required parameter 'artifact'"),
    "command given an undeclared argument": (
        lambda c: c["jobs"]["test"]["steps"].__setitem__(1, {"venv": {"python": "3.12"}}),
        "bad-argument: job 'test' step 2: command 'venv': passes 'python'"),
    "cache key checksums a missing file": (
        lambda c: c["commands"]["save-pip"]["steps"][0]["save_cache"].update(
            key='pip-{{ checksum "requirements/tests.txt" }}'),
        'missing-checksum-file: job \'lint\' step 2 -> venv step 3 -> save-pip step 1 (save_cache): '
        '{{ checksum "requirements/tests.txt" }}: no such file'),
}


@pytest.mark.parametrize("mistake", list(BROKEN))
def test_each_rule_catches_its_broken_config(mistake, config, dump):
    mutate, expected = BROKEN[mistake]
    mutate(config)
    findings = circleci_refs.check_file(dump(config), ROOT)
    assert any(expected in finding for finding in findings), "\n".join(findings) or "no findings"


def test_every_rule_has_a_broken_config():
    documented = {line.split()[0] for line in circleci_refs.__doc__.split("Rules")[1].split("Usage:")[0]
                  .splitlines() if line.startswith("  ") and not line.startswith("    ")}
    caught = {expected.split(":")[0] for _, expected in BROKEN.values()}
    assert documented == caught


def test_the_built_in_steps_match_the_vendored_schema():
    """If CircleCI adds or renames a built-in step, the checker must learn it."""
    import json
    from pathlib import Path

    import check_jsonschema

    schema_file = Path(check_jsonschema.__file__).parent / "builtin_schemas/vendor/circle-ci.json"
    schema = json.loads(schema_file.read_text())
    names = set()
    for option in schema["definitions"]["step"]["oneOf"]:
        names |= set(option.get("properties", {}))
    names |= {"when", "unless"}
    assert names == set(circleci_refs.BUILTIN_STEPS)
