"""build/deploy image and rollback against the droplet's docker engine.

Like test_binary.py, the tests run in file order on one droplet history. The
images are FROM-scratch test images of the two real builds (see conftest.py). The
engine is the droplet's stand-in (tests/infra/droplet): a dockerd in the droplet's
network namespace whose socket and client are mounted into the droplet, so
hello-ctl drives it from inside and `--network host` containers share its ports.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.conftest import require
from tests.deploy.conftest import Poller, deploy, report, tree

pytestmark = [pytest.mark.droplet, pytest.mark.engine, pytest.mark.slow]

PORT = 8081
BASE = "/opt/hello-image"


@pytest.fixture(scope="module")
def base(droplet):
    require(droplet.docker, "the droplet has no dockerd (apt-get install docker.io)")
    return droplet.root / BASE.lstrip("/")


@pytest.fixture(scope="module")
def env(local_engine):
    return {"DOCKER_HOST": local_engine}


def active(base) -> list[str]:
    """[container, image ID, commit] of the container serving now."""
    return (base / "image" / "active").read_text().split()


def hello_containers(droplet) -> list[str]:
    return droplet.ssh("docker ps -a --filter label=org.hello.base --format '{{.Names}} {{.State}}'"
                       ).stdout.split("\n")[:-1]


def droplet_images(droplet) -> list[str]:
    return sorted(droplet.ssh("docker image ls -a -q --no-trunc").stdout.split())


def image_deploy(droplet, env, *args):
    return deploy(droplet, "image", "-b", BASE, *args, env=env)


def ensure(droplet, base, env, image) -> None:
    try:
        if droplet.commit(PORT) == image.commit:
            return
    except OSError:
        pass
    result = image_deploy(droplet, env, "-a", image.tag, "-p", str(PORT))
    assert result.returncode == 0, result.stderr


def test_first_image_deploy_serves_it_as_nobody_read_only(droplet, base, env, images):
    result = image_deploy(droplet, env, "-a", images["old"].tag, "-p", str(PORT))
    assert result.returncode == 0, result.stderr
    assert droplet.commit(PORT) == images["old"].commit
    name, _, commit = active(base)
    assert images["old"].commit.startswith(commit)
    assert hello_containers(droplet) == [f"{name} running"]
    flags = droplet.ssh(f"docker inspect -f '{{{{.Config.User}}}} {{{{.HostConfig.ReadonlyRootfs}}}} "
                        f"{{{{.HostConfig.RestartPolicy.Name}}}} {{{{.HostConfig.CapDrop}}}}' {name}").stdout
    assert flags.split() == ["65534:65534", "true", "unless-stopped", "[ALL]"], flags


def test_newer_image_is_deployed_without_a_failed_request(droplet, base, env, images, record_property):
    ensure(droplet, base, env, images["old"])
    old_name = active(base)[0]
    with Poller(droplet, PORT) as poller:
        result = image_deploy(droplet, env, "-a", images["new"].tag)
    assert result.returncode == 0, result.stderr
    report(record_property, "image deploy", poller.summary())
    assert poller.failures == [], poller.summary()
    assert droplet.commit(PORT) == images["new"].commit
    name = active(base)[0]
    assert name != old_name
    assert hello_containers(droplet) == [f"{name} running"]
    assert (base / "image" / "previous").read_text().split()[0] == old_name


def test_failing_image_is_removed_and_old_serves_throughout(droplet, base, env, images, record_property):
    ensure(droplet, base, env, images["new"])
    before = active(base)
    with Poller(droplet, PORT) as poller:
        result = image_deploy(droplet, env, "-a", images["broken"].tag, "-t", "5")
    report(record_property, "failing image", poller.summary())
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "did not answer as commit" in last and "kept serving throughout" in last, last
    assert poller.failures == [], poller.summary()
    assert droplet.commit(PORT) == images["new"].commit
    assert active(base) == before
    assert hello_containers(droplet) == [f"{before[0]} running"]


def test_cut_image_upload_leaves_the_service_untouched(droplet, base, env, images, cut_docker_save):
    ensure(droplet, base, env, images["new"])
    # A tag the droplet does not have yet, so a damaged load has something to damage.
    subprocess.run(["docker", "tag", images["old"].tag, "hello-deploy-test:cut"],
                   env={**os.environ, **env}, check=True, capture_output=True)
    droplet.ssh("docker image rm hello-deploy-test:cut", check=False)
    before = active(base)
    result = image_deploy(droplet, {**env, "PATH": f"{cut_docker_save}:{os.environ['PATH']}"},
                          "-a", "hello-deploy-test:cut")
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "upload of image hello-deploy-test:cut to droplet failed" in last, last
    assert active(base) == before
    assert hello_containers(droplet) == [f"{before[0]} running"]
    assert droplet.commit(PORT) == images["new"].commit
    tags = droplet.ssh("docker image ls --format '{{.Repository}}:{{.Tag}}'").stdout.split()
    assert "hello-deploy-test:cut" not in tags


@pytest.mark.parametrize("case", ["changed", "unknown"])
def test_wrong_host_key_fails_before_the_image_is_sent(
        droplet, base, env, images, wrong_host_key_configs, case):
    ensure(droplet, base, env, images["new"])
    before, loaded = tree(base), droplet_images(droplet)
    result = image_deploy(droplet, env, "-a", images["broken"].tag,
                          "-F", str(wrong_host_key_configs[case]))
    assert result.returncode == 1, result.stderr
    assert "nothing was copied" in result.stderr.strip().splitlines()[-1]
    assert tree(base) == before
    assert droplet_images(droplet) == loaded


def test_image_rollback_returns_to_the_previous_image_and_to_a_named_one(
        droplet, base, env, images, record_property):
    ensure(droplet, base, env, images["new"])
    new_id = active(base)[1]
    assert images["old"].commit.startswith((base / "image" / "previous").read_text().split()[2])
    with Poller(droplet, PORT) as poller:
        result = deploy(droplet, "rollback", "-b", BASE, env=env)
    report(record_property, "image rollback", poller.summary())
    assert result.returncode == 0, result.stderr
    assert poller.failures == [], poller.summary()
    assert droplet.commit(PORT) == images["old"].commit
    with Poller(droplet, PORT) as poller:
        result = deploy(droplet, "rollback", "-b", BASE, "-r", new_id, env=env)
    report(record_property, "image rollback --release", poller.summary())
    assert result.returncode == 0, result.stderr
    assert poller.failures == [], poller.summary()
    assert droplet.commit(PORT) == images["new"].commit
