"""The admin API's identity providers (/api/v1/identity-providers) on SQLite and PostgreSQL: platform
admins create, change and delete OIDC (and LDAP) providers and their group mappings; providers of
the config file stay read-only; secrets are write-only; every change is audited; a second replica
on the same database picks changes up; a provider made here signs people in through the real test
provider."""

from __future__ import annotations

import json

import pytest

import auth.service
from hub.app import create_app
from hub.config import load_config
from hub.keys import AUTH, STORE
from tests.helpers.oidc_provider import OidcUser
from tests.registry.conftest import DATABASE_SETUP, METADATA_STORES, basic

from .test_oidc_sign_in import at_provider, callback

CLIENT, SECRET = "daohub-api", "api-client-secret-1"
ROOT_PW = "root-Local-0"
ROOT = basic("root", ROOT_PW)


@pytest.fixture(scope="module")
def op(oidc_op):
    oidc_op.add_client(CLIENT, SECRET, [])
    oidc_op.add_user("gus", OidcUser("gus-pw", "Gus Example", "gus@example.test", ["api-devs"]))
    return oidc_op


def _config(request, tmp_path, database):
    return load_config(environ={}, overrides={
        "data_dir": str(tmp_path), "log": {"access_log": False}, "database": database,
        "auth": {"enabled": True, "password_memory_kib": 64, "password_time_cost": 1, "providers": [{
            "name": "from-file", "type": "oidc",
            "oidc": {"issuer": "https://login.example.com", "client_id": "c", "client_secret": "file-secret"}}]}})


@pytest.fixture(params=METADATA_STORES)
async def replicas(request, op, aiohttp_client, tmp_path, monkeypatch):
    monkeypatch.setattr(auth.service, "PROVIDER_REFRESH_SECONDS", 0.0)  # every request looks (no waiting here)
    # Two replicas on one database (SQLite: one file both open, as two processes would).
    database = DATABASE_SETUP[request.param](request, tmp_path) or {"url": f"sqlite:///{tmp_path}/shared.db"}
    first = await aiohttp_client(create_app(_config(request, tmp_path, database)))
    second = await aiohttp_client(create_app(_config(request, tmp_path / "b", database)))
    store, service = first.server.app[STORE], first.server.app[AUTH]
    await store.create_tenant("team-a")
    await store.create_user("root", await service.hash_password(ROOT_PW), is_admin=True)
    op.clients[CLIENT]["redirect_uris"] = [str(c.make_url("/apps/login/api-sso/callback")) for c in (first, second)]
    return first, second


def body(op, **changes) -> dict:
    return {"name": "api-sso", "type": "oidc", "oidc": {"issuer": op.issuer, "client_id": CLIENT,
                                                        "client_secret": SECRET, "ca_file": str(op.ca_file),
                                                        "display_name": "API SSO"},
            "group_mappings": [{"group": "api-devs", "tenant": "team-a", "role": "developer"}], **changes}


async def test_create_use_change_and_delete_a_provider(replicas, op):
    first, second = replicas
    r = await first.post("/api/v1/identity-providers", json=body(op), headers=ROOT)
    text = await r.text()
    assert r.status == 201, text
    assert SECRET not in text
    made = json.loads(text)
    assert (made["source"], made["read_only"], made["oidc"]["client_secret_set"], made["oidc"]["issuer"]) == (
        "api", False, True, op.issuer)
    listed = await (await second.get("/api/v1/identity-providers", headers=ROOT)).json()
    assert [(p["name"], p["source"], p["read_only"]) for p in listed["items"]] == [
        ("api-sso", "api", False), ("from-file", "config", True)]
    assert "file-secret" not in json.dumps(listed) and SECRET not in json.dumps(listed)
    # The other replica offers it and signs in through it; roles from its mappings.
    assert "Sign in with API SSO" in await (await second.get("/apps/login")).text()
    start = await second.get("/apps/login/api-sso", allow_redirects=False)
    assert start.status == 302
    r = await callback(second, await at_provider(op, start.headers["Location"], "gus"))
    assert r.status == 303, await r.text()
    service = second.server.app[AUTH]
    assert {t: r.value for t, r in (await service.principal_for_subject("gus")).memberships.items()} == {
        "team-a": "developer"}
    # Mappings changed: in force at once (the groups recorded at the sign-in, the new rules).
    r = await first.patch("/api/v1/identity-providers/api-sso", headers=ROOT, json={
        "group_mappings": [{"group": "api-devs", "tenant": "team-a", "role": "maintainer"}]})
    assert r.status == 200, await r.text()
    assert (await r.json())["oidc"]["client_secret_set"]  # absent: kept
    assert {t: r.value for t, r in (await service.principal_for_subject("gus")).memberships.items()} == {
        "team-a": "maintainer"}
    r = await first.patch("/api/v1/identity-providers/api-sso", headers=ROOT,
                          json={"oidc": {"client_secret": None, "display_name": "Renamed"}})
    got = await r.json()
    assert not got["oidc"]["client_secret_set"] and got["oidc"]["issuer"] == op.issuer
    assert "Sign in with Renamed" in await (await second.get("/apps/login")).text()
    # Deleted: no button, no sign-in, the account stands for no one.
    assert (await first.delete("/api/v1/identity-providers/api-sso", headers=ROOT)).status == 204
    assert (await second.get("/apps/login/api-sso", allow_redirects=False)).status == 404
    assert (await service.principal_for_subject("gus")).name == ""  # anonymous
    rows = [(r.action, r.target, json.loads(r.detail_json) if r.detail_json else None)
            for r in await first.server.app[STORE].audit_entries(50, None) if r.action.startswith("identity_provider")]
    assert rows == [
        ("identity_provider.delete", "api-sso", None),
        ("identity_provider.update", "api-sso", {"type": "oidc", "changed": ["oidc.display_name"],
                                                 "client_secret": "cleared"}),
        ("identity_provider.update", "api-sso", {"type": "oidc", "changed": ["group_mappings"]}),
        ("identity_provider.create", "api-sso", {"type": "oidc", "changed": [
            "group_mappings", "oidc.ca_file", "oidc.client_id", "oidc.display_name", "oidc.issuer"],
            "client_secret": "set"}),
    ]
    assert SECRET not in json.dumps(rows)


async def test_config_providers_are_read_only_and_bad_input_is_refused(replicas, op):
    first, _ = replicas
    assert (await first.patch("/api/v1/identity-providers/from-file", headers=ROOT,
                              json={"cache_seconds": 5})).status == 409
    assert (await first.delete("/api/v1/identity-providers/from-file", headers=ROOT)).status == 409
    assert (await first.post("/api/v1/identity-providers", headers=ROOT,
                             json=body(op, name="from-file"))).status == 409
    assert (await first.post("/api/v1/identity-providers", headers=ROOT, json=body(op))).status == 201
    assert (await first.post("/api/v1/identity-providers", headers=ROOT, json=body(op))).status == 409
    for oidc, needle in [({"issuer": "ftp://x.example"}, "issuer"), ({"allowed_algs": ["HS256"]}, "HS256"),
                         ({"allowed_algs": ["none"]}, "none"), ({"issuer": "http://idp.example"}, "loopback")]:
        bad = body(op, name="bad")
        bad["oidc"].update(oidc)
        r = await first.post("/api/v1/identity-providers", headers=ROOT, json=bad)
        assert r.status == 422 and needle in await r.text(), (oidc, await r.text())
    bad = body(op, name="bad")
    bad["oidc"]["client_secret_file"] = "/etc/shadow"  # no reading the server's files through the API
    assert (await first.post("/api/v1/identity-providers", headers=ROOT, json=bad)).status == 422
    bad = body(op, name="bad", group_mappings=[{"group": "g", "tenant": "team-a", "role": "owner"}])
    assert (await first.post("/api/v1/identity-providers", headers=ROOT, json=bad)).status == 422
    assert (await first.patch("/api/v1/identity-providers/nope", headers=ROOT, json={"cache_seconds": 1})).status == 404
    assert (await first.get("/api/v1/identity-providers/bad", headers=ROOT)).status == 404
