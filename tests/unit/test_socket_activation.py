"""The listening socket: whose fd 3 is (systemd's LISTEN_FDS/LISTEN_PID rules, with real
processes), and the one hello binds itself.

A child Python asks hello.server._inherited_socket() with the variables set as a case
says, its fd 3 a real listening socket (or a file); LISTEN_PID names the child itself,
its parent (this test), its grandparent (this test, through a shell: the frozen
binary's bootloaders sit there), or no process of its family.
tests/server/test_server.py runs the whole path under systemd-socket-activate.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile

import pytest

from tests.conftest import ROOT, child_env

ASK = """
import json, os, sys
from hello import server
os.dup2(int(sys.argv[1]), 3)
for name, value in json.loads(sys.argv[2]).items():
    os.environ[name] = str(os.getpid()) if value == "self" else value
try:
    sock = server._inherited_socket()
except OSError as error:
    print(json.dumps({"error": str(error)}))
    sys.exit()
print(json.dumps({
    "port": sock and sock.getsockname()[1], "fd": sock and sock.fileno(),
    "left": {name: os.environ.get(name) for name in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")},
}))
"""

ACTIVATED = {"LISTEN_FDS": "1", "LISTEN_FDNAMES": "hello.socket"}
FOREIGN = "999999999"  # above the kernel's pid_max: no process at all


def _ask(env: dict[str, str], through_shell: bool = False, fd3=None) -> tuple[dict, int]:
    """What the child's _inherited_socket() said, and the port of the socket it was given."""
    given = fd3 or socket.create_server(("127.0.0.1", 0))
    port = given.getsockname()[1] if isinstance(given, socket.socket) else None
    argv = [sys.executable, "-c", ASK, str(given.fileno()), json.dumps(env)]
    if through_shell:  # `; exit` keeps the shell from exec-ing python: it stays the parent
        argv = ["/bin/sh", "-c", '"$0" "$@"; exit $?', *argv]
    base = {name: value for name, value in os.environ.items() if not name.startswith("LISTEN_")}
    try:
        done = subprocess.run(argv, env={**base, **child_env()}, cwd=ROOT, capture_output=True,
                              text=True, timeout=30, pass_fds=[given.fileno()], check=False)
    finally:
        given.close()
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), port


@pytest.mark.parametrize("listen_pid, through_shell", [
    ("self", False),             # systemd, systemd-socket-activate: the PID they exec'd
    (str(os.getpid()), False),   # our parent: one bootloader between
    (str(os.getpid()), True),    # our grandparent: the frozen binary's two bootloaders
])
def test_a_socket_passed_to_us_or_our_bootloaders_is_ours_and_the_variables_are_cleared(
        listen_pid, through_shell):
    answer, port = _ask({**ACTIVATED, "LISTEN_PID": listen_pid}, through_shell)
    gone = {"LISTEN_FDS": None, "LISTEN_PID": None, "LISTEN_FDNAMES": None}
    assert answer == {"port": port, "fd": 3, "left": gone}


@pytest.mark.parametrize("env", [
    {**ACTIVATED, "LISTEN_PID": FOREIGN},        # meant for another process
    ACTIVATED,                                   # no LISTEN_PID: sd_listen_fds says none
    {**ACTIVATED, "LISTEN_PID": ""},
    {"LISTEN_FDS": "0", "LISTEN_PID": "self"},
    {"LISTEN_FDS": "x", "LISTEN_PID": "self"},
    {"LISTEN_FDS": "", "LISTEN_PID": "self"},
    {"LISTEN_FDS": "-1", "LISTEN_PID": "self"},
    {"LISTEN_FDS": "\u00b2", "LISTEN_PID": "self"},  # "²".isdigit(), and int() refuses it
    {"LISTEN_FDS": "\u0661", "LISTEN_PID": "self"},  # Arabic-Indic 1: int() takes it
    {"LISTEN_PID": "self"},
])
def test_a_socket_not_meant_for_us_is_left_alone(env):
    answer, _ = _ask(env, through_shell=True)  # the grandparent is looked up, and is not it
    assert answer["port"] is None and answer["fd"] is None
    assert answer["left"]["LISTEN_FDS"] == env.get("LISTEN_FDS")  # not ours to clear


def test_a_file_at_fd_3_is_a_one_line_error_naming_listen_fds():
    with tempfile.TemporaryFile() as file:
        answer, _ = _ask({**ACTIVATED, "LISTEN_PID": "self"}, fd3=file)
    assert answer == {"error": "[Errno 88] fd 3 from LISTEN_FDS: Socket operation on non-socket"}


@pytest.mark.parametrize("host, family", [
    ("127.0.0.1", socket.AF_INET), ("::1", socket.AF_INET6), ("localhost", None)])
@pytest.mark.parametrize("reuse_port", [False, True])
def test_our_own_listener_is_a_stream_socket_bound_where_asked_and_reusable(host, family, reuse_port):
    from hello import server

    sock = server.bind_listener(host, 0, reuse_port)
    try:
        assert sock.type == socket.SOCK_STREAM and sock.proto in (0, socket.IPPROTO_TCP)
        if family is not None:
            assert sock.family == family
        assert sock.getsockname()[0] in ("127.0.0.1", "::1") and sock.getsockname()[1] > 0
        # a restart binds while the old connections sit in TIME_WAIT
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) == 1
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == int(reuse_port)
    finally:
        sock.close()
