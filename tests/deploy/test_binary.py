"""build/deploy binary and rollback against the simulated droplet.

The tests run in file order and build on one another, as a real droplet's
history does: first deploy, a newer build, a broken one, a cut upload, a wrong host
key, rollbacks. Each states what it expects to be serving before it starts.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import tempfile
import time

import pytest

from tests.conftest import ROOT, wait_until
from tests.deploy.conftest import Poller, deploy, report, tree

pytestmark = [pytest.mark.droplet, pytest.mark.slow]

PORT = 8080


@pytest.fixture(scope="module")
def base(droplet):
    """<base> on the droplet, outside pytest's 0700 temp tree: the service runs as
    nobody there, as on a real droplet, and must be able to reach its release."""
    folder = pathlib.Path(tempfile.mkdtemp(prefix="hello-opt-", dir="/var/tmp"))
    folder.chmod(0o755)
    yield folder / "opt-hello"
    shutil.rmtree(folder, ignore_errors=True)


def service_uid(base) -> int:
    """Real uid of the `hello serve` process under the supervisor."""
    supervisor = running_pid(base)
    children = pathlib.Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
    status = pathlib.Path(f"/proc/{children[0]}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])


def serving(droplet, release) -> None:
    assert droplet.commit(PORT) == release.commit


def running_pid(base) -> int:
    pid = int((base / "run" / "active" / "pid").read_text())
    os.kill(pid, 0)
    return pid


def ensure(droplet, base, release) -> None:
    """Make `release` the one serving (a deploy if it is not)."""
    try:
        if droplet.commit(PORT) == release.commit:
            return
    except OSError:
        pass
    result = deploy(droplet, "binary", "-a", str(release.path), "-b", str(base), "-p", str(PORT))
    assert result.returncode == 0, result.stderr


def test_first_deploy_serves_the_release(droplet, base, releases):
    old, _ = releases
    started = time.monotonic()
    result = deploy(droplet, "binary", "-a", str(old.path), "-b", str(base), "-p", str(PORT))
    assert result.returncode == 0, result.stderr
    serving(droplet, old)
    assert os.readlink(base / "current") == f"releases/{old.name}"
    assert (base / "releases" / old.name / "hello").stat().st_mode & 0o111
    assert os.access(base / "bin" / "hello-ctl", os.X_OK)
    for unit in ("hello.service", "hello.socket"):  # installed where systemd runs
        assert (base / "bin" / unit).read_bytes() == (ROOT / "build" / "droplet" / unit).read_bytes()
    assert (base / "hello.env").read_text().splitlines() == [f"PORT={PORT}"]
    assert service_uid(base) != 0  # `hello` if that user exists, else nobody (65534)
    assert not list((base / "releases" / old.name).glob(".upload-*"))
    assert "droplet serves" in result.stderr.splitlines()[-1]
    print(f"\n[deploy figures] first binary deploy: {time.monotonic() - started:.1f} s")


def test_newer_build_is_deployed_without_a_failed_request(droplet, base, releases, record_property):
    old, new = releases
    ensure(droplet, base, old)
    old_pid = running_pid(base)
    started = time.monotonic()
    with Poller(droplet, PORT) as poller:
        result = deploy(droplet, "binary", "-a", str(new.path), "-b", str(base))
    took = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    report(record_property, "binary deploy", f"{poller.summary()}; deploy took {took:.1f} s")
    assert poller.failures == [], poller.summary()
    serving(droplet, new)
    assert os.readlink(base / "current") == f"releases/{new.name}"
    assert os.readlink(base / "previous") == f"releases/{old.name}"
    wait_until(lambda: not os.path.exists(f"/proc/{old_pid}"), 30, what="the old release to exit")
    assert running_pid(base) != old_pid


def test_failing_release_is_rolled_back_and_old_serves_throughout(
        droplet, base, releases, failing_release, record_property):
    _, new = releases
    ensure(droplet, base, new)
    pid = running_pid(base)
    with Poller(droplet, PORT) as poller:
        result = deploy(droplet, "binary", "-a", str(failing_release.path), "-b", str(base),
                        "-t", "5")
    report(record_property, "failing binary release", poller.summary())
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "did not answer its health check" in last and "kept serving throughout" in last, last
    assert poller.failures == [], poller.summary()
    serving(droplet, new)
    assert os.readlink(base / "current") == f"releases/{new.name}"
    assert running_pid(base) == pid
    assert not (base / "run" / "next").exists()


@pytest.mark.parametrize("cut", ["die", "quiet"])
def test_cut_upload_leaves_current_and_the_service_untouched(
        droplet, base, releases, cut_scp, cut):
    old, new = releases
    ensure(droplet, base, new)
    pid = running_pid(base)
    before = os.readlink(base / "current")
    path = f"{cut_scp}:{os.environ['PATH']}"
    result = deploy(droplet, "binary", "-a", str(old.path), "-b", str(base),
                    env={"PATH": path, "CUT_SCP": cut})
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    if cut == "die":
        assert "upload to droplet failed" in last, last
    else:  # scp said it worked: the checksum on the host catches it
        assert "checksum of the uploaded binary does not match" in last, last
    assert os.readlink(base / "current") == before
    assert running_pid(base) == pid
    serving(droplet, new)
    assert not list(base.glob("releases/*/.upload-*"))
    assert (base / "releases" / old.name / "hello").stat().st_size == old.path.stat().st_size


@pytest.mark.parametrize("case", ["changed", "unknown"])
def test_wrong_host_key_fails_before_anything_is_copied(
        droplet, base, releases, failing_release, wrong_host_key_configs, case):
    _, new = releases
    ensure(droplet, base, new)
    before = tree(base)
    config = wrong_host_key_configs[case]
    # A release the host has never seen: had anything been copied, a folder would appear.
    result = deploy(droplet, "binary", "-a", str(failing_release.path), "-b", str(base),
                    "-F", str(config))
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "host key unknown or changed" in last and "nothing was copied" in last, last
    assert tree(base) == before
    serving(droplet, new)


def test_rollback_returns_to_the_previous_release(droplet, base, releases, record_property):
    old, new = releases
    ensure(droplet, base, new)
    assert os.readlink(base / "previous") == f"releases/{old.name}"
    with Poller(droplet, PORT) as poller:
        result = deploy(droplet, "rollback", "-b", str(base))
    report(record_property, "binary rollback", poller.summary())
    assert result.returncode == 0, result.stderr
    assert poller.failures == [], poller.summary()
    serving(droplet, old)
    assert os.readlink(base / "current") == f"releases/{old.name}"
    assert os.readlink(base / "previous") == f"releases/{new.name}"
    # ... and to a named one.
    result = deploy(droplet, "rollback", "-b", str(base), "-r", new.name)
    assert result.returncode == 0, result.stderr
    serving(droplet, new)


def test_old_releases_are_pruned_but_never_current_or_previous(droplet, base, releases):
    old, new = releases
    ensure(droplet, base, new)
    for age, name in enumerate(["0.0.1-aaaaaaaaaaaa", "0.0.2-bbbbbbbbbbbb"]):
        folder = base / "releases" / name
        folder.mkdir(exist_ok=True)
        stamp = time.time() - 3600 * (age + 1)
        os.utime(folder, (stamp, stamp))
    # previous (old) is the oldest real release; --keep 2 must still keep it.
    os.utime(base / "releases" / old.name, (time.time() - 86400,) * 2)
    result = deploy(droplet, "binary", "-a", str(new.path), "-b", str(base), "-k", "2")
    assert result.returncode == 0, result.stderr
    left = {p.name for p in (base / "releases").iterdir()}
    # Kept: the 2 newest (new, and the failed stand-in left for inspection), and
    # previous (old) though it is the oldest; the two fakes are gone.
    assert {old.name, new.name} <= left and len(left) == 3, left
    assert not left & {"0.0.1-aaaaaaaaaaaa", "0.0.2-bbbbbbbbbbbb"}, left


def test_rollback_with_nothing_deployed_says_so(droplet):
    result = deploy(droplet, "rollback", "-b", str(droplet.state / "never-deployed"))
    assert result.returncode == 1
    assert "nothing was deployed" in result.stderr.strip().splitlines()[-1]
