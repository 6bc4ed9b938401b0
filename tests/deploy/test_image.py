"""build/deploy image and rollback against the droplet's own dockerd.

Like test_binary.py, the tests run in file order on one droplet history. The
images are FROM-scratch test images of the two real builds (see conftest.py).
"""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.conftest import require
from tests.deploy.conftest import Poller, deploy, report, tree

pytestmark = [pytest.mark.droplet, pytest.mark.engine, pytest.mark.slow]

PORT = 8081


@pytest.fixture(scope="module")
def base(droplet):
    require(droplet.docker, "the droplet has no dockerd (apt-get install docker.io)")
    return droplet.state / "opt-hello-image"


@pytest.fixture(scope="module")
def env(local_engine):
    return {"DOCKER_HOST": local_engine}


def active(base) -> list[str]:
    """[container, image ID, tag] of the container serving now."""
    return (base / "image" / "active").read_text().split()


def hello_containers(droplet) -> list[str]:
    return droplet.ssh("docker ps -a --filter label=org.hello.base --format '{{.Names}} {{.State}}'"
                       ).stdout.split("\n")[:-1]


def droplet_images(droplet) -> list[str]:
    return sorted(droplet.ssh("docker image ls -a -q --no-trunc").stdout.split())


def ensure(droplet, base, env, image) -> None:
    try:
        if droplet.commit(PORT) == image.commit:
            return
    except OSError:
        pass
    result = deploy(droplet, "image", "-a", image.tag, "-b", str(base), "-p", str(PORT), env=env)
    assert result.returncode == 0, result.stderr


def test_first_image_deploy_serves_it(droplet, base, env, images):
    result = deploy(droplet, "image", "-a", images["old"].tag, "-b", str(base), "-p", str(PORT),
                    env=env)
    assert result.returncode == 0, result.stderr
    assert droplet.commit(PORT) == images["old"].commit
    name, _, tag = active(base)
    assert tag == images["old"].tag
    assert hello_containers(droplet) == [f"{name} running"]
    flags = droplet.ssh(f"docker inspect -f '{{{{.HostConfig.ReadonlyRootfs}}}} "
                        f"{{{{.HostConfig.RestartPolicy.Name}}}} {{{{.HostConfig.Tmpfs}}}}' {name}").stdout
    assert flags.split(" ", 2)[:2] == ["true", "unless-stopped"] and "/tmp" in flags, flags


def test_newer_image_is_deployed_without_a_failed_request(droplet, base, env, images, record_property):
    ensure(droplet, base, env, images["old"])
    old_name = active(base)[0]
    with Poller(droplet, PORT) as poller:
        result = deploy(droplet, "image", "-a", images["new"].tag, "-b", str(base), env=env)
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
        result = deploy(droplet, "image", "-a", images["broken"].tag, "-b", str(base), "-t", "5",
                        env=env)
    report(record_property, "failing image", poller.summary())
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "did not answer its health check" in last and "kept serving throughout" in last, last
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
    result = deploy(droplet, "image", "-a", "hello-deploy-test:cut", "-b", str(base),
                    env={**env, "PATH": f"{cut_docker_save}:{os.environ['PATH']}"})
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
    result = deploy(droplet, "image", "-a", images["broken"].tag, "-b", str(base),
                    "-F", str(wrong_host_key_configs[case]), env=env)
    assert result.returncode == 1, result.stderr
    assert "nothing was copied" in result.stderr.strip().splitlines()[-1]
    assert tree(base) == before
    assert droplet_images(droplet) == loaded


def test_image_rollback_returns_to_the_previous_image(droplet, base, env, images, record_property):
    ensure(droplet, base, env, images["new"])
    assert (base / "image" / "previous").read_text().split()[2] == images["old"].tag
    with Poller(droplet, PORT) as poller:
        result = deploy(droplet, "rollback", "-b", str(base), env=env)
    report(record_property, "image rollback", poller.summary())
    assert result.returncode == 0, result.stderr
    assert poller.failures == [], poller.summary()
    assert droplet.commit(PORT) == images["old"].commit
    assert active(base)[2] == images["old"].tag
