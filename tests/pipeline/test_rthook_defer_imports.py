"""spec/rthook_defer_imports.py, the binary's runtime hook, run in a fresh interpreter
before anything imports Flask, as PyInstaller runs it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from tests.conftest import ROOT

HOOK = ROOT / "spec" / "rthook_defer_imports.py"
DEFERRED = ("werkzeug.serving", "werkzeug.test", "importlib.metadata", "flask.templating",
            "jinja2", "decimal", "email.utils", "difflib")
# Every name a module binds from a deferred module while Flask imports, and why it
# may: each is only ever called (a class used with isinstance or as a base would
# break), or only named in an annotation.
CALLED_ONLY = {
    ("flask", "render_template"), ("flask", "render_template_string"),
    ("flask", "stream_template"), ("flask", "stream_template_string"),
    ("flask.app", "is_running_from_reloader"), ("flask.cli", "is_running_from_reloader"),
    ("flask.cli", "run_simple"), ("werkzeug", "run_simple"),
    # Flask.jinja_environment = Environment: called by create_jinja_environment
    ("flask.app", "Environment"), ("flask.sansio.app", "Environment"),
    ("flask.sansio.app", "DispatchingJinjaLoader"),
    ("flask.sansio.scaffold", "FileSystemLoader"),
    ("flask.sansio.scaffold", "BaseLoader"),  # an annotation only
    ("flask.sansio.scaffold", "_default_template_ctx_processor"),
}


def run(script: str) -> dict:
    """Run script after the hook, in a fresh interpreter; its last line is JSON."""
    code = f"exec(open({str(HOOK)!r}).read())\n" + textwrap.dedent(script)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, check=False, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_serving_imports_none_of_the_deferred_modules():
    """hello's modules, a Flask app and a request through it, as a server runs one."""
    loaded = run(f"""
        import io, json, sys
        import flask, hello.app, hello.server
        app = flask.Flask("probe")
        app.add_url_rule("/", "index", lambda: flask.jsonify(hello="world"))
        environ = {{"REQUEST_METHOD": "GET", "PATH_INFO": "/", "SERVER_NAME": "localhost",
                   "SERVER_PORT": "80", "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO()}}
        body = b"".join(app(environ, lambda status, headers: None))
        assert json.loads(body) == {{"hello": "world"}}, body
        print(json.dumps([name for name in {DEFERRED!r} if name in sys.modules]))
    """)
    assert loaded == []


def test_names_from_deferred_modules_are_only_those_called():
    bound = run("""
        import json, sys
        import hello.app, hello.server
        names = sorted([module, name] for module, value in list(sys.modules.items())
                       for name, item in vars(value).items()
                       if type(item).__name__ == "_Deferred")
        print(json.dumps(names))
    """)
    assert {tuple(pair) for pair in bound} == CALLED_ONLY


def test_what_flask_defers_works_when_used():
    """Each deferred module, used the way Flask and werkzeug use it, in a process
    that never imported it itself."""
    results = run("""
        import json
        import flask, werkzeug, werkzeug.http, importlib
        app = flask.Flask("probe")

        @app.route("/decimal")
        def decimal_answer():
            # flask.json.provider: isinstance(o, decimal.Decimal) reads the stand-in
            return flask.jsonify(value=__import__("decimal").Decimal("1.5"))

        @app.route("/template")
        def template():
            return flask.render_template_string("hi {{ name }}", name="<b>")

        @app.route("/build-error")
        def build_error():
            try:
                flask.url_for("statik")
            except Exception as error:  # werkzeug's BuildError suggests with difflib
                return str(error)

        client = werkzeug.Client(app)  # werkzeug.test, through werkzeug.__getattr__
        print(json.dumps({
            "decimal": client.get("/decimal").get_json(),
            "template": client.get("/template").get_data(as_text=True),
            "build_error": client.get("/build-error").get_data(as_text=True),
            "http_date": werkzeug.http.http_date(0),  # email.utils
            "parse_date": str(werkzeug.http.parse_date("Thu, 01 Jan 1970 00:00:00 GMT")),
            "metadata": importlib.metadata.version("flask"),
            "environment_is_a_class": isinstance(flask.templating.Environment, type),
            "run_simple": werkzeug.serving.run_simple.__module__,
            # once used, the real module replaces the stand-in where it was bound
            "provider_decimal": type(flask.json.provider.decimal).__name__,
        }))
    """)
    assert results["decimal"] == {"value": "1.5"}
    assert results["template"] == "hi &lt;b&gt;"
    assert "Did you mean 'static' instead?" in results["build_error"]
    assert results["http_date"] == "Thu, 01 Jan 1970 00:00:00 GMT"
    assert results["parse_date"] == "1970-01-01 00:00:00+00:00"
    assert results["metadata"]
    assert results["environment_is_a_class"] is True
    assert results["run_simple"] == "werkzeug.serving"
    assert results["provider_decimal"] == "module"
