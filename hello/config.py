"""One validated Settings value for `hello serve`: flags > env > defaults.

Every tunable is named once in OPTIONS (flag, env var, parser, default, help), the
way waitress's adjustments.py names its own. The CLI builds its flags from this
table and the README's table mirrors it, so a new setting is one line here.
Validation happens once, before anything starts, and fails with one line that
names the flag or variable, the bad value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Callable, Mapping

MAX_WAIT_SECONDS = 30.0
MAX_MESSAGE_BYTES = 4096
MAX_DELAY_SECONDS = 30.0
_DIGITS = re.compile(r"[0-9]+")  # ASCII only: int() would take ' 8_0' or Arabic-Indic digits
_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m)?")
_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 field name
_FIELD_VALUE = re.compile(r"[\t\x20-\x7e]*")  # visible ASCII, space and tab
# Headers the server owns: framing, hop-by-hop, and what waitress or the routes set.
RESERVED_HEADERS = frozenset({
    "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "te",
    "trailer", "proxy-connection", "date", "server", "content-type",
    "x-content-type-options", "retry-after", "content-security-policy"})


class ConfigError(ValueError):
    """A bad setting; str() is the one-line message the CLI prints."""


def parse_duration(text: str) -> float:
    """'250ms', '2s', '1.5m' or a bare number of seconds -> seconds (float)."""
    match = _DURATION.fullmatch(text)
    if not match:
        raise ValueError("is not a duration (like 250ms, 2s, 1.5m or 10)")
    number, unit = float(match.group(1)), match.group(2) or "s"
    return number * {"ms": 0.001, "s": 1.0, "m": 60.0}[unit]


def _int_in(low: int, high: int, what: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text) if _DIGITS.fullmatch(text) and len(text) <= 10 else None
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


def _duration_between(low: float, high: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = parse_duration(text)
        if not low < value <= high:
            raise ValueError(f"is not a duration above {low:g}s and at most {high:g}s")
        return value

    return parse


# `hello healthcheck --timeout`: above 0 (0 makes the socket non-blocking) and within
# what a socket timeout takes (99999999999 s was an OverflowError traceback).
check_timeout = _duration_between(0, 3600)


def _host(text: str) -> str:
    """An IP address, or a name made of DNS labels (whether it resolves is checked at bind)."""
    try:
        ipaddress.ip_address(text)
        return text
    except ValueError:
        pass
    labels = text[:-1].split(".") if text.endswith(".") else text.split(".")
    if not text or len(text) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise ValueError("is not a host name or IP address")
    return text


def _utf8(text: str) -> bytes:
    try:  # argv and environ hold undecodable bytes as surrogates (PEP 383)
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("is not valid UTF-8") from None


def _message(text: str) -> str:
    if len(_utf8(text)) > MAX_MESSAGE_BYTES:
        raise ValueError(f"is longer than {MAX_MESSAGE_BYTES} bytes")
    return text


def _delay_range(text: str) -> tuple[float, float]:
    """'MIN-MAX' (each a duration) -> (min, max) seconds; 'off' or '0' -> (0, 0)."""
    if text in ("off", "0"):
        return (0.0, 0.0)
    low, sep, high = text.partition("-")
    try:
        if not sep:
            raise ValueError
        bounds = (parse_duration(low), parse_duration(high))
    except ValueError:
        raise ValueError("is not a range MIN-MAX of durations (like 10ms-500ms) or off") from None
    if bounds[0] > bounds[1] or bounds[1] > MAX_DELAY_SECONDS:
        raise ValueError(f"needs MIN <= MAX <= {MAX_DELAY_SECONDS:g}s")
    return bounds


def _rate(text: str) -> float:
    if not re.fullmatch(r"[0-9]+(\.[0-9]+)?", text) or not 0 <= float(text) <= 1:
        raise ValueError("is not a rate between 0 and 1 (like 0.05)")
    return float(text)


def _header(text: str) -> tuple[str, str]:
    """'Name: value' -> (name, value): a valid field, not one the server owns."""
    name, sep, value = _utf8(text).decode("utf-8").partition(":")
    value = value.strip(" \t")
    if not sep or not _TOKEN.fullmatch(name) or not _FIELD_VALUE.fullmatch(value):
        raise ValueError("is not a header 'Name: value' (a token name; printable ASCII value)")
    if name.lower() in RESERVED_HEADERS:
        raise ValueError(f"sets {name}, which the server owns")
    return (name, value)


def _networks(text: str) -> tuple:
    """'CIDR,CIDR,...' -> networks; an address alone is its own /32 or /128."""
    try:
        return tuple(ipaddress.ip_network(part.strip(), strict=False)
                     for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError("is not a comma-separated list of addresses or CIDR networks") from None


@dataclasses.dataclass(frozen=True)
class Option:
    name: str  # attribute of Settings; the flag is --name-with-dashes
    parse: Callable[[str], object]
    default: object
    help: str
    extra_env: tuple[str, ...] = ()  # platform conventions, after HELLO_<NAME>
    boolean: bool = False  # --x / --no-x
    repeatable: bool = False  # --x A --x B; in the env var, one value per line
    shown_default: str | None = None  # how --help shows a default that is not a scalar

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
           "close a keep-alive connection idle this long (seconds)"),
    Option("header_timeout", _duration_between(0, 3600), 10.0,
           "close a connection whose request head has not arrived this long after its"
           " first byte (or after connecting)"),
    Option("body_timeout", _duration_between(0, 3600), 60.0,
           "close a connection whose request body has not arrived this long after its head"),
    Option("queue_timeout", _duration_between(0, 3600), 10.0,
           "answer 503 to a request that waited this long for a worker, instead of running"
           " it late"),
    Option("connection_limit", _int_in(1, 100_000, "a connection count"), 1000,
           "open connections at most; past it a new one evicts the stalest unfinished request"
           " (or sheds the newest queued one with 503)"),
    Option("random_delay", _delay_range, (0.0, 0.0),
           "delay / and /whoami by a random MIN-MAX (like 10ms-500ms)", shown_default="off"),
    Option("random_error", _rate, 0.0, "answer / and /whoami with 500 at this rate (0-1)"),
    Option("admin", _boolean, False,
           "enable POST /readyz/disable and /readyz/enable (anyone who reaches the port can"
           " take the instance out of rotation)", boolean=True),
    Option("header", _header, (), "add a response header 'Name: value' (repeatable)",
           repeatable=True, shown_default="none"),
    Option("trusted_proxies", _networks, (),
           "CIDRs whose X-Forwarded-For/Forwarded name the client in the access log",
           shown_default="none"),
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
    if option.repeatable:
        # One per line; not splitlines(), which also ends a line at \x0b, \x0c, \x1c...
        values = raw if isinstance(raw, list) else str(raw).split("\n")
        return tuple(_parse_one(option, source, str(value)) for value in values if value)
    return _parse_one(option, source, str(raw))


def _parse_one(option: Option, source: str, raw: str) -> object:
    try:
        return option.parse(raw)
    except ValueError as error:
        raise ConfigError(f"{source}: {_shown(raw)} {error}") from None


def _shown(raw: str) -> str:
    """The bad value as it was given, quoted, cut short, without raw control bytes:
    ascii() is repr() with every non-ASCII character escaped too."""
    return ascii(raw if len(raw) <= 80 else raw[:77] + "...")


def option_named(name: str) -> Option:
    return next(option for option in OPTIONS if option.name == name)


def load(flags: Mapping[str, object], env: Mapping[str, str]) -> Settings:
    """Merge flags (strings, booleans or None) over env over defaults."""
    return Settings(**{option.name: resolve(option, flags.get(option.name), env)
                       for option in OPTIONS})
