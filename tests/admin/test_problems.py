"""One error format for the admin API (RFC 9457), query validation, and the OpenAPI document."""

from __future__ import annotations

import json

import pytest

from hub.handlers.admin.routes import ROUTES
from hub.handlers.admin.schemas import REQUESTS
from hub.handlers.appstore.routes import ROUTES as APPSTORE_ROUTES
from hub.keys import STORE

from .conftest import call, field_errors, headers


@pytest.mark.parametrize("query", ["limit=0", "limit=501", "limit=abc", "limit=-1", "limit=1.5", "limit=",
                                   "limit=%EF%BC%91"])
async def test_bad_limit(bare, query):
    status, problem, _ = await call(bare, "GET", f"/api/v1/users?{query}")
    assert status == 422 and "limit" in field_errors(problem)


@pytest.mark.parametrize("cursor", ["!!", "%FF%FE", "x" * 2000])
async def test_bad_cursor(bare, cursor):
    status, problem, _ = await call(bare, "GET", f"/api/v1/tenants?cursor={cursor}")
    assert status == 422 and "cursor" in field_errors(problem)


async def test_limits(bare):
    for i in range(3):
        await call(bare, "POST", "/api/v1/tenants", json={"name": f"t{i}"})
    assert len((await call(bare, "GET", "/api/v1/tenants?limit=500"))[1]["items"]) == 5
    assert len((await call(bare, "GET", "/api/v1/tenants"))[1]["items"]) == 5
    body = (await call(bare, "GET", "/api/v1/tenants?limit=1"))[1]
    assert len(body["items"]) == 1 and isinstance(body["next_cursor"], str)


async def test_routing_errors_are_problems(bare):
    status, problem, r = await call(bare, "GET", "/api/v1/no/such/thing")
    assert status == 404 and r.headers["Content-Type"].startswith("application/problem+json")
    assert problem == {"type": "urn:daohub:problem:not-found", "title": "Not Found", "status": 404,
                       "detail": "Not Found", "instance": "/api/v1/no/such/thing"}
    status, problem, r = await call(bare, "PUT", "/api/v1/tenants")
    assert status == 405 and problem["type"] == "urn:daohub:problem:method-not-allowed"
    # The registry API keeps its OCI error bodies.
    r = await bare.get("/v2/team/app/tags/list")
    assert r.status == 401 and "errors" in await r.json()


async def test_unexpected_errors_are_problems_without_details(bare, monkeypatch):
    async def boom(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(type(bare.server.app[STORE]), "list_tenants", boom)
    r = await bare.get("/api/v1/tenants", headers=headers("platform_admin"))
    assert r.status == 500 and r.headers["Content-Type"].startswith("application/problem+json")
    problem = await r.json(content_type=None)
    assert problem["status"] == 500 and "secret" not in json.dumps(problem)


async def test_openapi_document(bare):
    r = await bare.get("/api/v1/openapi.json")
    assert r.status == 200
    doc = await r.json()
    assert doc["openapi"].startswith("3.0")
    operations = {(method.upper(), path) for path, item in doc["paths"].items() for method in item}
    # One document describes the admin API and the app store's (hub/handlers/appstore).
    assert operations == {(route.method, route.openapi_path) for route in ROUTES + APPSTORE_ROUTES}
    assert len(operations) == len(ROUTES + APPSTORE_ROUTES)
    # Every request body schema is the one the server validates with, and every $ref resolves.
    assert {k: doc["components"]["schemas"][k] for k in REQUESTS} == json.loads(json.dumps(REQUESTS))
    refs = []

    def walk(node):
        if isinstance(node, dict):
            if "$ref" in node:
                refs.append(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)
    for ref in refs:
        _, section, kind, name = ref.split("/")
        assert name in doc[section][kind], ref
    for path, item in doc["paths"].items():
        for method, op in item.items():
            codes = set(op["responses"])
            if op.get("security") != []:
                assert {"401", "429"} <= codes, (method, path)
            if "{" in path:
                assert "404" in codes, (method, path)
            if "requestBody" in op:
                assert {"400", "422"} <= codes, (method, path)


def test_openapi_document_validates():
    import openapi_spec_validator

    from hub.handlers.admin.openapi import document

    openapi_spec_validator.validate(document())


async def test_no_example_of_a_change_names_the_platform_admin(bare):
    """Tools that send a document's examples (API explorers, schemathesis' explicit phase) must not
    change, disable or delete the platform admin a first start creates (`admin`, auth/service.py
    ensure_admin): no changing operation's path parameter or body example names that user."""
    doc = await (await bare.get("/api/v1/openapi.json")).json()
    schemas = doc["components"]["schemas"]
    named = []
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method == "get":
                continue
            for parameter in op.get("parameters", []):
                if parameter["in"] == "path":
                    assert "example" in parameter, (method, path, parameter["name"])
                    named.append((method, path, parameter["name"], parameter["example"]))
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
            example = schemas[body["$ref"].rsplit("/", 1)[1]].get("example", {}) if "$ref" in body else {}
            named += [(method, path, key, value) for key, value in example.items() if key in ("username", "name")]
    assert ("put", "/api/v1/users/{username}/password", "username", "alice") in named
    assert [n for n in named if n[3] == "admin"] == []


@pytest.mark.parametrize(("path", "body"), [
    ("/api/v1/tenants", b'{"name": "x", "display_name": "a\\ud800"}'),
    ("/api/v1/tenants", b'{"name": "x", "display_name": "a\xed\xa0\x80"}'),
    ("/api/v1/appstore/apps/team/web/versions", b'{"compose_files": [{"name": "compose.yaml", '
                                                b'"content": "services: {}\\udfff"}], "metadata": null}'),
])
async def test_unpaired_surrogates_are_malformed_json(bare, path, body):
    # A string with half of a UTF-16 pair cannot be stored or encoded: it was a 500 (SQLite's or
    # YAML's UnicodeEncodeError). Found by tests/fuzz (the portainer target).
    r = await bare.post(path, data=body,
                        headers={**headers("platform_admin"), "Content-Type": "application/json"})
    assert r.status == 400, await r.text()
    assert "surrogate" in (await r.json())["detail"]
