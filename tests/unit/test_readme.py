"""README.md stays true: every flag, env var and route it must document is there."""

from hello.config import OPTIONS
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()


def test_every_flag_and_env_var_is_documented():
    for option in OPTIONS:
        assert f"`{option.flag}`" in README, option.flag
        for env in option.envs:
            assert f"`{env}`" in README, env


def test_every_route_is_documented(app):
    for rule in app.url_map.iter_rules():
        assert f"`GET {rule.rule}`" in README or f"`GET|HEAD {rule.rule}`" in README \
            or f"`GET\\|HEAD {rule.rule}`" in README, rule.rule


def test_readme_names_the_test_command_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
    assert "make test " in README or "make test\n" in README or "make test  " in README
