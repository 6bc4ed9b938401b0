"""The command line: subcommands, exit codes and one-line usage errors."""

import json
import subprocess
import sys

import pytest

from hello import __version__, buildinfo
from tests.conftest import ROOT


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "hello", *args], capture_output=True, check=False,
                          text=True, cwd=ROOT, timeout=30,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), **(env or {})})


@pytest.mark.parametrize("args, env, needle", [
    (["--port", "70000"], {}, "--port: '70000' is not a port number (1-65535)"),
    ([], {"PORT": "abc"}, "PORT: 'abc' is not a port number (1-65535)"),
    (["serve", "--threads", "0"], {}, "--threads: '0' is not a thread count (1-256)"),
    (["--log-format", "xml"], {}, "--log-format: 'xml' is not one of json, text"),
    (["--drain-timeout", "soon"], {}, "--drain-timeout: 'soon' is not a duration"),
    (["--no-such-flag"], {}, "unrecognized arguments: --no-such-flag"),
    (["healthcheck", "--timeout", "x"], {}, "--timeout: 'x' is not a duration"),
    # a traceback (OverflowError in settimeout), and a 0 that no check can meet
    (["healthcheck", "--port", "1", "--timeout", "99999999999"], {}, "--timeout: '99999999999'"),
    (["healthcheck", "--port", "1", "--own", "/readyz", "--timeout", "99999999999"], {},
     "--timeout: '99999999999'"),
    (["healthcheck", "--port", "1", "--timeout", "0"], {}, "--timeout: '0'"),
    (["healthcheck", "--port", "99999"], {}, "--port: '99999' is not a port number"),
    (["healthcheck", "--port", "1", "--url", "http://x"], {}, "not allowed with argument"),
])
def test_bad_input_is_exit_2_and_one_line(args, env, needle):
    result = run_cli(*args, env=env)
    assert result.returncode == 2
    assert needle in result.stderr
    assert result.stderr.startswith("hello: ")
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stdout == ""



@pytest.mark.parametrize("args", [["version"], ["--version"]])
def test_version(args):
    result = run_cli(*args)
    assert result.returncode == 0
    assert result.stdout.startswith(f"hello {__version__} (commit ")


def test_help_lists_every_flag_and_env_var():
    result = run_cli("serve", "--help")
    assert result.returncode == 0
    for flag in ("--host", "--port", "--threads", "--message", "--drain-timeout",
                 "--log-format", "--access-log", "--no-access-log", "$PORT",
                 "$HELLO_MESSAGE"):
        assert flag in result.stdout


def test_top_level_help():
    result = run_cli("--help")
    assert result.returncode == 0
    assert "healthcheck" in result.stdout


@pytest.mark.parametrize("args", [["version"], ["--help"], ["serve", "--help"],
                                  ["healthcheck", "--port", "1", "--timeout", "100ms"],
                                  ["--port", "0"]])
def test_commands_that_do_not_serve_never_import_flask_or_waitress(args):
    """version, help, healthcheck and a usage error stay fast: no Flask, no waitress."""
    code = ("import contextlib, io, sys\nfrom hello import cli\n"
            "with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
            "    try:\n"
            f"        cli.main({args!r}, env={{}})\n"
            "    except SystemExit:\n"
            "        pass\n"
            "print('flask' in sys.modules, 'waitress' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout
    assert out.strip() == "False False"


def test_healthcheck_fails_with_one_line_when_nothing_listens():
    from tests.conftest import free_port
    result = run_cli("healthcheck", "--port", str(free_port()), "--timeout", "500ms")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert "refused" in result.stderr.lower()


@pytest.mark.parametrize("url, needle", [("ftp://x/", "is not an http:// URL"),
                                         ("http://127.0.0.1:abc/healthz", "has no valid port"),
                                         ("http://127.0.0.1:99999/", "has no valid port")])
def test_healthcheck_rejects_a_bad_url_as_usage(url, needle):
    result = run_cli("healthcheck", "--url", url)
    assert result.returncode == 2
    assert needle in result.stderr
    assert result.stderr.count("\n") == 1


def test_healthcheck_probes_the_configured_host():
    from hello.healthcheck import local_url
    assert local_url("0.0.0.0", 8080) == "http://127.0.0.1:8080/healthz"
    assert local_url("::", 8080) == "http://127.0.0.1:8080/healthz"
    assert local_url("::1", 9000) == "http://[::1]:9000/healthz"
    assert local_url("10.1.2.3", 80) == "http://10.1.2.3:80/healthz"


def test_version_json_is_build_info_as_one_json_line():
    """`hello version --json`: what scripts read (same fields as /version)."""
    result = run_cli("version", "--json")
    assert result.returncode == 0, result.stderr
    assert result.stdout == json.dumps(buildinfo.build_info(), sort_keys=True) + "\n"
    info = json.loads(result.stdout)
    assert set(info) == {"name", "version", "commit", "build_date", "python", "frozen"}
    assert info["version"] == __version__ and info["frozen"] is False
