"""The stack on a live three-node swarm, through deploy/swarm/deploy.

The tests run in order on one swarm, each starting from the state the previous one
left (a real service's history): v1 by image ID copied to every node (no registry),
the multi-arch index pushed with CI's own script (build/ci-push-image), v2 by digest
from the local registry (a rolling update under pollers), two broken releases rolled
back by the engine, then a node lost in the middle of an update.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import subprocess
import time

import pytest

from hello import __version__
from tests.conftest import DOCKERD, wait_until
from tests.swarm.conftest import DEPLOY, PUSH, Swarm, push_env

SERVICE = "hello_hello"


def _answers(swarm: Swarm, k: int) -> str | None:
    """GET / on node k from the switch namespace: the body, or None."""
    result = subprocess.run(["ip", "netns", "exec", f"{swarm.name}-sw", "python3", "-c",
                             "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen("
                             f"'http://{swarm.address(k)}:8080/', timeout=2).read().decode())"],
                            check=False, capture_output=True, text=True, timeout=20)
    return result.stdout if result.returncode == 0 else None


def _service_image(swarm: Swarm) -> str:
    return swarm.docker(1).out("service", "inspect", SERVICE, "--format",
                               "{{.Spec.TaskTemplate.ContainerSpec.Image}}")


def _assert_no_failures(reports: list[dict], nodes: list[int]) -> None:
    for k in nodes:
        report = reports[k - 1]
        assert report["requests"] >= 50, report
        assert report["failed"] == 0, f"node {k}: {report}"


ZEROS = "0" * 64


@pytest.mark.parametrize("args", [
    ["unix:///run/x.sock", "--image", "hello:latest"],             # a tag can move
    ["unix:///run/x.sock", "--image", "sha256:abc"],
    ["unix:///run/x.sock"],                                         # no --image
    ["tcp://10.0.0.1:2375", "--image", f"sha256:{ZEROS}"],           # the API unencrypted
    ["ssh://-Fx@host", "--image", f"sha256:{ZEROS}"],                # an option to ssh, not a host
    ["ssh://-oProxyCommand", "--image", f"sha256:{ZEROS}"],
    ["unix:///run/x.sock", "--image", f"sha256:{ZEROS}", "--load", "ssh://u@-v"],
    ["unix:///run/x.sock", "--image", f"r/hello@sha256:{ZEROS}", "--load", "unix:///run/y.sock"],
    ["unix:///run/x.sock", "--image", f"sha256:{ZEROS}", "--stack", "Bad Name"],
    ["unix:///run/x.sock", "--image", f"sha256:{ZEROS}", "--timeout", "soon"],
])
def test_usage_errors_exit_2_before_any_contact(args):
    result = subprocess.run([str(DEPLOY), *args], check=False, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("swarm deploy: ") and result.stderr.count("\n") == 1, result.stderr


def test_initial_deploy_by_image_id(swarm, releases):
    result = swarm.deploy(releases.v1, *swarm.load_args())
    assert result.returncode == 0, result.stderr
    assert "updated: every task" in result.stderr.splitlines()[-1]
    for k in (1, 2, 3):
        assert wait_until(lambda k=k: _answers(swarm, k), 30, 0.2, f"node {k}") == "Hello World!"
    # What runs is the image by ID, read-only, as a uid no node account has (61000:
    # tasks share the port), with the stack's limits.
    node = swarm.docker(2)
    container = node.out("ps", "-q", "--filter", f"label=com.docker.swarm.service.name={SERVICE}")
    info = node.inspect(container.splitlines()[0])
    assert info["Image"] == releases.v1
    assert info["HostConfig"]["ReadonlyRootfs"] is True
    assert info["Config"]["User"] == "61000:61000"
    assert info["HostConfig"]["NetworkMode"] == "host"
    assert info["HostConfig"]["Memory"] > 0
    again = swarm.deploy(releases.v1)
    assert again.returncode == 0 and "nothing to do" in again.stderr, again.stderr


def _in_switch(swarm: Swarm, *argv: str) -> subprocess.CompletedProcess:
    """A command in the switch namespace, where the registry listens."""
    return subprocess.run(["ip", "netns", "exec", f"{swarm.name}-sw", *argv], check=False,
                          capture_output=True, timeout=300, env=push_env())


def _push(swarm: Swarm, layout: pathlib.Path) -> str:
    """Push a layout with CI's own script (no engine involved): the reference it prints.
    --no-tls-verify: the registry here speaks plain HTTP on a private bridge."""
    pushed = _in_switch(swarm, str(PUSH), "--no-tls-verify", swarm.registry, str(layout))
    assert pushed.returncode == 0, pushed.stderr.decode()
    return pushed.stdout.decode().strip()


def _served(swarm: Swarm, reference: str) -> bytes:
    """The manifest the registry serves for a tag or digest, byte for byte."""
    result = _in_switch(swarm, "skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{reference}")
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout


def test_the_pushed_index_is_the_one_build_image_index_wrote(swarm, layouts):
    reference = _push(swarm, layouts.release)
    assert reference == f"{swarm.registry}/hello@{layouts.release_digest}"
    index = _served(swarm, reference)
    assert "sha256:" + hashlib.sha256(index).hexdigest() == layouts.release_digest
    platforms = {(m["platform"]["os"], m["platform"]["architecture"]) for m in json.loads(index)["manifests"]}
    assert platforms == {("linux", "amd64"), ("linux", "arm64")}
    # The version tag, for people, names the same index.
    assert _served(swarm, f"{swarm.registry}/hello:{__version__}") == index


def test_rolling_update_from_the_registry_zero_failed(swarm, layouts, pollers):
    digest = _push(swarm, layouts.v2)
    assert digest == f"{swarm.registry}/hello@{layouts.v2_digest}"
    # Nodes 2 and 3 have never seen v2: they pull it by digest.
    assert swarm.docker(3).run("image", "inspect", digest, check=False).returncode != 0
    group = pollers()
    time.sleep(1)
    started = time.monotonic()
    result = swarm.deploy(digest)
    seconds = time.monotonic() - started
    reports = group.stop()
    assert result.returncode == 0, result.stderr
    assert "updated" in result.stderr.splitlines()[-1]
    _assert_no_failures(reports, [1, 2, 3])
    for report in reports:
        assert report["last"] == "hello v2", report
    assert _service_image(swarm) == digest
    print(f"rolling update of 3 nodes: {seconds:.1f}s; requests "
          f"{[r['requests'] for r in reports]}, failed {[r['failed'] for r in reports]}, "
          f"longest gap {max(r['longest_gap_ms'] for r in reports)} ms")


@pytest.mark.parametrize("release", ["wrong_port", "never_ready"])
def test_broken_release_is_rolled_back(swarm, releases, pollers, release):
    before = _service_image(swarm)
    group = pollers()
    time.sleep(1)
    result = swarm.deploy(getattr(releases, release), *swarm.load_args(), timeout=400)
    reports = group.stop()
    assert result.returncode == 3, result.stderr
    assert result.stderr.splitlines()[-1].startswith("swarm deploy: rolled back:"), result.stderr
    _assert_no_failures(reports, [1, 2, 3])
    assert _service_image(swarm) == before
    for k in (1, 2, 3):
        assert _answers(swarm, k) == "hello v2"


def test_node_lost_mid_update_others_keep_answering(swarm, releases, pollers):
    group = pollers()
    time.sleep(1)
    deploy = subprocess.Popen([str(DEPLOY), swarm.manager, "--image", releases.v1,
                               "--timeout", "60"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        # Once the update has begun, node 3's dockerd goes away (by its PID).
        wait_until(lambda: swarm.docker(1).out("service", "inspect", SERVICE, "--format",
                                               "{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}")
                   == "updating", 60, 0.2, "the update to start")
        stopped = subprocess.run(["ip", "netns", "exec", f"{swarm.name}-n3",
                                  str(DOCKERD),
                                  "stop", f"{swarm.state}/n3"],
                                 check=False, capture_output=True, text=True, timeout=120)
        assert stopped.returncode == 0, stopped.stderr
        _, err = deploy.communicate(timeout=400)
    finally:
        if deploy.poll() is None:
            deploy.kill()
            deploy.communicate(timeout=60)
    reports = group.stop()
    _assert_no_failures(reports, [1, 2])
    assert reports[2]["failed"] > 0  # node 3 really went away
    for k in (1, 2):
        assert _answers(swarm, k) in ("Hello World!", "hello v2")
    print(f"node lost mid-update: deploy exit {deploy.returncode}: {err.splitlines()[-1]}")
