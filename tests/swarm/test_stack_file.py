"""deploy/swarm/stack.yml offline: the docker client's own parser accepts it (and
rejects a misspelt key), and the properties the live suite relies on are there.
Needs no engine and no root."""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess

import pytest
import yaml

from tests.conftest import ROOT, require

STACK = ROOT / "deploy" / "swarm" / "stack.yml"
IMAGE = "sha256:" + "0" * 64
# Tasks share the port on the host network: a uid no node account has (not nobody).
HOST_NETWORK_USER = "61000:61000"


def _client_with_stack_config() -> str | None:
    """`docker stack config` (no daemon needed) is in clients from 20.10's successors;
    Debian's 20.10 lacks it, the 28.x client on these machines has it."""
    for candidate in (shutil.which("docker"), "/usr/local/bin/docker", "/usr/bin/docker"):
        if candidate and os.access(candidate, os.X_OK):
            probe = subprocess.run([candidate, "stack", "config", "--help"], check=False,
                                   capture_output=True, text=True, timeout=30)
            if probe.returncode == 0:
                return candidate
    return None


def stack_config(path) -> subprocess.CompletedProcess:
    client = _client_with_stack_config()
    require(client is not None, "no docker client with `docker stack config` (docker 23 or later)")
    return subprocess.run([client, "stack", "config", "-c", str(path)], check=False, capture_output=True,
                          text=True, timeout=60, env={**os.environ, "HELLO_IMAGE": IMAGE})


def test_the_docker_client_accepts_the_stack():
    result = stack_config(STACK)
    assert result.returncode == 0, result.stderr
    assert IMAGE in result.stdout


def test_the_docker_client_rejects_a_misspelt_key(tmp_path):
    doc = yaml.safe_load(STACK.read_text())
    doc["services"]["hello"]["deploy"]["update_config"]["ordr"] = "start-first"
    broken = tmp_path / "stack.yml"
    broken.write_text(yaml.safe_dump(doc))
    result = stack_config(broken)
    assert result.returncode != 0
    assert "ordr" in result.stderr


def stack_findings(doc: dict) -> list[str]:
    """The stack's promises, each one line when broken."""
    service = doc["services"]["hello"]
    deploy = service.get("deploy", {})
    update, rollback = deploy.get("update_config", {}), deploy.get("rollback_config", {})
    out = []
    if update.get("order") != "start-first":
        out.append("update_config.order must be start-first (a new task before the old one stops)")
    if update.get("failure_action") != "rollback" or not update.get("monitor"):
        out.append("update_config needs failure_action: rollback and a monitor window")
    if not rollback:
        out.append("rollback_config is missing")
    if deploy.get("mode") != "global" and (deploy.get("placement", {}).get("max_replicas_per_node", 0) < 2):
        out.append("one task per node (global) or max_replicas_per_node >= 2 (room for start-first)")
    env = service.get("environment", {})
    if str(env.get("HELLO_REUSE_PORT")).lower() != "true":
        out.append("HELLO_REUSE_PORT must be true (tasks share the port on the host network)")
    grace = float(str(service.get("stop_grace_period", "10s")).rstrip("s"))
    if grace <= float(env.get("HELLO_DRAIN_TIMEOUT", 10)):
        out.append("stop_grace_period must exceed HELLO_DRAIN_TIMEOUT")
    if service.get("read_only") is not True or service.get("user") != HOST_NETWORK_USER:
        out.append(f"read_only: true and user {HOST_NETWORK_USER} (no host account: reuse-port)")
    test = service.get("healthcheck", {}).get("test", [])
    if "--own" not in test or test[test.index("--own") + 1] != "/readyz":
        out.append("the healthcheck must be `hello healthcheck --own /readyz` (tasks share the port)")
    if "tmpfs" in service:
        out.append("compose tmpfs: is dropped by docker stack deploy; use the named tmpfs volume")
    volume = doc.get("volumes", {}).get("hello-tmp", {})
    if "hello-tmp:/tmp" not in service.get("volumes", []) or \
            volume.get("driver_opts", {}).get("type") != "tmpfs":
        out.append("/tmp must be the named local tmpfs volume hello-tmp (exec-able)")
    limits = deploy.get("resources", {}).get("limits", {})
    if not (limits.get("cpus") and limits.get("memory")):
        out.append("resources.limits needs cpus and memory")
    return out


def test_the_stack_keeps_its_promises():
    assert stack_findings(yaml.safe_load(STACK.read_text())) == []


def _svc(doc):
    return doc["services"]["hello"]


BREAKS = {
    "stop-first": lambda d: _svc(d)["deploy"]["update_config"].update(order="stop-first"),
    "no rollback": lambda d: _svc(d)["deploy"]["update_config"].update(failure_action="pause"),
    "no rollback_config": lambda d: _svc(d)["deploy"].pop("rollback_config"),
    "one replica per node": lambda d: _svc(d)["deploy"].update(mode="replicated",
                                                              placement={"max_replicas_per_node": 1}),
    "no reuse-port": lambda d: _svc(d)["environment"].update(HELLO_REUSE_PORT="false"),
    "grace under the drain": lambda d: _svc(d).update(stop_grace_period="5s"),
    "writable root": lambda d: _svc(d).update(read_only=False),
    "root user": lambda d: _svc(d).update(user="0:0"),
    "nobody, whose host processes could join the port": lambda d: _svc(d).update(user="65534:65534"),
    "plain healthcheck": lambda d: _svc(d)["healthcheck"].update(
        test=["CMD", "/hello", "healthcheck", "--port", "8080"]),
    "compose tmpfs": lambda d: _svc(d).update(tmpfs=["/tmp"]),
    "no limits": lambda d: _svc(d)["deploy"]["resources"].pop("limits"),
}


@pytest.mark.parametrize("name", list(BREAKS))
def test_each_broken_promise_is_found(name):
    doc = copy.deepcopy(yaml.safe_load(STACK.read_text()))
    BREAKS[name](doc)
    assert stack_findings(doc), name


def test_the_containers_uid_is_the_same_in_the_stack_and_the_droplet_agent():
    """No account on a node may have it (any process of that uid could join the tasks'
    SO_REUSEPORT listener): written in YAML here and in bash in the agent, which checks
    the droplet for it; the two must name one uid."""
    agent = (ROOT / "deploy" / "droplet" / "lib" / "image.sh").read_text()
    [agent_uid] = re.findall(r"^uid=(\d+)$", agent, re.M)
    user = yaml.safe_load(STACK.read_text())["services"]["hello"]["user"]
    assert user == f"{agent_uid}:{agent_uid}"
