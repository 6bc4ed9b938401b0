"""create_app(settings) -> the Flask app: routes only, one short function each."""

from __future__ import annotations

import importlib.resources
import json
import socket
import time
from collections.abc import Callable

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from hello import __version__, buildinfo, netinfo
from hello.config import MAX_WAIT_SECONDS, parse_duration


def _openapi_document() -> bytes:
    """openapi.json as served: its info.version is hello.__version__, the one place it is written."""
    document = json.loads(importlib.resources.files("hello").joinpath("openapi.json").read_bytes())
    document["info"]["version"] = __version__
    return json.dumps(document, indent=2).encode()


def create_app(settings, is_ready: Callable[[], bool] = lambda: True) -> Flask:
    """Build the app. `is_ready` turns False once the server starts draining."""
    app = Flask(__name__, static_folder=None)  # no file serving: routes only
    app.json.sort_keys = False
    openapi = _openapi_document()

    @app.get("/")
    def index():
        return Response(settings.message, mimetype="text/plain")

    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok")

    @app.get("/readyz")
    def readyz():
        if is_ready():
            return jsonify(status="ready")
        return jsonify(status="draining"), 503

    @app.get("/version")
    def version():
        return jsonify(buildinfo.build_info())

    @app.get("/openapi.json")
    def openapi_json():
        return Response(openapi, mimetype="application/json")

    @app.get("/whoami")
    def whoami():
        wait = request.args.get("wait")
        waited = 0.0
        if wait is not None:
            try:
                waited = min(parse_duration(wait), MAX_WAIT_SECONDS)
            except ValueError as error:
                return jsonify(error=f"wait: {wait!r} {error}"), 400
            time.sleep(waited)
        report = _whoami_report(waited)
        best = request.accept_mimetypes.best_match(["application/json", "text/plain"])
        if best == "text/plain":
            return Response(_as_text(report), mimetype="text/plain")
        return jsonify(report)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        response = error.get_response()
        response.data = (f'{{"error": "{error.name}", "status": {error.code}}}\n')
        response.mimetype = "application/json"
        return response

    @app.after_request
    def security_headers(response: Response) -> Response:
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    return app


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
