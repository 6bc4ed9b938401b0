"""build/deploy binary and rollback against the systemd droplet (real units).

The tests run in file order and build on one another, as a real droplet's history
does: first deploy, a newer build, refused releases, cut and failed uploads, a wrong
host key, rollbacks, pruning. Each states what it expects to be serving first.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import threading
import time

import pytest

from tests.conftest import ROOT, release_binary, wait_until
from tests.deploy.conftest import DEPLOY, Poller, deploy, report, tree, version_json

pytestmark = [pytest.mark.droplet, pytest.mark.slow]

PORT = 8080
AGENT = "/opt/hello/bin/hello-ctl"


@pytest.fixture(scope="module")
def base(droplet):
    """/opt/hello on the droplet, seen from here."""
    return droplet.root / "opt" / "hello"


def serving(droplet, release) -> None:
    assert droplet.commit(PORT) == release.commit


def ensure(droplet, base, release) -> None:
    """Make `release` the one serving (a deploy if it is not)."""
    try:
        if droplet.commit(PORT) == release.commit:
            return
    except OSError:
        pass
    result = deploy(droplet, "binary", "-a", str(release.path), "-p", str(PORT))
    assert result.returncode == 0, result.stderr


def last_line(result) -> str:
    return result.stderr.strip().splitlines()[-1]


def test_first_deploy_serves_the_release(droplet, base, releases):
    old, _ = releases
    started = time.monotonic()
    result = deploy(droplet, "binary", "-a", str(old.path), "-p", str(PORT))
    assert result.returncode == 0, result.stderr
    serving(droplet, old)
    assert os.readlink(base / "current") == f"releases/{old.name}"
    assert (base / "releases" / old.name / "hello").read_bytes() == old.path.read_bytes()
    for unit in ("hello.service", "hello.socket"):
        shipped = (ROOT / "deploy" / "droplet" / unit).read_bytes()
        assert (droplet.root / "etc/systemd/system" / unit).read_bytes() == shipped
    assert droplet.ssh("systemctl is-active hello.socket hello.service").stdout.split() == ["active"] * 2
    assert (base / "port").read_text().strip() == str(PORT)
    assert "droplet serves" in last_line(result)
    print(f"\n[deploy figures] first binary deploy: {time.monotonic() - started:.1f} s")


def test_service_runs_as_a_dynamic_user_under_the_units_hardening(droplet, base, releases):
    ensure(droplet, base, releases[0])
    group = droplet.ssh("systemctl show -p ControlGroup --value hello.service").stdout.strip()
    pids = droplet.ssh(f"cat /sys/fs/cgroup/systemd{group}/cgroup.procs 2>/dev/null "  # hybrid
                       f"|| cat /sys/fs/cgroup{group}/cgroup.procs").stdout.split()  # unified
    assert len(pids) >= 2, pids  # the bootloaders and hello itself
    for pid in pids:
        status = dict(line.split(":", 1) for line in
                      droplet.ssh(f"cat /proc/{pid}/status").stdout.splitlines())
        uids = status["Uid"].split()
        assert "0" not in uids and int(uids[0]) >= 61184, status["Uid"]  # DynamicUser's range
        assert status["NoNewPrivs"].strip() == "1"
        assert int(status["CapEff"], 16) == 0 and int(status["CapBnd"], 16) == 0
        assert status["Seccomp"].strip() == "2"  # SystemCallFilter
    # ProtectSystem=strict: nothing outside its private /tmp is writable to it.
    probe = droplet.ssh(f"nsenter -t {pids[-1]} -m setpriv --reuid={uids[0]} --regid={uids[0]} "
                        "--clear-groups sh -c 'touch /opt/hello/x; touch /etc/x; "
                        "touch /tmp/x && echo tmp-ok' 2>&1", check=False).stdout
    assert probe.count("Read-only file system") == 2 and "tmp-ok" in probe, probe


def test_unit_exposure_is_ok_by_systemd_analyze_security(droplet, base, releases, record_property):
    """The hardening as installed (with hello-ctl's drop-in), scored by systemd
    itself: 'OK' is 2.0 or lower. docs/deploy.md quotes the figure."""
    ensure(droplet, base, releases[0])
    out = droplet.ssh("systemd-analyze security --no-pager hello.service").stdout
    line = out.strip().splitlines()[-1]
    report(record_property, "systemd-analyze security hello.service", line)
    assert line.startswith("→ Overall exposure level for hello.service:"), line
    assert float(line.split(":")[1].split()[0]) <= 2.0, line


def test_newer_build_is_deployed_without_a_failed_request(droplet, base, releases, record_property):
    old, new = releases
    ensure(droplet, base, old)
    old_pid = droplet.main_pid()
    started = time.monotonic()
    with Poller(droplet, PORT) as poller:
        result = deploy(droplet, "binary", "-a", str(new.path))
    took = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    report(record_property, "binary deploy", f"{poller.summary()}; deploy took {took:.1f} s")
    assert poller.failures == [], poller.summary()
    serving(droplet, new)
    assert os.readlink(base / "current") == f"releases/{new.name}"
    assert os.readlink(base / "previous") == f"releases/{old.name}"
    assert droplet.main_pid() not in (0, old_pid)


def test_failing_release_is_refused_before_the_switch(
        droplet, base, releases, failing_release, record_property):
    _, new = releases
    ensure(droplet, base, new)
    pid = droplet.main_pid()
    with Poller(droplet, PORT) as poller:
        result = deploy(droplet, "binary", "-a", str(failing_release.path), "-t", "3")
    report(record_property, "failing binary release", poller.summary())
    assert result.returncode == 1, result.stderr
    assert "failed its health check in isolation" in last_line(result), last_line(result)
    assert poller.failures == [], poller.summary()
    serving(droplet, new)
    assert os.readlink(base / "current") == f"releases/{new.name}"
    assert droplet.main_pid() == pid


def test_release_code_runs_only_as_a_throwaway_user_with_a_private_tmp(
        droplet, base, releases, failing_release):
    """Security: the release's `version`, `check-env`, `serve` and `healthcheck` all ran
    (the stand-in logs each to the journal) and none as root or in the shared /tmp."""
    droplet.ssh("journalctl --rotate >/dev/null; journalctl --vacuum-time=1s >/dev/null", check=False)
    ensure(droplet, base, releases[1])
    (base / "hello.env").write_text("HELLO_MESSAGE=hi\n")  # so check-env runs too
    try:
        result = deploy(droplet, "binary", "-a", str(failing_release.path), "-t", "2")
    finally:
        (base / "hello.env").unlink()
    assert result.returncode == 1, result.stderr
    shared_tmp = droplet.ssh("stat -c %i /tmp").stdout.strip()
    lines = droplet.ssh("journalctl -t hello-standin -o cat --no-pager").stdout.splitlines()
    ran = {line.split()[0] for line in lines}
    assert {"version", "check-env", "serve", "healthcheck"} <= ran, lines
    for line in lines:
        fields = dict(field.split("=", 1) for field in line.split()[1:])
        assert fields["uid"] != "0" and fields["tmp"] != shared_tmp, line


def test_health_gate_wants_the_new_builds_own_answer(
        droplet, base, releases, impostor_release, record_property):
    """Security: a release that serves some other build's answers (here the old
    release's, a 200 on /healthz) is not taken as healthy; nor is a forged log line."""
    _, new = releases
    ensure(droplet, base, new)
    pid = droplet.main_pid()
    forge = threading.Event()

    def forger():  # what once fooled a log regex: a 404 whose path looks like a healthy line
        while not forge.is_set():
            try:
                droplet.get(PORT, '/x"path":"/healthz","status":200', timeout=1)
            except OSError:
                pass
            time.sleep(0.02)

    thread = threading.Thread(target=forger, daemon=True)
    thread.start()
    with Poller(droplet, PORT) as poller:
        result = deploy(droplet, "binary", "-a", str(impostor_release.path), "-t", "3")
    forge.set()
    thread.join(5)
    report(record_property, "impostor release", poller.summary())
    assert result.returncode == 1, result.stderr
    assert f"no answer as commit {impostor_release.commit[:12]}" in last_line(result), last_line(result)
    assert poller.failures == [], poller.summary()
    serving(droplet, new)
    assert droplet.main_pid() == pid


def agent(droplet, *args: str, data: bytes = b"", timeout: float = 120):
    """hello-ctl on the droplet, as build/deploy runs it, with data on its stdin."""
    return droplet.ssh(" ".join([AGENT, *args]), check=False, input=data, timeout=timeout)


@pytest.mark.parametrize("cut", ["half", "one byte changed"])
def test_cut_or_damaged_upload_installs_nothing(droplet, base, releases, cut):
    old, new = releases
    ensure(droplet, base, new)
    pid, before = droplet.main_pid(), os.readlink(base / "current")
    data = old.path.read_bytes()
    data = data[: len(data) // 2] if cut == "half" else data[:-1] + bytes([data[-1] ^ 1])
    name = f"{old.version}-{'e' * 12}"  # a release the droplet has never seen
    result = agent(droplet, "binary", name, hashlib.sha256(old.path.read_bytes()).hexdigest(), data=data)
    assert result.returncode == 1, result.stderr
    assert "checksum of the uploaded binary does not match" in result.stderr, result.stderr
    assert not (base / "releases" / name).exists()
    assert not list((base / "releases").glob(".incoming.*"))
    assert os.readlink(base / "current") == before and droplet.main_pid() == pid
    serving(droplet, new)


def test_disk_full_during_upload_installs_nothing_and_says_so(droplet, base, releases):
    old, new = releases
    ensure(droplet, base, new)
    pid = droplet.main_pid()
    # /opt is a tmpfs of its own on the test droplet: leave 4 MB free there.
    droplet.ssh("avail=$(df --output=avail -B1 /opt | tail -n 1); "
                "head -c $((avail - 4194304)) /dev/zero >/opt/filler")
    try:
        name = f"{old.version}-{'d' * 12}"
        result = agent(droplet, "binary", name, hashlib.sha256(old.path.read_bytes()).hexdigest(),
                       data=old.path.read_bytes())
    finally:
        droplet.ssh("rm -f /opt/filler")
    assert result.returncode == 1, result.stderr
    assert "No space left on device" in result.stderr, result.stderr
    assert "could not store the upload" in result.stderr and "nothing was installed" in result.stderr
    assert not (base / "releases" / name).exists()
    assert not list((base / "releases").glob(".incoming.*"))
    assert droplet.main_pid() == pid
    serving(droplet, new)
    # ... and the next deploy works.
    result = deploy(droplet, "binary", "-a", str(old.path))
    assert result.returncode == 0, result.stderr
    serving(droplet, old)


@pytest.mark.parametrize("case", ["changed", "unknown"])
def test_wrong_host_key_fails_before_anything_is_copied(
        droplet, base, releases, failing_release, wrong_host_key_configs, case):
    _, new = releases
    ensure(droplet, base, new)
    before = tree(base)
    result = deploy(droplet, "binary", "-a", str(failing_release.path),
                    "-F", str(wrong_host_key_configs[case]))
    assert result.returncode == 1, result.stderr
    assert "host key unknown or changed" in last_line(result) and "nothing was copied" in last_line(result)
    assert tree(base) == before
    serving(droplet, new)


def test_rollback_returns_to_the_previous_release_and_to_a_named_one(
        droplet, base, releases, record_property):
    old, new = releases
    ensure(droplet, base, new)
    assert os.readlink(base / "previous") == f"releases/{old.name}"
    with Poller(droplet, PORT) as poller:
        result = deploy(droplet, "rollback")
    report(record_property, "binary rollback", poller.summary())
    assert result.returncode == 0, result.stderr
    assert poller.failures == [], poller.summary()
    serving(droplet, old)
    assert os.readlink(base / "current") == f"releases/{old.name}"
    assert os.readlink(base / "previous") == f"releases/{new.name}"
    with Poller(droplet, PORT) as poller:
        result = deploy(droplet, "rollback", "-r", new.name)
    report(record_property, "binary rollback --release", poller.summary())
    assert result.returncode == 0, result.stderr
    assert poller.failures == [], poller.summary()
    serving(droplet, new)


def test_release_names_cannot_leave_releases(droplet, base, releases):
    """Security: `--release ../../x` once reached outside releases/ and ran the
    binary found there as root."""
    ensure(droplet, base, releases[1])
    droplet.ssh("mkdir -p /opt/evil && printf '#!/bin/sh\\ntouch /opt/evil/ran-as-$(id -u)\\n' "
                ">/opt/evil/hello && chmod 755 /opt/evil/hello")
    result = deploy(droplet, "rollback", "-r", "../../evil")
    assert result.returncode == 2 and "--release: '../../evil' is not" in result.stderr
    for name in ("../../evil", "../evil", "/opt/evil", "9.9.9-aaaaaaaaaaaa/../../../evil"):
        result = agent(droplet, "rollback", f"'{name}'")
        assert result.returncode == 1, result.stderr
        assert "is not <version>-<12 hex digits of the commit>" in result.stderr, result.stderr
    assert not list((droplet.root / "opt" / "evil").glob("ran-as-*"))
    serving(droplet, releases[1])


def test_a_releases_output_reaches_root_as_one_short_printable_line(droplet, base, releases, tmp_path):
    """Root kept whatever a release printed (`version --json`) in
    memory, unbounded, and passed it on with its escape sequences and newlines, so a
    release could forge the agent's own lines in the deploy log."""
    ensure(droplet, base, releases[1])
    pid = droplet.main_pid()
    chatty = tmp_path / "hello"
    chatty.write_text("#!/bin/sh\n"
                      "printf '\\033[2J\\nhello-ctl: serving 9.9.9-forged on port 8080\\n'\n"
                      "exec yes 'hello-ctl: serving 9.9.9-forged on port 8080'\n")
    data = chatty.read_bytes()
    name = f"9.9.9-{'c' * 12}"
    result = agent(droplet, "binary", name, hashlib.sha256(data).hexdigest(), data=data, timeout=60)
    assert result.returncode == 1, result.stderr[:3000]
    assert len(result.stderr) < 3000, f"{len(result.stderr)} bytes of stderr"
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("hello-ctl: FAILED: the upload says it is "), lines
    assert "\x1b" not in result.stderr
    assert not (base / "releases" / name).exists()
    assert droplet.main_pid() == pid
    serving(droplet, releases[1])


@pytest.mark.parametrize("line, message", [
    ("PORT=8080|e touch /opt/pwned", "line 1: PORT: '8080|e touch /opt/pwned' is not a port number"),
    ("LD_PRELOAD=/opt/evil/x.so", "line 1: LD_PRELOAD is not PORT or a HELLO_* setting"),
    ("HELLO_THREADS=lots", "line 1: HELLO_THREADS: 'lots' is not a thread count"),
    ("export HELLO_MESSAGE=hi", "line 1: expected KEY=VALUE"),
    ('HELLO_MESSAGE="quoted"', "line 1: HELLO_MESSAGE: quotes and backslashes are not allowed"),
])
def test_hello_env_is_data_checked_by_hello_and_a_bad_line_changes_nothing(
        droplet, base, releases, line, message):
    """Security: hello.env lines once reached a root sed (GNU sed's `e` flag runs a
    command), and one malformed line broke every command."""
    old, new = releases
    ensure(droplet, base, new)
    pid = droplet.main_pid()
    (base / "hello.env").write_text(f"{line}\n")
    try:
        result = deploy(droplet, "binary", "-a", str(old.path))
        status = agent(droplet, "status")
    finally:
        (base / "hello.env").unlink()
    assert result.returncode == 1, result.stderr
    assert message in last_line(result) and "nothing changed" in last_line(result), last_line(result)
    assert not (droplet.root / "opt" / "pwned").exists()
    assert status.returncode == 0 and f"current: releases/{new.name}" in status.stdout
    assert droplet.main_pid() == pid
    serving(droplet, new)


def slow_request(droplet, wait: str):
    """A GET /whoami?wait=... in flight (the droplet sees it established) from a thread."""
    answers: list = []
    thread = threading.Thread(target=lambda: answers.append(
        droplet.get(PORT, f"/whoami?wait={wait}", timeout=60)), daemon=True)
    thread.start()
    wait_until(lambda: droplet.ssh(f"ss -Htn state established '( sport = :{PORT} )'").stdout.strip(),
               10, what="the slow request to be in flight")
    return answers, thread


def test_drain_timeout_in_minutes_is_given_its_time(droplet, base, releases):
    """HELLO_DRAIN_TIMEOUT=1.5m was cut to 11 s before SIGKILL (and 08 was a bash
    error): now hello ends its own drain and systemd only backs it up."""
    old, new = releases
    ensure(droplet, base, new)
    (base / "hello.env").write_text("HELLO_DRAIN_TIMEOUT=1.5m\nHELLO_THREADS=08\n")
    try:
        result = deploy(droplet, "binary", "-a", str(old.path))
        assert result.returncode == 0, result.stderr
        stop = droplet.ssh("systemctl show -p TimeoutStopUSec --value hello.service").stdout.strip()
        assert stop == "1h 1min", stop
        answers, slow = slow_request(droplet, "13s")
        result = deploy(droplet, "binary", "-a", str(new.path))
        slow.join(60)
    finally:
        (base / "hello.env").unlink()
    assert result.returncode == 0, result.stderr
    assert answers and answers[0][0] == 200, answers  # the in-flight request finished
    serving(droplet, new)


def test_a_port_in_use_fails_the_deploy_and_the_old_port_keeps_serving(droplet, base, releases):
    """A --port another process holds (or that a local user takes
    while hello.socket restarts) stopped hello.service and hello.socket, then could not
    listen: nothing served any more, the drop-in named the dead port, and <base>/port
    saved it for the next deploy. Now the old port is put back and serves."""
    old, new = releases
    ensure(droplet, base, new)
    busy = 8090
    droplet.ssh(f"systemd-run --quiet --unit r2-busy --socket-property=ListenStream={busy} /bin/true")
    try:
        result = deploy(droplet, "binary", "-a", str(old.path), "-p", str(busy))
        status = agent(droplet, "status")
    finally:
        droplet.ssh("systemctl stop r2-busy.socket", check=False)
    assert result.returncode == 1, result.stderr
    assert f"port {busy}" in last_line(result) and "8080" in last_line(result), last_line(result)
    assert f"current: releases/{new.name}" in status.stdout, status.stdout
    serving(droplet, new)
    assert (base / "port").read_text().strip() == str(PORT)
    again = deploy(droplet, "binary", "-a", str(old.path))  # on the saved port
    assert again.returncode == 0, again.stderr
    serving(droplet, old)


def test_base_must_be_a_root_only_path(droplet):
    for bad in ("//", "/opt/../../etc", "relative", "/opt/./hello"):
        result = subprocess.run([str(DEPLOY), "binary", "droplet", "-b", bad], capture_output=True,
                                text=True, timeout=30, check=False)
        assert result.returncode == 2 and "--base:" in result.stderr, (bad, result.stderr)
    result = subprocess.run([str(DEPLOY), "binary", "droplet", "-k", "9" * 20], capture_output=True,
                            text=True, timeout=30, check=False)
    assert result.returncode == 2 and "--keep:" in result.stderr
    for bad in ("/tmp/hello", "/var/tmp/hello"):  # world-writable: a service user could swap it
        result = agent(droplet, "--base", bad, "prune", "5")
        assert result.returncode == 1 and "must be a root-owned folder no one else can write" in result.stderr
        assert not (droplet.root / bad.lstrip("/")).exists()


def test_root_writes_nothing_the_service_user_can_touch(droplet, base):
    """Security: root once created and chowned a log with a guessable name in a folder
    the service user owned (a symlink there redirected it). Everything under <base>
    is root's now, and the service writes nowhere under it."""
    for path in [base, *base.rglob("*")]:
        info = path.lstat()
        assert info.st_uid == 0, path
        assert path.is_symlink() or not info.st_mode & 0o022, (path, oct(info.st_mode))


def test_a_second_deploy_waits_or_fails_at_once_naming_the_holder(
        droplet, base, releases, failing_release):
    _, new = releases
    ensure(droplet, base, new)
    first = subprocess.Popen([str(DEPLOY), "binary", "droplet", "-F", str(droplet.ssh_config),
                              "-a", str(failing_release.path), "-t", "6"],
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: "binary" in (base / "lock.holder").read_text()
                   and (base / "releases" / failing_release.name).exists(), 60, what="the first deploy")
        started = time.monotonic()
        at_once = deploy(droplet, "binary", "-a", str(new.path))
        assert time.monotonic() - started < 10
        assert at_once.returncode == 1, at_once.stderr
        assert "another deploy holds /opt/hello/lock (pid " in last_line(at_once), last_line(at_once)
        waited = deploy(droplet, "binary", "-a", str(new.path), "-w", "60")
    finally:
        _, err = first.communicate(timeout=120)
    assert first.returncode == 1, err
    assert waited.returncode == 0, waited.stderr
    serving(droplet, new)


def test_a_deploy_killed_half_way_leaves_no_lock_and_consistent_links(droplet, base, releases):
    old, new = releases
    ensure(droplet, base, new)
    # An in-flight request keeps the old process draining, which holds the deploy
    # between its switch and its verdict long enough to kill it there.
    answers, slow = slow_request(droplet, "8s")
    running = subprocess.Popen([str(DEPLOY), "binary", "droplet", "-F", str(droplet.ssh_config),
                                "-a", str(old.path)], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: (base / "deploying").exists(), 60, interval=0.02, what="the switch")
        holder = (base / "lock.holder").read_text().split()[1].rstrip(",")
        droplet.ssh(f"kill -KILL {holder}")
    finally:
        running.communicate(timeout=60)
        slow.join(60)
    assert os.readlink(base / "current") == f"releases/{old.name}"  # switched, not yet proven
    result = deploy(droplet, "rollback", "-r", new.name)  # no --lock-wait: the lock is free
    assert result.returncode == 0, result.stderr
    assert "an earlier deploy was interrupted" in result.stderr
    assert not (base / "deploying").exists()
    serving(droplet, new)
    assert os.readlink(base / "current") == f"releases/{new.name}"
    assert os.readlink(base / "previous") == f"releases/{old.name}"


def test_pruning_keeps_current_and_previous_and_never_counts_failed_releases(droplet, base, releases):
    old, new = releases
    ensure(droplet, base, new)
    made = {}
    for age, (name, served) in enumerate([("0.0.3-cccccccccccc", True), ("0.0.2-bbbbbbbbbbbb", False),
                                          ("0.0.1-aaaaaaaaaaaa", True)]):
        folder = base / "releases" / name
        folder.mkdir(exist_ok=True)
        (folder / "hello").write_text("#!/bin/sh\n")
        if served:
            (folder / "served").touch()
            stamp = time.time() - 3600 * (age + 1)
            os.utime(folder / "served", (stamp, stamp))
        made[name] = served
    # The release that failed is the newest folder: it must not take a place.
    os.utime(base / "releases" / "0.0.2-bbbbbbbbbbbb", (time.time() + 60,) * 2)
    # previous (old) last served long ago: the oldest of all; --keep 2 must keep it.
    os.utime(base / "releases" / old.name / "served", (time.time() - 86400,) * 2)
    result = deploy(droplet, "binary", "-a", str(new.path), "-k", "2")
    assert result.returncode == 0, result.stderr
    left = {p.name for p in (base / "releases").iterdir()}
    # Kept: the 2 newest that served (new, 0.0.3), and previous (old) though oldest.
    assert left == {new.name, "0.0.3-cccccccccccc", old.name}, left


def test_rollback_with_nothing_deployed_says_so(droplet):
    result = deploy(droplet, "rollback", "-b", "/opt/never-deployed")
    assert result.returncode == 1
    assert "nothing was deployed" in last_line(result)


def answers_as(droplet, release) -> bool:
    try:
        return droplet.commit(PORT) == release.commit
    except OSError:
        return False


def socket_shy_release(folder, version: str, commit: str) -> str:
    """A stand-in that passes the isolated proof (`serve --port` then `healthcheck`
    in one sandbox) but exits at once when systemd hands it the socket (LISTEN_FDS):
    a release with a bug only on the socket-activated path."""
    path = folder / "hello"
    path.write_text(
        "#!/bin/sh\n"
        'case "${1:-} ${2:-}" in\n'
        f"    'version --json') echo '{version_json(version, commit)}' ;;\n"
        f"    'version '*) echo 'hello {version} (commit {commit}, built x, python 3.11.7, frozen)' ;;\n"
        "    check-env*) exit 0 ;;\n"
        '    healthcheck*) test -e /tmp/up ;;\n'
        '    serve*) [ -z "${LISTEN_FDS:-}" ] || exit 1; touch /tmp/up; exec sleep 3600 ;;\n'
        "esac\n")
    path.chmod(0o755)
    return str(path)


@pytest.mark.parametrize("port", [PORT, 8091], ids=["same port", "new port"])
def test_a_release_failing_after_the_switch_leaves_the_old_one_serving_on_its_port(
        droplet, base, releases, tmp_path, port):
    """A release that passed its isolated proof but failed on the
    real socket was switched back from, yet (new port) the old release then served on
    the new port and the saved one refused connections; (same port) the restarts of
    the crashing release hit hello.service's start limit and the switch back could
    not start the old release."""
    _, new = releases
    ensure(droplet, base, new)
    shy = socket_shy_release(tmp_path, "9.9.8", "5e1f5e1f5e1f" + "0" * 28)
    result = deploy(droplet, "binary", "-a", shy, "-p", str(port), "-t", "4")
    assert result.returncode == 1, result.stderr
    assert f"switched back to releases/{new.name}" in last_line(result), result.stderr
    wait_until(lambda: answers_as(droplet, new), 20, what="the old release on the old port")
    assert os.readlink(base / "current") == f"releases/{new.name}"
    assert (base / "port").read_text().strip() == str(PORT)
    assert not (base / "deploying").exists()


def test_a_release_of_the_same_name_never_replaces_one_that_served(droplet, base, releases, tmp_path):
    """An upload named like the serving release (same version and
    commit, other bytes: a rebuild, or a hostile binary) replaced releases/REL/hello
    before its proof; the proof failed and said 'nothing changed', but the current
    release's file was now the failing one: the next restart (a crash, a reboot, a
    rollback to it) ran it."""
    old, _ = releases
    ensure(droplet, base, old)
    before = (base / "releases" / old.name / "hello").read_bytes()
    path = tmp_path / "hello"
    path.write_text(
        "#!/bin/sh\n"
        'case "${1:-} ${2:-}" in\n'
        f"    'version --json') echo '{version_json(old.version, old.commit)}' ;;\n"
        f"    'version '*) echo 'hello {old.version} (commit {old.commit}, built x, "
        "python 3.11.7, frozen)' ;;\n"
        "    *) exit 1 ;;\n"
        "esac\n")
    path.chmod(0o755)
    result = deploy(droplet, "binary", "-a", str(path), "-t", "2")
    assert result.returncode == 1, result.stderr
    assert "a release is never replaced" in last_line(result), last_line(result)
    assert (base / "releases" / old.name / "hello").read_bytes() == before
    droplet.ssh("systemctl restart hello.service")
    wait_until(lambda: answers_as(droplet, old), 20, what="the old release after a restart")


@pytest.mark.parametrize("how", ["owned by a user", "group-writable", "a symlink to a user's file"])
def test_hello_env_another_user_could_write_is_refused(droplet, base, releases, how):
    """Root checked hello.env with `hello check-env` whoever owned
    it; systemd reads it again at every start, so its owner could add LD_PRELOAD (or any
    line check-env refuses) after the check. Only a root-owned file no one else can
    write, and not a symlink, is taken."""
    old, new = releases
    ensure(droplet, base, new)
    env = base / "hello.env"
    if how == "a symlink to a user's file":
        target = droplet.root / "opt" / "user-env"
        target.write_text("HELLO_MESSAGE=hi\n")
        os.chown(target, 1000, 1000)
        env.symlink_to("/opt/user-env")
    else:
        env.write_text("HELLO_MESSAGE=hi\n")
        if how == "owned by a user":
            os.chown(env, 1000, 1000)
        else:
            env.chmod(0o664)
    try:
        result = deploy(droplet, "binary", "-a", str(old.path))
    finally:
        env.unlink()
    assert result.returncode == 1, result.stderr
    assert "hello.env must be a root-owned file" in last_line(result), last_line(result)
    serving(droplet, new)


def test_a_binary_for_another_machine_is_refused_before_anything_is_copied(droplet, base, releases):
    """The droplet is x86_64: the arm64 build is refused by build/deploy, which asks
    the host's `uname -m`, and the release serving goes on serving."""
    old, _ = releases
    ensure(droplet, base, old)
    before = tree(base / "releases")
    arm64 = release_binary("arm64")
    result = deploy(droplet, "binary", "-a", str(arm64), "-p", str(PORT))
    assert result.returncode == 1, result.stderr
    assert f"{arm64} is linux-arm64, and droplet is linux-amd64" in last_line(result)
    assert tree(base / "releases") == before
    serving(droplet, old)


def test_the_host_agent_refuses_an_upload_for_another_machine(droplet, base, releases):
    """hello-ctl reads the upload's ELF header itself: this host's kernel would run an
    arm64 binary through qemu's binfmt, so running it is no check."""
    old, _ = releases
    ensure(droplet, base, old)
    arm64 = release_binary("arm64").read_bytes()
    name = f"{old.version}-{'a' * 12}"
    result = droplet.ssh(f"{AGENT} binary {name} {hashlib.sha256(arm64).hexdigest()}",
                         check=False, input=arm64)
    assert result.returncode == 1, result.stderr
    assert ("FAILED: the upload is linux-arm64, and this host is linux-amd64 (x86_64): "
            f"deploy hello-{old.version}-linux-amd64; nothing was installed") in result.stderr
    assert not (base / "releases" / name).exists()
    assert not list((base / "releases").glob(".incoming.*"))
    serving(droplet, old)


def test_without_an_artifact_the_release_for_the_hosts_machine_is_picked(droplet, base, releases):
    """No --artifact: dist/hello-<version>-linux-amd64 (the droplet's machine), even
    with the arm64 release beside it in dist."""
    release_binary("arm64")
    native = release_binary("amd64")
    result = deploy(droplet, "binary", "-p", str(PORT))
    assert result.returncode == 0, result.stderr
    assert f"deploying dist/{native.name} (" in result.stderr
    assert "(linux-amd64):/opt/hello/releases/" in result.stderr
    assert (base / "current" / "hello").read_bytes() == native.read_bytes()


def test_a_deploy_right_after_the_start_limit_was_reached_still_starts(droplet, base, releases):
    """hello.service's start limit (5 in 10 s) is a crash-loop guard, but systemd
    counts every start: quick deploys and rollbacks reached it, and the next deploy's
    restart was refused ("start of the service was attempted too often")."""
    old, new = releases
    ensure(droplet, base, old)
    for _ in range(6):
        droplet.ssh("systemctl restart hello.service", check=False)
    refused = droplet.ssh("systemctl restart hello.service", check=False)
    assert refused.returncode != 0, "the start limit was not reached: this test proves nothing"
    result = deploy(droplet, "binary", "-a", str(new.path), "-p", str(PORT))
    assert result.returncode == 0, result.stderr
    serving(droplet, new)
