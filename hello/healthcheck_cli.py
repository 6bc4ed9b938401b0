"""`hello healthcheck`'s command line, read before the rest of hello is imported.

A runtime starts the probe every few seconds for as long as a container lives, so
its start is most of its cost: argparse, the settings table (dataclasses,
ipaddress) and the stop-signal plumbing are what `hello.cli` imports first. This
reads the probe's own few flags by hand and runs it; anything it does not take
whole (--help, an abbreviated or repeated flag, a bad value, a host name) returns
None, and cli.main reads the same arguments the full way, so every usage error is
still its one line. tests/unit/test_healthcheck_cli.py holds the two readings equal.
"""

from __future__ import annotations

FLAGS = ("--url", "--port", "--timeout", "--own", "--commit")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0}
_HEX = frozenset("0123456789abcdef")
_PATH = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~/%-")


def _flags(argv: list[str]) -> dict[str, str] | None:
    """--flag VALUE and --flag=VALUE, each flag once; None for anything else."""
    given: dict[str, str] = {}
    rest = list(argv)
    while rest:
        word = rest.pop(0)
        name, equals, value = word.partition("=")
        if name not in FLAGS or name in given:
            return None
        if not equals:
            if not rest or rest[0].startswith("-"):
                return None
            value = rest.pop(0)
        given[name] = value
    return given


def _digits(text: str) -> bool:
    """ASCII digits only, at least one (str.isdigit alone takes '²' and Arabic-Indic)."""
    return text.isascii() and text.isdigit()


def _seconds(text: str) -> float | None:
    """config.check_timeout's reading ('250ms', '2s', '1.5m', '10'), or None."""
    number, unit = text, "s"
    for suffix in ("ms", "s", "m"):
        if text.endswith(suffix):
            number, unit = text[: -len(suffix)], suffix
            break
    whole, dot, fraction = number.partition(".")
    if not _digits(whole) or (dot and not _digits(fraction)):
        return None
    value = float(number) * _UNITS[unit]
    return value if 0 < value <= 3600 else None


def _port(flag: str | None, env) -> int | None:
    """The port as config reads it (the flag, else HELLO_PORT, else PORT), or None."""
    text = flag
    if text is None:
        text = next((env[name] for name in ("HELLO_PORT", "PORT") if env.get(name, "")), "8080")
    if not _digits(text) or len(text) > 10:
        return None
    return int(text) if 1 <= int(text) <= 65535 else None


def _host(env) -> str | None:
    """HELLO_HOST when it is a dotted IPv4 address or a wildcard, or None."""
    host = env.get("HELLO_HOST", "") or "0.0.0.0"
    if host == "::":
        return host
    parts = host.split(".")
    if len(parts) != 4 or not all(_digits(p) and str(int(p)) == p and int(p) <= 255 for p in parts):
        return None
    return host


def run(argv: list[str], env) -> int | None:
    """The probe's exit status, or None: cli.main must read these arguments."""
    flags = _flags(argv)
    if flags is None or "--url" in flags:  # a URL is parsed (and refused) the full way
        return None
    timeout = _seconds(flags.get("--timeout", "2s"))
    port = _port(flags.get("--port"), env)
    commit = flags.get("--commit")
    if timeout is None or port is None or (commit is not None and not (
            7 <= len(commit) <= 40 and _HEX.issuperset(commit))):
        return None
    own = flags.get("--own")
    if own is not None:
        if commit is not None or not own.startswith("/") or not _PATH.issuperset(own):
            return None
        from hello.ownprobe import probe_own
        ok, reason = probe_own(port, own, timeout)
    else:
        host = _host(env)
        if host is None:
            return None
        from hello.healthcheck import probe_local
        ok, reason = probe_local(host, port, timeout, commit)
    import sys
    print(f"hello healthcheck: {reason}", file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1
