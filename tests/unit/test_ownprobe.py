"""`hello healthcheck --own`: an answer from another PID namespace's server fails.

Real servers and real PID namespaces (unshare): the probe runs in a fresh PID
namespace, as a container's healthcheck does, against a server inside it and
against one outside it (the other task sharing the port, in production).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT, child_env, free_port, http_status, python_hello, require, wait_until


def _can_unshare() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    return subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"],
                          check=False, capture_output=True, timeout=10).returncode == 0


@pytest.fixture
def pidns():
    require(_can_unshare(), "needs root and unshare --pid (util-linux)")


def _in_new_pidns(script: str, timeout: float = 60) -> subprocess.CompletedProcess:
    # the namespace ends with this test's process, even one killed by a timeout:
    # setpriv makes unshare die with it, and --kill-child takes the namespace along
    return subprocess.run(["setpriv", "--pdeathsig", "KILL", "unshare", "--pid", "--kill-child",
                           "--mount-proc", "bash", "-c", script],
                          check=False, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env={**os.environ, **child_env()})


def _cmd(argv: list[str]) -> str:
    return " ".join(f"'{arg}'" for arg in argv)


def _serve_then_check(port: int, *serve_args: str, host: str = "127.0.0.1") -> str:
    """Shell: start a server here, wait for its "listening" line, then probe it once.
    (Not the probe in a loop until it passes: a broken probe would be retried for a
    minute before the test failed, and each try starts a Python.)"""
    serve = _cmd(python_hello("serve", "--host", host, "--port", str(port), *serve_args))
    check = _cmd(python_hello("healthcheck", "--port", str(port), "--own", "/readyz"))
    return (f'log=$(mktemp); {serve} >"$log" 2>&1 & '
            f'for i in $(seq 600); do grep -qs \'"event":"listening"\' "$log" && break; sleep 0.05; done; '
            f'{check}; status=$?; kill %1; wait; rm -f "$log"; exit $status')


def test_own_server_in_the_same_pid_namespace_passes(pidns):
    result = _in_new_pidns(_serve_then_check(free_port()))
    assert result.returncode == 0, result.stderr
    assert "200 from this container's own server" in result.stdout


def test_own_dual_stack_server_passes(pidns):
    """`--host ::` takes 127.0.0.1 too; the kernel lists its end of the probe's
    connection in /proc/net/tcp6 (as ::ffff:127.0.0.1), not /proc/net/tcp."""
    result = _in_new_pidns(_serve_then_check(free_port(), host="::"))
    assert result.returncode == 0, result.stderr
    assert "200 from this container's own server" in result.stdout


def test_own_server_sharing_the_port_with_another_passes(pidns):
    """Two tasks on one port (--reuse-port): connections the other one takes are
    retried until one reaches ours (one probe used to fail half the time)."""
    port = free_port()
    outside = subprocess.Popen(python_hello("serve", "--host", "127.0.0.1", "--port", str(port),
                                            "--reuse-port"),
                               cwd=ROOT, env={**os.environ, **child_env()},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: http_status(f"http://127.0.0.1:{port}/readyz") == 200, 30, what="server")
        for _ in range(5):
            result = _in_new_pidns(_serve_then_check(port, "--reuse-port"))
            assert result.returncode == 0, result.stderr
    finally:
        outside.terminate()
        outside.wait(timeout=20)


def test_answer_from_a_server_in_another_pid_namespace_fails(pidns):
    port = free_port()
    server = subprocess.Popen(python_hello("serve", "--host", "127.0.0.1", "--port", str(port)),
                              cwd=ROOT, env={**os.environ, **child_env()},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: http_status(f"http://127.0.0.1:{port}/readyz") == 200, 30, what="server")
        result = _in_new_pidns(_cmd(python_hello("healthcheck", "--port", str(port), "--own", "/readyz")))
        assert result.returncode == 1, result.stdout
        assert "outside this container" in result.stderr
        # The same probe without --own is fooled: that is the trap --own closes.
        plain = _in_new_pidns(_cmd(python_hello("healthcheck", "--port", str(port))))
        assert plain.returncode == 0, plain.stderr
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_own_with_nothing_listening_fails():
    result = subprocess.run(python_hello("healthcheck", "--port", str(free_port()), "--own", "/readyz"),
                            check=False, capture_output=True, text=True, timeout=30, cwd=ROOT,
                            env={**os.environ, **child_env()})
    assert result.returncode == 1
    assert "refused" in result.stderr.lower()


@pytest.mark.parametrize("args", [["--own", "readyz"], ["--own", "/a b"], ["--own", "/é"],
                                  ["--own", "/readyz", "--url", "http://127.0.0.1:1/"]])
def test_own_bad_usage_is_exit_2(args):
    result = subprocess.run([sys.executable, "-m", "hello", "healthcheck", *args],
                            check=False, capture_output=True, text=True, timeout=30, cwd=ROOT,
                            env={**os.environ, **child_env()})
    assert result.returncode == 2
    assert result.stderr.startswith("hello: ") and result.stderr.count("\n") == 1
