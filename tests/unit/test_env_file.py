"""hello/env_file.py: an env file's lines as data, and the one line that names the first
bad one (what `hello check-env` prints; tests/unit/test_cli.py runs the command)."""

import pytest

from hello.config import ConfigError
from hello.env_file import check_env_lines


def test_env_file_comments_blanks_and_values_as_written():
    lines = ["# a comment\n", "   # an indented one\n", "\n", "  \n", "PORT=8080\n",
             "HELLO_MESSAGE=hi\tthere X  \n", "HELLO_HEADER=X-A: 1"]
    assert check_env_lines(lines) == [("PORT", "8080"), ("HELLO_MESSAGE", "hi\tthere X  "),
                                      ("HELLO_HEADER", "X-A: 1")]


@pytest.mark.parametrize("line, message", [
    ("HELLO_MESSAGE=a\rb", "line 1: HELLO_MESSAGE: control characters are not allowed "
                           "(systemd ends a line at CR, docker does not)"),
    ("HELLO_MESSAGE=a\x01b", "line 1: HELLO_MESSAGE: control characters are not allowed "
                             "(systemd ends a line at CR, docker does not)"),
    ("HELLO_MESSAGE=a\x7fb", "line 1: HELLO_MESSAGE: control characters are not allowed "
                             "(systemd ends a line at CR, docker does not)"),
    ("HELLO_MESSAGE='hi'", "line 1: HELLO_MESSAGE: quotes and backslashes are not allowed "
                           "(systemd and docker read them differently)"),
    ("HELLO_MESSAGE=a\\nb", "line 1: HELLO_MESSAGE: quotes and backslashes are not allowed "
                            "(systemd and docker read them differently)"),
    ("HELLO_THREADS=8X\n", "line 1: HELLO_THREADS: '8X' is not a thread count (1-256)"),
])
def test_env_file_bad_value_lines_exactly(line, message):
    with pytest.raises(ConfigError) as caught:
        check_env_lines(["# first\n", line])
    assert str(caught.value) == message.replace("line 1", "line 2")


def test_env_file_unknown_key_lists_the_known_ones():
    with pytest.raises(ConfigError) as caught:
        check_env_lines(["FOO=1"])
    message = str(caught.value)
    head = "line 1: FOO is not PORT or a HELLO_* setting ("
    assert message.startswith(head) and message.endswith(")"), message
    known = message[len(head):-1].split(", ")
    assert "PORT" in known and "HELLO_MESSAGE" in known and known == sorted(known), known
