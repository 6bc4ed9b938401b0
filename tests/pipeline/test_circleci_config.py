"""The CircleCI config is valid without a CircleCI account, and is the pipeline docs/ci.md describes.

CircleCI itself cannot run here (no account, no offline CLI): the schema, the
reference checker and these assertions on the parsed config stand in for it.
"""

from __future__ import annotations

import fnmatch
import importlib.machinery
import importlib.util
import re
import subprocess
import sys

import pytest

from hello import __version__
from tests.conftest import ROOT, require
from tests.pipeline import circleci_refs
from tests.pipeline.conftest import CONFIG

VERSION_TAG = re.compile(r"^v[0-9]+\.[0-9]+\.[0-9]+$")
VERIFY_RELEASE = 'build/verify-release dist --commit "$CIRCLE_SHA1"'
# What a build leaves in dist/: the names build-binary and build-binary-arm64 share,
# and each platform's release names.
SHARED_NAMES = ("dist/hello", "dist/hello.sha256", "dist/hello.cdx.json")
RELEASE_NAMES = {platform: (f"dist/hello-{__version__}-linux-{platform}",
                            f"dist/hello-{__version__}-linux-{platform}.cdx.json")
                 for platform in ("amd64", "arm64")}


def _tool(module: str) -> list[str]:
    require(importlib.util.find_spec(module) is not None,
            f"{module} is not installed (it is in requirements/test.txt: make venv)")
    return [sys.executable, "-m", module]


def _repo_files() -> list[str]:
    """Tracked files plus untracked ones git does not ignore."""
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                         cwd=ROOT, capture_output=True, check=True, timeout=60).stdout
    return sorted({name for name in out.decode().split("\0") if name and (ROOT / name).is_file()})


def _expanded(config, job):
    checker = circleci_refs.Checker(config, ROOT)
    checker.run()
    return checker.job_steps[job]


def _runs(config, job):
    return [body if isinstance(body, str) else body["command"]
            for step, body, _ in _expanded(config, job) if step == "run"]


def _persisted(config, job) -> list[str]:
    return [p for s, b, _ in _expanded(config, job) if s == "persist_to_workspace" for p in b["paths"]]


def _covered(paths: list[str], name: str) -> bool:
    """Whether persisting `paths` (CircleCI globs) puts the file `name` in the workspace."""
    return any(fnmatch.fnmatchcase(name, path) for path in paths)


def _executor(config, job) -> dict:
    return config["executors"][config["jobs"][job]["executor"]]


def _entry(config, workflow, job):
    for entry in config["workflows"][workflow]["jobs"]:
        if entry == job:
            return {}
        if isinstance(entry, dict) and job in entry:
            return entry[job] or {}
    raise KeyError(job)


def test_the_schema_accepts_the_config():
    result = subprocess.run(_tool("check_jsonschema") + ["--builtin-schema", "vendor.circle-ci", str(CONFIG)],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_is_not_vacuous(config, dump):
    config["jobs"]["lint"]["steps"].append({"run": {"comand": "make lint"}})
    result = subprocess.run(_tool("check_jsonschema") + ["--builtin-schema", "vendor.circle-ci",
                                                         str(dump(config))],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 1, result.stdout


def test_yamllint_passes_on_every_yaml_file():
    files = [f for f in _repo_files() if f.endswith((".yml", ".yaml"))] + [".yamllint.yml"]
    assert ".circleci/config.yml" in files
    result = subprocess.run(_tool("yamllint") + ["-s", *sorted(set(files))], cwd=ROOT,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_pipeline_has_its_jobs_in_order(parsed_config):
    workflow = parsed_config["workflows"]["pipeline"]
    requires = {}
    for entry in workflow["jobs"]:
        name, body = (entry, {}) if isinstance(entry, str) else next(iter(entry.items()))
        requires[name] = set((body or {}).get("requires", []))
    assert requires == {
        "lint": set(), "test": set(),
        "build-binary": {"lint", "test"},
        "build-binary-arm64": {"lint", "test"},
        "verify-binary": {"build-binary"},
        "verify-binary-arm64": {"build-binary-arm64"},
        "build-image": {"build-binary"},
        "image-index": {"build-binary", "build-binary-arm64"},
        "sign-release": {"verify-binary", "verify-binary-arm64", "build-image", "image-index"},
        "hold-deploy": {"sign-release"},
        "deploy": {"hold-deploy"},
    }
    assert _entry(parsed_config, "pipeline", "hold-deploy")["type"] == "approval"


def test_deploy_runs_only_on_main_and_version_tags(parsed_config):
    for job in ("sign-release", "hold-deploy", "deploy"):
        filters = _entry(parsed_config, "pipeline", job)["filters"]
        assert filters["branches"]["only"] == "main"
        tag = filters["tags"]["only"].strip("/")
        assert re.match(tag, "v1.2.3") and not re.match(tag, "v1.2") and not re.match(tag, "latest")
    for job in ("lint", "test", "build-binary", "build-binary-arm64", "verify-binary",
                "verify-binary-arm64", "build-image", "image-index"):
        filters = _entry(parsed_config, "pipeline", job)["filters"]
        assert "branches" not in filters, f"{job} must run on every branch"
        deploy_tags = _entry(parsed_config, "pipeline", "deploy")["filters"]["tags"]["only"]
        assert filters["tags"]["only"] == deploy_tags


def test_deploy_uses_the_context_the_key_and_a_pinned_known_hosts(parsed_config):
    entry = _entry(parsed_config, "pipeline", "deploy")
    assert entry["context"] == "hello-deploy"
    assert entry["artifact"] == "<< pipeline.parameters.artifact >>"
    steps = _expanded(parsed_config, "deploy")
    keys = [body for step, body, _ in steps if step == "add_ssh_keys"]
    assert keys and keys[0]["fingerprints"], "add_ssh_keys must name the deploy key by fingerprint"
    runs = _runs(parsed_config, "deploy")
    assert runs[0] == VERIFY_RELEASE
    assert runs[1].startswith("build/ci-ssh-config ")
    assert any(r.startswith("build/deploy ") and '-F "$HOME/.ssh/hello/config"' in r for r in runs)
    names = [s for s, _, _ in steps]
    commands = [body if isinstance(body, str) else body.get("command", "") if isinstance(body, dict) else ""
                for _, body, _ in steps]
    ssh_config = next(i for i, c in enumerate(commands) if c.startswith("build/ci-ssh-config "))
    assert names.index("add_ssh_keys") < ssh_config


def test_deploy_verifies_the_signed_release_before_anything_is_loaded_or_copied(parsed_config):
    steps = _expanded(parsed_config, "deploy")
    names = [s for s, _, _ in steps]
    runs = _runs(parsed_config, "deploy")
    assert names.index("attach_workspace") < names.index("run")
    assert runs[0] == VERIFY_RELEASE
    assert all(not r.startswith(("build/deploy", "build/ci-load-image")) for r in runs[:1])


def test_the_artifact_parameter_defaults_to_the_binary(parsed_config):
    param = parsed_config["parameters"]["artifact"]
    assert param["type"] == "enum" and set(param["enum"]) == {"binary", "image", "swarm"}
    assert param["default"] == "binary"


def _branch(config, artifact) -> list[str]:
    """The run commands of deploy's `when: equal [artifact, ...]` block."""
    for step in config["jobs"]["deploy"]["steps"]:
        body = step.get("when") if isinstance(step, dict) else None
        if body and body["condition"] == {"equal": [artifact, "<< parameters.artifact >>"]}:
            return [s["run"]["command"] for s in body["steps"] if isinstance(s, dict) and "run" in s]
    raise KeyError(artifact)


def test_swarm_pushes_the_signed_image_index_then_deploys_it_by_digest(parsed_config):
    """The swarm gets the multi-arch index image-index wrote (signed, verified first),
    pushed with its digests, and the stack names that digest."""
    runs = _branch(parsed_config, "swarm")
    assert runs == [
        'build/ci-push-image "$HELLO_REGISTRY" dist/hello-oci.tar > dist/swarm-image',
        'build/deploy swarm "$SWARM_MANAGER" -F "$HOME/.ssh/hello/config" --image "$(cat dist/swarm-image)"',
    ]
    assert "dist/hello-oci.tar" in _persisted(parsed_config, "image-index")
    assert _branch(parsed_config, "image") == ["build/ci-load-image dist/hello-image.tar"]
    job = parsed_config["jobs"]["deploy"]["parameters"]["artifact"]["enum"]
    assert job == parsed_config["parameters"]["artifact"]["enum"]


def test_deploy_runs_where_skopeo_can_preserve_digests(parsed_config):
    """build/ci-push-image needs skopeo 1.6+ (--preserve-digests); Ubuntu 22.04, the
    cimg images' base, packages 1.4, Ubuntu 24.04 packages 1.13."""
    executor = _executor(parsed_config, "deploy")
    assert "docker" not in executor
    assert executor["machine"]["image"].startswith("ubuntu-2404:")


def test_rollback_runs_alone_without_a_rebuild(parsed_config):
    assert parsed_config["parameters"]["rollback-to"]["default"] == ""
    assert parsed_config["workflows"]["pipeline"]["when"] == {"not": "<< pipeline.parameters.rollback-to >>"}
    rollback = parsed_config["workflows"]["rollback"]
    assert rollback["when"] == "<< pipeline.parameters.rollback-to >>"
    names = [next(iter(e)) if isinstance(e, dict) else e for e in rollback["jobs"]]
    assert names == ["hold-rollback", "rollback"]
    assert _entry(parsed_config, "rollback", "hold-rollback")["type"] == "approval"
    assert _entry(parsed_config, "rollback", "rollback")["context"] == "hello-deploy"
    runs = _runs(parsed_config, "rollback")
    assert all("make" not in r.split() and "build/binary" not in r and "build/image" not in r for r in runs)
    assert any(r.startswith("build/deploy rollback ") for r in runs)


def test_build_binary_persists_and_stores_its_artifacts(parsed_config):
    steps = _expanded(parsed_config, "build-binary")
    assert _runs(parsed_config, "build-binary") == ["make binary-in-docker"]
    persisted = _persisted(parsed_config, "build-binary")
    for name in (*SHARED_NAMES, *RELEASE_NAMES["amd64"]):
        assert _covered(persisted, name), name
    assert not any(_covered(persisted, name) for name in RELEASE_NAMES["arm64"])
    # store_artifacts takes no globs: the whole dist/ of the job, under its platform
    assert [(b["path"], b["destination"]) for s, b, _ in steps if s == "store_artifacts"] == [
        ("dist", "linux-amd64")]


def test_the_arm64_build_is_the_same_target_natively_on_an_arm_machine(parsed_config):
    """Same make target, so the same Dockerfile and pins; a machine (its own docker
    engine) of an arm resource class, so the builder runs natively."""
    assert _runs(parsed_config, "build-binary-arm64") == _runs(parsed_config, "build-binary")
    executor = _executor(parsed_config, "build-binary-arm64")
    assert executor["resource_class"].startswith("arm.") and "machine" in executor
    steps = [s for s, _, _ in _expanded(parsed_config, "build-binary-arm64")]
    assert "setup_remote_docker" not in steps


def test_the_arm64_build_persists_only_arm64_release_files(parsed_config):
    """Its dist/hello and dist/hello.sha256 are arm64 bytes under the names
    build-binary's amd64 ones have in the same workspace."""
    persisted = _persisted(parsed_config, "build-binary-arm64")
    for name in RELEASE_NAMES["arm64"]:
        assert _covered(persisted, name), name
    for name in (*SHARED_NAMES, *RELEASE_NAMES["amd64"], "dist/hello-image.tar", "dist/hello-oci.tar"):
        assert not _covered(persisted, name), name
    steps = _expanded(parsed_config, "build-binary-arm64")
    assert [(b["path"], b["destination"]) for s, b, _ in steps if s == "store_artifacts"] == [
        ("dist", "linux-arm64")]


def _workspace_conflicts(config) -> list[tuple[str, str, str]]:
    """(job, job, path): two jobs of the pipeline, neither upstream of the other, that
    persist the same workspace path. CircleCI's attach_workspace fails on that
    ("concurrent upstream jobs persisted the same file(s)")."""
    requires = {}
    for entry in config["workflows"]["pipeline"]["jobs"]:
        name, body = (entry, {}) if isinstance(entry, str) else next(iter(entry.items()))
        requires[name] = set((body or {}).get("requires", []))

    def upstream(job):
        found = set(requires[job])
        for parent in requires[job]:
            found |= upstream(parent)
        return found

    paths = {job: _persisted(config, job) for job in requires if job in config["jobs"]}
    return [(first, second, path) for first in sorted(paths) for second in sorted(paths)
            if first < second and first not in upstream(second) and second not in upstream(first)
            for path in paths[first] for other in paths[second]
            if fnmatch.fnmatchcase(path, other) or fnmatch.fnmatchcase(other, path)]


def test_jobs_side_by_side_never_persist_the_same_workspace_file(config):
    assert _workspace_conflicts(config) == []
    for step in config["jobs"]["build-binary-arm64"]["steps"]:
        if isinstance(step, dict) and "persist_to_workspace" in step:
            step["persist_to_workspace"]["paths"].append("dist/hello")
    assert _workspace_conflicts(config) == [("build-binary", "build-binary-arm64", "dist/hello")]


def test_verify_binary_arm64_tests_the_arm64_artifact_natively_as_root(parsed_config):
    executor = _executor(parsed_config, "verify-binary-arm64")
    assert executor["resource_class"].startswith("arm.") and "machine" in executor
    steps = [s for s, _, _ in _expanded(parsed_config, "verify-binary-arm64")]
    assert steps.index("attach_workspace") < steps.index("run")
    assert _runs(parsed_config, "verify-binary-arm64") == [
        "build/ci-as-root cimg/python:3.11.7 make verify-binary-arm64"]
    assert "store_test_results" in steps


def test_image_index_makes_one_index_from_both_builds(parsed_config):
    """It reads both release binaries from the workspace and writes the layout
    deploy pushes; no engine needed."""
    steps = [s for s, _, _ in _expanded(parsed_config, "image-index")]
    assert _runs(parsed_config, "image-index") == ["make image-index"]
    assert steps.index("attach_workspace") < steps.index("run")
    assert "setup_remote_docker" not in steps
    upstream = _persisted(parsed_config, "build-binary") + _persisted(parsed_config, "build-binary-arm64")
    for name in (RELEASE_NAMES["amd64"][0], RELEASE_NAMES["arm64"][0]):
        assert _covered(upstream, name), name
    assert _persisted(parsed_config, "image-index") == ["dist/hello-oci.tar"]


def test_setup_remote_docker_only_in_docker_executor_jobs(parsed_config):
    """A machine has its own engine; CircleCI's remote docker is for docker-executor jobs."""
    for job in parsed_config["jobs"]:
        steps = [s for s, _, _ in _expanded(parsed_config, job)]
        if "setup_remote_docker" in steps:
            assert "docker" in _executor(parsed_config, job), job


def test_verify_binary_tests_the_built_artifact_without_rebuilding(parsed_config):
    steps = [s for s, _, _ in _expanded(parsed_config, "verify-binary")]
    runs = _runs(parsed_config, "verify-binary")
    assert steps.index("attach_workspace") < steps.index("run")
    assert any(r.split()[-2:] == ["make", "verify-binary"] for r in runs)
    assert not any("build/binary" in r or "binary" in r.split() or "dist/hello" in r.split() for r in runs)
    assert "store_test_results" in steps


@pytest.mark.parametrize("target", ["verify-binary", "verify-binary-arm64"])
def test_the_makefile_verify_binary_target_does_not_rebuild(target):
    text = (ROOT / "Makefile").read_text()
    rule = re.search(rf"^{target}:([^#\n]*)", text, re.M)
    recipe = re.search(rf"^{target}:.*\n((?:\t.*\n)*)", text, re.M).group(1)
    assert rule and "dist/hello" not in rule.group(1)
    assert not {"binary", "binary-arm64"} & set(rule.group(1).split())
    assert "build/binary" not in recipe and "arm64-binary" not in recipe


def test_test_job_stores_junit_results(parsed_config):
    steps = _expanded(parsed_config, "test")
    assert "make test-service" in _runs(parsed_config, "test")
    assert {"path": "test-results"} in [b for s, b, _ in steps if s == "store_test_results"]


def test_build_image_puts_build_binarys_dist_hello_in_the_image(parsed_config):
    """No second build: build-image attaches build-binary's workspace and runs the
    dist route (build/image's default), which checks /hello against dist/hello.sha256."""
    steps = _expanded(parsed_config, "build-image")
    names = [s for s, _, _ in steps]
    runs = _runs(parsed_config, "build-image")
    assert names.index("attach_workspace") < names.index("setup_remote_docker") < names.index("run")
    assert runs[0] == "make image IMAGE_TAR=dist/hello-image.tar"
    assert not any("HELLO_BINARY_FROM" in r or "binary" in r.split() for r in runs)
    assert any(r.startswith("build/image-smoke") for r in runs)
    persisted = [p for s, b, _ in steps if s == "persist_to_workspace" for p in b["paths"]]
    assert persisted == ["dist/hello-image.tar", "dist/hello-image.json"]


def test_sign_release_describes_sums_signs_then_verifies_every_artifact(parsed_config):
    """Provenance first (SHA256SUMS must list it), then the sums, the signature, and
    the check a user makes; what it persists is what deploy verifies."""
    assert _runs(parsed_config, "sign-release") == [
        "build/provenance dist", "build/checksums write dist", "build/sign-release dist", VERIFY_RELEASE]
    steps = _expanded(parsed_config, "sign-release")
    persisted = [p for s, b, _ in steps if s == "persist_to_workspace" for p in b["paths"]]
    assert persisted == ["dist/provenance.intoto.json", "dist/SHA256SUMS", "dist/SHA256SUMS.sig"]
    stored = {b["destination"] for s, b, _ in steps if s == "store_artifacts"}
    assert stored == {"provenance.intoto.json", "SHA256SUMS", "SHA256SUMS.sig"}


def test_only_sign_release_holds_the_signing_key(parsed_config):
    contexts = {name: body.get("context") for entry in parsed_config["workflows"]["pipeline"]["jobs"]
                if isinstance(entry, dict) for name, body in entry.items()}
    assert [job for job, context in contexts.items() if context == "hello-release"] == ["sign-release"]


# Which job runs each command build/provenance records.
PROVENANCE_JOBS = {"binary": "build-binary", "binary-arm64": "build-binary-arm64", "image": "build-image",
                   "image-index": "image-index", "checksums": "sign-release"}


def _provenance_commands() -> dict:
    loader = importlib.machinery.SourceFileLoader("provenance", str(ROOT / "build" / "provenance"))
    spec = importlib.util.spec_from_loader("provenance", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module.COMMANDS


def test_the_provenance_names_the_commands_the_pipeline_runs(parsed_config):
    """build/provenance records the build commands; they must be the config's own,
    each in the job its key names (the arm64 build's on an arm machine)."""
    commands = _provenance_commands()
    assert set(commands) == set(PROVENANCE_JOBS)
    for key, job in PROVENANCE_JOBS.items():
        assert commands[key] in _runs(parsed_config, job), (key, job)
    assert _executor(parsed_config, "build-binary-arm64")["resource_class"].startswith("arm.")


def test_the_makefile_image_target_never_rebuilds_the_binary():
    text = (ROOT / "Makefile").read_text()
    rule = re.search(r"^image:([^#\n]*)", text, re.M).group(1)
    recipe = re.search(r"^image:.*\n((?:\t.*\n)*)", text, re.M).group(1)
    assert rule.strip() == "" and recipe.strip() == "build/image"
    image = (ROOT / "build" / "image").read_text()
    assert "route=${HELLO_BINARY_FROM:-dist}" in image
    assert 'build/verify-image-binary "$name:$version" dist/hello.sha256' in image


def test_one_pinned_python_builds_ci_binary_and_image():
    """The builder is named once, in the Dockerfile: CI's build-binary runs its
    builder stage (build/binary-in-docker), so no executor image or second tag
    can drift from it."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    pins = re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", dockerfile, re.M)
    assert len(pins) == 1 and re.fullmatch(r"python:3\.11\.[0-9]+-slim-bookworm", pins[0]), pins
    assert "\nFROM ${PYTHON_IMAGE} AS builder\n" in dockerfile
    script = (ROOT / "build" / "binary-in-docker").read_text()
    assert "--target dist" in script
    assert not re.search(r"^\s*(\./)?build/binary(\s|$)", script, re.M), "it must not build on the host"
    config = CONFIG.read_text()
    assert pins[0] not in config and "python:3.11" not in config.replace("cimg/python:3.11", "")


def test_every_job_runs_only_make_targets_and_build_scripts(parsed_config):
    for job in parsed_config["jobs"]:
        for command in _runs(parsed_config, job):
            first = command.split()[0]
            assert first == "make" or first.startswith("build/"), (job, command)


def test_the_pip_cache_key_covers_every_requirements_file(parsed_config):
    # requirements/mutation.txt is for `make mutation`, and checkov.txt for the manifests
    # suite (make test-manifests): .ci/run runs that one, CircleCI neither
    files = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "requirements").glob("*.txt")
                   if p.name not in ("mutation.txt", "checkov.txt"))
    assert files
    for command in ("restore-pip", "save-pip"):
        steps = parsed_config["commands"][command]["steps"]
        body = steps[0].get("restore_cache") or steps[0].get("save_cache")
        key = body["keys"][0] if "keys" in body else body["key"]
        assert set(re.findall(r'checksum "([^"]+)"', key)) == set(files), command
    assert parsed_config["commands"]["save-pip"]["steps"][0]["save_cache"]["paths"] == ["~/.cache/pip"]


def test_every_job_that_runs_tests_sets_hello_require_all(parsed_config):
    """A suite that cannot run its engine/sshd/socket-activation tests must fail in CI,
    not skip unnoticed."""
    testing = [job for job in parsed_config["jobs"]
               if any(re.search(r"\b(make (test|verify-binary)\S*|pytest)\b", run)
                      for run in _runs(parsed_config, job))]
    assert {"test", "verify-binary", "verify-binary-arm64"} <= set(testing), testing
    for job in testing:
        environment = parsed_config["jobs"][job].get("environment") or {}
        assert environment.get("HELLO_REQUIRE_ALL") == "1", job


def test_lint_runs_make_lint(parsed_config):
    assert _runs(parsed_config, "lint")[-1] == "make lint"


def test_ci_run_rebuilds_twice_and_compares():
    """The varied double build is part of what .ci/run runs, with faketime installed."""
    ci = (ROOT / ".ci" / "run").read_text()
    assert "\nmake verify-rebuild\n" in ci and " faketime " in ci
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^verify-rebuild:.*\n\tbuild/verify-rebuild\n", makefile, re.M)
