"""Settings precedence (flag > HELLO_* > platform env > default) and validation."""

import pytest

from hello.config import OPTIONS, ConfigError, load, parse_duration


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
