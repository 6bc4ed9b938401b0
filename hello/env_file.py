"""An env file (hello.env, docker's --env-file) read as data, never sourced: what the
droplet agent asks `hello check-env` before root hands the file to systemd or docker."""

from __future__ import annotations

import re

from hello.config import OPTIONS, ConfigError

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
        if any(char < " " and char != "\t" or char == "\x7f" for char in value):
            raise ConfigError(f"line {number}: {key}: control characters are not allowed "
                              "(systemd ends a line at CR, docker does not)")
        if any(char in value for char in "\"'\\"):
            raise ConfigError(f"line {number}: {key}: quotes and backslashes are not allowed "
                              "(systemd and docker read them differently)")
        try:
            known[key].parse(value)
        except ValueError as error:
            raise ConfigError(f"line {number}: {key}: {value!r} {error}") from None
        pairs.append((key, value))
    return pairs
