"""build/deploy image and rollback against the droplet's docker engine.

Like test_binary.py, the tests run in file order on one droplet history. The
images are FROM-scratch test images of the two real builds (see conftest.py). The
engine is the droplet's stand-in (tests/infra/droplet): a dockerd in the droplet's
network namespace whose socket and client are mounted into the droplet, so
hello-ctl drives it from inside and `--network host` containers share its ports.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.conftest import ROOT, require, wait_until
from tests.deploy.conftest import DEPLOY, Poller, deploy, report, tree

pytestmark = [pytest.mark.droplet, pytest.mark.engine, pytest.mark.slow]

PORT = 8081
UID = 61000  # hello-ctl's containers: no account on the droplet has it
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


def test_first_image_deploy_serves_it_as_a_uid_of_its_own_read_only(droplet, base, env, images):
    result = image_deploy(droplet, env, "-a", images["old"].tag, "-p", str(PORT))
    assert result.returncode == 0, result.stderr
    assert droplet.commit(PORT) == images["old"].commit
    name, _, commit = active(base)
    assert images["old"].commit.startswith(commit)
    assert hello_containers(droplet) == [f"{name} running"]
    flags = droplet.ssh(f"docker inspect -f '{{{{.Config.User}}}} {{{{.HostConfig.ReadonlyRootfs}}}} "
                        f"{{{{.HostConfig.RestartPolicy.Name}}}} {{{{.HostConfig.CapDrop}}}}' {name}").stdout
    assert flags.split() == [f"{UID}:{UID}", "true", "unless-stopped", "[ALL]"], flags


def test_a_host_process_cannot_join_the_containers_port(droplet, base, env, images, releases, tmp_path):
    """The containers ran as nobody (65534) on the host network with
    SO_REUSEPORT, so any process of the host's nobody could bind the same port and take
    a share of the connections."""
    ensure(droplet, base, env, images["old"])
    shutil.copy2(releases[0].path, droplet.root / "tmp" / "hello-as-nobody")
    try:
        result = droplet.ssh("timeout 20 setpriv --reuid 65534 --regid 65534 --clear-groups "
                             f"/tmp/hello-as-nobody serve --port {PORT} --reuse-port",
                             check=False, timeout=60)
    finally:
        (droplet.root / "tmp" / "hello-as-nobody").unlink()
    assert result.returncode not in (0, 124), "nobody joined the port: " + result.stderr
    assert "in use" in result.stderr, result.stderr
    assert droplet.commit(PORT) == images["old"].commit


def test_a_host_account_with_the_containers_uid_stops_the_deploy(droplet, base, env, images):
    ensure(droplet, base, env, images["old"])
    before = active(base)
    droplet.ssh(f"useradd --uid {UID} --no-create-home --shell /usr/sbin/nologin intruder")
    try:
        result = image_deploy(droplet, env, "-a", images["new"].tag)
    finally:
        droplet.ssh("userdel intruder")
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert f"uid {UID} is an account on this host (intruder)" in last and "nothing changed" in last, last
    assert active(base) == before
    assert hello_containers(droplet) == [f"{before[0]} running"]
    assert droplet.commit(PORT) == images["old"].commit


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
    assert "did not answer on port 8081 itself" in last and "kept serving throughout" in last, last
    assert poller.failures == [], poller.summary()
    assert droplet.commit(PORT) == images["new"].commit
    assert active(base) == before
    assert hello_containers(droplet) == [f"{before[0]} running"]


def test_a_redeploy_of_the_same_commit_is_not_proven_by_the_old_container(droplet, base, env, images):
    """Both containers share the port (SO_REUSEPORT), and the probe
    asked 127.0.0.1:PORT for a commit the old one has too. Redeploying the same image
    to apply a hello.env that makes it listen elsewhere (HELLO_HOST=127.0.0.2) passed
    on the old container's answer, then stopped it: nothing served on the port."""
    ensure(droplet, base, env, images["old"])
    before = active(base)
    (base / "hello.env").write_text("HELLO_HOST=127.0.0.2\n")
    try:
        result = image_deploy(droplet, env, "-a", images["old"].tag, "-t", "5")
    finally:
        (base / "hello.env").unlink()
    assert result.returncode == 1, result.stderr
    assert "kept serving throughout" in result.stderr.strip().splitlines()[-1], result.stderr
    assert active(base) == before
    assert hello_containers(droplet) == [f"{before[0]} running"]
    assert droplet.commit(PORT) == images["old"].commit


def test_a_deploy_killed_half_way_leaves_no_container_behind(droplet, base, env, images, releases):
    """A deploy killed while its new container was on trial left
    that container running (--restart unless-stopped) beside the active one, sharing
    the port and named nowhere; the next deploys never removed it."""
    ensure(droplet, base, env, images["old"])
    # The new build, serving on another port: it runs but never answers on PORT.
    tar = subprocess.Popen(["tar", "-C", str(releases[1].path.parent), "-c", "hello"],
                           stdout=subprocess.PIPE)
    subprocess.run(["docker", "import", "-c", 'ENTRYPOINT ["/hello"]',
                    "-c", 'CMD ["serve", "--port", "9999"]', "-", "hello-deploy-test:elsewhere"],
                   stdin=tar.stdout, check=True, capture_output=True, env={**os.environ, **env}, timeout=120)
    assert tar.wait(timeout=60) == 0
    running = subprocess.Popen([str(DEPLOY), "image", "droplet", "-F", str(droplet.ssh_config), "-b", BASE,
                                "-a", "hello-deploy-test:elsewhere", "-t", "120"], cwd=ROOT,
                               env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: len(hello_containers(droplet)) == 2, 120, interval=0.2, what="the new container")
        holder = (base / "lock.holder").read_text().split()[1].rstrip(",")
        droplet.ssh(f"kill -KILL {holder}")
    finally:
        running.communicate(timeout=60)
    result = image_deploy(droplet, env, "-a", images["new"].tag)
    assert result.returncode == 0, result.stderr
    assert hello_containers(droplet) == [f"{active(base)[0]} running"]
    assert droplet.commit(PORT) == images["new"].commit


def test_cut_image_upload_leaves_the_service_untouched(droplet, base, env, images, cut_docker_save):
    ensure(droplet, base, env, images["new"])
    # A tag the droplet does not have yet, so a damaged load has something to damage.
    subprocess.run(["docker", "tag", images["old"].tag, "hello-deploy-test:cut"],
                   env={**os.environ, **env}, check=True, capture_output=True, timeout=60)
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


@pytest.mark.parametrize("step", ["version", "check-env"])
def test_an_image_that_never_answers_fails_within_the_timeout(droplet, base, env, images, tmp_path, step):
    """Root ran the image's `version` and `check-env` with no time
    limit (the binary path has one): an image whose entrypoint ignores them and runs on
    hung the deploy, and held the lock, for ever."""
    require(shutil.which("busybox") is not None, "no static busybox to build the stand-in image")
    ensure(droplet, base, env, images["old"])
    before = active(base)
    shutil.copy2(shutil.which("busybox"), tmp_path / "busybox")
    (tmp_path / "entry").write_text(
        'if [ "$1" = version ] && [ -z "${HANG_AT_VERSION:-}" ]; then\n'
        f"    echo '{{\"commit\": \"{'ab' * 6}\"}}'; exit 0\n"
        "fi\n"
        "exec /busybox sleep 3600\n")
    tag = f"hello-deploy-test:hang-{step}"
    tar = subprocess.Popen(["tar", "-C", str(tmp_path), "-c", "busybox", "entry"], stdout=subprocess.PIPE)
    changes = ["-c", 'ENTRYPOINT ["/busybox", "sh", "/entry"]']
    if step == "version":
        changes += ["-c", "ENV HANG_AT_VERSION=1"]
    subprocess.run(["docker", "import", *changes, "-", tag], stdin=tar.stdout, check=True,
                   capture_output=True, env={**os.environ, **env}, timeout=120)
    assert tar.wait(timeout=60) == 0
    image_id = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", tag], check=True,
                              capture_output=True, text=True, env={**os.environ, **env},
                              timeout=60).stdout.strip()
    save = subprocess.Popen(["docker", "save", tag], stdout=subprocess.PIPE, env={**os.environ, **env})
    subprocess.run(["ssh", "-F", str(droplet.ssh_config), "droplet", "docker load -q"], stdin=save.stdout,
                   check=True, capture_output=True, timeout=120)
    assert save.wait(timeout=60) == 0
    (base / "hello.env").write_text("HELLO_MESSAGE=hi\n")  # so check-env runs
    try:
        result = droplet.ssh(f"{BASE}/bin/hello-ctl --base {BASE} --timeout 3 image {image_id} "
                             f"{'ab' * 6}", check=False, timeout=60)
    except subprocess.TimeoutExpired:
        result = None
    finally:
        (base / "hello.env").unlink()
        holder = (base / "lock.holder").read_text().split()[1].rstrip(",")
        droplet.ssh(f"kill -KILL {holder} 2>/dev/null; docker ps -aq --filter ancestor={image_id} "
                    "| xargs -r docker rm -f", check=False)
    assert result is not None, "hello-ctl still running after 60 s"
    assert result.returncode == 1, result.stderr
    assert active(base) == before
    assert droplet.commit(PORT) == images["old"].commit
    assert not droplet.ssh(f"docker ps -aq --filter ancestor={image_id}").stdout.strip()
