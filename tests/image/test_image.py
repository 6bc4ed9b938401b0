"""The image, through a real engine: built from the unchanged Dockerfile, then run.

Fixtures (engine, stand-in base, one build per session): tests/image/conftest.py.
All traffic goes to ports published on 127.0.0.1; every container is removed by id.
"""

from __future__ import annotations

import gzip
import io
import json
import pathlib
import re
import subprocess
import tarfile
import threading
import time

import pytest

from tests.conftest import ROOT, http_get, wait_until
from tests.drain import assert_drained, listening, run_drain

pytestmark = pytest.mark.engine

MB = 1000 * 1000
MAX_GZIP_BYTES = 8 * MB
MAX_TAR_BYTES = 20 * MB
OCI = "org.opencontainers.image."


def _layers(saved: pathlib.Path) -> list[list[tarfile.TarInfo]]:
    """The members of each layer of the one image in a `docker save` tar."""
    with tarfile.open(saved) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))
        assert len(manifest) == 1, manifest
        layers = []
        for name in manifest[0]["Layers"]:
            with tarfile.open(fileobj=io.BytesIO(outer.extractfile(name).read())) as layer:
                layers.append(layer.getmembers())
    return layers


def _requests_read(pid: int, port: int) -> int:
    """How many established connections to port, in the container's network namespace,
    have received request bytes and hold none unread (Recv-Q 0): requests the server
    has read. Counted, not matched by client port: docker's proxy sits in between."""
    out = subprocess.run(
        ["nsenter", f"--net=/proc/{pid}/ns/net", "ss", "-Htin", "state", "established",
         "sport", "=", f":{port}"], capture_output=True, text=True, check=True, timeout=10).stdout
    lines, found = out.splitlines(), 0
    for head, info in zip(lines[::2], lines[1::2], strict=False):
        received = re.search(r"bytes_received:(\d+)", info)
        if head.split()[0] == "0" and received and int(received.group(1)) > 0:
            found += 1
    return found


def test_dockerfile_is_the_one_users_build():
    text = (ROOT / "Dockerfile").read_text()
    assert "ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm\n" in text
    assert "RUN build/binary\n" in text
    assert "\nFROM scratch\n" in text


def test_image_builds_and_is_small(image):
    raw = image.tar.stat().st_size
    with open(image.tar, "rb") as saved:
        compressed = len(gzip.compress(saved.read(), compresslevel=6))
    print(f"\nimage {image.ref}: docker save {raw / MB:.2f} MB, gzip {compressed / MB:.2f} MB, "
          f"built in {image.build_seconds:.0f} s")
    assert compressed <= MAX_GZIP_BYTES, f"gzip of docker save is {compressed / MB:.2f} MB"
    assert raw <= MAX_TAR_BYTES, f"docker save is {raw / MB:.2f} MB"


def test_final_stage_holds_only_hello_and_tmp(image, docker):
    members = [member for layer in _layers(image.tar) for member in layer]
    by_name = {member.name.rstrip("/"): member for member in members}
    assert sorted(by_name) == ["hello", "tmp"], sorted(by_name)
    hello, tmp = by_name["hello"], by_name["tmp"]
    assert hello.isfile() and hello.mode & 0o7777 == 0o755 and hello.uid == 0
    assert tmp.isdir() and tmp.mode & 0o7777 == 0o1777 and tmp.uid == 0
    sizes = [line.split("\t") for line in docker.out(
        "history", "--no-trunc", "--format", "{{.Size}}\t{{.CreatedBy}}", image.ref).splitlines()]
    with_files = [created for size, created in sizes if size not in ("0B", "0")]
    assert len(with_files) == 1 and "COPY" in with_files[0], sizes


def test_config_user_port_signal_healthcheck_labels(image, docker):
    config = docker.inspect(image.ref)["Config"]
    assert config["User"] == "65534:65534"
    assert "PORT=8080" in config["Env"]
    assert list(config["ExposedPorts"]) == ["8080/tcp"]
    assert config["Entrypoint"] == ["/hello"] and config["Cmd"] == ["serve"]
    assert config["StopSignal"] == "SIGTERM"
    assert config["Healthcheck"]["Test"] == ["CMD", "/hello", "healthcheck"]
    labels = config["Labels"]
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(image.source_date_epoch)))
    assert {key: labels.get(OCI + key) for key in
            ("title", "version", "revision", "created", "source", "licenses")} == {
        "title": "hello", "version": image.version, "revision": image.commit,
        "created": created, "source": "https://example.invalid/hello.git",
        "licenses": "MIT"}


def test_serves_routes_with_the_images_commit(run_container, image):
    container = run_container().wait_serving()
    status, _, body = http_get(container.url + "/")
    assert status == 200 and body
    assert http_get(container.url + "/healthz")[0] == 200
    status, _, body = http_get(container.url + "/version")
    info = json.loads(body)
    assert status == 200
    assert info["commit"] == image.commit and info["version"] == image.version
    assert info["frozen"] is True


def test_runs_as_nobody(run_container, docker):
    container = run_container().wait_serving()
    assert docker.inspect(container.id)["Config"]["User"] == "65534:65534"
    pid = container.state()["Pid"]
    uids = [line.split()[1:] for line in open(f"/proc/{pid}/status") if line.startswith(("Uid:", "Gid:"))]
    assert uids == [["65534"] * 4, ["65534"] * 4]


def test_healthcheck_reports_healthy(run_container):
    container = run_container("--health-interval=1s", "--health-start-period=1s",
                              "--read-only", "--tmpfs", "/tmp:exec")
    def healthy():
        health = container.state()["Health"]
        assert health["Status"] != "unhealthy", health
        return health["Status"] == "healthy"
    wait_until(healthy, 30, interval=0.2, what="docker's health status 'healthy'")
    last = container.state()["Health"]["Log"][-1]
    assert last["ExitCode"] == 0 and "200" in last["Output"]


def test_read_only_root_with_tmpfs_serves(run_container):
    container = run_container("--read-only", "--tmpfs", "/tmp:exec").wait_serving()
    assert http_get(container.url + "/")[0] == 200


def test_read_only_without_writable_tmp_fails_in_one_line(docker, image):
    result = docker.run("run", "--rm", "--read-only", image.ref, check=False, timeout=60)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("hello: ") and "/tmp" in lines[0], lines[0]
    print(f"\n{lines[0]}")


def test_port_variable_moves_the_port(run_container):
    container = run_container("-e", "PORT=9090", container_port=9090).wait_serving()
    assert http_get(container.url + "/healthz")[0] == 200
    assert '"port":9090' in container.logs()


def test_docker_stop_drains_keep_alive_clients_and_exits_0(run_container, docker):
    """docker stop (STOPSIGNAL SIGTERM) through the port proxy: the in-flight keep-alive
    request gets Connection: close, the idle one is closed, /readyz after the signal is
    503, and the container exits 0 well inside the drain timeout."""
    container = run_container("--read-only", "--tmpfs", "/tmp:exec").wait_serving()
    pid = container.state()["Pid"]
    stopped: list = []

    def stop():
        began = time.monotonic()
        docker.run("stop", "--time", "10", container.id, timeout=30)
        stopped.append(time.monotonic() - began)

    stopper = threading.Thread(target=stop)
    outcome = run_drain(
        "127.0.0.1", container.port, stopper.start,
        # the idle connection's request and the in-flight one
        read_by_server=lambda _client: _requests_read(pid, 8080) >= 2,
        draining=lambda: not listening(8080, netns_pid=str(pid)))
    stopper.join(30)
    logs = container.logs()
    state = container.state()
    assert_drained(outcome)
    assert state["ExitCode"] == 0 and not state["OOMKilled"], logs
    assert stopped and stopped[0] < 5, f"docker stop took {stopped}s (drain timeout 10s)"
    assert '"event":"draining"' in logs and '"event":"stopped"' in logs, logs
    assert "drain timeout" not in logs


def test_there_is_no_shell(docker, image):
    result = docker.run("run", "--rm", "--entrypoint", "/bin/sh", image.ref, "-c", "true",
                        check=False, timeout=60)
    assert result.returncode != 0
    assert "no such file or directory" in result.stderr.lower(), result.stderr
