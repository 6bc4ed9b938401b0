"""The build/ scripts only the pipeline calls, run here as CircleCI would run them.

build/ci-ssh-config is tested against a real sshd on 127.0.0.1 (its own host key,
key-only), started and stopped by PID: the config it writes connects with the pinned
key and refuses a droplet whose host key differs. build/image-smoke is tested
through a real engine (tests/infra/dockerd) with stand-in images.
"""

from __future__ import annotations

import base64
import getpass
import os
import shutil
import subprocess
import textwrap

import pytest

from tests.conftest import ROOT, free_port, require, wait_until

SSH_CONFIG = ROOT / "build" / "ci-ssh-config"


def keygen(path):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(path)], check=True,
                   timeout=60)
    return path


def run_ssh_config(tmp_path, env, *args):
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True, exist_ok=True)
    full = {"PATH": os.environ["PATH"], "HOME": str(home), **env}
    return subprocess.run([str(SSH_CONFIG), *(args or [str(tmp_path / "ssh")])], env=full,
                          capture_output=True, text=True, timeout=30, check=False)


def ssh_effective(config_path) -> dict:
    out = subprocess.run(["ssh", "-G", "-F", str(config_path), "droplet"], capture_output=True,
                         text=True, check=True, timeout=30).stdout
    effective = {}
    for line in out.splitlines():
        key, _, value = line.partition(" ")
        effective.setdefault(key, []).append(value)
    return effective


@pytest.fixture
def host_key(tmp_path):
    require(shutil.which("ssh-keygen") is not None, "ssh-keygen is not installed (openssh-client)")
    return keygen(tmp_path / "host_key")


def known_line(host, port, host_key):
    pub = host_key.with_suffix(".pub").read_text().split()
    name = host if port == 22 else f"[{host}]:{port}"
    return f"{name} {pub[0]} {pub[1]}"


def test_writes_a_config_with_the_pinned_host_key(tmp_path, host_key):
    fake_key = tmp_path / "home" / ".ssh" / "id_rsa_0a1b2c3d"
    fake_key.parent.mkdir(parents=True)
    fake_key.write_text("not a real key\n")
    env = {"DROPLET_HOST": "203.0.113.7", "DROPLET_USER": "deploy",
           "DROPLET_KNOWN_HOSTS": known_line("203.0.113.7", 22, host_key)}
    result = run_ssh_config(tmp_path, env)
    assert result.returncode == 0, result.stderr
    config = tmp_path / "ssh" / "config"
    assert result.stdout.strip() == str(config)
    effective = ssh_effective(config)
    assert effective["hostname"] == ["203.0.113.7"]
    assert effective["user"] == ["deploy"]
    assert effective["port"] == ["22"]
    assert effective["stricthostkeychecking"] == ["true"]
    assert effective["userknownhostsfile"] == [str(tmp_path / "ssh" / "known_hosts")]
    assert effective["identityfile"] == [str(fake_key)]
    assert effective["identitiesonly"] == ["yes"]
    assert oct(config.stat().st_mode & 0o777) == "0o600"


def test_accepts_base64_known_hosts_and_a_port(tmp_path, host_key):
    line = known_line("droplet.example", 2222, host_key)
    env = {"DROPLET_HOST": "droplet.example", "DROPLET_USER": "deploy", "DROPLET_PORT": "2222",
           "DROPLET_KNOWN_HOSTS": base64.b64encode(line.encode()).decode()}
    result = run_ssh_config(tmp_path, env)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "ssh" / "known_hosts").read_text().strip() == line
    assert ssh_effective(tmp_path / "ssh" / "config")["port"] == ["2222"]


@pytest.mark.parametrize("missing", ["DROPLET_HOST", "DROPLET_USER", "DROPLET_KNOWN_HOSTS"])
def test_a_missing_variable_is_one_clear_error(tmp_path, host_key, missing):
    env = {"DROPLET_HOST": "203.0.113.7", "DROPLET_USER": "deploy",
           "DROPLET_KNOWN_HOSTS": known_line("203.0.113.7", 22, host_key)}
    del env[missing]
    result = run_ssh_config(tmp_path, env)
    assert result.returncode == 1
    assert result.stderr.startswith(f"ci-ssh-config: {missing} is not set")
    assert not (tmp_path / "ssh" / "config").exists()


def test_known_hosts_for_another_host_is_refused(tmp_path, host_key):
    env = {"DROPLET_HOST": "203.0.113.7", "DROPLET_USER": "deploy",
           "DROPLET_KNOWN_HOSTS": known_line("198.51.100.1", 22, host_key)}
    result = run_ssh_config(tmp_path, env)
    assert result.returncode == 1
    assert "DROPLET_KNOWN_HOSTS has no key for 203.0.113.7" in result.stderr
    assert not (tmp_path / "ssh" / "config").exists()


@pytest.fixture
def sshd(tmp_path, host_key):
    """A key-only sshd on 127.0.0.1 with its own host key; stopped by PID."""
    require(os.path.exists("/usr/sbin/sshd"), "sshd is not installed (apt-get install openssh-server)")
    require(os.geteuid() == 0, "sshd for this test runs as root")
    os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege separation directory
    client = keygen(tmp_path / "client_key")
    (tmp_path / "authorized_keys").write_text(client.with_suffix(".pub").read_text())
    port = free_port()
    config = tmp_path / "sshd_config"
    config.write_text(textwrap.dedent(f"""\
        Port {port}
        ListenAddress 127.0.0.1
        HostKey {host_key}
        PidFile {tmp_path / "sshd.pid"}
        AuthorizedKeysFile {tmp_path / "authorized_keys"}
        PasswordAuthentication no
        KbdInteractiveAuthentication no
        PubkeyAuthentication yes
        PermitRootLogin prohibit-password
        StrictModes no
        UsePAM no
        """))
    process = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(config)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def listening():
        if process.poll() is not None:
            raise AssertionError(f"sshd exited {process.returncode}: {process.stderr.read()}")
        return subprocess.run(["bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{port}"],
                              capture_output=True, check=False, timeout=5).returncode == 0
    try:
        wait_until(listening, 10, interval=0.05, what=f"sshd on port {port}")
        yield {"port": port, "client_key": client}
    finally:
        process.terminate()
        process.wait(timeout=10)


def ssh_through_written_config(tmp_path, sshd, pinned_key) -> subprocess.CompletedProcess:
    """build/ci-ssh-config with `pinned_key` as the droplet's known host key, then
    `ssh -F <that config> droplet echo reached` against the real sshd."""
    env = {"DROPLET_HOST": "127.0.0.1", "DROPLET_PORT": str(sshd["port"]), "DROPLET_USER": getpass.getuser(),
           "DROPLET_KNOWN_HOSTS": known_line("127.0.0.1", sshd["port"], pinned_key),
           "DROPLET_SSH_KEY": str(sshd["client_key"])}
    result = run_ssh_config(tmp_path, env)
    assert result.returncode == 0, result.stderr
    return subprocess.run(["ssh", "-F", result.stdout.strip(), "droplet", "echo", "reached"],
                          capture_output=True, text=True, timeout=30, check=False)


def test_the_config_connects_to_the_droplet_it_pins(tmp_path, host_key, sshd):
    ssh = ssh_through_written_config(tmp_path, sshd, host_key)
    assert ssh.returncode == 0, ssh.stderr
    assert ssh.stdout.strip() == "reached"


def test_the_config_refuses_a_droplet_with_another_host_key(tmp_path, host_key, sshd):
    impostor = keygen(tmp_path / "other_host_key")
    ssh = ssh_through_written_config(tmp_path, sshd, impostor)
    assert ssh.returncode == 255
    assert "reached" not in ssh.stdout
    assert "Host key verification failed" in ssh.stderr


@pytest.mark.parametrize("image", ["-rf", "--volume=/:/host", ""])
def test_verify_image_binary_takes_no_option_as_an_image(image):
    """An IMAGE that docker would read as an option (or nothing) is a usage error,
    before any engine is asked (DOCKER_HOST points nowhere: contact would be exit 1)."""
    result = subprocess.run([str(ROOT / "build" / "verify-image-binary"), image],
                            env={**os.environ, "DOCKER_HOST": "unix:///nonexistent.sock"},
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("verify-image-binary: ") and result.stderr.count("\n") == 1
