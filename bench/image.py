"""The FROM-scratch image against the bare binary and a naive Python image, in one run.

Variants, baseline first:
  bare binary   /hello copied out of our image (`docker cp`: the same bytes), run on
                the host with TMPDIR on a fresh folder
  hello image   build/image's hello:<version>, `docker run --read-only --tmpfs
                /tmp:exec -p 127.0.0.1:PORT:8080` (how README runs it)
  naive image   what a newcomer writes: the python:3.11-slim-bookworm stand-in
                (tests/infra/base-image) + `pip install flask waitress` + a tiny
                app.py, `CMD python app.py`
For each: `docker save` size and its gzip -6 (about what a pull moves), and cold
start, `docker run` -> first 200 on /healthz (rounds interleave the variants so load
on a shared machine hits them alike; round 0 warms caches and is not counted).
Results: the `## Image` section of bench/RESULTS.md.

The engine: DOCKER_HOST if it answers, else tests/infra/dockerd's (started here and
stopped again if it was not running). Needs root when it has to start one.

    python bench/image.py [--runs 10]
"""

from __future__ import annotations

import argparse
import gzip
import io
import os
import pathlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    ROOT,
    free_port,
    machine,
    median,
    start,
    stop,
    table,
    write_section,
)

DOCKERD = ROOT / "tests" / "infra" / "dockerd"
BASE_IMAGE = ROOT / "tests" / "infra" / "base-image"
NAIVE_TAG = "hello-bench/naive:latest"

NAIVE_APP = '''\
import os
from flask import Flask
from waitress import serve

app = Flask(__name__)


@app.route("/")
def index():
    return "Hello, world!\\n"


@app.route("/healthz")
def healthz():
    return "ok\\n"


if __name__ == "__main__":
    serve(app, host="0.0.0.0", port=int(os.environ.get("PORT", "8080")))
'''

NAIVE_DOCKERFILE = """\
FROM {base}
WORKDIR /app
RUN pip install flask waitress
COPY app.py .
EXPOSE 8080
CMD python app.py
"""


def say(message: str) -> None:
    print(f"bench/image: {message}", file=sys.stderr)


def client() -> str:
    return "/usr/bin/docker" if os.access("/usr/bin/docker", os.X_OK) else "docker"


def docker(*args: str, capture: bool = True, text: bool = True, **kwargs):
    return subprocess.run([client(), *args], check=True, capture_output=capture, text=text,
                          **kwargs)


def answers() -> bool:
    return subprocess.run([client(), "version"], capture_output=True, check=False).returncode == 0


def engine() -> bool:
    """Point DOCKER_HOST at an engine; True if this run started it (and must stop it)."""
    if os.environ.get("DOCKER_HOST") and answers():
        return False
    status = subprocess.run([str(DOCKERD), "status"], capture_output=True, text=True, check=False)
    if status.returncode == 0:
        os.environ["DOCKER_HOST"] = status.stdout.strip()
        return False
    say("starting an engine with tests/infra/dockerd")
    os.environ["DOCKER_HOST"] = subprocess.run(
        [str(DOCKERD), "start"], capture_output=True, text=True, check=True).stdout.strip()
    return True


def saved_sizes(ref: str, work: pathlib.Path) -> tuple[int, int]:
    """(bytes of `docker save`, bytes of its gzip -6)."""
    tar = work / "saved.tar"
    docker("save", "--output", str(tar), ref)
    raw = tar.read_bytes()
    tar.unlink()
    return len(raw), len(gzip.compress(raw, compresslevel=6))


def build_ours(base: str) -> str:
    # From source in the builder (as before), not a host-built dist/hello: the image
    # measured is the one a user's `docker build` makes.
    env = dict(os.environ, PYTHON_IMAGE=base, HELLO_BINARY_FROM="source")
    if not env.get("HELLO_COMMIT"):
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"],
                              capture_output=True, text=True, check=False)
        env["HELLO_COMMIT"] = head.stdout.strip() if head.returncode == 0 else "0" * 40
        if head.returncode:
            env.setdefault("SOURCE_DATE_EPOCH", str(int(time.time())))
    subprocess.run([str(ROOT / "build" / "image")], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    version = (ROOT / "hello" / "__init__.py").read_text().split('__version__ = "')[1].split('"')[0]
    return f"hello:{version}"


def build_naive(base: str, work: pathlib.Path) -> None:
    context = work / "naive"
    context.mkdir()
    (context / "app.py").write_text(NAIVE_APP)
    (context / "Dockerfile").write_text(NAIVE_DOCKERFILE.format(base=base))
    docker("build", "--tag", NAIVE_TAG, str(context), env=dict(os.environ, DOCKER_BUILDKIT="1"))


def copy_out_binary(ref: str, target: pathlib.Path) -> pathlib.Path:
    cid = docker("create", ref).stdout.strip()
    try:
        stream = docker("cp", f"{cid}:/hello", "-", text=False).stdout
    finally:
        docker("rm", "-f", cid)
    with tarfile.open(fileobj=io.BytesIO(stream)) as archive:
        target.write_bytes(archive.extractfile("hello").read())
    target.chmod(0o755)
    return target


def container_start(ref: str, run_args: list[str], container_port: int = 8080) -> float:
    """`docker run` (attached, so the client is the process timed) -> first 200."""
    name = f"hello-bench-{os.getpid()}-{time.monotonic_ns()}"
    port = free_port()
    argv = [client(), "run", "--rm", "--name", name, "-p", f"127.0.0.1:{port}:{container_port}",
            *run_args, ref]
    try:
        process, took = start(argv, port)
    finally:
        # SIGKILL through the engine: the naive image's python, as PID 1, ignores
        # SIGTERM and would hold every round for docker's 10 s stop timeout.
        subprocess.run([client(), "rm", "-f", name], capture_output=True, check=False)
    stop(process)
    return took


def bare_start(binary: pathlib.Path, work: pathlib.Path) -> float:
    tmpdir = pathlib.Path(tempfile.mkdtemp(dir=work, prefix="tmp-"))
    port = free_port()
    process, took = start([str(binary), "serve", "--host", "127.0.0.1", "--port", str(port)],
                          port, {"TMPDIR": str(tmpdir), "HELLO_ACCESS_LOG": "false"})
    stop(process)
    shutil.rmtree(tmpdir, ignore_errors=True)
    return took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()

    started_engine = engine()
    try:
        engine_version = docker("version", "--format", "{{.Server.Version}}").stdout.strip()
        base = os.environ.get("PYTHON_IMAGE") or subprocess.run(
            [str(BASE_IMAGE)], capture_output=True, text=True, check=True).stdout.strip()
        with tempfile.TemporaryDirectory(prefix="hello-bench-image-") as temp:
            work = pathlib.Path(temp)
            say(f"building our image (build/image, base {base})")
            ours = build_ours(base)
            say("building the naive image")
            build_naive(base, work)
            binary = copy_out_binary(ours, work / "hello")

            variants = {
                "bare binary (/hello from the image)": lambda: bare_start(binary, work),
                f"{ours} (--read-only --tmpfs /tmp:exec)": lambda: container_start(
                    ours, ["--read-only", "--tmpfs", "/tmp:exec"]),
                "naive image (stand-in base + pip install flask waitress)": lambda: (
                    container_start(NAIVE_TAG, [])),
            }
            samples: dict[str, list[float]] = {name: [] for name in variants}
            for round_ in range(args.runs + 1):
                for name, measure in variants.items():
                    took = measure()
                    if round_:
                        samples[name].append(took)
                say(f"start round {round_}/{args.runs}")

            sizes = {ours: saved_sizes(ours, work), NAIVE_TAG: saved_sizes(NAIVE_TAG, work)}
            file_size = binary.stat().st_size
            file_gzip = len(gzip.compress(binary.read_bytes(), compresslevel=6))
    finally:
        if started_engine:
            subprocess.run([str(DOCKERD), "stop"], capture_output=True, check=False)

    names = list(variants)
    base_start = median(samples[names[0]])
    ours_start = median(samples[names[1]])
    size_rows = [(names[0], file_size, file_gzip), (names[1], *sizes[ours]),
                 (names[2], *sizes[NAIVE_TAG])]
    rows = []
    for (name, raw, packed) in size_rows:
        starts = [s * 1000 for s in samples[name]]
        rows.append([
            name, f"{raw / 1e6:.1f}", f"{packed / 1e6:.2f}",
            f"{packed / sizes[ours][1]:.2f}x",
            round(median(starts)), round(max(starts)),
            f"{median(starts) / 1000 / base_start:.2f}x",
            f"{median(starts) / 1000 / ours_start:.2f}x",
        ])
    headers = ["variant", "size MB", "gzip MB", "gzip vs ours",
               "start ms (median)", "start ms (max)", "start vs bare", "start vs ours"]
    result = table(headers, rows)
    print(result)
    body = "\n".join([
        f"Machine: {machine()}. Engine: dockerd {engine_version}, overlay2, ports "
        "published on 127.0.0.1 (docker-proxy). "
        f"Cold start: {args.runs} rounds, variants interleaved, `docker run` (attached, "
        "--rm) -> first 200 on /healthz; the bare binary: exec -> first 200. "
        "Size: `docker save` of the one image, and its gzip -6 (about what a pull "
        "moves); for the bare binary, the file. MB = 10^6 bytes.",
        "",
        result,
        "",
        "The naive image is built on the debootstrap stand-in for python:3.11-slim-bookworm "
        "(no registry here), which is larger than the real one (Debian's python3 with its "
        "dependencies, not a trimmed /usr/local build; the real one is not measured "
        "here), so that row overstates the naive size but not its "
        "start time. Targets: gzip <= 8 MB, uncompressed <= 20 MB.",
    ])
    write_section("Image", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
