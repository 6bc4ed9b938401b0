"""When the runtime runs short, `hello serve` holds: clients that leave, a queue that
backs up, probes at the connection limit, a low open-file limit, stalled log pipes, a
full /tmp, caches in between. A real server process and real raw-socket clients.
(Memory under a real cgroup: tests/binary/test_memory_limit.py; the unpack in
$TMPDIR: tests/binary/test_unpack.py.)
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import socket
import sys
import threading
import time

import pytest

from hello.limits import fitting_open_files
from tests.conftest import at_once, http_get, wait_until
from tests.server.rawhttp import exchange, statuses, timed_get
from tests.server.test_hostile import close_then_stop, start_raw

CLOSE_WAIT = "08"  # the state column of /proc/net/tcp


def get(port: int, path: str, timeout: float = 5.0) -> tuple[int | None, dict]:
    """(status, headers) of a GET on a fresh connection; None if it failed."""
    try:
        reply, _ = exchange(port, f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                            .encode(), timeout=timeout)
    except OSError:
        return None, {}
    head = reply.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    found = statuses(reply)
    headers = dict(line.split(": ", 1) for line in head[1:] if ": " in line)
    return (found[0] if found else None), headers


def close_wait_sockets(port: int) -> int:
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in pathlib.Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == CLOSE_WAIT:
                count += 1
    return count


def waiting_clients(port: int, count: int, path: str = "/whoami?wait=30s") -> list[socket.socket]:
    clients = []
    for _ in range(count):
        client = socket.create_connection(("127.0.0.1", port), timeout=10)
        client.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        clients.append(client)
    return clients


def leave(clients: list[socket.socket]) -> None:
    for client in clients:
        try:
            client.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        client.close()


def test_work_for_clients_that_left_is_cut_short_and_leaves_no_close_wait():
    """200 clients asked for ?wait=30s and gave up: their connections were left in
    CLOSE-WAIT, each still queued for its 30 s (about 12 min of work for 4 workers), and
    GET / timed out behind them. Now a client's FIN ends its waits at once (hello cannot
    tell a client that left from one that half-closed, so its requests are answered,
    briefly, and it is closed), and a request on a connection already closed is not run
    at all (its access line says 499)."""
    service = start_raw("--threads", "4").wait_healthy()
    clients = waiting_clients(service.port, 200)
    try:
        wait_until(lambda: get(service.port, "/readyz", 3)[0] == 503, 5,
                   what="readiness to say saturated")
        leave(clients)
        wait_until(lambda: close_wait_sockets(service.port) == 0, 3, what="no CLOSE-WAIT left")
        took = timed_get(service.port, "/", 2.0)
        assert took is not None and took < 1.0, took
        assert get(service.port, "/readyz")[0] == 200
    finally:
        code, out, err = service.stop()
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    waits = [line for line in lines if line.get("path") == "/whoami"]
    assert len(waits) == 200 and {line["status"] for line in waits} <= {200, 499}
    assert max(line["duration_ms"] for line in waits) < 5000  # none ran its 30 s


def test_a_request_that_waited_past_the_queue_timeout_is_503_not_run_late():
    service = start_raw("--threads", "1", "--queue-timeout", "500ms").wait_healthy()
    holder = waiting_clients(service.port, 1, "/whoami?wait=4s")
    try:
        time.sleep(0.3)  # the one worker has it
        began = time.monotonic()
        status, headers = get(service.port, "/", 5)
        took = time.monotonic() - began
        assert status == 503 and headers["Retry-After"] == "1", (status, headers)
        assert 0.5 <= took < 2.0, took  # shed by the loop's check each second, not at 4 s
    finally:
        leave(holder)
        code, out, err = service.stop()
    assert code == 0, err
    [shed] = [json.loads(line) for line in out.splitlines() if '"status":503' in line]
    assert shed["path"] == "/" and shed["method"] == "GET"


def test_readyz_says_saturated_while_requests_wait_and_ready_once_they_do_not():
    service = start_raw("--threads", "1").wait_healthy()
    holder = waiting_clients(service.port, 1, "/whoami?wait=3s")
    queued = []
    try:
        time.sleep(0.2)
        assert get(service.port, "/readyz")[0] == 200  # busy, nothing waiting yet
        queued = waiting_clients(service.port, 1, "/")
        status, headers = wait_until(
            lambda: (answer := get(service.port, "/readyz"))[0] == 503 and answer, 3,
            what="saturated")
        assert headers["Retry-After"] == "1"
        _, _, body = http_get(service.url + "/readyz")
        assert json.loads(body) == {"status": "saturated"}
        wait_until(lambda: get(service.port, "/readyz")[0] == 200, 6, what="ready again")
    finally:
        leave(holder + queued)
        close_then_stop(service, [])


def test_a_waiting_request_ends_when_its_client_leaves():
    service = start_raw("--threads", "1").wait_healthy()
    try:
        leaver = waiting_clients(service.port, 1, "/whoami?wait=20s")
        time.sleep(0.3)
        leave(leaver)
        took = timed_get(service.port, "/", 3.0)  # the only worker is free again
        assert took is not None and took < 1.0, took
    finally:
        code, _, err = service.stop()
    assert code == 0, err


@pytest.mark.load
def test_after_a_flood_of_clients_that_leave_get_answers_within_2_s():
    """300 connections asking ?wait=2s over and over, then all gone: GET / kept failing for
    113 s after such a flood stopped (60 s of it)."""
    service = start_raw("--no-access-log").wait_healthy()
    stop = threading.Event()
    open_now: set[socket.socket] = set()
    guard = threading.Lock()

    def flooder():
        while not stop.is_set():
            try:
                client = socket.create_connection(("127.0.0.1", service.port), timeout=30)
            except OSError:
                continue
            with guard:
                open_now.add(client)
            try:
                client.sendall(b"GET /whoami?wait=2s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                client.recv(64)
            except OSError:
                pass
            with guard:
                open_now.discard(client)
            client.close()

    threads = [threading.Thread(target=flooder, daemon=True) for _ in range(300)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(10)
        stop.set()
        with guard:
            leave(list(open_now))
        began = time.monotonic()
        wait_until(lambda: timed_get(service.port, "/", 1.0) is not None, 2.0,
                   what="GET / after the flood")
        assert time.monotonic() - began < 2.0
    finally:
        stop.set()
        for thread in threads:
            thread.join(35)
        code, err = close_then_stop(service, [])
    assert code == 0, err


@pytest.mark.load
def test_probes_keep_their_lane_at_the_connection_limit():
    """300 clients reconnecting at once at --connection-limit 20: probes whose connection
    came past the limit and its headroom were refused with the rest (1 in 70 here, 38 %
    in a review's flood); at least 99.9 % are answered."""
    service = start_raw("--no-access-log", "--connection-limit", "20").wait_healthy()
    stop = threading.Event()

    def reconnecting():
        while not stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", service.port), timeout=30) as client:
                    client.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                    while client.recv(65536):
                        pass
            except OSError:
                pass

    threads = [threading.Thread(target=reconnecting, daemon=True) for _ in range(300)]
    for thread in threads:
        thread.start()
    probes = []
    try:
        time.sleep(2)
        for _ in range(1000):
            probes.append(timed_get(service.port, "/healthz", 1.0))
            time.sleep(0.02)
    finally:
        stop.set()
        for thread in threads:
            thread.join(35)
        code, err = close_then_stop(service, [])
    failed = sum(probe is None for probe in probes)
    assert failed <= 1, f"{failed} of {len(probes)} probes failed"
    assert code == 0, err


def test_a_hard_limit_of_64_open_files_still_serves_200_clients():
    """A container's nofile=64: half the limit less 192 left a connection limit of 1;
    200 clients at once got 100 answers, the rest 503s or closed unanswered (and in a
    review's run, 55 answers in 20 s). Now 24 connections fit: every client is answered,
    a few past the limit and its headroom with 503 and Retry-After."""
    service = start_raw("--no-access-log", nofile=(64, 64)).wait_healthy()
    answers: list[int | None] = []
    guard = threading.Lock()

    def client():
        status, headers = get(service.port, "/", 20.0)
        with guard:
            answers.append(status if status != 503 or headers.get("Retry-After") == "1" else 0)

    try:
        at_once(client, 200, 30)
    finally:
        code, err = close_then_stop(service, [])
    assert set(answers) <= {200, 503} and len(answers) == 200, answers
    assert answers.count(200) >= 180, answers.count(200)
    [warning] = [json.loads(line) for line in err.splitlines() if "open-file" in line]
    assert warning["connection_limit"] == fitting_open_files(64)[0] == 24
    assert code == 0, err


FAILING = """
import sys
from hello import app, cli

make = app.create_app


def create_app(*args, **kwargs):  # a route that fails: one error line on stderr each
    made = make(*args, **kwargs)
    made.add_url_rule("/fail/<name>", "fail", lambda name: 1 / 0)
    return made


app.create_app = create_app
sys.exit(cli.main(["serve", "--host", "127.0.0.1", "--threads", "2", "--port", sys.argv[1]]))
"""


def test_with_stdout_and_stderr_both_stalled_it_serves_and_drains():
    """Both pipes full and never read (a stalled log driver), with an error line for every
    request (each unique, so no repeat limit applies: the disk-full errors were such): the
    stderr writes blocked the workers, /healthz timed out and SIGTERM did not end it."""
    out_read, out_write = os.pipe()
    err_read, err_write = os.pipe()
    service = start_raw(stdout=out_write, stderr=err_write,
                        argv=[sys.executable, "-c", FAILING])
    os.close(out_write)
    os.close(err_write)
    try:
        service.wait_healthy()
        for index in range(1500):  # ~1500 error lines: past both pipes and both queues
            reply, _ = exchange(service.port, f"GET /fail/{index} HTTP/1.1\r\nHost: t\r\n"
                                "Connection: close\r\n\r\n".encode(), timeout=5)
            assert statuses(reply) == [500], f"request {index}: {reply[:60]!r}"
        assert timed_get(service.port, "/healthz", 1.0) is not None
        service.process.send_signal(signal.SIGTERM)
        assert service.process.wait(timeout=15) == 0
    finally:
        if service.process.poll() is None:
            service.process.kill()
            service.process.wait(5)
        os.close(out_read)
        os.close(err_read)


@pytest.mark.parametrize("path", ["/", "/healthz", "/readyz", "/version", "/whoami", "/metrics",
                                  "/status/418", "/openapi.json", "/nowhere"])
def test_every_answer_says_no_store(serve_unfrozen, path):
    """A caching proxy or CDN in between stored /readyz and /whoami answers and served
    them again (REDbot: "allows all caches to store it")."""
    service = serve_unfrozen()
    status, headers = get(service.port, path)
    assert status is not None and headers["Cache-Control"] == "no-store", headers


def test_the_servers_own_error_answers_say_no_store_too(serve_unfrozen):
    service = serve_unfrozen()
    reply, _ = exchange(service.port, b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n"
                        b"Transfer-Encoding: chunked\r\n\r\n")
    assert statuses(reply) == [400] and b"\r\nCache-Control: no-store\r\n" in reply


@pytest.mark.parametrize("request_bytes, status", [
    (b"GET / HTTP/1.1\r\nHost: t\r\n\r\n", 200),
    (b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello", 200),
    (b"GET /whoami?wait=200ms HTTP/1.1\r\nHost: t\r\n\r\n", 200),
])
def test_a_client_that_half_closes_after_its_request_still_gets_the_answer(
        serve_unfrozen, request_bytes, status):
    """`shutdown(SHUT_WR)` after a whole request (netcat -N, some scripts) is the same FIN a
    client that left sends: taken for gone, 31 of 50 such GETs and every wait went
    unanswered. Its requests are answered, then the connection closes."""
    service = serve_unfrozen("--no-access-log")
    for attempt in range(20):
        with socket.create_connection(("127.0.0.1", service.port), timeout=5) as client:
            client.sendall(request_bytes)
            client.shutdown(socket.SHUT_WR)
            reply = b""
            while chunk := client.recv(65536):
                reply += chunk
        assert statuses(reply) == [status], (attempt, reply[:80])
        if b"/echo" in request_bytes:
            assert reply.endswith(b"\r\n\r\nhello")


def test_an_unread_stdout_holds_a_megabyte_of_log_lines_however_long_they_are():
    """Each access line carries the client's path (up to --max-header-bytes, six times that
    JSON-escaped): 2000 queued lines let clients grow an unread stdout by 130 MB, and a
    160 MiB container was OOM-killed after ~1900 requests."""
    reader, writer = os.pipe()
    service = start_raw(stdout=writer)
    os.close(writer)
    try:
        service.wait_healthy()
        path = "/" + "%01" * 10_000
        for _ in range(20):
            exchange(service.port, f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                     .encode(), timeout=5)

        def resident_mb() -> float:
            status = pathlib.Path(f"/proc/{service.process.pid}/status").read_text()
            return int(status.split("VmRSS:")[1].split()[0]) / 1024
        before = resident_mb()
        for _ in range(600):  # past the pipe (64 KiB) and the queue's megabyte, many times
            exchange(service.port, f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                     .encode(), timeout=5)
        grown = resident_mb() - before
        assert grown < 12, f"{grown:.0f} MB for 600 unread long lines"  # was 60 MB and up
        assert timed_get(service.port, "/healthz", 2.0) is not None
    finally:
        code, err = close_then_stop(service, [])
        os.close(reader)
    assert code == 0, err
    assert '"dropped"' in err  # said on stderr, counted
