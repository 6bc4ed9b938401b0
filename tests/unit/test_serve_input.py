"""Every bad input to `hello serve` that used to escape: exit 2 and one line, never a traceback."""

import subprocess
import sys

import pytest

from tests.conftest import ROOT, child_env, free_port


def run_serve(*args, env=None):
    return subprocess.run([sys.executable, "-m", "hello", "serve", *args], capture_output=True,
                          check=False, cwd=ROOT, timeout=30,
                          env=child_env({"PATH": "/usr/bin:/bin", **(env or {})}))


def assert_usage(result, needle: bytes):
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(b"hello: "), result.stderr
    assert result.stderr.count(b"\n") == 1, result.stderr
    assert needle in result.stderr, result.stderr
    assert b"Traceback" not in result.stderr
    assert result.stdout == b""


@pytest.mark.parametrize("args, env, needle", [
    (["--host", "a..b"], {}, b"--host: 'a..b' is not a host name or IP address"),
    (["--host=-x.example"], {}, b"is not a host name or IP address"),
    ([], {"HELLO_HOST": "a" * 64 + ".example"}, b"HELLO_HOST: "),
    ([b"--message", b"\xff\xfe"], {}, b"--message: '\\udcff\\udcfe' is not valid UTF-8"),
    ([], {"HELLO_MESSAGE": "x" * 100_000}, b"HELLO_MESSAGE: 'xxx"),
    (["--message", "\u00e9" * 3000], {}, b"is longer than 4096 bytes"),
    (["--port", " 8080"], {}, b"--port: ' 8080' is not a port number"),
    (["--port", "8_080"], {}, b"--port: '8_080' is not a port number"),
    (["--port", "\u0668\u0660\u0668\u0660"], {}, b"--port: '\\u0668\\u0660\\u0668\\u0660' is not a port"),
    ([], {"HELLO_THREADS": "+8"}, b"HELLO_THREADS: '+8' is not a thread count"),
    (["--drain-timeout", " 3s"], {}, b"--drain-timeout: ' 3s' is not a duration"),
    (["--header-timeout", "0"], {}, b"--header-timeout: '0' is not a duration above 0s"),
    (["--body-timeout", "1_0"], {}, b"--body-timeout: '1_0' is not a duration"),
    (["--random-delay", "5s-1s"], {}, b"--random-delay: '5s-1s' needs MIN <= MAX"),
    (["--random-delay", "fast"], {}, b"is not a range MIN-MAX"),
    (["--random-error", "2"], {}, b"--random-error: '2' is not a rate between 0 and 1"),
    (["--header", "X-Ok: fine", "--header", "Bad Name: x"], {}, b"--header: 'Bad Name: x' is not a header"),
    (["--header", "X-Split: a\rb"], {}, b"is not a header"),
    (["--header", "Content-Length: 5"], {}, b"sets Content-Length, which the server owns"),
    ([], {"HELLO_HEADER": "X-A: 1\nnocolon"}, b"HELLO_HEADER: 'nocolon' is not a header"),
    (["--trusted-proxies", "10.0.0.0/8,nonsense"], {}, b"is not a comma-separated list"),
])
def test_bad_serve_input_is_exit_2_and_one_line(args, env, needle):
    assert_usage(run_serve(*args, env=env), needle)


def test_a_host_that_does_not_resolve_is_exit_2():
    result = run_serve("--host", "no-such-host.invalid", "--port", str(free_port()))
    assert_usage(result, b"--host: 'no-such-host.invalid' does not resolve to an address")
