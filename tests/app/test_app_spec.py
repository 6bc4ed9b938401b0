"""`.do/app.yaml` against DigitalOcean's app spec models (vendored, see
tests/app/vendor/digitalocean-openapi/README.md) and against hello itself.

Two checks from the models: jsonschema (types, enums, patterns, ranges, required)
and known fields (the models are OpenAPI objects that allow any extra key, so a
misspelt `http_prot` would pass jsonschema; here every key must be a property of
its model). Then hello's side: the port it listens on, a health route it has,
the drain inside the grace period, an image by digest from DOCR.
"""

from __future__ import annotations

import copy
import json
import pathlib
import re

import jsonschema
import pytest
import referencing
import referencing.jsonschema
import yaml

from tests.conftest import ROOT

APP_YAML = ROOT / ".do" / "app.yaml"
VENDOR = pathlib.Path(__file__).with_name("vendor") / "digitalocean-openapi"
BASE = "https://models.invalid/"
DRAFT = referencing.jsonschema.DRAFT202012


def _models() -> dict[str, dict]:
    return {path.name: yaml.safe_load(path.read_text()) for path in VENDOR.glob("*.yml")}


MODELS = _models()


def _retrieve(uri: str) -> referencing.Resource:
    name = uri.removeprefix(BASE)
    if name in MODELS:
        return DRAFT.create_resource(MODELS[name])
    return DRAFT.create_resource(False)  # a model not vendored: nothing may use it


REGISTRY = referencing.Registry(retrieve=_retrieve)


def schema_errors(spec: dict) -> list[str]:
    validator = jsonschema.Draft202012Validator({"$ref": BASE + "app_spec.yml"}, registry=REGISTRY)
    return [f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
            for e in validator.iter_errors(spec)]


def _properties(model: dict) -> dict[str, dict]:
    """Every property a model allows, through allOf and $ref."""
    if "$ref" in model:
        name = model["$ref"]
        if name not in MODELS:
            return {}
        model = MODELS[name]
    found = dict(model.get("properties", {}))
    for part in model.get("allOf", []):
        found.update(_properties(part))
    return found


def unknown_fields(value, model: dict, where: str = "") -> list[str]:
    if "$ref" in model and model["$ref"] in MODELS:
        model = MODELS[model["$ref"]]
    out = []
    if isinstance(value, dict):
        allowed = _properties(model)
        for key, item in value.items():
            if key not in allowed:
                out.append(f"{where}{key}: not a field of the app spec")
            else:
                out += unknown_fields(item, allowed[key], f"{where}{key}.")
    elif isinstance(value, list) and "items" in model:
        for index, item in enumerate(value):
            out += unknown_fields(item, model["items"], f"{where}{index}.")
    return out


def hello_findings(spec: dict) -> list[str]:
    """Where the spec disagrees with hello: port, health route, drain, image."""
    routes = set(json.loads((ROOT / "hello" / "openapi.json").read_text())["paths"])
    out = []
    services = [s for s in spec.get("services", []) if s.get("name") == "hello"]
    if len(services) != 1:
        return ["expected one service named hello"]
    service = services[0]
    env = {e.get("key"): e.get("value") for e in service.get("envs", [])}
    listens = int(env.get("HELLO_PORT") or env.get("PORT") or 8080)
    if service.get("http_port") != listens:
        out.append(f"http_port {service.get('http_port')} is not the port hello listens on ({listens})")
    check = service.get("health_check") or {}
    if check.get("http_path") not in {"/healthz", "/readyz"}:
        out.append(f"health_check.http_path {check.get('http_path')!r} is not hello's /healthz or /readyz")
    elif check["http_path"] not in routes:
        out.append(f"health_check.http_path {check['http_path']} is not a route of hello")
    if check.get("port", listens) != listens:
        out.append(f"health_check.port {check.get('port')} is not the port hello listens on ({listens})")
    drain = float(env.get("HELLO_DRAIN_TIMEOUT") or 10)
    grace = (service.get("termination") or {}).get("grace_period_seconds", 120)
    if grace <= drain:
        out.append(f"termination.grace_period_seconds {grace} must exceed HELLO_DRAIN_TIMEOUT {drain:g}")
    image = service.get("image") or {}
    if image.get("registry_type") != "DOCR" or image.get("repository") != "hello":
        out.append("image: expected repository hello from DOCR")
    if not re.fullmatch(r"sha256:[0-9a-f]{64}", image.get("digest", "")) or "tag" in image:
        out.append("image: deploy by digest (sha256:<64 hex>), not by tag")
    if not (service.get("instance_count", 1) >= 2 or service.get("autoscaling")):
        out.append("instance_count: at least 2 (or autoscaling), so a deploy never empties the app")
    return out


@pytest.fixture
def spec() -> dict:
    return yaml.safe_load(APP_YAML.read_text())


def test_the_vendored_models_are_the_ones_named():
    readme = (VENDOR / "README.md").read_text()
    assert "7c1300c479fed9c353cda9fc21cd968619552304" in readme
    for name in MODELS:
        assert name.removesuffix(".yml").split("_")[0] in {"app", "apps"}


def test_app_yaml_passes_the_schema(spec):
    assert schema_errors(spec) == []


def test_app_yaml_uses_only_known_fields(spec):
    assert unknown_fields(spec, {"$ref": "app_spec.yml"}) == []


def test_app_yaml_agrees_with_hello(spec):
    assert hello_findings(spec) == []


def _service(spec):
    return spec["services"][0]


BREAKS = {
    "misspelt field": (lambda s: _service(s).update(http_prot=8080), "unknown", "http_prot"),
    "port out of range": (lambda s: _service(s).update(http_port=70000), "schema", "70000"),
    "bad region": (lambda s: s.update(region="mars"), "schema", "mars"),
    "bad component name": (lambda s: _service(s).update(name="Hello_"), "schema", "Hello_"),
    "unvendored field": (lambda s: s.update(domains=[{"domain": "example.com"}]), "schema", "domains"),
    "bad size": (lambda s: _service(s).update(instance_size_slug="huge"), "schema", "huge"),
    "wrong port": (lambda s: _service(s).update(http_port=9090), "hello", "http_port"),
    "health check on a route hello lacks": (lambda s: _service(s)["health_check"].update(http_path="/health"),
                                            "hello", "http_path"),
    "health check elsewhere": (lambda s: _service(s)["health_check"].update(port=9090), "hello", "port"),
    "grace under the drain": (lambda s: _service(s)["termination"].update(grace_period_seconds=5),
                              "hello", "grace_period_seconds"),
    "image by tag": (lambda s: _service(s)["image"].update(tag="latest"), "hello", "digest"),
    "one instance": (lambda s: _service(s).update(instance_count=1), "hello", "instance_count"),
}


@pytest.mark.parametrize("name", list(BREAKS))
def test_a_broken_variant_fails(spec, name):
    mutate, check, expected = BREAKS[name]
    broken = copy.deepcopy(spec)
    mutate(broken)
    found = {"schema": schema_errors, "unknown": lambda s: unknown_fields(s, {"$ref": "app_spec.yml"}),
             "hello": hello_findings}[check](broken)
    assert any(expected in line for line in found), found
