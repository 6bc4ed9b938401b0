"""Every route, header and error of the Flask app, through the test client: /status,
/echo, /metrics, the readiness switch, injected latency and errors, extra headers,
the client behind a proxy."""

import io
import ipaddress
import json
import random

import pytest

from hello import __version__
from hello.app import create_app
from hello.config import load
from hello.forwarded import client_address
from hello.logs import LogWriter, logfmt_value
from tests.conftest import git_head, require


def test_index_is_plain_text_hello_world(client):
    response = client.get("/")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    assert response.get_data(as_text=True) == "Hello World!"


def test_index_head_has_no_body(client):
    response = client.head("/")
    assert response.status_code == 200
    assert response.data == b""
    assert response.headers["Content-Length"] == str(len("Hello World!"))


def test_message_is_configurable():
    app = create_app(load({"message": "Hi there"}, {}))
    assert app.test_client().get("/").get_data(as_text=True) == "Hi there"


def test_message_from_env():
    app = create_app(load({}, {"HELLO_MESSAGE": "from env"}))
    assert app.test_client().get("/").get_data(as_text=True) == "from env"


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz_follows_readiness(settings):
    ready = {"value": True}
    client = create_app(settings, is_ready=lambda: ready["value"]).test_client()
    assert client.get("/readyz").status_code == 200
    ready["value"] = False
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json() == {"status": "draining"}


def test_version_reports_build_info(client):
    body = client.get("/version").get_json()
    assert set(body) == {"name", "version", "commit", "build_date", "python", "frozen"}
    assert body["version"] == __version__
    assert body["frozen"] is False
    head = git_head()
    require(head is not None, "not a git checkout: nothing to compare the commit with")
    assert body["commit"] == head


def test_whoami_json(client):
    response = client.get("/whoami", headers={"X-Probe": "42"})
    assert response.status_code == 200
    body = response.get_json()
    assert body["method"] == "GET"
    assert body["path"] == "/whoami"
    assert client.get("/whoami?q=X").get_json()["path"] == "/whoami?q=X"
    assert body["headers"]["X-Probe"] == "42"
    assert body["hostname"]
    assert isinstance(body["ip"], list)
    assert body["protocol"].startswith("HTTP/")


def test_whoami_plain_text_when_asked(client, monkeypatch):
    monkeypatch.setattr("hello.app.time.sleep", lambda seconds: None)
    monkeypatch.setattr("hello.app.netinfo.host_addresses", lambda: ["10.0.0.5", "fe80::1"])
    monkeypatch.setattr("hello.app.socket.gethostname", lambda: "box")
    response = client.get("/whoami?wait=2s", headers={"Accept": "text/plain", "X-Probe": "42",
                                                           "User-Agent": "probe/1"},
                          environ_base={"REMOTE_ADDR": "10.9.8.7", "REMOTE_PORT": "4321"})
    assert response.mimetype == "text/plain"
    assert response.get_data(as_text=True).splitlines() == [
        "Hostname: box", "IP: 10.0.0.5", "IP: fe80::1", "RemoteAddr: 10.9.8.7:4321",
        "GET /whoami?wait=2s HTTP/1.1", "User-Agent: probe/1", "Host: localhost",
        "Accept: text/plain", "X-Probe: 42",
        "Waited: 2s"]
    assert response.get_data(as_text=True).endswith("Waited: 2s\n")


def test_whoami_wait_delays(client, monkeypatch):
    slept = []
    monkeypatch.setattr("hello.app.time.sleep", slept.append)
    body = client.get("/whoami?wait=250ms").get_json()
    assert slept == [0.25]
    assert body["waited_seconds"] == 0.25


def test_whoami_wait_is_capped_at_30s(client, monkeypatch):
    slept = []
    monkeypatch.setattr("hello.app.time.sleep", slept.append)
    client.get("/whoami?wait=5m")
    assert slept == [30.0]


@pytest.mark.parametrize("value", ["soon", "-1s", "", "1h"])
def test_whoami_bad_wait_is_400_with_a_message(client, value):
    response = client.get(f"/whoami?wait={value}")
    assert response.status_code == 400
    assert "wait" in response.get_json()["error"]


def test_unknown_path_is_short_404(client):
    response = client.get("/nope")
    assert response.status_code == 404
    assert response.get_json() == {"error": "Not Found", "status": 404}
    assert len(response.data) < 100


def test_wrong_method_is_short_405(client):
    response = client.post("/healthz")
    assert response.status_code == 405
    assert response.get_json()["status"] == 405
    assert "GET" in response.headers["Allow"]


@pytest.mark.parametrize("path", ["/", "/healthz", "/readyz", "/version", "/whoami",
                                  "/openapi.json", "/nope"])
def test_every_response_has_nosniff(client, path):
    assert client.get(path).headers["X-Content-Type-Options"] == "nosniff"


def test_openapi_document_lists_every_route(client):
    """Every route, the --admin ones included (the document says they 404 without it)."""
    document = client.get("/openapi.json").get_json()
    assert document["openapi"].startswith("3.")
    admin_app = create_app(load({"admin": True}, {}))
    routes = {rule.rule.replace("<", "{").replace(">", "}") for rule in admin_app.url_map.iter_rules()}
    assert routes == set(document["paths"])


def test_openapi_document_ships_in_the_package():
    import importlib.resources
    text = importlib.resources.files("hello").joinpath("openapi.json").read_text()
    assert json.loads(text)["info"]["title"] == "hello"


def test_debug_mode_is_off(app):
    assert app.debug is False


def test_json_answers_keep_their_keys_in_the_order_written(client):
    """/version reads version, commit, python...: in build order, not sorted."""
    from hello.buildinfo import build_info
    body = client.get("/version").get_data(as_text=True)
    assert list(json.loads(body)) == list(build_info())
    assert list(build_info()) != sorted(build_info())


def client_for(**flags):
    return create_app(load(flags, {})).test_client()


@pytest.mark.parametrize("code", [200, 201, 302, 418, 451, 500, 503, 599])
def test_status_answers_the_code_asked_for(code):
    response = client_for().get(f"/status/{code}")
    assert response.status_code == code
    assert response.get_json() == {"status": code}


@pytest.mark.parametrize("code", [204, 205, 304])  # RFC 9110 15.3.6: no content in a 205 either
def test_status_without_a_body(code):
    response = client_for().get(f"/status/{code}")
    assert (response.status_code, response.data) == (code, b"")
    assert "Content-Type" not in response.headers


@pytest.mark.parametrize("code, header, value", [
    (401, "WWW-Authenticate", 'Basic realm="hello"'),
    (405, "Allow", "GET, HEAD, OPTIONS"),
])
def test_status_sends_the_header_its_code_requires(code, header, value):
    response = client_for().get(f"/status/{code}")
    assert (response.status_code, response.headers.get(header)) == (code, value)
    assert response.get_json() == {"status": code}


def test_status_sends_no_auth_challenge_with_other_codes():
    headers = client_for().get("/status/403").headers
    assert not {"WWW-Authenticate", "Allow", "Proxy-Authenticate"} & set(headers.keys())


@pytest.mark.parametrize("code", ["199", "600", "100", "abc", "0200", "2000", "\u0662\u0660\u0660"])
def test_status_outside_200_599_is_400(code):
    response = client_for().get(f"/status/{code}")
    assert response.status_code == 400
    assert response.get_json()["status"] == 400


def test_echo_returns_body_and_type():
    response = client_for().post("/echo", data=b"\x00\x01binary", content_type="image/x-test")
    assert (response.status_code, response.data) == (200, b"\x00\x01binary")
    assert response.headers["Content-Type"] == "image/x-test"
    assert response.headers["Content-Security-Policy"].startswith("sandbox")
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_echo_without_a_type_is_octet_stream():
    response = client_for().post("/echo", data=b"abc")
    assert response.headers["Content-Type"] == "application/octet-stream"


def test_readiness_switch_is_404_without_admin():
    client = client_for()
    assert client.post("/readyz/disable").status_code == 404
    assert client.get("/readyz").status_code == 200


def test_readiness_switch_with_admin():
    client = client_for(admin=True)
    assert client.post("/readyz/disable").get_json() == {"status": "disabled"}
    response = client.get("/readyz")
    assert (response.status_code, response.get_json()) == (503, {"status": "disabled"})
    assert response.headers["Retry-After"] == "1"
    assert client.get("/healthz").status_code == 200  # liveness is not readiness
    assert client.post("/readyz/enable").get_json() == {"status": "ready"}
    assert client.get("/readyz").status_code == 200


def test_random_error_hits_only_index_and_whoami():
    app = create_app(load({"random_error": "1"}, {}))
    client = app.test_client()
    assert client.get("/").status_code == 500
    assert client.get("/").get_json() == {"error": "injected by --random-error", "status": 500}
    assert client.get("/whoami").status_code == 500
    for path in ("/healthz", "/readyz", "/version", "/metrics", "/status/200"):
        assert client.get(path).status_code == 200, path


def test_random_error_rate_is_about_right():
    app = create_app(load({"random_error": "0.25"}, {}), chance=random.Random(7))
    client = app.test_client()
    errors = sum(client.get("/").status_code == 500 for _ in range(400))
    assert 60 <= errors <= 140, errors


def test_random_delay_sleeps_within_range_on_index_only(monkeypatch):
    slept = []
    monkeypatch.setattr("hello.app.time.sleep", slept.append)
    client = create_app(load({"random_delay": "10ms-50ms"}, {})).test_client()
    client.get("/")
    client.get("/healthz")
    client.get("/whoami")
    assert len(slept) == 2 and all(0.01 <= value <= 0.05 for value in slept)


def test_extra_headers_on_every_response():
    client = client_for(header=["X-Env: staging", "Cache-Control: no-store"])
    for path in ("/", "/healthz", "/nope"):
        response = client.get(path)
        assert response.headers["X-Env"] == "staging", path
        assert response.headers["Cache-Control"] == "no-store", path


def test_headers_from_env_one_per_line():
    settings = load({}, {"HELLO_HEADER": "X-A: 1\nX-B: two words"})
    assert settings.header == (("X-A", "1"), ("X-B", "two words"))


def test_metrics_count_by_route_and_status():
    client = client_for()
    client.get("/")
    client.get("/status/418")
    client.get("/status/418")
    client.get("/nope")
    client.open("/", method="BREW")
    text = client.get("/metrics").data.decode()
    assert 'hello_requests_total{route="/",method="GET",status="200"} 1' in text
    assert 'hello_requests_total{route="/status/<code>",method="GET",status="418"} 2' in text
    assert 'hello_requests_total{route="unmatched",method="GET",status="404"} 1' in text
    assert 'route="unmatched",method="other",status="405"' in text
    assert 'hello_request_duration_seconds_count{route="/status/<code>"} 2' in text
    assert 'hello_request_duration_seconds_bucket{route="/",le="+Inf"} 1' in text
    assert "hello_requests_in_flight 1" in text  # this very request
    assert "hello_build_info{version=" in text


def test_metrics_exposition_parses_as_prometheus_text():
    client = client_for()
    client.get("/")
    text = client.get("/metrics").data.decode()
    for line in text.splitlines():
        if line.startswith("#"):
            assert line.split()[1] in ("HELP", "TYPE")
            continue
        name_labels, value = line.rsplit(" ", 1)
        float(value)
        assert name_labels.startswith("hello_")


NETS = tuple(ipaddress.ip_network(net) for net in ("10.0.0.0/8", "::1/128"))


@pytest.mark.parametrize("environ, expected", [
    ({"REMOTE_ADDR": "10.0.0.5", "HTTP_X_FORWARDED_FOR": "203.0.113.9"}, "203.0.113.9"),
    ({"REMOTE_ADDR": "10.0.0.5", "HTTP_X_FORWARDED_FOR": "1.1.1.1, 203.0.113.9, 10.0.0.7"}, "203.0.113.9"),
    ({"REMOTE_ADDR": "198.51.100.1", "HTTP_X_FORWARDED_FOR": "203.0.113.9"}, "198.51.100.1"),
    ({"REMOTE_ADDR": "10.0.0.5", "HTTP_FORWARDED": 'for="[2001:db8::1]:4711";proto=http'}, "2001:db8::1"),
    # both, naming different clients: one was passed through from the client (nginx or
    # DO's load balancer write X-Forwarded-For and pass a client's Forwarded on): trust neither
    ({"REMOTE_ADDR": "10.0.0.5", "HTTP_FORWARDED": "for=6.6.6.6",
      "HTTP_X_FORWARDED_FOR": "203.0.113.9"}, "10.0.0.5"),
    ({"REMOTE_ADDR": "10.0.0.5", "HTTP_FORWARDED": "for=203.0.113.9",
      "HTTP_X_FORWARDED_FOR": "6.6.6.6"}, "10.0.0.5"),
    ({"REMOTE_ADDR": "10.0.0.5", "HTTP_FORWARDED": "for=203.0.113.9",
      "HTTP_X_FORWARDED_FOR": "203.0.113.9"}, "203.0.113.9"),
    ({"REMOTE_ADDR": "10.0.0.5", "HTTP_X_FORWARDED_FOR": "not-an-ip"}, "10.0.0.5"),
    ({"REMOTE_ADDR": "10.0.0.5"}, "10.0.0.5"),
])
def test_client_address_behind_trusted_proxies(environ, expected):
    assert client_address(environ, NETS) == expected


def test_no_trusted_proxies_means_the_peer():
    assert client_address({"REMOTE_ADDR": "10.0.0.5", "HTTP_X_FORWARDED_FOR": "1.2.3.4"}, ()) == "10.0.0.5"


@pytest.mark.parametrize("value, written", [
    ("/plain", "/plain"), ("a b", '"a b"'), ('q"x', '"q\\"x"'), ("k=v", '"k=v"'),
    ("/a\nlevel=error event=forged", '"/a\\nlevel=error event=forged"'), ("", '""'),
    (None, "null"), (3, "3"), ("\u00e9", '"\\u00e9"'),
])
def test_logfmt_quotes_what_could_break_a_line(value, written):
    assert logfmt_value(value) == written


def test_text_log_line_cannot_be_forged():
    out = io.StringIO()
    LogWriter("text", out=out, err=io.StringIO()).access(path="/x\nlevel=error event=pwned", status=200)
    assert out.getvalue().count("\n") == 1


def test_json_log_line_cannot_be_forged():
    out = io.StringIO()
    LogWriter("json", out=out, err=io.StringIO()).access(path="/x\n{\"level\":\"error\"}")
    assert out.getvalue().count("\n") == 1
    assert json.loads(out.getvalue())["path"] == "/x\n{\"level\":\"error\"}"
