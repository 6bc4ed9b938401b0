"""Every `--help` page, to the byte: what a user reads before the first flag.

The pages are kept in tests/unit/help/ (argparse's layout, at 100 columns). After a
deliberate change to a flag or its help, rewrite them with
`python -m tests.unit.test_help_text` and read the diff.
"""

import contextlib
import io
import os
import pathlib
import sys

import pytest

from hello import cli

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
