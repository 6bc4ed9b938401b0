"""README.md stays true: its settings table is OPTIONS, its routes table is the app."""

import re

import pytest

from hello.app import create_app
from hello.config import OPTIONS, load
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()


def settings_rows() -> dict[str, dict]:
    """flag -> {envs, default} from the `| `--flag` | `ENV` | `default` | what |` table."""
    rows = {}
    for line in README.splitlines():
        if not line.startswith("| `--"):
            continue
        flag_cell, env_cell, default_cell = (cell.strip() for cell in line.split("|")[1:4])
        flag = re.findall(r"`(--[a-z-]+)`", flag_cell)[0]
        rows[flag] = {"envs": tuple(re.findall(r"`([A-Z_]+)`", env_cell)),
                      "default": default_cell, "negation": "`--no-" in flag_cell}
    return rows


def test_the_settings_table_lists_exactly_the_options():
    assert set(settings_rows()) == {option.flag for option in OPTIONS}


@pytest.mark.parametrize("option", OPTIONS, ids=lambda o: o.name)
def test_each_settings_row_names_the_options_env_vars_and_default(option):
    row = settings_rows()[option.flag]
    assert row["envs"] == option.envs
    if option.boolean:
        assert row["negation"], f"{option.flag}: the table should name --no-{option.flag[2:]}"
        assert row["default"] == ("on" if option.default else "off")
    elif option.shown_default:
        assert row["default"] == option.shown_default, option.flag
    else:
        shown = re.fullmatch(r"`([^`]*)`", row["default"])
        assert shown, f"{option.flag}: default {row['default']!r} is not one `value`"
        assert option.parse(shown.group(1)) == option.default


@pytest.fixture
def admin_app():
    return create_app(load({"admin": True}, {}))


def documented_routes() -> set[tuple[str, str]]:
    """(method, path) for every `METHOD /path` named in the first cell of a routes row."""
    routes = set()
    for line in README.splitlines():
        if not line.startswith("| `GET") and not line.startswith("| `POST"):
            continue
        cell = line.split(" | ")[0].replace("\\|", "|")
        for methods, path in re.findall(r"`((?:GET|POST|HEAD)(?:\|(?:GET|HEAD))*) (/\S*)`", cell):
            routes.update((method, path) for method in methods.split("|") if method != "HEAD")
    return routes


def test_the_routes_table_lists_exactly_the_apps_routes(admin_app):
    served = {(method, rule.rule.replace("<", "{").replace(">", "}"))
              for rule in admin_app.url_map.iter_rules()
              for method in rule.methods - {"HEAD", "OPTIONS"}}
    assert documented_routes() == served


def test_readme_names_the_test_command_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^export HELLO_REQUIRE_ALL=1$", ci, re.M)
    assert re.search(r"^make test$", ci, re.M)
    assert "`make test` is what\nCI runs" in README
    assert "runs `make test` with `HELLO_REQUIRE_ALL=1`" in README
