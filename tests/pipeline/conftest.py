"""Fixtures for the offline checks of .circleci/config.yml."""

from __future__ import annotations

import copy

import pytest
import yaml

from tests.conftest import ROOT

CONFIG = ROOT / ".circleci" / "config.yml"


@pytest.fixture(scope="session")
def parsed_config() -> dict:
    return yaml.safe_load(CONFIG.read_text())


@pytest.fixture
def config(parsed_config) -> dict:
    """A private copy of the real config, for a test to break."""
    return copy.deepcopy(parsed_config)


@pytest.fixture
def dump(tmp_path):
    """Write a (mutated) config to a temporary file and return its path."""
    def write(config: dict, name: str = "config.yml"):
        path = tmp_path / name
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path
    return write
