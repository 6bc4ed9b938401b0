"""The command line: subcommands, exit codes and one-line usage errors (every bad input
to `hello serve` that once escaped: exit 2 and one line, never a traceback).

Every `--help` page is held to the byte: they are kept in tests/unit/help/ (argparse's
layout, at 100 columns). After a deliberate change to a flag or its help, rewrite them
with `python -m tests.unit.test_cli` and read the diff.
"""

import contextlib
import io
import json
import os
import pathlib
import subprocess
import sys

import pytest

from hello import __version__, buildinfo, cli
from hello.config import OPTIONS
from tests.conftest import ROOT, child_env, free_port


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "hello", *args], capture_output=True, check=False,
                          text=True, cwd=ROOT, timeout=30,
                          env=child_env({"PATH": "/usr/bin:/bin", **(env or {})}))


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
    (["healthcheck", "--url", "http://127.0.0.1:1/\nx"], {}, "has spaces or control characters"),
    (["healthcheck", "--url", "http://u:secret@127.0.0.1:1/"], {}, "user:password@ is not allowed"),
    # argparse reads `--flag=--` as [] (a TypeError traceback further on)
    (["healthcheck", "--timeout=--"], {}, "argument --timeout: expected one argument"),
    (["healthcheck", "--own=--"], {}, "argument --own: expected one argument"),
    (["serve", "--port=--"], {}, "argument --port: expected one argument"),
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


def _words(text: str) -> str:
    return " ".join(text.split())  # argparse wraps lines at the terminal width


def test_serve_help_gives_every_flag_its_help_env_vars_and_default():
    from hello.config import OPTIONS
    result = run_cli("serve", "--help")
    assert result.returncode == 0
    text = _words(result.stdout)
    for option in OPTIONS:
        envs = " or ".join(f"${name}" for name in option.envs)
        default = option.shown_default or option.default
        assert f"{option.help} (env {envs}; default {default})" in text, option.flag
        if option.boolean:
            assert f"{option.flag}, --no-{option.flag[2:]}" in text
        else:
            assert f"{option.flag} {option.name.upper()}" in text


def test_top_level_and_healthcheck_help():
    result = run_cli("--help")
    assert result.returncode == 0
    text = _words(result.stdout)
    assert text.startswith("usage: hello [-h] [--version] {serve,healthcheck,version,check-env} ...")
    for line in ("A tiny HTTP service for checking deployments.",
                 "serve serve HTTP (the default)",
                 "healthcheck exit 0 if the local server's /healthz answers 200",
                 "version print version, commit and build date",
                 "--version print version and exit"):
        assert line in text, line
    text = _words(run_cli("healthcheck", "--help").stdout)
    for line in ("--url URL URL to probe (default /healthz on $HELLO_HOST, or 127.0.0.1 when "
                 "that is a wildcard, and the serve port)",
                 "--port PORT local port to probe (default $HELLO_PORT, $PORT or 8080)",
                 "--timeout TIMEOUT give up after this long, at most 1h (default 2s)"):
        assert line in text, line


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
                         cwd=ROOT, check=True, timeout=30).stdout
    assert out.strip() == "False False"


def test_healthcheck_fails_with_one_line_when_nothing_listens():
    from tests.conftest import free_port
    result = run_cli("healthcheck", "--port", str(free_port()), "--timeout", "500ms")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert "refused" in result.stderr.lower()


@pytest.mark.parametrize("url, needle", [("ftp://x/", "is not an http:// URL"),
                                         ("http://127.0.0.1:abc/healthz", "has no valid port"),
                                         ("http://127.0.0.1:99999/", "has no valid port"),
                                         ("http://a..b/", "has no valid host name")])
def test_healthcheck_rejects_a_bad_url_as_usage(url, needle):
    result = run_cli("healthcheck", "--url", url)
    assert result.returncode == 2
    assert result.stderr == f"hello: --url: {url!r} {needle}\n"


def test_healthcheck_names_hello_host_when_it_makes_the_url_bad():
    result = run_cli("healthcheck", env={"HELLO_HOST": "a..b"})
    assert result.returncode == 2
    # one line naming the variable (config may reject the host itself, or the URL it makes)
    assert result.stderr.startswith("hello: HELLO_HOST: ")
    assert "a..b" in result.stderr and result.stderr.count("\n") == 1


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


def test_argparse_errors_are_one_line_pointing_at_help():
    result = run_cli("--no-such-flag")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == "hello: unrecognized arguments: --no-such-flag (see 'hello --help')\n"


def test_check_env_accepts_what_hello_accepts(tmp_path):
    env = tmp_path / "hello.env"
    env.write_text("# settings\n\nPORT=8081\nHELLO_DRAIN_TIMEOUT=08\nHELLO_MESSAGE=hi there\n"
                   "HELLO_DRAIN_TIMEOUT=1.5m\n")
    result = run_cli("check-env", str(env))
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


@pytest.mark.parametrize("text, needle", [
    ("PORT=8080|e touch /x\n", "line 1: PORT: '8080|e touch /x' is not a port number"),
    ("HELLO_MESSAGE=ok\nLD_PRELOAD=/x.so\n", "line 2: LD_PRELOAD is not PORT or a HELLO_* setting"),
    ("HELLO_THREADS=lots\n", "line 1: HELLO_THREADS: 'lots' is not a thread count"),
    ("export PORT=1\n", "line 1: expected KEY=VALUE"),
    ("PORT = 1\n", "line 1: expected KEY=VALUE"),
    ("HELLO_MESSAGE='hi'\n", "line 1: HELLO_MESSAGE: quotes and backslashes are not allowed"),
    ("HELLO_DRAIN_TIMEOUT=2h\n", "line 1: HELLO_DRAIN_TIMEOUT: '2h' is not a duration"),
])
def test_check_env_exits_2_naming_the_bad_line(tmp_path, text, needle):
    env = tmp_path / "hello.env"
    env.write_text(text)
    result = run_cli("check-env", str(env))
    assert result.returncode == 2
    assert result.stderr == f"hello: {env} {needle}\n" or needle in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1 and str(env) in result.stderr


@pytest.mark.parametrize("text", ["HELLO_MESSAGE=hi\rLD_PRELOAD=/x.so\n", "HELLO_MESSAGE=a\0b\n",
                                  "PORT=8080\r\n"])
def test_check_env_refuses_control_characters_that_end_a_line_for_systemd(text):
    """Stdin is read without newline translation, so a CR stayed
    inside a HELLO_MESSAGE value, while systemd's EnvironmentFile ends the line at CR:
    the LD_PRELOAD after it passed the check and reached the service's environment."""
    result = subprocess.run([sys.executable, "-m", "hello", "check-env", "-"], input=text.encode(),
                            capture_output=True, cwd=ROOT, timeout=30, check=False)
    assert result.returncode == 2, result.stderr
    assert result.stderr.decode().startswith("hello: stdin line 1: ")
    assert b"control character" in result.stderr and result.stderr.count(b"\n") == 1


def test_check_env_reads_stdin_and_reports_a_missing_file(tmp_path):
    result = subprocess.run([sys.executable, "-m", "hello", "check-env", "-"], input="PORT=x\n",
                            capture_output=True, text=True, cwd=ROOT, timeout=30, check=False)
    assert result.returncode == 2 and result.stderr.startswith("hello: stdin line 1: PORT:")
    result = run_cli("check-env", str(tmp_path / "missing"))
    assert result.returncode == 2 and "No such file" in result.stderr


@pytest.mark.parametrize("commit, ok", [("abc1234", True), ("abc1234def", True), ("bbbbbbb", False)])
def test_healthcheck_commit_wants_that_build_to_answer(commit, ok):
    """`--commit`: a 200 on /healthz is not enough; /version must name the commit."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the stdlib's name
            body = b'{"status": "ok"}' if self.path == "/healthz" else b'{"commit": "abc1234def"}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        result = run_cli("healthcheck", "--port", str(server.server_address[1]), "--commit", commit)
    finally:
        server.shutdown()
    assert result.returncode == (0 if ok else 1), result.stderr
    if not ok:
        assert f"commit 'abc1234def', expected {commit}" in result.stderr


def test_healthcheck_commit_must_look_like_one():
    result = run_cli("healthcheck", "--commit", "HEAD")
    assert result.returncode == 2 and "--commit: 'HEAD' is not a commit" in result.stderr


@pytest.mark.parametrize("option", OPTIONS, ids=lambda o: o.name)
def test_each_serve_flag_reaches_its_setting_and_is_none_when_not_given(option):
    """main() reads args.<setting name>: argparse's dest must be that name."""
    from hello.cli import _build_parser
    parser = _build_parser()
    assert getattr(parser.parse_args(["serve"]), option.name) is None
    if option.boolean:
        given = parser.parse_args(["serve", option.flag, f"--no-{option.flag[2:]}"])
        assert getattr(given, option.name) is False
    elif option.repeatable:
        given = parser.parse_args(["serve", option.flag, "a", option.flag, "b"])
        assert getattr(given, option.name) == ["a", "b"]
    else:
        assert getattr(parser.parse_args(["serve", option.flag, "v"]), option.name) == "v"


def test_a_serve_that_stops_at_a_usage_error_gives_the_stop_signals_back(capsys):
    """The stop signals are held while serve starts; a usage error ended it with the
    holding handlers left in: called in-process (a test, a wrapper), SIGINT and SIGTERM
    were swallowed from then on."""
    import signal

    from hello import cli

    before = {signum: signal.getsignal(signum)
              for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    assert cli.main(["serve", "--threads", "0"], env={}) == 2
    assert {signum: signal.getsignal(signum) for signum in before} == before
    assert capsys.readouterr().err == "hello: --threads: '0' is not a thread count (1-256)\n"


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


PAGES = pathlib.Path(__file__).with_name("help")
COMMANDS = {"hello": [], "serve": ["serve"], "healthcheck": ["healthcheck"],
            "version": ["version"], "check-env": ["check-env"]}


def help_page(argv: list[str]) -> str:
    """`hello ARGV --help` as printed, in this process (fast under mutation testing)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exited:
        cli.main([*argv, "--help"], env={})
    assert exited.value.code == 0
    return out.getvalue()


@pytest.mark.parametrize("name", COMMANDS)
def test_help_page_is_the_one_kept(name, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")  # argparse wraps at the terminal's width
    assert help_page(COMMANDS[name]) == (PAGES / f"{name}.txt").read_text()


@pytest.mark.parametrize("argv", [["-h"], ["--help"]])
def test_help_with_no_command_is_the_top_level_page(argv, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        cli.main(argv, env={})
    assert out.getvalue() == (PAGES / "hello.txt").read_text()


def test_an_error_in_a_command_is_one_line_like_the_top_level():
    """Every command's parser is a _Parser: `hello: ...` and exit 2, not argparse's usage."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exited:
        cli.main(["healthcheck", "--timeout"], env={})  # the healthcheck parser's own error
    assert exited.value.code == 2
    assert err.getvalue() == "hello: argument --timeout: expected one argument (see 'hello --help')\n"


if __name__ == "__main__":
    os.environ["COLUMNS"] = "100"
    for page, command in COMMANDS.items():
        (PAGES / f"{page}.txt").write_text(help_page(command))
    print(f"wrote {len(COMMANDS)} pages to {PAGES}", file=sys.stderr)
