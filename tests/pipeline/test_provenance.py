"""build/provenance: the in-toto Statement the pipeline writes before SHA256SUMS,
read back as a user's tool would read it."""

from __future__ import annotations

import hashlib
import json
import re

import pytest

from tests.conftest import ROOT
from tests.pipeline.release import make_key, resign, sign, step, verify

COMMIT = "0123456789abcdef0123456789abcdef01234567"
IMAGE_ID = "sha256:" + "cd" * 32


@pytest.fixture
def dist(tmp_path):
    folder = tmp_path / "dist"
    folder.mkdir()
    (folder / "hello").write_bytes(b"binary")
    (folder / "hello.cdx.json").write_text("{}")
    (folder / "hello-9.9.9-linux-arm64").write_bytes(b"arm64 binary")
    (folder / "hello-oci.tar").write_bytes(b"layout")
    (folder / "hello-image.json").write_text(json.dumps({"image_id": IMAGE_ID, "tags": ["hello:9.9.9"]}))
    return folder


def written(folder) -> dict:
    return json.loads((folder / "provenance.intoto.json").read_text())


def test_every_file_and_the_image_id_are_subjects(dist):
    """The arm64 release binary and the image index's layout included."""
    step("provenance", str(dist), "--commit", COMMIT)
    statement = written(dist)
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == "https://slsa.dev/provenance/v1"
    subjects = {s["name"]: s["digest"]["sha256"] for s in statement["subject"]}
    assert subjects == {
        "hello": hashlib.sha256(b"binary").hexdigest(),
        "hello.cdx.json": hashlib.sha256(b"{}").hexdigest(),
        "hello-9.9.9-linux-arm64": hashlib.sha256(b"arm64 binary").hexdigest(),
        "hello-oci.tar": hashlib.sha256(b"layout").hexdigest(),
        "hello-image.json": hashlib.sha256((dist / "hello-image.json").read_bytes()).hexdigest(),
        "hello:9.9.9": IMAGE_ID.removeprefix("sha256:"),
    }


def test_source_builder_commands_and_requirements_are_recorded(dist):
    step("provenance", str(dist), "--commit", COMMIT, "--ref", "refs/tags/v9.9.9",
         "--repository", "https://example.test/hello", "--invocation", "https://ci.test/run/7")
    definition = written(dist)["predicate"]["buildDefinition"]
    source = definition["externalParameters"]["source"]
    assert source == {"uri": "git+https://example.test/hello@refs/tags/v9.9.9",
                      "digest": {"gitCommit": COMMIT}}
    builder = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", (ROOT / "Dockerfile").read_text(), re.MULTILINE).group(1)
    assert definition["internalParameters"] == {"builderImage": builder}
    assert {"uri": f"docker-image://{builder}"} in definition["resolvedDependencies"]
    for name in ("requirements/build.txt", "requirements/runtime.txt"):
        digest = hashlib.sha256((ROOT / name).read_bytes()).hexdigest()
        assert {"name": name, "digest": {"sha256": digest}} in definition["resolvedDependencies"]
    assert written(dist)["predicate"]["runDetails"]["metadata"] == {"invocationId": "https://ci.test/run/7"}


def test_the_commands_name_both_binary_builds_and_the_image_index(dist):
    """The arm64 binary is the amd64 one's command on another machine: its own key
    says so (tests/pipeline/test_circleci_config.py holds each equal to its job)."""
    step("provenance", str(dist), "--commit", COMMIT)
    commands = written(dist)["predicate"]["buildDefinition"]["externalParameters"]["commands"]
    assert commands["binary"] == commands["binary-arm64"] == "make binary-in-docker"
    assert commands["image-index"] == "make image-index"


def test_circleci_variables_are_the_defaults(dist):
    env = {"CIRCLE_SHA1": COMMIT, "CIRCLE_BRANCH": "main", "CIRCLE_WORKFLOW_ID": "w-1",
           "CIRCLE_REPOSITORY_URL": "git@github.com:someone/hello.git"}
    step("provenance", str(dist), env=env)
    statement = written(dist)
    source = statement["predicate"]["buildDefinition"]["externalParameters"]["source"]
    assert source["uri"] == "git+https://github.com/someone/hello.git@refs/heads/main"
    assert source["digest"] == {"gitCommit": COMMIT}
    assert statement["predicate"]["runDetails"]["metadata"]["invocationId"].endswith("/workflows/w-1")


def test_credentials_in_the_remote_url_never_reach_the_statement(dist):
    step("provenance", str(dist), "--commit", COMMIT, env={"CIRCLE_REPOSITORY_URL": "https://user:TOKEN@git.test/h"})
    text = (dist / "provenance.intoto.json").read_text()
    assert "TOKEN" not in text and "git+https://git.test/h" in text


def test_an_image_subject_other_than_the_manifest_is_refused_by_verify(dist, tmp_path):
    key = make_key(tmp_path / "key")
    sign(dist, key, COMMIT)
    path = dist / "provenance.intoto.json"
    path.write_text(path.read_text().replace("cd" * 32, "ee" * 32))
    resign(dist, key)
    done = verify(dist, key, COMMIT)
    assert done.returncode == 1 and "hello-image.json says " + IMAGE_ID in done.stderr


@pytest.mark.parametrize("args", [["--commit", "abc"], ["--commit", COMMIT, "/nonexistent"], ["--bogus"]])
def test_usage_errors_are_one_line_and_exit_2(args):
    done = step("provenance", *args, check=False)
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1, done.stderr
