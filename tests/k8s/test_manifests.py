"""deploy/k8s rendered by `kubectl kustomize` (offline, with no deprecation warning),
validated by `kubernetes-validate --strict` for the Kubernetes versions DOKS offers
and by checkov (the linter people run on manifests) on the DOKS overlay, then held
to hello's own rules (tests/k8s/policy.py), each of which a test breaks.
"""

from __future__ import annotations

import copy
import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest
import yaml

from tests.conftest import ROOT, require
from tests.k8s.policy import findings

K8S = ROOT / "deploy" / "k8s"
VALIDATE = pathlib.Path(sys.executable).with_name("kubernetes-validate")
# checkov lives in a venv of its own (make checkov-venv: requirements/checkov.txt)
CHECKOV = pathlib.Path(os.environ.get("HELLO_CHECKOV", ROOT / ".venv-checkov" / "bin" / "checkov"))
# DOKS offers the newest three minor versions or so (`doctl kubernetes options
# versions`); this range covers them with room on both sides, from the oldest
# with preStop.sleep on by default to the newest schema kubernetes-validate has.
K8S_VERSIONS = ("1.32.0", "1.33.0", "1.34.0", "1.35.0", "1.36.0", "1.37.0")


def render(path: pathlib.Path) -> str:
    kubectl = shutil.which("kubectl")
    require(kubectl is not None, "kubectl 1.27 or newer is not installed (kustomize v5 fields)")
    result = subprocess.run([kubectl, "kustomize", str(path)], check=False, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr  # no deprecated field (bases, patchesStrategicMerge)
    return result.stdout


def validate(text: str, version: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(VALIDATE), "--strict", "--kubernetes-version", version, "-"],
                          input=text, check=False, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def rendered() -> dict[str, str]:
    return {"base": render(K8S / "base"), "do": render(K8S / "overlays" / "do")}


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("overlay", ["base", "do"])
def test_kubernetes_validate_strict_passes(rendered, overlay, version):
    result = validate(rendered[overlay], version)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed for resource") == {"base": 5, "do": 6}[overlay]


def test_kubernetes_validate_strict_is_not_vacuous(rendered):
    docs = list(yaml.safe_load_all(rendered["do"]))
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {}
    result = validate(yaml.safe_dump_all(docs), K8S_VERSIONS[0])
    assert result.returncode != 0
    assert "httpGett" in result.stdout + result.stderr


@pytest.mark.parametrize("overlay", ["base", "do"])
def test_the_rendered_manifests_hold_every_rule(rendered, overlay):
    assert findings(list(yaml.safe_load_all(rendered[overlay])), overlay) == []


def _container(docs):
    return _pod(docs)["containers"][0]


def _pod(docs):
    return next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]


def _set(path, value):
    def mutate(docs):
        target = _container(docs)
        for key in path[:-1]:
            target = target.setdefault(key, {})
        target[path[-1]] = value
    return mutate


BREAKS = {
    "readiness on /healthz": (_set(["readinessProbe", "httpGet", "path"], "/healthz"), "readinessProbe"),
    "liveness probe on /": (_set(["livenessProbe", "httpGet", "path"], "/"), "livenessProbe"),
    "no startup probe": (lambda docs: _container(docs).pop("startupProbe"), "startupProbe"),
    "runs as root": (lambda docs: _pod(docs)["securityContext"].update(runAsUser=0), "runAsUser"),
    "root allowed": (lambda docs: _pod(docs)["securityContext"].pop("runAsNonRoot"), "runAsNonRoot"),
    "container overrides the user": (_set(["securityContext", "runAsUser"], 1000), "runAsUser"),
    "writable root": (_set(["securityContext", "readOnlyRootFilesystem"], False), "readOnlyRootFilesystem"),
    "grace period under the drain": (lambda docs: _pod(docs).update(terminationGracePeriodSeconds=12),
                                     "terminationGracePeriodSeconds"),
    "drain raised past the grace period": (
        lambda docs: _container(docs)["env"].__setitem__(1, {"name": "HELLO_DRAIN_TIMEOUT", "value": "40"}),
        "terminationGracePeriodSeconds"),
    "/tmp on disk": (lambda docs: _pod(docs)["volumes"][0]["emptyDir"].pop("medium"), "/tmp"),
    "no PDB": (lambda docs: docs.remove(next(d for d in docs if d["kind"] == "PodDisruptionBudget")),
               "PodDisruptionBudget"),
    "PDB selects nothing": (lambda docs: next(d for d in docs if d["kind"] == "PodDisruptionBudget")
                            ["spec"]["selector"]["matchLabels"].update({"app.kubernetes.io/name": "other"}),
                            "PodDisruptionBudget"),
    "no memory limit": (lambda docs: _container(docs)["resources"].pop("limits"), "resources"),
    "service to the wrong port": (lambda docs: next(d for d in docs if d["kind"] == "Service")
                                  ["spec"]["ports"][0].update(targetPort=9090), "targetPort"),
    "image by tag": (_set(["image"], "registry.digitalocean.com/x/hello:latest"), "image"),
    "no NetworkPolicy": (lambda docs: docs.remove(next(d for d in docs if d["kind"] == "NetworkPolicy")),
                         "NetworkPolicy: missing"),
    "NetworkPolicy lets traffic out": (lambda docs: next(d for d in docs if d["kind"] == "NetworkPolicy")
                                       ["spec"].update(egress=[{}]), "egress"),
    "NetworkPolicy admits every port": (lambda docs: next(d for d in docs if d["kind"] == "NetworkPolicy")
                                        ["spec"].update(ingress=[{}]), "ingress"),
    "LB checks /healthz": (lambda docs: next(d for d in docs if d["kind"] == "Service")["metadata"]
                           ["annotations"].update({"service.beta.kubernetes.io/do-loadbalancer-healthcheck-path":
                                                   "/healthz"}), "do-loadbalancer-healthcheck-path"),
}


@pytest.mark.parametrize("name", list(BREAKS))
def test_each_broken_property_is_found(rendered, name):
    mutate, expected = BREAKS[name]
    docs = copy.deepcopy(list(yaml.safe_load_all(rendered["do"])))
    mutate(docs)
    found = findings(docs, "do")
    assert any(expected in line for line in found), found


def checkov(text: str, tmp_path: pathlib.Path) -> dict:
    require(CHECKOV.exists(), f"{CHECKOV} is missing (make checkov-venv)")
    manifest = tmp_path / "rendered.yaml"
    manifest.write_text(text)
    result = subprocess.run([str(CHECKOV), "--file", str(manifest), "--framework", "kubernetes",
                             "--output", "json", "--compact", "--skip-download"],
                            check=False, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "BC_SKIP_MAPPING": "TRUE"})
    return json.loads(result.stdout)


def test_checkov_passes_the_doks_overlay_and_says_why_it_skips(rendered, tmp_path):
    report = checkov(rendered["do"], tmp_path)
    summary = report["summary"]
    assert summary["failed"] == 0, [check["check_id"] for check in report["results"]["failed_checks"]]
    assert summary["passed"] >= 85
    skipped = report["results"]["skipped_checks"]
    assert [check["check_id"] for check in skipped] == ["CKV_K8S_11"]  # no CPU limit, on purpose


def test_checkov_is_not_vacuous(rendered, tmp_path):
    docs = list(yaml.safe_load_all(rendered["do"]))
    docs.remove(next(doc for doc in docs if doc["kind"] == "NetworkPolicy"))
    report = checkov(yaml.safe_dump_all(docs), tmp_path)
    assert "CKV2_K8S_6" in [check["check_id"] for check in report["results"]["failed_checks"]]
