"""Upstreams of the pull-through cache through the admin API: platform admin only, validation,
write-only passwords, audit rows, config upstreams read-only, names that must not collide
with tenants, and the routing of every replica following the stored set."""

from __future__ import annotations

import logging

import pytest

from hub.app import create_app
from hub.config import load_config
from hub.keys import PROXY, STORE
from tests.registry.conftest import DATABASE_SETUP, METADATA_STORES

from .conftest import ROLES, audit_rows, call, field_errors, seed

SECRET = "upstream-Secret-never-shown-42"
GHCR = {"name": "ghcr.io", "url": "https://ghcr.io", "aliases": ["ghcr.example.com:5000"], "username": "bot",
        "password": SECRET, "manifest_revalidate_seconds": 60, "tenants": ["team"], "anonymous_pull": False,
        "max_size_bytes": 1_000_000, "ttl_days": 7}
CONFIGURED = {"name": "docker.io", "url": "http://127.0.0.1:9", "aliases": ["registry-1.docker.io"]}


def _config(tmp_path, database: dict, **proxy):
    return load_config(environ={}, overrides={
        "data_dir": str(tmp_path), "log": {"access_log": False}, "database": database,
        "auth": {"enabled": True, "password_memory_kib": 64, "password_time_cost": 1, "login_failure_limit": 1000},
        "proxy": {"upstreams": [CONFIGURED], "default_mirror": "docker.io", **proxy},
    })


@pytest.fixture(params=METADATA_STORES)
async def hub(request, aiohttp_client, tmp_path):
    """The usual users and tenants, and a config upstream `docker.io` (the default mirror)."""
    database = DATABASE_SETUP[request.param](request, tmp_path)
    client = await aiohttp_client(create_app(_config(tmp_path, database)))
    await seed(client, images=False)
    return client


async def test_create_read_list_and_audit(hub, caplog):
    caplog.set_level(logging.DEBUG)
    status, body, r = await call(hub, "POST", "/api/v1/upstreams", json=GHCR)
    assert status == 201, body
    assert r.headers["Location"] == "/api/v1/upstreams/ghcr.io"
    assert body == {**{k: v for k, v in GHCR.items() if k != "password"}, "password_set": True, "source": "api",
                    "read_only": False, "default_mirror": False, "created_at": body["created_at"],
                    "updated_at": body["updated_at"]}
    assert body["created_at"].endswith("Z")
    assert (await call(hub, "GET", "/api/v1/upstreams/ghcr.io"))[1] == body
    status, page, _ = await call(hub, "GET", "/api/v1/upstreams")
    assert status == 200 and [u["name"] for u in page["items"]] == ["docker.io", "ghcr.io"]
    configured = page["items"][0]
    assert (configured["source"], configured["read_only"], configured["default_mirror"]) == ("config", True, True)
    assert configured["password_set"] is False and configured["created_at"] is None

    [row] = await audit_rows(hub, "upstream.create")
    assert (row.actor, row.target, row.tenant) == ("root", "ghcr.io", None)
    assert '"password_changed": true' in row.detail_json and SECRET not in row.detail_json
    # The password is never returned, never logged, and the router uses it.
    assert SECRET not in caplog.text
    up = hub.server.app[PROXY].router.upstreams["ghcr.io"]
    assert up.password.reveal() == SECRET and SECRET not in repr(up)


async def test_null_credentials_mean_none(hub):
    status, body, _ = await call(hub, "POST", "/api/v1/upstreams",
                                 json={"name": "anon", "url": "http://h", "username": None, "password": None})
    assert status == 201 and (body["username"], body["password_set"]) == ("", False)


async def test_pages_of_upstreams(hub):
    for i in range(3):
        assert (await call(hub, "POST", "/api/v1/upstreams", json={"name": f"up{i}", "url": "http://h"}))[0] == 201
    status, body, r = await call(hub, "GET", "/api/v1/upstreams?limit=2")
    assert status == 200
    assert [u["name"] for u in body["items"]] == ["docker.io", "up0"] and 'rel="next"' in r.headers["Link"]
    status, body, _ = await call(hub, "GET", f"/api/v1/upstreams?limit=2&cursor={body['next_cursor']}")
    assert status == 200 and [u["name"] for u in body["items"]] == ["up1", "up2"] and body["next_cursor"] is None


@pytest.mark.parametrize("role", [r for r in ROLES if r != "platform_admin"])
async def test_only_the_platform_admin_manages_upstreams(hub, role):
    assert (await call(hub, "POST", "/api/v1/upstreams", json=GHCR))[0] == 201
    expected = 401 if role == "anonymous" else 403
    for method, path, body in (("GET", "/api/v1/upstreams", None), ("POST", "/api/v1/upstreams", GHCR),
                               ("GET", "/api/v1/upstreams/ghcr.io", None),
                               ("PATCH", "/api/v1/upstreams/ghcr.io", {"ttl_days": 1}),
                               ("DELETE", "/api/v1/upstreams/ghcr.io", None)):
        status, problem, _ = await call(hub, method, path, role, json=body)
        assert status == expected, (method, path, problem)
        if expected == 403:
            assert problem["type"] == "urn:daohub:problem:forbidden"
    assert (await call(hub, "GET", "/api/v1/upstreams/ghcr.io"))[1]["ttl_days"] == 7


@pytest.mark.parametrize("url", [
    "ftp://ghcr.io", "file:///etc/passwd", "http://user:pw@ghcr.io", "https://user@ghcr.io", "https://ghcr.io/?a=1",
    "https://ghcr.io?a=1", "https://ghcr.io/#x", "https://ghcr.io#", "https://ghcr.io/v2/", "ghcr.io", "https://",
    "http://ghcr.io:99999", "https://ghcr .io", "https://ghcr.io\n", "http://[::1",
])
async def test_url_must_be_plain_http_or_https(hub, url):
    status, problem, _ = await call(hub, "POST", "/api/v1/upstreams", json={"name": "bad", "url": url})
    assert status == 422 and "#/url" in field_errors(problem), problem
    assert await hub.server.app[STORE].get_upstream("bad") is None


@pytest.mark.parametrize(("body", "pointer"), [
    ({"name": "Bad", "url": "http://h"}, "#/name"),
    ({"name": "a/b", "url": "http://h"}, "#/name"),
    ({"url": "http://h"}, "#/name"),
    ({"name": "x", "url": "http://h", "aliases": ["UPPER.example"]}, "#/aliases/0"),
    ({"name": "x", "url": "http://h", "aliases": ["h/path"]}, "#/aliases/0"),
    ({"name": "x", "url": "http://h", "tenants": ["Not-A-Tenant"]}, "#/tenants/0"),
    ({"name": "x", "url": "http://h", "username": "only"}, "#/password"),
    ({"name": "x", "url": "http://h", "max_size_bytes": 0}, "#/max_size_bytes"),
    ({"name": "x", "url": "http://h", "ttl_days": 0}, "#/ttl_days"),
    ({"name": "x", "url": "http://h", "manifest_revalidate_seconds": -1}, "#/manifest_revalidate_seconds"),
    ({"name": "x", "url": "http://h", "bogus": 1}, "#/bogus"),
])
async def test_fields_are_validated(hub, body, pointer):
    status, problem, _ = await call(hub, "POST", "/api/v1/upstreams", json=body)
    assert status == 422 and pointer in field_errors(problem), problem


async def test_names_never_collide_with_upstreams_or_tenants(hub):
    assert (await call(hub, "POST", "/api/v1/upstreams", json=GHCR))[0] == 201
    for body in ({"name": "team", "url": "http://h"},  # an existing tenant
                 {"name": "ghcr.io", "url": "http://h"},
                 {"name": "docker.io", "url": "http://h"},  # the config's
                 {"name": "x", "url": "http://h", "aliases": ["registry-1.docker.io"]},
                 {"name": "y", "url": "http://h", "aliases": ["ghcr.io"]},
                 {"name": "z", "url": "http://h", "aliases": ["team"]}):
        status, problem, _ = await call(hub, "POST", "/api/v1/upstreams", json=body)
        assert status == 409 and problem["type"] == "urn:daohub:problem:conflict", (body, problem)
    # Repositories outside any tenant (a hub without auth, say) would be shadowed too.
    await hub.server.app[STORE].link_blob("loose/app", "sha256:" + "0" * 64, 1)
    status, problem, _ = await call(hub, "POST", "/api/v1/upstreams", json={"name": "loose", "url": "http://h"})
    assert status == 409 and "loose/..." in problem["detail"]
    # The other way round: no tenant named like an upstream or one of its aliases.
    for name in ("ghcr.io", "docker.io", "registry-1.docker.io"):
        status, problem, _ = await call(hub, "POST", "/api/v1/tenants", json={"name": name})
        assert status == 409 and "upstream" in problem["detail"], (name, problem)
        assert await hub.server.app[STORE].get_tenant(name) is None
    assert (await call(hub, "POST", "/api/v1/tenants", json={"name": "ghcr.iox"}))[0] == 201
    assert (await call(hub, "PATCH", "/api/v1/upstreams/ghcr.io", json={"aliases": ["registry-1.docker.io"]}))[0] \
        == 409


async def test_config_upstreams_are_read_only(hub):
    for method, body in (("PATCH", {"ttl_days": 3}), ("DELETE", None)):
        status, problem, _ = await call(hub, method, "/api/v1/upstreams/docker.io", json=body)
        assert status == 409 and "config file" in problem["detail"], problem
    assert (await call(hub, "GET", "/api/v1/upstreams/docker.io"))[1]["ttl_days"] is None
    assert (await call(hub, "GET", "/api/v1/upstreams/nope"))[0] == 404
    assert (await call(hub, "PATCH", "/api/v1/upstreams/nope", json={"ttl_days": 3}))[0] == 404
    assert (await call(hub, "DELETE", "/api/v1/upstreams/nope"))[0] == 404


async def test_update_and_clear_credentials(hub):
    assert (await call(hub, "POST", "/api/v1/upstreams", json=GHCR))[0] == 201
    status, body, _ = await call(hub, "PATCH", "/api/v1/upstreams/ghcr.io",
                                 json={"url": "https://mirror.example/", "max_size_bytes": None, "tenants": []})
    assert status == 200 and body["url"] == "https://mirror.example" and body["max_size_bytes"] is None
    assert body["password_set"] is True and body["tenants"] == [] and body["ttl_days"] == 7
    # One half of a credential pair cannot be cleared alone.
    status, problem, _ = await call(hub, "PATCH", "/api/v1/upstreams/ghcr.io", json={"password": None})
    assert status == 422 and "#/password" in field_errors(problem)
    status, body, _ = await call(hub, "PATCH", "/api/v1/upstreams/ghcr.io", json={"password": None, "username": None})
    assert status == 200 and body["password_set"] is False and body["username"] == ""
    proxy = hub.server.app[PROXY]
    up = proxy.router.upstreams["ghcr.io"]
    assert (up.url, up.password, up.max_size_bytes) == ("https://mirror.example", "", 0)
    # Each new URL or credential got a client of its own; the old ones close once unused.
    assert proxy.clients["ghcr.io"].upstream == up and len(proxy._retired) == 2
    await proxy._close_retired(grace=3600)
    assert len(proxy._retired) == 2
    await proxy._close_retired(grace=0)
    assert proxy._retired == []
    rows = await audit_rows(hub, "upstream.update")
    assert len(rows) == 2 and all(SECRET not in (r.detail_json or "") for r in rows)
    assert (await call(hub, "PATCH", "/api/v1/upstreams/ghcr.io", json={}))[0] == 422


async def test_delete(hub):
    assert (await call(hub, "POST", "/api/v1/upstreams", json=GHCR))[0] == 201
    router = hub.server.app[PROXY].router
    assert (await router.route("ghcr.io/org/app")).upstream.name == "ghcr.io"
    assert (await call(hub, "DELETE", "/api/v1/upstreams/ghcr.io"))[0] == 204
    # The name now goes where any unknown first component goes: the default mirror.
    target = await router.route("ghcr.io/org/app")
    assert (target.upstream.name, target.remote) == ("docker.io", "ghcr.io/org/app")
    assert [r.target for r in await audit_rows(hub, "upstream.delete")] == ["ghcr.io"]
    assert (await call(hub, "DELETE", "/api/v1/upstreams/ghcr.io"))[0] == 404


@pytest.mark.parametrize("database", METADATA_STORES)
async def test_every_replica_follows_the_stored_upstreams(aiohttp_client, tmp_path, request, database):
    """Two app instances on one store: a change on one is routed by the other without a restart."""
    settings = DATABASE_SETUP[database](request, tmp_path)
    one = await aiohttp_client(create_app(_config(tmp_path, settings, upstream_refresh_seconds=0)))
    await seed(one, images=False)
    # A second replica; with SQLite a second process-less app on one file stands in for it.
    two = await aiohttp_client(create_app(_config(tmp_path, settings, upstream_refresh_seconds=0)))
    router = two.server.app[PROXY].router
    assert (await router.route("ghcr.io/org/app")).upstream.name == "docker.io"
    assert (await call(one, "POST", "/api/v1/upstreams", json=GHCR))[0] == 201
    target = await router.route("ghcr.io/org/app")
    assert (target.upstream.name, target.remote, target.cache) == ("ghcr.io", "org/app", "ghcr.io/org/app")
    assert (await router.route("x/y", ns="ghcr.example.com:5000")).upstream.name == "ghcr.io"
    assert (await call(one, "PATCH", "/api/v1/upstreams/ghcr.io", json={"aliases": []}))[0] == 200
    with pytest.raises(Exception, match="unknown upstream registry"):
        await router.route("x/y", ns="ghcr.example.com:5000")
    assert (await call(one, "DELETE", "/api/v1/upstreams/ghcr.io"))[0] == 204
    assert (await router.route("ghcr.io/org/app")).upstream.name == "docker.io"
    # The API of the second replica agrees.
    status, body, _ = await call(two, "GET", "/api/v1/upstreams")
    assert status == 200 and [u["name"] for u in body["items"]] == ["docker.io"]
