"""Importing a Portainer feed through the admin API (POST /api/v1/tenants/{tenant}/apps/import):
preview, publish, the audit row and re-import (SQLite and PostgreSQL), who may, the quota, and
fetching by URL only from the hosts an admin listed (a real server on 127.0.0.1 sees every request
DaoHub makes)."""

from __future__ import annotations

import json

import pytest
from aiohttp import web

from hub.app import create_app
from hub.config import load_config
from hub.keys import STORE
from tests.admin.conftest import headers, seed
from tests.registry.conftest import DATABASE_SETUP, METADATA_STORES

from .feeds import feed

IMPORT = "/api/v1/tenants/team/apps/import"


def config(tmp_path, import_hosts=(), database=None):
    return load_config(environ={}, overrides={
        "data_dir": str(tmp_path), "log": {"access_log": False}, "webhooks": {"enabled": False},
        "database": database or {},
        "appstore": {"import_hosts": list(import_hosts)},
        "auth": {"enabled": True, "password_memory_kib": 64, "password_time_cost": 1, "login_failure_limit": 1000}})


@pytest.fixture
async def feeds_server(aiohttp_server):
    """Serves /feed.json, /redirect (to /feed.json) and /big; records every path asked for."""
    asked: list[str] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        asked.append(request.path)
        if request.path == "/feed.json":
            return web.json_response(feed())
        if request.path == "/redirect":
            raise web.HTTPFound("/feed.json")
        if request.path == "/big":
            return web.Response(body=b"[" * 10 + b" " * (5 * 1024 * 1024))
        raise web.HTTPNotFound()

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    server = await aiohttp_server(app)
    server.asked = asked
    return server


async def client_for(aiohttp_client, tmp_path, import_hosts=(), database=None):
    client = await aiohttp_client(create_app(config(tmp_path, import_hosts, database)))
    await seed(client, images=False)
    return client


async def post(client, body, role="tenant_admin", path=IMPORT):
    r = await client.post(path, json=body, headers=headers(role))
    return r.status, await r.json()


@pytest.mark.parametrize("store", METADATA_STORES)
async def test_preview_then_import_then_again(aiohttp_client, tmp_path, request, store):
    client = await client_for(aiohttp_client, tmp_path, database=DATABASE_SETUP[store](request, tmp_path))
    status, preview = await post(client, {"feed": feed(), "dry_run": True})
    assert status == 200, preview
    items = preview["items"]
    assert [(i["key"], i["status"]) for i in items] == [
        ("static-site", "new"), ("kv-cache", "new"), ("stack-from-git", "skipped"), ("", "invalid")]
    assert items[0]["repository"] == "team/static-site" and items[0]["parameters"] == ["SITE_NAME", "MODE"]
    assert "image: nginx:1.27-alpine" in items[0]["compose"] and "SITE_NAME: ${SITE_NAME}" in items[0]["compose"]
    assert "git.example/stacks" in items[2]["errors"][0] and items[3]["errors"] == ["title: required"]
    store = client.server.app[STORE]
    assert await store.app_versions_of("team/static-site") == []  # a preview writes nothing
    assert [r.action for r in await store.audit_entries(100, None)] == []

    status, done = await post(client, {"feed": feed(), "only": ["static-site", "kv-cache"]})
    assert status == 200 and [i["status"] for i in done["items"]] == ["published", "published", "skipped", "invalid"]
    r = await client.get("/api/v1/appstore/apps/team/static-site/versions/1.0.0", headers=headers("guest"))
    version = await r.json()
    assert version["title"] == "Static site" and version["categories"] == ["web"]
    assert {p["name"]: p.get("default") for p in version["parameters"]} == {"SITE_NAME": "demo", "MODE": "fast"}
    rows = await store.audit_entries(100, None)
    assert [(r.action, r.target, r.tenant) for r in rows] == [("appstore.import", "team", "team")]
    assert json.loads(rows[0].detail_json)["published"] == ["team/static-site", "team/kv-cache"]
    # The feed exported again gives the template back (the import kept what the model has no place for).
    r = await client.get("/api/v1/appstore/portainer/v3.json?tenant=team", headers=headers("guest"))
    exported = {t["title"]: t for t in (await r.json())["templates"]}
    assert exported["Static site"]["image"] == "nginx:1.27-alpine"
    assert exported["Static site"]["logo"] == "https://logos.example/nginx.png"

    status, again = await post(client, {"feed": feed()})
    assert [i["status"] for i in again["items"][:2]] == ["exists", "exists"]  # never replaced


@pytest.mark.parametrize("role, status", [("developer", 403), ("maintainer", 403), ("guest", 403),
                                          ("other_admin", 404), ("anonymous", 401), ("platform_admin", 200)])
async def test_only_the_tenants_admins_import(aiohttp_client, tmp_path, role, status):
    client = await client_for(aiohttp_client, tmp_path)
    got, body = await post(client, {"feed": feed(), "dry_run": True}, role=role)
    assert got == status, body


async def test_not_a_feed_is_a_422_with_fields(aiohttp_client, tmp_path):
    client = await client_for(aiohttp_client, tmp_path)
    status, body = await post(client, {"feed": {"version": "9", "templates": {}}})
    assert status == 422
    assert {e["pointer"] for e in body["errors"]} == {"#/feed/version", "#/feed/templates"}
    status, body = await post(client, {"feed": feed(), "url": "https://x.example/f.json"})
    assert status == 422


async def test_a_url_is_fetched_only_from_an_allowed_host(aiohttp_client, tmp_path, feeds_server):
    host = f"{feeds_server.host}:{feeds_server.port}"
    url = f"http://{host}/feed.json"
    closed = await client_for(aiohttp_client, tmp_path / "closed")
    status, body = await post(closed, {"url": url, "dry_run": True})
    assert status == 422 and "appstore.import_hosts is empty" in body["errors"][0]["detail"]
    other = await client_for(aiohttp_client, tmp_path / "other", ["feeds.example"])
    status, body = await post(other, {"url": url, "dry_run": True})
    assert status == 422 and f"{host} is not one of the hosts" in body["errors"][0]["detail"]
    for bad in ("file:///etc/passwd", "ftp://feeds.example/x", f"http://user:pw@{host}/feed.json"):
        status, body = await post(other, {"url": bad, "dry_run": True})
        assert status == 422, bad
    assert feeds_server.asked == []  # none of those was dialled

    allowed = await client_for(aiohttp_client, tmp_path / "allowed", [host])
    status, body = await post(allowed, {"url": url, "dry_run": True})
    assert status == 200 and [i["key"] for i in body["items"][:2]] == ["static-site", "kv-cache"]
    status, body = await post(allowed, {"url": f"http://{host}/redirect", "dry_run": True})
    assert status == 422 and "redirect" in body["errors"][0]["detail"]
    status, body = await post(allowed, {"url": f"http://{host}/big", "dry_run": True})
    assert status == 422 and "larger than" in body["errors"][0]["detail"]
    assert feeds_server.asked == ["/feed.json", "/redirect", "/big"]  # the redirect was not followed


async def test_past_the_quota_an_app_fails_and_the_audit_row_lists_what_was_published(aiohttp_client, tmp_path):
    client = await client_for(aiohttp_client, tmp_path)
    store = client.server.app[STORE]
    status, done = await post(client, {"feed": feed(), "only": ["static-site"]})
    assert [i["status"] for i in done["items"][:2]] == ["published", "skipped"]
    await store.update_tenant("team", {"quota_bytes": await store.tenant_usage("team")})  # nothing more fits
    status, done = await post(client, {"feed": feed()})
    assert status == 200
    kv = done["items"][1]
    assert kv["status"] == "failed" and "bytes" in kv["errors"][0]  # the quota's numbers
    rows = [r for r in await store.audit_entries(100, None) if r.action == "appstore.import"]
    assert [json.loads(r.detail_json)["published"] for r in rows] == [[], ["team/static-site"]]  # newest first
