"""The listening socket: whose fd 3 is and whether hello can serve it (systemd's
LISTEN_FDS/LISTEN_PID rules, hello/activation.py), and the one hello binds itself.

A child Python asks activation.inherited_listener() with the variables set as a case
says, its fd 3 a real socket (or a file); LISTEN_PID names the child itself, its parent
(this test), its grandparent (this test, through a shell: the frozen binary's
bootloaders sit there), or no process of its family.
tests/server/test_server.py runs the whole path under systemd-socket-activate.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile

import pytest

from hello import server
from tests.conftest import ROOT, child_env

ASK = """
import json, os, sys
from hello import activation
os.dup2(int(sys.argv[1]), 3)
for name, value in json.loads(sys.argv[2]).items():
    os.environ[name] = str(os.getpid()) if value == "self" else value
try:
    sock = activation.inherited_listener()
except activation.NotServable as error:
    print(json.dumps({"error": str(error)}))
    sys.exit()
print(json.dumps({
    "port": sock and sock.getsockname()[1], "fd": sock and sock.fileno(),
    "left": {name: os.environ.get(name) for name in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")},
}))
"""

ACTIVATED = {"LISTEN_FDS": "1", "LISTEN_FDNAMES": "hello.socket"}
FOREIGN = "999999999"  # above the kernel's pid_max: no process at all


def _ask(env: dict[str, str], through_shell: str | bool = False, fd3=None) -> tuple[dict, int]:
    """What the child's inherited_listener() said, and the port of the socket it was given.
    through_shell: a shell (True: /bin/sh) stays between, as the child's parent."""
    given = fd3 or socket.create_server(("127.0.0.1", 0))
    port = given.getsockname()[1] if isinstance(given, socket.socket) else None
    argv = [sys.executable, "-c", ASK, str(given.fileno()), json.dumps(env)]
    if through_shell:  # `; exit` keeps the shell from exec-ing python: it stays the parent
        shell = "/bin/sh" if through_shell is True else through_shell
        argv = [shell, "-c", '"$0" "$@"; exit $?', *argv]
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


@pytest.mark.parametrize("name", ["x) 1 2", "w\u00e9-wrap"])
def test_a_grandparent_is_found_whatever_its_parent_is_named(tmp_path, name):
    """The parent's name sits in /proc/<pid>/stat before the PIDs, in parentheses: one
    with ")" and spaces moved the fields; one not ASCII failed to decode, and came out
    as a --host usage error."""
    shell = tmp_path / name
    shutil.copy("/bin/sh", shell)
    answer, port = _ask({**ACTIVATED, "LISTEN_PID": str(os.getpid())}, str(shell))
    assert (answer["port"], answer["fd"]) == (port, 3)
    answer, _ = _ask({**ACTIVATED, "LISTEN_PID": FOREIGN}, str(shell))
    assert answer["port"] is None


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
    {"LISTEN_FDS": "9" * 5000, "LISTEN_PID": "self"},  # int() refuses over 4300 digits
    {"LISTEN_FDS": "0000000001", "LISTEN_PID": "self"},  # a count of 1, too long to be one
    {"LISTEN_PID": "self"},
])
def test_a_socket_not_meant_for_us_is_left_alone(env):
    answer, _ = _ask(env, through_shell=True)  # the grandparent is looked up, and is not it
    assert answer["port"] is None and answer["fd"] is None
    assert answer["left"]["LISTEN_FDS"] == env.get("LISTEN_FDS")  # not ours to clear


def _unix_listener():
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(f"\0hello-test-{os.getpid()}")  # abstract: no file left behind
    sock.listen()
    return sock


def _bound_only():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


@pytest.mark.parametrize("make, error", [
    (tempfile.TemporaryFile, "Socket operation on non-socket"),
    (_unix_listener, "not a listening TCP socket (AF_UNIX, SOCK_STREAM)"),  # ListenStream=/path
    (lambda: socket.socket(type=socket.SOCK_DGRAM),
     "not a listening TCP socket (AF_INET, SOCK_DGRAM, not listening)"),
    (_bound_only, "not a listening TCP socket (AF_INET, SOCK_STREAM, not listening)"),
    (socket.socket, "not a listening TCP socket (AF_INET, SOCK_STREAM, not listening)"),
])
def test_a_fd_3_hello_cannot_serve_is_an_error_naming_what_it_is(make, error):
    """A unix socket, UDP, or a connection (Accept=yes) failed later, in waitress, with a
    traceback; one not bound was served on a random port of every address."""
    answer, _ = _ask({**ACTIVATED, "LISTEN_PID": "self"}, fd3=make())
    assert answer == {"error": error}


SERVE_FD3 = """
import os, sys
from hello import cli
os.dup2(int(sys.argv[1]), 3)
os.environ.update(LISTEN_FDS="1", LISTEN_PID=str(os.getpid()))
sys.exit(cli.main(["serve", "--host", "127.0.0.1", "--port", "1"]))
"""


def test_serve_given_a_fd_3_it_cannot_serve_says_so_in_one_line_and_exits_1():
    given = _unix_listener()
    try:
        done = subprocess.run([sys.executable, "-c", SERVE_FD3, str(given.fileno())],
                              env=child_env(), cwd=ROOT, capture_output=True, text=True,
                              timeout=30, pass_fds=[given.fileno()], check=False)
    finally:
        given.close()
    assert done.returncode == 1, done.stderr
    [line] = [json.loads(line) for line in done.stderr.splitlines()]
    del line["time"]
    assert line == {"level": "error", "event": "cannot serve fd 3 from LISTEN_FDS: not a listening "
                    "TCP socket (AF_UNIX, SOCK_STREAM)"}


@pytest.mark.parametrize("host, family", [
    ("127.0.0.1", socket.AF_INET), ("::1", socket.AF_INET6), ("localhost", None)])
@pytest.mark.parametrize("reuse_port", [False, True])
def test_our_own_listener_is_a_stream_socket_bound_where_asked_and_reusable(host, family, reuse_port):
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
