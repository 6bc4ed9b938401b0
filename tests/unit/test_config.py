"""Settings precedence (flag > HELLO_* > platform env > default) and validation."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys

import pytest

from hello import cli
from hello.config import OPTIONS, ConfigError, load, parse_duration
from tests.conftest import ROOT, child_env


def test_defaults():
    settings = load({}, {})
    assert (settings.host, settings.port, settings.threads) == ("0.0.0.0", 8080, 8)
    assert settings.message == "Hello World!"
    assert settings.drain_timeout == 10.0
    assert settings.log_format == "json"
    assert settings.access_log is True
    assert settings.reuse_port is False
    assert settings.max_body_bytes == 1 << 20


# A valid value other than the default for every option, as an env var would carry it.
NOT_DEFAULT = {"host": "127.0.0.1", "port": "9191", "threads": "3", "message": "hi",
               "drain_timeout": "250ms", "log_format": "text", "access_log": "false",
               "reuse_port": "true", "max_header_bytes": "2048", "max_body_bytes": "10",
               "channel_timeout": "7", "connection_limit": "5", "header_timeout": "3s",
               "body_timeout": "5s", "queue_timeout": "2s", "random_delay": "10ms-20ms",
               "random_error": "0.5",
               "admin": "true", "header": "X-Test: 1", "trusted_proxies": "10.0.0.0/8"}


@pytest.mark.parametrize("option", OPTIONS, ids=lambda o: o.name)
def test_setting_hello_env_var_changes_that_setting_only(option):
    """HELLO_<NAME> reaches the setting it names, and only that one."""
    assert option.name in NOT_DEFAULT, f"add a non-default sample for {option.name} above"
    variable = "HELLO_" + option.name.upper()
    assert variable in option.envs
    changed, default = load({}, {variable: NOT_DEFAULT[option.name]}), load({}, {})
    parsed = option.parse(NOT_DEFAULT[option.name])
    assert getattr(changed, option.name) == ((parsed,) if option.repeatable else parsed)
    assert getattr(changed, option.name) != getattr(default, option.name)
    for other in OPTIONS:
        if other is not option:
            assert getattr(changed, other.name) == getattr(default, other.name), other.name


def test_env_over_default():
    assert load({}, {"HELLO_THREADS": "4"}).threads == 4


def test_flag_over_env():
    assert load({"threads": "2"}, {"HELLO_THREADS": "4"}).threads == 2


def test_port_from_platform_variable():
    assert load({}, {"PORT": "9090"}).port == 9090


def test_hello_port_over_platform_port():
    assert load({}, {"PORT": "9090", "HELLO_PORT": "9191"}).port == 9191


def test_port_flag_over_everything():
    assert load({"port": "7000"}, {"PORT": "9090", "HELLO_PORT": "9191"}).port == 7000


def test_empty_env_var_counts_as_unset():
    assert load({}, {"HELLO_PORT": "", "PORT": "9000"}).port == 9000


def test_boolean_flag_and_env():
    assert load({"access_log": False}, {"HELLO_ACCESS_LOG": "true"}).access_log is False
    assert load({}, {"HELLO_ACCESS_LOG": "off"}).access_log is False
    assert load({}, {"HELLO_REUSE_PORT": "1"}).reuse_port is True


@pytest.mark.parametrize("flags, env, expected", [
    ({}, {"PORT": "abc"}, "PORT: 'abc' is not a port number (1-65535)"),
    ({"port": "70000"}, {}, "--port: '70000' is not a port number (1-65535)"),
    ({"port": "0"}, {}, "--port: '0' is not a port number (1-65535)"),
    ({"threads": "0"}, {}, "--threads: '0' is not a thread count (1-256)"),
    ({}, {"HELLO_THREADS": "many"}, "HELLO_THREADS: 'many' is not a thread count (1-256)"),
    ({"log_format": "xml"}, {}, "--log-format: 'xml' is not one of json, text"),
    ({"drain_timeout": "soon"}, {}, "--drain-timeout: 'soon' is not a duration"),
    ({}, {"HELLO_DRAIN_TIMEOUT": "2h"}, "HELLO_DRAIN_TIMEOUT: '2h' is not a duration"),
    ({}, {"HELLO_ACCESS_LOG": "maybe"}, "HELLO_ACCESS_LOG: 'maybe' is not a boolean"),
    ({"host": ""}, {}, "--host: '' is not a host name or IP address"),
    ({"max_body_bytes": "-1"}, {}, "--max-body-bytes: '-1' is not a byte count"),
])
def test_bad_values_name_the_source_value_and_what_is_allowed(flags, env, expected):
    with pytest.raises(ConfigError) as raised:
        load(flags, env)
    message = str(raised.value)
    assert message.startswith(expected)
    assert "\n" not in message


@pytest.mark.parametrize("text, seconds", [
    ("250ms", 0.25), ("2s", 2.0), ("1.5m", 90.0), ("10", 10.0), ("0", 0.0),
])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "abc", "-1s", "1h", "1e3", "ms", "1.s", " 3s ", "1_0s",
                                  "\u0663s", "3 s"])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_drain_timeout_accepts_durations():
    assert load({"drain_timeout": "500ms"}, {}).drain_timeout == pytest.approx(0.5)


@pytest.mark.parametrize("text, value", [
    ("1", True), ("true", True), ("yes", True), ("on", True), (" TRUE ", True), ("On", True),
    ("0", False), ("false", False), ("no", False), ("off", False), (" NO ", False),
])
def test_every_boolean_spelling_the_readme_promises(text, value):
    assert load({}, {"HELLO_REUSE_PORT": text}).reuse_port is value


@pytest.mark.parametrize("text", ["2", "y", "enable", "truefalse"])
def test_other_boolean_spellings_are_refused(text):
    with pytest.raises(ConfigError, match=r"^HELLO_REUSE_PORT: .* is not a boolean \(true/false, "
                       r"1/0, yes/no, on/off\)$"):
        load({}, {"HELLO_REUSE_PORT": text})


def test_message_may_be_4096_characters_not_more():
    assert load({"message": "m" * 4096}, {}).message == "m" * 4096
    with pytest.raises(ConfigError) as raised:
        load({"message": "m" * 4097}, {})
    assert str(raised.value).startswith("--message: 'mmm")
    assert str(raised.value).endswith("...' is longer than 4096 bytes")


def error_of(name: str, raw: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load({name: raw}, {})
    return str(caught.value)


NOT_A_RANGE = "is not a range MIN-MAX of durations (like 10ms-500ms) or off"
NOT_A_HEADER = "is not a header 'Name: value' (a token name; printable ASCII value)"
NOT_NETWORKS = "is not a comma-separated list of addresses or CIDR networks"
NOT_A_RATE = "is not a rate between 0 and 1 (like 0.05)"


@pytest.mark.parametrize("name, raw, message", [
    ("random_delay", "soon", f"--random-delay: 'soon' {NOT_A_RANGE}"),
    ("random_delay", "10ms", f"--random-delay: '10ms' {NOT_A_RANGE}"),
    ("random_delay", "1s-x", f"--random-delay: '1s-x' {NOT_A_RANGE}"),
    ("random_delay", "2s-1s", "--random-delay: '2s-1s' needs MIN <= MAX <= 30s"),
    ("random_delay", "1s-31s", "--random-delay: '1s-31s' needs MIN <= MAX <= 30s"),
    ("random_error", "1.5", f"--random-error: '1.5' {NOT_A_RATE}"),
    ("random_error", "2", f"--random-error: '2' {NOT_A_RATE}"),
    ("random_error", ".5", f"--random-error: '.5' {NOT_A_RATE}"),
    ("header", "X-Test", f"--header: 'X-Test' {NOT_A_HEADER}"),
    ("header", "Bad Name: v", f"--header: 'Bad Name: v' {NOT_A_HEADER}"),
    ("header", "X-A: v\x0c", f"--header: 'X-A: v\\x0c' {NOT_A_HEADER}"),
    ("header", "X-A: caf\u00e9", f"--header: 'X-A: caf\\xe9' {NOT_A_HEADER}"),
    ("header", "Server: mine", "--header: 'Server: mine' sets Server, which the server owns"),
    ("header", "retry-after: 1", "--header: 'retry-after: 1' sets retry-after, which the server owns"),
    ("trusted_proxies", "10.0.0.0/33", f"--trusted-proxies: '10.0.0.0/33' {NOT_NETWORKS}"),
    ("trusted_proxies", "proxy.local", f"--trusted-proxies: 'proxy.local' {NOT_NETWORKS}"),
    ("message", "\udcff", "--message: '\\udcff' is not valid UTF-8"),
])
def test_a_bad_value_gets_this_exact_line(name, raw, message):
    assert error_of(name, raw) == message


@pytest.mark.parametrize("raw, bounds", [
    ("off", (0.0, 0.0)), ("0", (0.0, 0.0)), ("10ms-500ms", (0.01, 0.5)),
    ("1s-1s", (1.0, 1.0)), ("0-30s", (0.0, 30.0)),
])
def test_delay_ranges_accepted_at_their_edges(raw, bounds):
    assert load({"random_delay": raw}, {}).random_delay == bounds


@pytest.mark.parametrize("raw, rate", [("0", 0.0), ("1", 1.0), ("1.0", 1.0), ("0.05", 0.05)])
def test_rates_accepted_at_their_edges(raw, rate):
    assert load({"random_error": raw}, {}).random_error == rate


def test_a_header_value_keeps_its_colons_and_loses_only_outer_blanks():
    assert load({"header": "X-A: \t a:b X\t "}, {}).header == (("X-A", "a:b X"),)


def test_trusted_proxies_take_commas_without_spaces_and_host_bits():
    assert load({"trusted_proxies": "10.0.0.1/8,192.168.1.1"}, {}).trusted_proxies == (
        ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("192.168.1.1/32"))


@pytest.mark.parametrize("length, shown", [
    (80, "'" + "a" * 80 + "'"),
    (81, "'" + "a" * 77 + "...'"),
])
def test_a_long_bad_value_is_cut_to_80_characters(length, shown):
    assert error_of("header", "a" * length) == f"--header: {shown} {NOT_A_HEADER}"


def test_check_env_reads_utf8_whatever_the_locale(tmp_path):
    """A droplet's root shell may run in the POSIX locale, where Python's default
    encoding is ASCII: the file is still read as UTF-8."""
    env_file = tmp_path / "hello.env"
    env_file.write_text("HELLO_MESSAGE=caf\u00e9\n", encoding="utf-8")
    env = child_env({"PATH": "/usr/bin:/bin", "LC_ALL": "C", "PYTHONCOERCECLOCALE": "0",
                     "PYTHONUTF8": "0"})
    result = subprocess.run([sys.executable, "-m", "hello", "check-env", str(env_file)], cwd=ROOT,
                            env={**env, **({"PYTHONHOME": os.environ["PYTHONHOME"]}
                                          if "PYTHONHOME" in os.environ else {})},
                            capture_output=True, text=True, timeout=30, check=False)
    assert (result.returncode, result.stderr) == (0, "")


@pytest.mark.parametrize("content, message", [
    (None, "hello: {path}: No such file or directory\n"),
    (b"HELLO_MESSAGE=caf\xe9\n", "hello: {path}: not UTF-8 text\n"),
])
def test_check_env_unreadable_files_exactly(tmp_path, capsys, content, message):
    path = tmp_path / "hello.env"
    if content is not None:
        path.write_bytes(content)
    assert cli.main(["check-env", str(path)]) == 2
    assert capsys.readouterr().err == message.format(path=path)


@pytest.mark.parametrize("host", [
    "127.0.0.1", "::1", "0.0.0.0", "localhost", "example.com.", "a-b.c9", "A.B", "x" * 63 + ".io",
    ".".join(["a" * 63] * 3 + ["a" * 61]),  # 253 characters
])
def test_hosts_that_are_accepted_as_written(host):
    assert load({"host": host}, {}).host == host


@pytest.mark.parametrize("host", [
    "a..b", "-a.com", "a-.com", "x" * 64 + ".io", ".".join(["a" * 63] * 3 + ["a" * 62]), "exa mple",
    "localhost..", ".", "a_b", "é.com", "1.2.3.4:80",
])
def test_hosts_that_are_refused_with_one_line(host):
    with pytest.raises(ConfigError) as refused:
        load({"host": host}, {})
    assert str(refused.value).endswith("is not a host name or IP address")


@pytest.mark.parametrize("name, raw, value", [
    ("port", "65535", 65535), ("port", "0000065535", 65535), ("threads", "256", 256),
    ("drain_timeout", "3600", 3600.0), ("header_timeout", "3600s", 3600.0),
])
def test_values_at_the_top_of_their_range_are_accepted(name, raw, value):
    assert getattr(load({name: raw}, {}), name) == value


@pytest.mark.parametrize("name, raw, message", [
    ("port", "00000000080", "--port: '00000000080' is not a port number (1-65535)"),
    ("drain_timeout", "3601", "--drain-timeout: '3601' is more than 3600s"),
])
def test_values_just_past_their_range_are_refused_exactly(name, raw, message):
    with pytest.raises(ConfigError) as refused:
        load({name: raw}, {})
    assert str(refused.value) == message
