"""The real server (python -m hello) on an ephemeral port, hit by a real client."""

import http.client
import json
import re
import signal
import socket
import threading
import time

import pytest

from hello.server import SAME_SIGNAL_SECONDS
from tests.conftest import (
    ROOT,
    Service,
    child_env,
    free_port,
    http_get,
    http_status,
    python_hello,
    require,
    wait_until,
)
from tests.drain import KeepAlive, assert_drained, listening, refused, request_read, run_drain


def raw_exchange(port: int, payload: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes, read until the server closes or answers a full head."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(payload)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            chunks.append(chunk)
            if b"\r\n\r\n" in b"".join(chunks):
                break
        return b"".join(chunks)


def status_of(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1])


def log_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_serves_every_route(serve_unfrozen):
    service = serve_unfrozen()
    for path, status in [("/", 200), ("/healthz", 200), ("/readyz", 200), ("/version", 200),
                         ("/whoami", 200), ("/openapi.json", 200), ("/nope", 404)]:
        got, headers, _ = http_get(service.url + path)
        assert got == status, path
        assert headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("accept", ["application/json", "text/plain"])
def test_whoami_reports_the_clients_own_address_and_port(serve_unfrozen, accept):
    service = serve_unfrozen()
    connection = http.client.HTTPConnection("127.0.0.1", service.port, timeout=5)
    connection.connect()
    address, port = connection.sock.getsockname()[:2]
    connection.request("GET", "/whoami", headers={"Accept": accept})
    response = connection.getresponse()
    body = response.read().decode()
    connection.close()
    assert response.status == 200
    if accept == "text/plain":
        assert f"\nRemoteAddr: {address}:{port}\n" in body, body
    else:
        report = json.loads(body)
        assert (report["remote_addr"], str(report["remote_port"])) == (address, str(port))


def test_threads_bounds_concurrent_requests(serve_unfrozen):
    """--threads 1: a second request waits for the first (waitress's default is 4)."""
    service = serve_unfrozen("--threads", "1")
    slow = KeepAlive("127.0.0.1", service.port)
    slow.send("/whoami?wait=1s")
    wait_until(lambda: request_read(service.port, slow.local_port), 10, what="the slow request")
    began = time.monotonic()  # "/", not a health route: those may get workers of their own
    assert http_get(service.url + "/", timeout=10)[0] == 200
    assert time.monotonic() - began > 0.5, "answered beside the one worker's slow request"
    assert slow.receive()[0] == 200
    slow.close()


def test_server_header_names_hello_without_version(serve_unfrozen):
    _, headers, _ = http_get(serve_unfrozen().url + "/")
    assert headers["Server"] == "hello"


def test_wrong_method_is_405(serve_unfrozen):
    service = serve_unfrozen()
    connection = http.client.HTTPConnection("127.0.0.1", service.port, timeout=5)
    connection.request("DELETE", "/")
    response = connection.getresponse()
    assert response.status == 405
    assert json.loads(response.read()) == {"error": "Method Not Allowed", "status": 405}


def test_oversized_headers_are_rejected_and_server_keeps_serving(serve_unfrozen):
    service = serve_unfrozen("--max-header-bytes", "4096")
    reply = raw_exchange(service.port, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: "
                         + b"a" * 8000 + b"\r\n\r\n")
    assert status_of(reply) == 431
    assert b"\r\nX-Content-Type-Options: nosniff\r\n" in reply
    assert http_get(service.url + "/healthz")[0] == 200


def test_oversized_body_is_413_and_server_keeps_serving(serve_unfrozen):
    service = serve_unfrozen("--max-body-bytes", "1024")
    reply = raw_exchange(service.port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4096"
                         b"\r\n\r\n" + b"x" * 4096)
    assert status_of(reply) == 413
    assert b"\r\nX-Content-Type-Options: nosniff\r\n" in reply
    assert http_get(service.url + "/healthz")[0] == 200


def test_waitress_own_answers_get_a_full_access_line(serve_unfrozen):
    service = serve_unfrozen("--max-body-bytes", "1024")
    reply = raw_exchange(service.port, b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 4096"
                         b"\r\n\r\n" + b"x" * 4096)
    assert status_of(reply) == 413
    _, out, _ = service.stop()
    lines = [line for line in log_lines(out) if line["event"] == "request" and line["status"] != 200]
    assert len(lines) == 1, out  # the one besides the fixture's /healthz probes
    line = lines[0]
    assert (line["level"], line["method"], line["path"], line["status"], line["remote"]) == \
        ("info", "POST", "/x", 413, "127.0.0.1")
    length = re.search(rb"\r\nContent-Length: (\d+)\r\n", reply)
    assert length and line["bytes"] == int(length.group(1)) > 0, reply
    # milliseconds to the microsecond, as for the app's own answers
    assert isinstance(line["duration_ms"], float) and 0 <= line["duration_ms"] < 1000


def test_default_body_limit_is_one_mib(serve_unfrozen):
    service = serve_unfrozen()
    reply = raw_exchange(service.port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: "
                         + str((1 << 20) + 1).encode() + b"\r\n\r\n")
    assert status_of(reply) == 413


@pytest.mark.parametrize("line", [b"BLAH\r\n\r\n", b"GET / HTTP/9.9 extra\r\n\r\n",
                                  b"\x00\x01\x02 / HTTP/1.1\r\n\r\n"])
def test_malformed_request_line_is_400_and_server_keeps_serving(serve_unfrozen, line):
    service = serve_unfrozen()
    reply = raw_exchange(service.port, line)
    assert status_of(reply) == 400
    assert b"\r\nX-Content-Type-Options: nosniff\r\n" in reply
    assert http_get(service.url + "/healthz")[0] == 200
    _, out, _ = service.stop()
    assert 400 in [entry.get("status") for entry in log_lines(out) if entry["event"] == "request"]


def test_access_log_is_one_json_line_per_request_on_stdout(serve_unfrozen):
    service = serve_unfrozen()
    http_get(service.url + "/nope?x=1")
    code, out, err = service.stop()
    assert code == 0
    requests = [line for line in log_lines(out) if line["event"] == "request"]
    probe = [line for line in requests if line["path"] == "/nope"]
    assert len(probe) == 1
    line = probe[0]
    assert {"time", "method", "path", "status", "bytes", "duration_ms", "remote"} <= set(line)
    assert (line["method"], line["status"], line["remote"]) == ("GET", 404, "127.0.0.1")
    assert line["bytes"] > 0
    events = [line["event"] for line in log_lines(out)]
    assert events[0] == "listening"
    assert "draining" in events
    assert events[-1] == "stopped"
    assert err == ""


def test_the_listening_line_says_where_who_and_how_many_threads(serve_unfrozen):
    """The first line a supervisor reads: address, port, pid, threads and version."""
    from hello.buildinfo import build_info
    service = serve_unfrozen("--threads", "3")
    code, out, _ = service.stop()
    first = log_lines(out)[0]
    del first["time"]
    assert first == {"level": "info", "event": "listening", "host": "127.0.0.1",
                     "port": service.port, "pid": service.process.pid, "threads": 3,
                     "version": build_info()["version"]}
    assert code == 0


def test_no_access_log_and_text_format(serve_unfrozen):
    service = serve_unfrozen("--no-access-log", "--log-format", "text")
    http_get(service.url + "/")
    _, out, _ = service.stop()
    assert "event=request" not in out
    assert "event=listening" in out
    assert "{" not in out


def test_port_in_use_is_one_line_and_exit_1():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        service = Service(python_hello("--host", "127.0.0.1", "--port", str(port)), port,
                          env=child_env(), cwd=ROOT)
        code = service.process.wait(15)
        err = service.process.stderr.read()
    assert code == 1
    assert f"cannot listen on 127.0.0.1:{port}" in err
    assert err.count("\n") == 1


def hold_request(url: str, results: list) -> threading.Thread:
    def run():
        try:
            status, headers, _ = http_get(url, timeout=30)
            results.append((status, headers.get("Connection")))
        except OSError as error:
            results.append((None, repr(error)))
    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_drains_keep_alive_clients_then_exits_0(serve_unfrozen, signum):
    """In flight: answered with Connection: close; idle: closed; late: /readyz 503."""
    service = serve_unfrozen()
    outcome = run_drain(
        "127.0.0.1", service.port, lambda: service.process.send_signal(signum),
        read_by_server=lambda client: request_read(service.port, client.local_port),
        draining=lambda: not listening(service.port))
    code, out, err = service.wait()
    assert_drained(outcome)
    assert refused("127.0.0.1", service.port), "the listener is closed once draining"
    assert code == 0
    assert time.monotonic() - outcome.signalled_at < 5
    events = log_lines(out)
    assert [line["event"] for line in events if line["event"] != "request"] == \
        ["listening", "draining", "stopped"], out
    assert events[-1]["threads_left"] == 0
    assert "drain timeout" not in out + err
    assert err == ""


def test_a_request_half_received_at_the_signal_is_answered_not_cut(serve_unfrozen):
    """Only idle connections are closed: one whose request head is still arriving
    (slower than the 0.5 s idle grace) is answered, with Connection: close."""
    service = serve_unfrozen()
    inflight = KeepAlive("127.0.0.1", service.port)
    inflight.send("/whoami?wait=3s")  # keeps the drain going meanwhile
    wait_until(lambda: request_read(service.port, inflight.local_port), 10,
               what="the in-flight request to be read")
    with socket.create_connection(("127.0.0.1", service.port), timeout=10) as slow:
        slow.sendall(b"GET /readyz HTTP/1.1\r\n")
        wait_until(lambda: request_read(service.port, slow.getsockname()[1]), 10,
                   what="the first half to be read")
        service.process.send_signal(signal.SIGTERM)
        wait_until(lambda: not listening(service.port), 5, what="draining")
        time.sleep(1.0)  # longer than the idle grace: an idle connection would be closed now
        slow.sendall(b"Host: x\r\n\r\n")
        reply = b""
        while b"\r\n\r\n" not in reply:
            chunk = slow.recv(4096)
            if not chunk:
                break
            reply += chunk
    assert status_of(reply) == 503, reply
    assert b"\r\nConnection: close\r\n" in reply, reply
    status, headers, _ = inflight.receive()
    inflight.close()
    code, out, err = service.wait()
    assert (status, headers.get("Connection"), code) == (200, "close", 0)
    assert "drain timeout" not in out + err


def _sigterm_mid_request(serve_unfrozen, path: str):
    """A server, a request to path in flight, SIGTERM, the drain begun: (service, the
    request's thread, its results, when the signal went)."""
    service = serve_unfrozen()
    results: list = []
    holder = hold_request(service.url + path, results)
    wait_until(lambda: _has_connection(service.port), 5, what="request in flight")
    service.process.send_signal(signal.SIGTERM)
    first = time.monotonic()
    wait_until(lambda: _refused(service.port), 2, interval=0.002, what="drain started")
    return service, holder, results, first


def test_one_signal_delivered_twice_at_once_is_one_drain(serve_unfrozen):
    """Sent to the process group, a signal reaches the binary's hello directly and again
    through its bootloader: within SAME_SIGNAL_SECONDS the same signal is one signal,
    and the request in flight is answered (it was cut, exit 143)."""
    service, holder, results, first = _sigterm_mid_request(serve_unfrozen, "/whoami?wait=1s")
    service.process.send_signal(signal.SIGTERM)  # the first handled: pending ones would merge
    assert time.monotonic() - first < SAME_SIGNAL_SECONDS, "too slow to tell: run it again"
    assert service.process.wait(10) == 0
    holder.join(10)
    assert results and results[0][0] == 200, results
    events = [line["event"] for line in log_lines(service.process.stdout.read())]
    assert events.count("draining") == 1 and events[-1] == "stopped", events
    assert "second signal, exiting now" not in events


def test_second_signal_exits_at_once(serve_unfrozen):
    service, holder, results, first = _sigterm_mid_request(serve_unfrozen, "/whoami?wait=20s")
    # the same signal sooner than SAME_SIGNAL_SECONDS is the same delivery (next test)
    wait_until(lambda: time.monotonic() - first > SAME_SIGNAL_SECONDS, 2, what="a moment")
    started = time.monotonic()
    service.process.send_signal(signal.SIGTERM)
    code = service.process.wait(5)
    assert time.monotonic() - started < 2
    assert code == 128 + signal.SIGTERM
    lines = log_lines(service.process.stdout.read())
    assert [line["event"] for line in lines[-2:]] == ["draining", "second signal, exiting now"]
    del lines[-1]["time"]
    assert lines[-1] == {"level": "info", "event": "second signal, exiting now", "signal": "SIGTERM"}
    holder.join(10)
    assert results and results[0][0] is None


def test_drain_timeout_bounds_the_wait(serve_unfrozen):
    service = serve_unfrozen("--drain-timeout", "500ms")
    results: list = []
    holder = hold_request(service.url + "/whoami?wait=20s", results)
    wait_until(lambda: _has_connection(service.port), 5, what="request in flight")
    started = time.monotonic()
    service.process.send_signal(signal.SIGTERM)
    code, out, err = service.wait()
    assert code == 0
    assert time.monotonic() - started < 4
    assert "drain timeout" in err
    holder.join(25)


def _has_connection(port: int) -> bool:
    """True once some client holds an established connection to port."""
    with open("/proc/net/tcp", encoding="ascii") as table:
        rows = table.read().splitlines()[1:]
    local = f":{port:04X}"
    return any(row.split()[1].endswith(local) and row.split()[3] == "01" for row in rows)


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    return False


def test_socket_activation_serves_on_the_inherited_listener():
    import shutil
    activate = shutil.which("systemd-socket-activate")
    require(activate is not None, "systemd-socket-activate is missing (apt-get install systemd)")
    port = free_port()
    # systemd-socket-activate starts its command with none of its own environment:
    # what hello needs (and, under make mutation, the mutant) goes by -E.
    passed = [f"-E{key}={value}" for key, value in child_env({"HELLO_PORT": "1"}).items()]
    service = Service([activate, "-l", f"127.0.0.1:{port}", *passed, *python_hello("serve")],
                      port, env=child_env(), cwd=ROOT)
    try:
        # The first connection makes systemd-socket-activate exec hello with LISTEN_FDS=1;
        # HELLO_PORT=1 proves the port came from the inherited socket, not a bind.
        wait_until(lambda: http_status(service.url + "/healthz") == 200, 15,
                   what="socket-activated /healthz")
    finally:
        code, out, _ = service.stop()
    assert code == 0
    listening = [line for line in log_lines(out) if line["event"] == "listening"][0]
    assert listening["port"] == port
