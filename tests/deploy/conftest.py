"""The simulated droplet and what the deploy suites ship to it.

`droplet` (session): tests/infra/droplet up in a temporary state dir: systemd as
PID 1 (systemd-nspawn --boot) in a network namespace with its own /30, sshd with a
host key the tests pin, and a docker engine for the image path; powered off and
torn down by PID at the end. Its files are visible here under /proc/LEADER/root.
`releases` (session): two real builds that differ only in their commit: dist/hello
and a second build/binary run with another HELLO_COMMIT, cached by dist/hello's
checksum under /var/tmp/hello-deploy-build (about a minute the first time).
`Poller`: GET / every 20 ms through a deploy, counting failures and the longest gap.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import json
import os
import pathlib
import re
import shutil
import subprocess
import threading
import time

import pytest

from tests.conftest import ROOT, require

DROPLET_SCRIPT = ROOT / "tests" / "infra" / "droplet"
DOCKERD_SCRIPT = ROOT / "tests" / "infra" / "dockerd"
DEPLOY = ROOT / "build" / "deploy"
BUILD_CACHE = pathlib.Path(os.environ.get("HELLO_DEPLOY_BUILD_CACHE", "/var/tmp/hello-deploy-build"))
VERSION_LINE = re.compile(r"^hello (\S+) \(commit ([0-9A-Za-z]+),")


@dataclasses.dataclass(frozen=True)
class Droplet:
    state: pathlib.Path
    address: str
    docker: bool
    leader: int  # the droplet's PID 1, as this machine numbers it

    @property
    def ssh_config(self) -> pathlib.Path:
        return self.state / "ssh_config"

    @property
    def root(self) -> pathlib.Path:
        """The droplet's / seen from here (its overlay, not the unpacked root)."""
        return pathlib.Path(f"/proc/{self.leader}/root")

    def ssh(self, command: str, check: bool = True, input: bytes | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess:
        result = subprocess.run(["ssh", "-F", str(self.ssh_config), "droplet", command],
                                capture_output=True, input=input, timeout=timeout, check=False)
        result.stdout, result.stderr = result.stdout.decode(), result.stderr.decode()
        if check:
            assert result.returncode == 0, f"{command}: {result.stderr}"
        return result

    def main_pid(self) -> int:
        """hello.service's MainPID inside the droplet (0 when it is not running)."""
        return int(self.ssh("systemctl show -p MainPID --value hello.service").stdout)

    def get(self, port: int, path: str = "/version", timeout: float = 2.0):
        """(status, body) of a GET to the droplet; raises OSError when nothing answers."""
        connection = http.client.HTTPConnection(self.address, port, timeout=timeout)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def commit(self, port: int) -> str:
        status, body = self.get(port)
        assert status == 200, body
        return json.loads(body)["commit"]


@dataclasses.dataclass(frozen=True)
class Release:
    path: pathlib.Path
    version: str
    commit: str

    @property
    def name(self) -> str:  # the folder build/deploy makes: <version>-<commit, 12>
        return f"{self.version}-{self.commit[:12]}"


def release_of(path: pathlib.Path) -> Release:
    line = subprocess.run([str(path), "version"], capture_output=True, text=True,
                          timeout=60, check=True).stdout.strip()
    match = VERSION_LINE.match(line)
    assert match, f"{path} version printed {line!r}"
    return Release(path, match.group(1), match.group(2))


def deploy(droplet: Droplet, mode: str, *args: str, env: dict | None = None,
           timeout: float = 300) -> subprocess.CompletedProcess:
    """Run build/deploy against the droplet; stdout and stderr captured as text."""
    return subprocess.run(
        [str(DEPLOY), mode, "droplet", "-F", str(droplet.ssh_config), *args],
        check=False, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
        env={**os.environ, **(env or {})})


def tree(path: pathlib.Path) -> dict:
    """Every file, link and folder under path with its mtime: 'nothing changed' checks.

    The service writes nothing under <base> (it logs to the journal)."""
    if not path.exists():
        return {}
    return {str(p.relative_to(path)): (p.lstat().st_mtime_ns, os.readlink(p) if p.is_symlink() else None)
            for p in sorted(path.rglob("*"))}


class Poller:
    """GET / every 20 ms from a thread: a client watching the deploy."""

    def __init__(self, droplet: Droplet, port: int, interval: float = 0.02):
        self.droplet, self.port, self.interval = droplet, port, interval
        self.ok = 0
        self.failures: list[str] = []
        self.longest_gap = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="poller", daemon=True)

    def _run(self) -> None:
        last_ok = time.monotonic()
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                status, _ = self.droplet.get(self.port, "/", timeout=2.0)
            except (OSError, http.client.HTTPException) as error:
                self.failures.append(repr(error))
            else:
                if status == 200:
                    self.ok += 1
                    now = time.monotonic()
                    self.longest_gap = max(self.longest_gap, now - last_ok)
                    last_ok = now
                else:
                    self.failures.append(f"status {status}")
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def __enter__(self) -> Poller:
        self._thread.start()
        deadline = time.monotonic() + 5
        while self.ok == 0 and not self.failures and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.ok, f"nothing answered on port {self.port} before the deploy: {self.failures[:3]}"
        return self

    def __exit__(self, *exc) -> None:
        time.sleep(0.3)  # requests right after the deploy count too
        self._stop.set()
        self._thread.join(5)

    def summary(self) -> str:
        return (f"{self.ok} ok, {len(self.failures)} failed, "
                f"longest gap between answers {self.longest_gap * 1000:.0f} ms")


def report(record_property, name: str, text: str) -> None:
    """A measured figure: in the JUnit XML, and on the terminal with -s."""
    record_property(name, text)
    print(f"\n[deploy figures] {name}: {text}")


@pytest.fixture(scope="session")
def droplet(tmp_path_factory):
    require(os.geteuid() == 0, "the droplet needs root (network namespaces, nspawn)")
    for tool in ("systemd-nspawn", "debootstrap", "zstd", "ip", "ssh"):
        require(shutil.which(tool) is not None, f"{tool} is missing (apt-get install "
                "systemd-container debootstrap zstd iproute2 openssh-client)")
    docker = shutil.which("dockerd") is not None
    state = tmp_path_factory.mktemp("droplet")
    args = [] if docker else ["--no-docker"]
    up = subprocess.run([str(DROPLET_SCRIPT), "up", str(state), *args],
                        check=False, capture_output=True, text=True, timeout=600)
    try:
        assert up.returncode == 0, f"droplet up failed:\n{up.stderr}"
        net = os.environ.get("HELLO_DROPLET_NET", "10.231.0")
        leader = int((state / "leader").read_text())
        yield Droplet(state, f"{net}.2", docker, leader)
    finally:
        down = subprocess.run([str(DROPLET_SCRIPT), "down", str(state)],
                              check=False, capture_output=True, text=True, timeout=180)
        assert down.returncode == 0, f"droplet down failed:\n{down.stderr}"


def _second_build(first: Release) -> pathlib.Path:
    """build/binary again with another HELLO_COMMIT, in a copy of the tree (it writes
    dist/ of the tree it runs in), cached by the first build's checksum."""
    digest = hashlib.sha256(first.path.read_bytes()).hexdigest()[:16]
    out = BUILD_CACHE / digest / "dist" / "hello"
    if out.exists():
        return out
    tree_copy = BUILD_CACHE / digest
    shutil.rmtree(tree_copy, ignore_errors=True)
    tree_copy.mkdir(parents=True)
    for name in ("hello", "spec", "requirements", "setup.cfg", "pyproject.toml"):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, tree_copy / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif source.exists():
            shutil.copy2(source, tree_copy / name)
    (tree_copy / "build").mkdir()
    shutil.copy2(ROOT / "build" / "binary", tree_copy / "build" / "binary")
    other = hashlib.sha256(f"deploy-test-{first.commit}".encode()).hexdigest()[:40]
    env = {**os.environ, "HELLO_COMMIT": other, "SOURCE_DATE_EPOCH": str(int(time.time())),
           "HELLO_BUILD_DIR": str(BUILD_CACHE / "work")}
    built = subprocess.run([str(tree_copy / "build" / "binary")], cwd=tree_copy, env=env,
                           check=False, capture_output=True, text=True, timeout=1200)
    assert built.returncode == 0, f"second build failed:\n{built.stderr[-3000:]}"
    return out


@pytest.fixture(scope="session")
def releases() -> tuple[Release, Release]:
    """(old, new): dist/hello and a build of the same source with another commit."""
    dist = ROOT / "dist" / "hello"
    require(dist.exists(), "dist/hello is missing (make binary)")
    first = release_of(dist)
    second = release_of(_second_build(first))
    assert second.commit != first.commit
    return first, second


def version_json(version: str, commit: str) -> str:
    """What `hello version --json` prints, for stand-in releases."""
    return json.dumps({"build_date": "2026-01-01T00:00:00Z", "commit": commit, "frozen": True,
                       "name": "hello", "python": "3.11.7", "version": version}, sort_keys=True)


@pytest.fixture(scope="session")
def impostor_release(tmp_path_factory, releases) -> Release:
    """A release that says it is one commit (`version`) but serves another build:
    its `serve` and `healthcheck` are the old release's, already on the droplet. A
    health gate that takes any 200 on the port as proof lets it through."""
    old, _ = releases
    commit = "1badbadbad000000000000000000000000000000"
    folder = tmp_path_factory.mktemp("impostor")
    path = folder / "hello"
    path.write_text(
        "#!/bin/sh\n"
        'case "${1:-} ${2:-}" in\n'
        f"    'version --json') echo '{version_json('1.0.0', commit)}' ;;\n"
        f"    'version '*) echo 'hello 1.0.0 (commit {commit}, built x, python 3.11.7, frozen)' ;;\n"
        f'    *) exec /opt/hello/releases/{old.name}/hello "$@" ;;\n'
        "esac\n")
    path.chmod(0o755)
    return release_of(path)


@pytest.fixture(scope="session")
def failing_release(tmp_path_factory) -> Release:
    """A stand-in that answers `version` and `check-env` like hello but never serves."""
    folder = tmp_path_factory.mktemp("failing")
    path = folder / "hello"
    commit = "badc0ffee0000000000000000000000000000000"
    path.write_text(
        "#!/bin/sh\n"
        "# A release that answers `version` and `check-env` but never serves; it logs\n"
        "# each run with the uid and the /tmp (inode) it ran with.\n"
        'logger -t hello-standin "${1:-none} uid=$(id -u) tmp=$(stat -c %i /tmp)"\n'
        'case "${1:-} ${2:-}" in\n'
        f"    'version --json') echo '{version_json('1.0.0', commit)}' ;;\n"
        f"    'version '*) echo 'hello 1.0.0 (commit {commit}, "
        "built 2026-01-01T00:00:00Z, python 3.11.7, frozen)' ;;\n"
        "    check-env*) exit 0 ;;\n"
        "    healthcheck*) echo 'nothing answers' >&2; exit 1 ;;\n"
        "    *) exec sleep 3600 ;;\n"
        "esac\n")
    path.chmod(0o755)
    return release_of(path)


@pytest.fixture(scope="session")
def wrong_host_key_configs(droplet, tmp_path_factory) -> dict[str, pathlib.Path]:
    """ssh configs whose known_hosts has another key for the droplet, or none."""
    folder = tmp_path_factory.mktemp("hostkeys")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / "other")],
                   check=True, timeout=30)
    other = (folder / "other.pub").read_text().split()[:2]
    configs = {}
    for case, known in (("changed", f"{droplet.address} {' '.join(other)}\n"), ("unknown", "")):
        (folder / f"known_hosts.{case}").write_text(known)
        text = droplet.ssh_config.read_text().replace(
            str(droplet.state / "known_hosts"), str(folder / f"known_hosts.{case}"))
        (folder / f"ssh_config.{case}").write_text(text)
        configs[case] = folder / f"ssh_config.{case}"
    return configs


@pytest.fixture(scope="session")
def local_engine(docker_engine) -> str:
    """DOCKER_HOST of the engine on this machine (the session's shared one): where
    `build/deploy image` saves images from, as a CI builder's engine would be."""
    return docker_engine.host


@dataclasses.dataclass(frozen=True)
class Image:
    tag: str
    commit: str


@pytest.fixture(scope="session")
def images(local_engine, releases, tmp_path_factory) -> dict[str, Image]:
    """Small test images (FROM scratch: just the binary), made with `docker import`
    rather than the project's Dockerfile so this suite needs no image build:
    old and new (the two releases) and broken (its CMD is `version`: it answers
    `hello version`, then exits, and never serves)."""
    old, new = releases
    made = {}
    for name, release, cmd in (("old", old, "serve"), ("new", new, "serve"),
                               ("broken", old, "version")):
        folder = tmp_path_factory.mktemp(f"image-{name}")
        shutil.copy2(release.path, folder / "hello")
        tag = f"hello-deploy-test:{name}"
        tar = subprocess.Popen(["tar", "-C", str(folder), "-c", "hello"], stdout=subprocess.PIPE)
        subprocess.run(["docker", "import", "-c", 'ENTRYPOINT ["/hello"]', "-c", f'CMD ["{cmd}"]',
                        "-", tag], stdin=tar.stdout, check=True, capture_output=True,
                       env={**os.environ, "DOCKER_HOST": local_engine}, timeout=120)
        assert tar.wait(timeout=60) == 0
        made[name] = Image(tag, release.commit)
    return made


@pytest.fixture(scope="session")
def cut_docker_save(tmp_path_factory) -> pathlib.Path:
    """A folder with a `docker` whose `save` stops after 5 MB, as a cut stream."""
    folder = tmp_path_factory.mktemp("cut-docker")
    real = shutil.which("docker")
    (folder / "docker").write_text(f"""#!/usr/bin/env bash
if [[ ${{1:-}} == save ]]; then
    {real} "$@" | head -c 5000000
    exit 0
fi
exec {real} "$@"
""")
    (folder / "docker").chmod(0o755)
    return folder
