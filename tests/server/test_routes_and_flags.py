"""The routes and flags through the real server (python -m hello) and a real client."""

import json
import time
import urllib.request

from tests.conftest import http_get, wait_until
from tests.server.rawhttp import exchange, statuses


def post(url: str, data: bytes, content_type: str | None = None):
    request = urllib.request.Request(url, data=data, method="POST",
                                     headers={"Content-Type": content_type} if content_type else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def requests_logged(out: str) -> list[dict]:
    return [line for line in map(json.loads, out.splitlines()) if line["event"] == "request"]


def test_routes_and_headers_through_the_server(serve_unfrozen):
    service = serve_unfrozen("--header", "X-Env: test", "--header", "Cache-Control: no-store")
    status, headers, body = http_get(service.url + "/status/418")
    assert (status, json.loads(body)) == (418, {"status": 418})
    assert headers["X-Env"] == "test" and headers["Cache-Control"] == "no-store"
    status, headers, body = post(service.url + "/echo", b'{"a": 1}', "application/json")
    assert (status, body, headers["Content-Type"]) == (200, b'{"a": 1}', "application/json")
    status, headers, _ = http_get(service.url + "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    # A request is counted once its body has been sent, which may be just after the
    # client has read it: poll (a few ms) rather than read /metrics once.
    counted = (b'hello_requests_total{route="/status/<code>",method="GET",status="418"} 1',
               b'hello_requests_total{route="/echo",method="POST",status="200"} 1')
    wait_until(lambda: all(line in http_get(service.url + "/metrics")[2] for line in counted),
               5.0, what="both requests counted in /metrics")


def test_every_status_code_is_answered_as_itself_through_waitress(serve_unfrozen):
    """Through the real server, not only the Flask test client: waitress refuses
    hop-by-hop headers from an app with a 500 (407's Proxy-Authenticate was one)."""
    service = serve_unfrozen("--no-access-log")
    for code in range(200, 600):
        status, headers, _ = http_get(service.url + f"/status/{code}")
        assert status == code, f"/status/{code} answered {status}"
    status, headers, _ = http_get(service.url + "/status/401")
    assert headers["WWW-Authenticate"] == 'Basic realm="hello"'


def test_readiness_switch_needs_admin(serve_unfrozen):
    plain = serve_unfrozen()
    assert post(plain.url + "/readyz/disable", b"")[0] == 404
    admin = serve_unfrozen("--admin")
    assert post(admin.url + "/readyz/disable", b"")[0] == 200
    assert http_get(admin.url + "/readyz")[0] == 503
    assert http_get(admin.url + "/healthz")[0] == 200
    assert post(admin.url + "/readyz/enable", b"")[0] == 200
    assert http_get(admin.url + "/readyz")[0] == 200


def test_random_delay_and_error_spare_health(serve_unfrozen):
    service = serve_unfrozen("--random-delay", "300ms-400ms", "--random-error", "1")
    began = time.monotonic()
    assert http_get(service.url + "/")[0] == 500
    assert time.monotonic() - began >= 0.3
    began = time.monotonic()
    assert http_get(service.url + "/healthz")[0] == 200
    assert http_get(service.url + "/readyz")[0] == 200
    assert time.monotonic() - began < 0.3


def test_trusted_proxy_names_the_client_in_the_access_log(serve_unfrozen):
    trusted = serve_unfrozen("--trusted-proxies", "127.0.0.0/8")
    http_get(trusted.url + "/", headers={"X-Forwarded-For": "203.0.113.9"})
    untrusted = serve_unfrozen("--trusted-proxies", "10.0.0.0/8")
    http_get(untrusted.url + "/", headers={"X-Forwarded-For": "203.0.113.9"})
    assert [line["remote"] for line in requests_logged(trusted.stop()[1])
            if line["path"] == "/"] == ["203.0.113.9"]
    assert [line["remote"] for line in requests_logged(untrusted.stop()[1])
            if line["path"] == "/"] == ["127.0.0.1"]


def test_forwarding_headers_reach_the_app_only_from_a_trusted_peer(serve_unfrozen):
    headers = {"X-Forwarded-For": "203.0.113.9", "Accept": "application/json"}
    trusted = serve_unfrozen("--trusted-proxies", "127.0.0.1")
    seen = json.loads(http_get(trusted.url + "/whoami", headers=headers)[2])["headers"]
    assert seen.get("X-Forwarded-For") == "203.0.113.9"
    untrusted = serve_unfrozen("--trusted-proxies", "10.0.0.0/8")
    seen = json.loads(http_get(untrusted.url + "/whoami", headers=headers)[2])["headers"]
    assert "X-Forwarded-For" not in seen


def test_text_log_escapes_an_encoded_newline(serve_unfrozen):
    service = serve_unfrozen("--log-format", "text")
    reply, _ = exchange(service.port, b"GET /x%0Alevel=error%20event=forged HTTP/1.1\r\nHost: x\r\n"
                        b"Connection: close\r\n\r\n")
    assert statuses(reply) == [404]
    _, out, _ = service.stop()
    [line] = [line for line in out.splitlines() if "event=request" in line and "status=404" in line]
    assert 'path="/x\\nlevel=error event=forged"' in line
    assert not any(line.startswith("level=error") for line in out.splitlines())
