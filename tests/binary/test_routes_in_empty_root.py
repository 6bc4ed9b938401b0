"""The routes and flags in dist/hello, in an empty root as nobody: the frozen
build carries everything they need (waitress's dist-info for the version check included)."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
import urllib.request

import pytest

from tests.binary.conftest import pid1_of
from tests.conftest import http_get
from tests.server.rawhttp import exchange, statuses, timed_get

pytestmark = pytest.mark.binary


def post(url: str, data: bytes, content_type: str = "text/plain"):
    request = urllib.request.Request(url, data=data, method="POST",
                                     headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_new_routes_and_flags_in_the_binary(start_binary, empty_root):
    root = empty_root()
    service = start_binary("--admin", "--header", "X-Env: frozen", "--random-error", "1",
                           "--trusted-proxies", "127.0.0.1", "--max-body-bytes", "100",
                           root=root).wait_healthy()
    status, headers, body = http_get(service.url + "/status/503")
    assert (status, json.loads(body), headers["X-Env"]) == (503, {"status": 503}, "frozen")
    assert post(service.url + "/echo", b"x" * 100) == (200, b"x" * 100)
    assert post(service.url + "/echo", b"x" * 101)[0] == 413
    assert http_get(service.url + "/")[0] == 500  # --random-error 1
    assert http_get(service.url + "/healthz")[0] == 200
    assert post(service.url + "/readyz/disable", b"")[0] == 200
    assert http_get(service.url + "/readyz")[0] == 503
    status, _, body = http_get(service.url + "/metrics")
    assert status == 200 and b'route="/status/<code>",method="GET",status="503"} 1' in body
    reply, closed = exchange(service.port, b"GET / HTTP/2.0\r\nHost: x\r\n\r\n")
    assert statuses(reply) == [505] and closed
    service.signal(signal.SIGTERM, pid1_of(service))
    code, out, _ = service.wait()
    assert code == 0


def test_health_answers_while_every_worker_is_busy_in_the_binary(start_binary):
    service = start_binary("--threads", "2", "--no-access-log").wait_healthy()
    waiters = [threading.Thread(target=http_get, args=(service.url + "/whoami?wait=3s",),
                                kwargs={"timeout": 10}) for _ in range(2)]
    for thread in waiters:
        thread.start()
    time.sleep(0.5)
    latencies = [timed_get(service.port, "/healthz", 1.0) for _ in range(10)]
    for thread in waiters:
        thread.join(10)
    assert None not in latencies
    assert max(latencies) < 0.1, latencies


def test_bad_new_flags_exit_2_with_one_line(binary):
    for argv in (["--host", "a..b"], ["--header", "Connection: close"], ["--random-delay", "x"]):
        result = subprocess.run([str(binary), *argv], capture_output=True, text=True,
                                timeout=30, check=False)
        assert result.returncode == 2, (argv, result.stderr)
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("hello: "), result.stderr
