"""create_app(settings) -> the Flask app: the routes of one blueprint, one short view each,
and the State they share."""

from __future__ import annotations

import json
import os
import random
import re
import socket
import threading
import time
from collections.abc import Callable

from flask import Blueprint, Flask, Response, abort, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from hello import __version__, buildinfo, metrics, netinfo
from hello.config import MAX_WAIT_SECONDS, parse_duration

# How often a waiting request looks whether its client is still there.
GONE_POLL_SECONDS = 0.05
# Routes that --random-delay and --random-error may touch; never health or admin.
INJECTABLE = frozenset({"hello.index", "hello.whoami"})
_STATUS_CODE = re.compile(r"[2-5][0-9][0-9]")
# The header each of these codes MUST carry (RFC 9110 15.5.2, 15.5.6): a client that
# checks for it (curl, an HTTP library's auth handler) gets it. 407's Proxy-Authenticate
# is hop-by-hop, which a WSGI app may not send (PEP 3333; waitress answers 500 instead).
_REQUIRED_HEADERS = {
    401: {"WWW-Authenticate": 'Basic realm="hello"'},
    405: {"Allow": "GET, HEAD, OPTIONS"},
}


def _openapi_document() -> bytes:
    """openapi.json as served: its info.version is hello.__version__, the one place it is written."""
    # Beside this module, frozen or not (the spec ships it there): importlib.resources
    # would import a package of its own for one file.
    with open(os.path.join(os.path.dirname(__file__), "openapi.json"), "rb") as handle:
        document = json.load(handle)
    document["info"]["version"] = __version__
    return json.dumps(document, indent=2).encode()


class State:
    """What the views share in one app (app.extensions["hello"]): its settings, the
    server's readiness and saturation, the --admin switch, the metrics registry."""

    def __init__(self, settings, is_ready: Callable[[], bool],
                 is_saturated: Callable[[], bool], chance: random.Random):
        self.settings = settings
        self.is_ready = is_ready
        self.is_saturated = is_saturated
        self.chance = chance  # the random source of --random-delay/--random-error
        self.enabled = threading.Event()  # the --admin readiness switch; on at start
        self.enabled.set()
        self.registry = metrics.Registry()
        self.openapi = _openapi_document()


def _state() -> State:
    return current_app.extensions["hello"]


def create_app(settings, is_ready: Callable[[], bool] = lambda: True,
               chance: random.Random | None = None,
               is_saturated: Callable[[], bool] = lambda: False) -> Flask:
    """Build the app. `is_ready` turns False once the server starts draining;
    `is_saturated` is True while requests wait too long for a worker; `chance` is
    the random source of --random-delay/--random-error (tests seed it)."""
    app = Flask(__name__, static_folder=None)  # no file serving: routes only
    app.json.sort_keys = False
    state = State(settings, is_ready, is_saturated,
                  chance or random.Random())  # noqa: S311 (fault injection, not secrets)
    app.extensions["hello"] = state
    app.register_blueprint(routes)
    app.wsgi_app = metrics.Middleware(app.wsgi_app, state.registry)
    return app


routes = Blueprint("hello", __name__)


@routes.before_app_request
def note_route_and_inject():
    rule = request.url_rule
    request.environ[metrics.ROUTE_KEY] = rule.rule if rule is not None else "unmatched"
    if request.endpoint not in INJECTABLE:
        return None
    state = _state()
    low, high = state.settings.random_delay
    if high > 0:
        _wait_unless_gone(state.chance.uniform(low, high))
    if state.settings.random_error and state.chance.random() < state.settings.random_error:
        return jsonify(error="injected by --random-error", status=500), 500
    return None


@routes.get("/")
def index():
    return Response(_state().settings.message, mimetype="text/plain")


@routes.get("/healthz")
def healthz():
    return jsonify(status="ok")


@routes.get("/readyz")
def readyz():
    state = _state()
    if not state.is_ready():
        return jsonify(status="draining"), 503, {"Retry-After": "1"}
    if not state.enabled.is_set():
        return jsonify(status="disabled"), 503, {"Retry-After": "1"}
    if state.is_saturated():  # a load balancer sends the next ones elsewhere
        return jsonify(status="saturated"), 503, {"Retry-After": "1"}
    return jsonify(status="ready")


@routes.post("/readyz/disable")
def readyz_disable():
    if not _state().settings.admin:
        abort(404)  # off by default: anyone who reaches the port could use it
    _state().enabled.clear()
    return jsonify(status="disabled")


@routes.post("/readyz/enable")
def readyz_enable():
    if not _state().settings.admin:
        abort(404)
    _state().enabled.set()
    return jsonify(status="ready")


@routes.get("/status/<code>")
def status(code: str):
    if not _STATUS_CODE.fullmatch(code):
        return jsonify(error=f"code: {code[:16]!r} is not a status from 200 to 599",
                       status=400), 400
    number = int(code)
    if number in (204, 205, 304):  # these carry no content, so no type either (RFC 9110)
        response = Response(status=number)
        del response.headers["Content-Type"]
        return response
    return jsonify(status=number), number, _REQUIRED_HEADERS.get(number, {})


@routes.post("/echo")
def echo():
    # the body back with its own type; CSP sandbox so echoed HTML cannot run as ours
    return Response(request.get_data(), status=200,
                    content_type=request.content_type or "application/octet-stream",
                    headers={"Content-Security-Policy": "sandbox; default-src 'none'"})


@routes.get("/metrics")
def metrics_route():
    return Response(_state().registry.exposition(), content_type=metrics.CONTENT_TYPE)


@routes.get("/version")
def version():
    return jsonify(buildinfo.build_info())


@routes.get("/openapi.json")
def openapi_json():
    return Response(_state().openapi, mimetype="application/json")


@routes.get("/whoami")
def whoami():
    wait = request.args.get("wait")
    waited = 0.0
    if wait is not None:
        try:
            waited = min(parse_duration(wait), MAX_WAIT_SECONDS)
        except ValueError as error:
            return jsonify(error=f"wait: {wait!r} {error}"), 400
        waited = round(_wait_unless_gone(waited), 3)
    report = _whoami_report(waited)
    best = request.accept_mimetypes.best_match(["application/json", "text/plain"])
    if best == "text/plain":
        return Response(_as_text(report), mimetype="text/plain")
    return jsonify(report)


@routes.app_errorhandler(HTTPException)
def http_error(error: HTTPException):
    response = error.get_response()
    response.data = (f'{{"error": "{error.name}", "status": {error.code}}}\n')
    response.mimetype = "application/json"
    return response


@routes.after_app_request
def security_headers(response: Response) -> Response:
    response.headers["X-Content-Type-Options"] = "nosniff"
    # every answer is about this instance now (health, readiness, who answered): a
    # cache or CDN in between must not serve it again; --header can say otherwise
    response.headers["Cache-Control"] = "no-store"
    for name, value in _state().settings.header:
        response.headers[name] = value
    return response


def _wait_unless_gone(seconds: float) -> float:
    """Sleep, but stop once the client has gone (waitress tells, while the request runs);
    the seconds it slept. A flood of ?wait=30s requests whose clients gave up held every
    worker for 30 s each."""
    gone = request.environ.get("waitress.client_disconnected")
    if gone is None:  # not under waitress (a test client): nobody to ask
        time.sleep(seconds)
        return seconds
    began = time.monotonic()
    deadline = began + seconds
    while (left := deadline - time.monotonic()) > 0 and not gone():
        time.sleep(min(left, GONE_POLL_SECONDS))
    return min(seconds, time.monotonic() - began)


def _whoami_report(waited: float) -> dict:
    environ = request.environ
    headers = dict(request.headers.items())
    return {
        "hostname": socket.gethostname(),
        "ip": netinfo.host_addresses(),
        "remote_addr": request.remote_addr,
        "remote_port": environ.get("REMOTE_PORT"),
        "method": request.method,
        "path": request.full_path.rstrip("?"),
        "protocol": environ.get("SERVER_PROTOCOL"),
        "headers": headers,
        "waited_seconds": waited,
    }


def _as_text(report: dict) -> str:
    lines = [f"Hostname: {report['hostname']}"]
    lines += [f"IP: {address}" for address in report["ip"]]
    lines.append(f"RemoteAddr: {report['remote_addr']}:{report['remote_port']}")
    lines.append(f"{report['method']} {report['path']} {report['protocol']}")
    lines += [f"{name}: {value}" for name, value in report["headers"].items()]
    if report["waited_seconds"]:
        lines.append(f"Waited: {report['waited_seconds']:g}s")
    return "\n".join(lines) + "\n"
