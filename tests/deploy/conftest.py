"""The simulated droplet and what the deploy suites ship to it.

`droplet` (session): tests/infra/droplet up in a temporary state dir: a network
namespace with its own /30, sshd and dockerd inside; torn down by PID at the end.
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

    @property
    def ssh_config(self) -> pathlib.Path:
        return self.state / "ssh_config"

    def ssh(self, command: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["ssh", "-F", str(self.ssh_config), "droplet", command],
                              capture_output=True, text=True, timeout=60, check=check)

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

    The running service's own log files are left out: it appends to them whenever it
    answers a request, which says nothing about what a deploy changed."""
    if not path.exists():
        return {}
    return {str(p.relative_to(path)): (p.lstat().st_mtime_ns, os.readlink(p) if p.is_symlink() else None)
            for p in sorted(path.rglob("*"))
            if not (p.parent.name == "log" and p.suffix == ".log")}


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
    require(os.geteuid() == 0, "the droplet needs root (network namespaces)")
    for tool in ("/usr/sbin/sshd", "ip", "ssh", "scp", "start-stop-daemon", "flock"):
        require(shutil.which(tool) is not None,
                f"{tool} is missing (apt-get install openssh-server openssh-client iproute2 dpkg util-linux)")
    docker = shutil.which("dockerd") is not None
    state = tmp_path_factory.mktemp("droplet")
    args = [] if docker else ["--no-docker"]
    up = subprocess.run([str(DROPLET_SCRIPT), "up", str(state), *args],
                        check=False, capture_output=True, text=True, timeout=180)
    try:
        assert up.returncode == 0, f"droplet up failed:\n{up.stderr}"
        net = os.environ.get("HELLO_DROPLET_NET", "10.231.0")
        yield Droplet(state, f"{net}.2", docker)
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


@pytest.fixture(scope="session")
def failing_release(tmp_path_factory) -> Release:
    """A stand-in that answers `version` like hello but never serves."""
    folder = tmp_path_factory.mktemp("failing")
    path = folder / "hello"
    path.write_text(
        "#!/bin/sh\n"
        "# A release that answers `version` but never serves.\n"
        'case "${1:-}" in\n'
        "    version) echo 'hello 1.0.0 (commit badc0ffee0000000000000000000000000000000, "
        "built 2026-01-01T00:00:00Z, python 3.11.7, frozen)' ;;\n"
        "    *) exec sleep 3600 ;;\n"
        "esac\n")
    path.chmod(0o755)
    return release_of(path)


@pytest.fixture(scope="session")
def wrong_host_key_configs(droplet, tmp_path_factory) -> dict[str, pathlib.Path]:
    """ssh configs whose known_hosts has another key for the droplet, or none."""
    folder = tmp_path_factory.mktemp("hostkeys")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / "other")],
                   check=True)
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
def cut_scp(tmp_path_factory) -> pathlib.Path:
    """A folder with an `scp` that sends the first half of every file over 1 MB;
    CUT_SCP=die then fails like a dropped connection, CUT_SCP=quiet exits 0."""
    folder = tmp_path_factory.mktemp("cut-scp")
    real = shutil.which("scp")
    (folder / "scp").write_text(f"""#!/usr/bin/env bash
set -euo pipefail
half=$(mktemp -d)
args=()
while [[ $# -gt 0 ]]; do
    case $1 in
        -[FoiPlcJS]) args+=("$1" "$2"); shift 2; continue ;;
    esac
    if [[ -f $1 && $(stat -L -c %s "$1") -gt 1048576 ]]; then
        head -c $(( $(stat -L -c %s "$1") / 2 )) "$1" >"$half/$(basename "$1")"
        args+=("$half/$(basename "$1")")
    else
        args+=("$1")
    fi
    shift
done
{real} "${{args[@]}}"
rm -rf "$half"
if [[ ${{CUT_SCP:-die}} == die ]]; then echo "scp: connection lost" >&2; exit 1; fi
""")
    (folder / "scp").chmod(0o755)
    return folder


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
        assert tar.wait() == 0
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
