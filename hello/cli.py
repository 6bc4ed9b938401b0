"""The command line: `hello [serve]`, `hello healthcheck`, `hello version`.

Exit statuses are hello/lifecycle.py's (2 for usage: one line on stderr naming the
bad flag, variable or value). Flask is only imported by `serve`, so `--help`,
`version` and `healthcheck` stay fast.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys

from hello import config, env_file
from hello.lifecycle import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, STOP_SIGNALS


class _Parser(argparse.ArgumentParser):
    """argparse, but errors are one line: `hello: <what is wrong>`."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"hello: {message} (see 'hello --help')\n")

    def _get_values(self, action, arg_strings):
        # Python 3.11 reads `--timeout=--` as the value [] (it drops the `--`), which
        # then met str code as a TypeError traceback: it is a missing value
        if action.nargs is None and action.option_strings and arg_strings in ([], ["--"]):
            self.error(f"argument {'/'.join(action.option_strings)}: expected one argument")
        return super()._get_values(action, arg_strings)


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="hello", description="A tiny HTTP service for checking deployments.")
    parser.add_argument("--version", action="store_true", help="print version and exit")
    commands = parser.add_subparsers(dest="command")  # each a _Parser, like its parent

    serve = commands.add_parser("serve", help="serve HTTP (the default)")
    for option in config.OPTIONS:
        env = " or ".join(f"${name}" for name in option.envs)
        default = option.shown_default or option.default
        text = f"{option.help} (env {env}; default {default})"  # no % (argparse formats it)
        # argparse's own dest (the flag's name), metavar (its upper case) and default
        # (None: not given) are what main() reads; a test checks the names agree
        action = (argparse.BooleanOptionalAction if option.boolean
                  else "append" if option.repeatable else "store")
        serve.add_argument(option.flag, action=action, help=text)

    check = commands.add_parser("healthcheck", help="exit 0 if the local server's /healthz answers 200")
    target = check.add_mutually_exclusive_group()
    target.add_argument("--url", help="URL to probe (default /healthz on $HELLO_HOST, or "
                        "127.0.0.1 when that is a wildcard, and the serve port)")
    target.add_argument("--port", help="local port to probe (default $HELLO_PORT, $PORT or 8080)")
    check.add_argument("--timeout", default="2s",
                       help="give up after this long, at most 1h (default 2s)")
    check.add_argument("--own", metavar="PATH", help="probe 127.0.0.1:<port>PATH and pass only if "
                       "a process of this container answered (tasks sharing a port with "
                       "--reuse-port; see hello/ownprobe.py)")
    check.add_argument("--commit", help="also require /version to report this commit (or a "
                       "prefix of at least 7): proof that the build a deploy started answers")

    version = commands.add_parser("version", help="print version, commit and build date")
    version.add_argument("--json", action="store_true",
                         help="print the build info as one JSON object (keys sorted)")

    env_check = commands.add_parser("check-env", help="validate an env file (KEY=VALUE lines, "
                                    "PORT and HELLO_* only); exit 2 naming the first bad line")
    env_check.add_argument("file", help="the file, or - for stdin")
    return parser


def _usage_error(message: str) -> int:
    print(f"hello: {message}", file=sys.stderr)
    return EXIT_USAGE


def _healthcheck(args, env) -> int:
    from hello.healthcheck import parse_url, probe, probe_local

    try:
        timeout = config.check_timeout(args.timeout)
    except ValueError as error:
        return _usage_error(f"--timeout: {args.timeout!r} {error}")
    if args.own is not None:
        return _own_healthcheck(args, env, timeout)
    commit = args.commit
    if args.url is None:  # the local server's own address: host and port are checked here
        try:
            port = config.resolve(config.option_named("port"), args.port, env)
            host = config.resolve(config.option_named("host"), None, env)
        except config.ConfigError as error:
            return _usage_error(str(error))
    else:
        try:
            parse_url(args.url)
        except ValueError as error:
            return _usage_error(f"--url: {error}")
    if commit is not None and not re.fullmatch(r"[0-9a-f]{7,40}", commit):
        return _usage_error(f"--commit: {commit!r} is not a commit (7-40 hex digits)")
    if args.url is None:
        ok, reason = probe_local(host, port, timeout, commit)
    else:
        ok, reason = probe(args.url, timeout, commit)
    print(f"hello healthcheck: {reason}", file=sys.stdout if ok else sys.stderr)
    return EXIT_OK if ok else EXIT_FAILURE


def _own_healthcheck(args, env, timeout: float) -> int:
    from hello.ownprobe import probe_own

    if args.url is not None:
        return _usage_error("healthcheck: --own and --url exclude each other")
    if args.commit is not None:
        return _usage_error("healthcheck: --own and --commit exclude each other")
    if not re.fullmatch(r"/[A-Za-z0-9._~/%-]*", args.own):
        return _usage_error(f"--own: {args.own!r} is not a path like /readyz")
    try:
        port = config.resolve(config.option_named("port"), args.port, env)
    except config.ConfigError as error:
        return _usage_error(str(error))
    ok, reason = probe_own(port, args.own, timeout)
    print(f"hello healthcheck: {reason}", file=sys.stdout if ok else sys.stderr)
    return EXIT_OK if ok else EXIT_FAILURE


def _check_env(args) -> int:
    name = "stdin" if args.file == "-" else args.file
    try:
        if args.file == "-":
            env_file.check_env_lines(sys.stdin)
        else:
            with open(args.file, encoding="utf-8") as lines:
                env_file.check_env_lines(lines)
    except OSError as error:
        return _usage_error(f"{name}: {error.strerror or error}")
    except UnicodeDecodeError:
        return _usage_error(f"{name}: not UTF-8 text")
    except config.ConfigError as error:
        return _usage_error(f"{name} {error}")
    return EXIT_OK


def _hold_stop_signals() -> list[int]:
    """Signals that land while `serve` starts (importing Flask alone takes ~0.3 s), kept
    for the server to act on once its own handlers are in: a SIGINT there was a
    KeyboardInterrupt traceback, a SIGTERM an exit by signal instead of a drain."""
    held: list[int] = []
    for signum in STOP_SIGNALS:
        signal.signal(signum, lambda signum, _frame: held.append(signum))
    return held


def main(argv: list[str] | None = None, env: dict | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    env = os.environ if env is None else env
    known = ("serve", "healthcheck", "version", "check-env", "-h", "--help", "--version")
    if not argv or argv[0] not in known:
        argv = ["serve", *argv]  # `hello --port 9000` means `hello serve --port 9000`
    args = _build_parser().parse_args(argv)

    if args.version or args.command == "version":
        from hello import buildinfo
        if getattr(args, "json", False):
            print(json.dumps(buildinfo.build_info(), sort_keys=True))
        else:
            print(buildinfo.version_line())
        return EXIT_OK
    if args.command == "healthcheck":
        return _healthcheck(args, env)
    if args.command == "check-env":
        return _check_env(args)

    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    held = _hold_stop_signals()
    flags = {option.name: getattr(args, option.name) for option in config.OPTIONS}
    try:
        settings = config.load(flags, env)
    except config.ConfigError as error:
        for signum, handler in previous.items():  # not serving: nothing to hold them for
            signal.signal(signum, handler)
        return _usage_error(str(error))
    from hello.server import serve
    return serve(settings, held)
