"""README.md stays true: every flag, env var and route it must document is there."""

import pytest

from hello.app import create_app
from hello.config import OPTIONS, load
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()


def test_every_flag_and_env_var_is_documented():
    for option in OPTIONS:
        assert f"`{option.flag}`" in README, option.flag
        for env in option.envs:
            assert f"`{env}`" in README, env


@pytest.fixture
def admin_app():
    return create_app(load({"admin": True}, {}))


def test_every_route_is_documented(admin_app):
    for rule in admin_app.url_map.iter_rules():
        path = rule.rule.replace("<", "{").replace(">", "}")
        method = "POST" if "POST" in rule.methods else "GET"
        assert f"`{method} {path}`" in README or f"`GET|HEAD {path}`" in README \
            or f"`GET\\|HEAD {path}`" in README, rule.rule


def test_readme_names_the_test_command_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
    assert "make test " in README or "make test\n" in README or "make test  " in README
