"""`hello healthcheck --own`: an answer from another PID namespace's server fails.

Real servers and real PID namespaces (unshare): the probe runs in a fresh PID
namespace, as a container's healthcheck does, against a server inside it and
against one outside it (the other task sharing the port, in production).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time

import pytest

from hello import ownprobe
from hello.ownprobe import _held_by_visible_process, _socket_inode, probe_own
from tests.conftest import (
    ROOT,
    child_env,
    free_port,
    full_listen_backlog,
    http_status,
    python_hello,
    require,
    wait_until,
)


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


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


class Stub:
    """Answers each connection with a script of (delay seconds, bytes), then holds it
    open (hold=True) or closes it; keeps what each request said."""

    def __init__(self, script: list[tuple[float, bytes]], hold: bool = True):
        self.script, self.hold = script, hold
        self.requests: list[bytes] = []
        self.done = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/readyz"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        held = []
        self.listener.settimeout(10)
        try:
            while not self.done.is_set():
                conn, _ = self.listener.accept()
                request = b""
                while b"\r\n\r\n" not in request:
                    request += conn.recv(4096)
                self.requests.append(request)
                for delay, data in self.script:
                    time.sleep(delay)  # the script's pacing, not a wait for a result
                    conn.sendall(data)
                if self.hold:
                    held.append(conn)
                else:
                    conn.close()
        except OSError:
            pass
        finally:
            self.done.wait(10)
            for conn in held:
                conn.close()

    def close(self) -> None:
        self.done.set()
        self.listener.close()


@pytest.fixture
def stub():
    made: list[Stub] = []

    def make(script, hold=True) -> Stub:
        made.append(Stub(script, hold))
        return made[-1]

    yield make
    for each in made:
        each.close()


def test_a_200_from_this_process_passes_and_the_request_is_exact(stub):
    server = stub([(0, OK)])
    assert probe_own(server.port, "/readyz", 2) == (True, f"{server.url}: 200 from this "
                                                          "container's own server")
    assert server.requests == [f"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
                               "User-Agent: hello-healthcheck\r\n\r\n".encode()]


def test_a_status_line_in_pieces_is_read_whole(stub):
    """The last piece 0.6 s before the deadline: each read waits for what time is left."""
    server = stub([(0, b"HTT"), (0.9, b"P/1.1 200 OK"), (0.3, b"\r\n\r\n")])
    ok, reason = probe_own(server.port, "/readyz", 1.8)
    assert (ok, reason) == (True, f"{server.url}: 200 from this container's own server")


def test_a_200_with_an_empty_reason_phrase_passes(stub):
    server = stub([(0, b"HTTP/1.1 200 \r\n\r\n")])  # RFC 9112: the reason may be empty
    assert probe_own(server.port, "/readyz", 2)[0] is True


@pytest.mark.parametrize("answer, why", [
    (b"HTTP/1.1 503 Service Unavailable\r\n\r\n", "status 503, expected 200"),
    (b"HTTP/1.1 302 Found\r\nLocation: /\r\n\r\n", "status 302, expected 200"),
    (b"garbage\r\n\r\n", "bad HTTP answer"),
    (b"HTTP/1.1\r\n\r\n", "bad HTTP answer"),
    (b"XYZ/1.1 200 OK\r\n\r\n", "bad HTTP answer"),
])
def test_anything_but_a_200_status_line_fails_with_one_reason(stub, answer, why):
    server = stub([(0, answer)])
    assert probe_own(server.port, "/readyz", 2) == (False, f"{server.url}: {why}")


def test_a_connection_closed_without_an_answer_fails(stub):
    server = stub([], hold=False)
    assert probe_own(server.port, "/readyz", 2) == \
        (False, f"{server.url}: connection closed before an answer")


def test_a_server_that_never_answers_fails_within_the_timeout(stub):
    server = stub([(3, b"")], hold=False)  # silent for 3 s, then closes
    started = time.monotonic()
    assert probe_own(server.port, "/readyz", 0.4) == (False, f"{server.url}: no answer within 0.4s")
    assert time.monotonic() - started < 1.0


def test_a_full_listen_backlog_fails_within_the_timeout():
    """The connect itself is bounded by the timeout, not only the reads."""
    with full_listen_backlog() as port:
        started = time.monotonic()
        assert probe_own(port, "/readyz", 0.4) == \
            (False, f"http://127.0.0.1:{port}/readyz: no answer within 0.4s")
        assert time.monotonic() - started < 0.9


def test_nothing_listening_is_refused():
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    assert probe_own(port, "/readyz", 2) == \
        (False, f"http://127.0.0.1:{port}/readyz: Connection refused")


def _table(path, rows: list[str]) -> str:
    header = ("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt"
              "   uid  timeout inode")
    path.write_text("\n".join([header, *rows]) + "\n")
    return str(path)


def _row(local: str, remote: str, inode: int, refs: int = 1) -> str:
    return f"   0: {local} {remote} 01 00000000:00000000 00:00000000 00000000     0        0 {inode} {refs}"


def test_socket_inode_is_the_connections_row_not_the_listener_nor_an_orphan(tmp_path):
    server, client = ("127.0.0.1", 8080), ("127.0.0.1", 40000)
    local, remote = ownprobe._hex_endpoint(*server), ownprobe._hex_endpoint(*client)
    assert (local, remote) == ("0100007F:1F90", "0100007F:9C40")
    tcp = _table(tmp_path / "tcp", [
        _row(local, "00000000:0000", 111),  # the listener: same local end
        _row(local, remote, 0, refs=2),      # a closed connection's row: no inode
        _row(local, remote, 222),
    ])
    assert _socket_inode(server, client, (tcp, str(tmp_path / "none"))) == 222


def test_socket_inode_falls_back_to_tcp6_when_tcp_is_missing(tmp_path):
    server, client = ("127.0.0.1", 8080), ("127.0.0.1", 40000)
    local6, remote6 = ownprobe._hex_endpoint6(*server), ownprobe._hex_endpoint6(*client)
    assert local6 == "0000000000000000FFFF00000100007F:1F90"
    tcp6 = _table(tmp_path / "tcp6", [_row(local6, remote6, 333)])
    assert _socket_inode(server, client, (str(tmp_path / "missing"), tcp6)) == 333
    assert _socket_inode(server, ("127.0.0.1", 40001), (str(tmp_path / "missing"), tcp6)) is None


def _proc(root, holders: dict[str, list[tuple[str, str | None]]]) -> str:
    """A fake /proc: pid -> [(fd, link target, or None for a regular file)]; a pid
    with no entries has no fd folder (gone, or another user's)."""
    (root / "self").mkdir(parents=True)
    for pid, fds in holders.items():
        (root / pid).mkdir()
        if not fds:
            continue
        (root / pid / "fd").mkdir()
        for fd, target in fds:
            if target is None:
                (root / pid / "fd" / fd).write_text("")
            else:
                os.symlink(target, root / pid / "fd" / fd)
    return str(root)


@pytest.mark.parametrize("first", ["holder", "others"])
def test_a_socket_is_ours_when_any_visible_process_holds_it(tmp_path, first):
    """Unreadable pid folders and fds that are not links are skipped, whatever the order."""
    others = {str(pid): [] for pid in range(10, 30)}
    others.update({str(pid): [("0", None), ("1", "pipe:[5]")] for pid in range(30, 50)})
    holder = {"7": [*[(str(fd), None) for fd in range(20)], ("99", "socket:[424242]")]}
    proc = _proc(tmp_path, {**holder, **others} if first == "holder" else {**others, **holder})
    assert _held_by_visible_process(424242, proc) is True
    assert _held_by_visible_process(424243, proc) is False


def test_healthcheck_own_passes_on_its_own_200_with_one_line(stub, capsys):
    """The port from the environment, as a container's HEALTHCHECK has it."""
    from hello import cli
    server = stub([(0, OK)])
    assert cli.main(["healthcheck", "--own", "/readyz", "--timeout", "2s"],
                    env={"PORT": str(server.port)}) == 0
    assert capsys.readouterr() == (f"hello healthcheck: {server.url}: 200 from this container's "
                                   "own server\n", "")


@pytest.mark.parametrize("args, line", [
    (["--own", "/readyz", "--url", "http://127.0.0.1:1/"],
     "healthcheck: --own and --url exclude each other"),
    (["--own", "/readyz", "--commit", "abcdef0"],
     "healthcheck: --own and --commit exclude each other"),
    (["--own", "readyz"], "--own: 'readyz' is not a path like /readyz"),
    (["--own", "/a b"], "--own: '/a b' is not a path like /readyz"),
    (["--own", "/readyz", "--port", "0"], "--port: '0' is not a port number (1-65535)"),
    (["--own", "/readyz", "--timeout", "0"], "--timeout: '0' is not a duration above 0s and at most 3600s"),
])
def test_healthcheck_own_usage_errors_exactly(args, line, capsys):
    from hello import cli
    assert cli.main(["healthcheck", *args], env={}) == 2
    assert capsys.readouterr() == ("", f"hello: {line}\n")


def test_healthcheck_own_takes_every_character_a_path_may_have(stub, capsys):
    from hello import cli
    server = stub([(0, OK)])
    path = "/Ready_Z.v1~/a%20-b"
    assert cli.main(["healthcheck", "--own", path, "--timeout", "2s"],
                    env={"PORT": str(server.port)}) == 0
    assert server.requests[0].startswith(f"GET {path} HTTP/1.1\r\n".encode())
    assert capsys.readouterr().err == ""


OUTSIDE = ("answered only by processes outside this container "
           "(another task sharing the port; this one does not listen there)")


@pytest.mark.parametrize("late, asked", [(False, 3), (True, 1)])
def test_answers_only_from_outside_fail_after_every_attempt_or_the_deadline(
        monkeypatch, late, asked):
    """Another task's 200 is not ours: retried on new connections, at most `attempts`
    times, and not past the deadline."""
    clock = [100.0]
    calls = []

    def ask(port, path, deadline):
        calls.append(deadline)
        if late:
            clock[0] = deadline  # this answer took the whole timeout
        return "HTTP/1.1 200 OK", False

    monkeypatch.setattr(ownprobe.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(ownprobe, "_ask", ask)
    assert probe_own(8080, "/readyz", 2.0, attempts=3) == (
        False, f"http://127.0.0.1:8080/readyz: {OUTSIDE}")
    assert calls == [102.0] * asked


def test_answered_only_by_others_it_tries_32_connections_then_fails_naming_them(stub, monkeypatch):
    """A server in another pid namespace (another task sharing the port) answers every
    connection: 32 tries, each a new connection (the kernel's hash of the client port
    picks the socket), then a verdict; not one more (`hello healthcheck --own` runs
    every few seconds in every task)."""
    server = stub([(0, OK)], hold=False)
    monkeypatch.setattr(ownprobe, "_held_by_visible_process", lambda inode: False)
    ok, reason = probe_own(server.port, "/readyz", 10)
    assert (ok, len(server.requests)) == (False, 32)
    assert reason == (f"{server.url}: answered only by processes outside this container "
                      "(another task sharing the port; this one does not listen there)")
