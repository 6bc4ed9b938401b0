"""schemathesis against the running server and its own /openapi.json: no drift."""

import pathlib
import shutil
import subprocess
import sys

import pytest

from tests.conftest import require

CONFIG = pathlib.Path(__file__).with_name("schemathesis.toml")


@pytest.mark.timeout(420)  # schemathesis itself may take up to 300 s
def test_server_conforms_to_its_openapi_document(serve_unfrozen):
    st = shutil.which("schemathesis") or str(pathlib.Path(sys.executable).with_name("schemathesis"))
    require(pathlib.Path(st).exists(), "schemathesis is not installed (make venv)")
    service = serve_unfrozen("--no-access-log")
    result = subprocess.run(
        [st, "--no-color", "--config-file", str(CONFIG), "run", service.url + "/openapi.json",
         "--workers", "2"],  # every check is on by default; the config turns one off for one route
        capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
