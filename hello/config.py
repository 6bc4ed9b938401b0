"""One validated Settings value for `hello serve`: flags > env > defaults.

Every tunable is named once in OPTIONS (flag, env var, parser, default, help), the
way waitress's adjustments.py names its own. The CLI builds its flags from this
table and the README's table mirrors it, so a new setting is one line here.
Validation happens once, before anything starts, and fails with one line that
names the flag or variable, the bad value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping

MAX_WAIT_SECONDS = 30.0


class ConfigError(ValueError):
    """A bad setting; str() is the one-line message the CLI prints."""


def parse_duration(text: str) -> float:
    """'250ms', '2s', '1.5m' or a bare number of seconds -> seconds (float)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*", text)
    if not match:
        raise ValueError("is not a duration (like 250ms, 2s, 1.5m or 10)")
    number, unit = float(match.group(1)), match.group(2) or "s"
    return number * {"ms": 0.001, "s": 1.0, "m": 60.0}[unit]


def _int_in(low: int, high: int, what: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise ValueError(f"is not {what} ({low}-{high})")
        return value

    return parse


def _duration_upto(high: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = parse_duration(text)
        if value > high:
            raise ValueError(f"is more than {high:g}s")
        return value

    return parse


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in choices:
            raise ValueError(f"is not one of {', '.join(choices)}")
        return text

    return parse


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("is not a boolean (true/false, 1/0, yes/no, on/off)")


def _host(text: str) -> str:
    if not text or any(c.isspace() for c in text):
        raise ValueError("is not a host name or IP address")
    return text


def _message(text: str) -> str:
    if len(text) > 4096:
        raise ValueError("is longer than 4096 characters")
    return text


@dataclasses.dataclass(frozen=True)
class Option:
    name: str  # attribute of Settings; the flag is --name-with-dashes
    parse: Callable[[str], object]
    default: object
    help: str
    extra_env: tuple[str, ...] = ()  # platform conventions, after HELLO_<NAME>
    boolean: bool = False  # --x / --no-x

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def envs(self) -> tuple[str, ...]:
        return ("HELLO_" + self.name.upper(), *self.extra_env)


OPTIONS: tuple[Option, ...] = (
    Option("host", _host, "0.0.0.0", "address to listen on"),
    Option("port", _int_in(1, 65535, "a port number"), 8080,
           "TCP port to listen on", extra_env=("PORT",)),
    Option("threads", _int_in(1, 256, "a thread count"), 8,
           "worker threads (waitress's default is 4; 8 keeps p99 no worse)"),
    Option("message", _message, "Hello World!", "the text GET / answers"),
    Option("drain_timeout", _duration_upto(3600), 10.0,
           "on SIGTERM/SIGINT, how long in-flight requests may finish (seconds)"),
    Option("log_format", _choice("json", "text"), "json", "log line format"),
    Option("access_log", _boolean, True, "one line per request on stdout",
           boolean=True),
    Option("reuse_port", _boolean, False,
           "set SO_REUSEPORT so a new release can bind while the old one drains",
           boolean=True),
    Option("max_header_bytes", _int_in(1024, 1 << 20, "a byte count"), 32 * 1024,
           "largest request header block; larger gets 431"),
    Option("max_body_bytes", _int_in(0, 1 << 30, "a byte count"), 1 << 20,
           "largest request body; larger gets 413"),
    Option("channel_timeout", _int_in(1, 3600, "a number of seconds"), 60,
           "close a connection idle this long (slow clients cannot hold it)"),
    Option("connection_limit", _int_in(1, 100_000, "a connection count"), 1000,
           "open connections at most; past it the server stops accepting"),
)

Settings = dataclasses.make_dataclass(
    "Settings",
    [(option.name, type(option.default), option.default) for option in OPTIONS],
    frozen=True,
)
Settings.__doc__ = "The validated settings `hello serve` runs with."


def resolve(option: Option, flag_value: object, env: Mapping[str, str]) -> object:
    """One setting: the flag if given, else its first non-empty env var, else default."""
    raw, source = flag_value, option.flag
    if raw is None:
        for var in option.envs:
            if env.get(var, "") != "":
                raw, source = env[var], var
                break
    if raw is None:
        return option.default
    if isinstance(raw, bool):  # --access-log / --no-access-log
        return raw
    try:
        return option.parse(str(raw))
    except ValueError as error:
        raise ConfigError(f"{source}: {str(raw)!r} {error}") from None


def option_named(name: str) -> Option:
    return next(option for option in OPTIONS if option.name == name)


def load(flags: Mapping[str, object], env: Mapping[str, str]) -> Settings:
    """Merge flags (strings, booleans or None) over env over defaults."""
    return Settings(**{option.name: resolve(option, flags.get(option.name), env)
                       for option in OPTIONS})


ENV_LINE = re.compile(r"([A-Z_][A-Z0-9_]*)=(.*)")


def check_env_lines(lines) -> list[tuple[str, str]]:
    """An env file as data (hello.env): blank lines, `#` comments and KEY=VALUE lines,
    only PORT and HELLO_<setting>, each value valid for its setting. Quotes and
    backslashes are refused because systemd's EnvironmentFile strips them and
    docker's --env-file keeps them: one file must mean the same to both.
    ConfigError names the first bad line by number."""
    known = {var: option for option in OPTIONS for var in option.envs}
    pairs = []
    for number, line in enumerate(lines, start=1):
        line = line.rstrip("\n")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = ENV_LINE.fullmatch(line)
        if not match:
            raise ConfigError(f"line {number}: expected KEY=VALUE (no spaces, no 'export')")
        key, value = match.groups()
        if key not in known:
            raise ConfigError(f"line {number}: {key} is not PORT or a HELLO_* setting "
                              f"({', '.join(sorted(known))})")
        if any(char in value for char in "\"'\\"):
            raise ConfigError(f"line {number}: {key}: quotes and backslashes are not allowed "
                              "(systemd and docker read them differently)")
        try:
            known[key].parse(value)
        except ValueError as error:
            raise ConfigError(f"line {number}: {key}: {value!r} {error}") from None
        pairs.append((key, value))
    return pairs
