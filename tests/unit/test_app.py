"""Every route, header and error of the Flask app, through the test client."""

import json

import pytest

from hello import __version__
from hello.app import create_app
from hello.config import load
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
