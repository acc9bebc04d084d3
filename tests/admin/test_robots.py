"""Robot accounts: the secret shown once, patterns kept inside the tenant, revocation, deletion."""

from __future__ import annotations

import time
from datetime import datetime

import pytest

from .conftest import audit_rows, basic, call, field_errors

BASE = "/api/v1/tenants/team/robots"
GOOD = {"name": "builder", "repositories": ["team/ci/**", "team/app"], "actions": ["push", "pull"]}


async def test_create_robot_shows_the_secret_once(bare):
    status, body, r = await call(bare, "POST", BASE, "tenant_admin", json=GOOD)
    assert status == 201 and r.headers["Cache-Control"] == "no-store"
    assert r.headers["Location"] == f"{BASE}/builder"
    secret = body.pop("secret")
    assert len(secret) >= 40
    assert body == {"account": "robot$team+builder", "tenant": "team", "name": "builder",
                    "repositories": ["team/ci/**", "team/app"], "actions": ["pull", "push"], "expires_at": None,
                    "revoked": False, "active": True, "created_at": body["created_at"]}
    # The secret works, and is never shown again (nor its hash).
    me = await bare.get("/api/v1/me", headers=basic("robot$team+builder", secret))
    assert me.status == 200 and (await me.json())["robot"]["repositories"] == ["team/ci/**", "team/app"]
    r = await bare.get("/auth/token", params={"service": "daohub", "scope": "repository:team/app:push"},
                       headers=basic("robot$team+builder", secret))
    assert r.status == 200
    for path in (f"{BASE}/builder", BASE):
        status, _, r = await call(bare, "GET", path, "tenant_admin")
        text = await r.text()
        assert status == 200 and secret not in text and "secret" not in text and "sha256:" not in text
    assert (await call(bare, "GET", f"{BASE}/builder"))[1] == body
    [row] = await audit_rows(bare, "robot.create")
    assert (row.actor, row.target, row.tenant) == ("ada", "robot$team+builder", "team")
    assert secret not in row.detail_json
    status, _, _ = await call(bare, "POST", BASE, "tenant_admin", json=GOOD)
    assert status == 409


async def test_expiry(bare):
    before = time.time()
    status, body, _ = await call(bare, "POST", BASE, json={**GOOD, "expires_in_days": 2})
    expires = datetime.fromisoformat(body["expires_at"]).timestamp()
    assert status == 201 and before + 2 * 86400 - 2 <= expires <= time.time() + 2 * 86400 + 1


@pytest.mark.parametrize(("change", "pointer"), [
    ({"repositories": ["other/app"]}, "#/repositories/0"),
    ({"repositories": ["team/app", "*/app"]}, "#/repositories/1"),
    ({"repositories": ["team"]}, "#/repositories/0"),
    ({"repositories": ["team/"]}, "#/repositories/0"),
    ({"repositories": ["**"]}, "#/repositories/0"),
    ({"repositories": ["team/a b"]}, "#/repositories/0"),
    ({"repositories": ["team/App"]}, "#/repositories/0"),
    ({"repositories": ["team//x"]}, "#/repositories/0"),
    # Non-canonical paths, which no name has: refused up front rather than stored.
    ({"repositories": ["team/../other/app"]}, "#/repositories/0"),
    ({"repositories": ["team/x/.."]}, "#/repositories/0"),
    ({"repositories": ["team/./x"]}, "#/repositories/0"),
    ({"repositories": ["team/x/"]}, "#/repositories/0"),
    ({"repositories": ["team/-x*"]}, "#/repositories/0"),
    ({"repositories": ["team/x*."]}, "#/repositories/0"),
    ({"repositories": []}, "#/repositories"),
    ({"repositories": "team/*"}, "#/repositories"),
    ({"repositories": [5]}, "#/repositories/0"),
    ({"actions": ["pull", "admin"]}, "#/actions/1"),
    ({"actions": []}, "#/actions"),
    ({"actions": ["pull", "pull"]}, "#/actions"),
    ({"name": "Builder"}, "#/name"),
    ({"name": "a+b"}, "#/name"),
    ({"expires_in_days": 0}, "#/expires_in_days"),
    ({"expires_in_days": -1}, "#/expires_in_days"),
    ({"expires_in_days": 3651}, "#/expires_in_days"),
    ({"expires_in_days": "7"}, "#/expires_in_days"),
    ({"secret": "mine"}, "#/secret"),
])
async def test_robot_validation(bare, change, pointer):
    status, problem, _ = await call(bare, "POST", BASE, "tenant_admin", json={**GOOD, **change})
    assert status == 422 and pointer in field_errors(problem), problem
    assert (await call(bare, "GET", f"{BASE}/{change.get('name', 'builder')}"))[0] in (404,)


async def test_revoke(bare):
    status, body, _ = await call(bare, "POST", f"{BASE}/ci/revoke", "tenant_admin")
    assert status == 200 and body["revoked"] is True and body["active"] is False
    assert (await bare.get("/api/v1/me", headers=basic("robot$team+ci", "robot-secret"))).status == 401
    r = await bare.get("/auth/token", params={"service": "daohub"}, headers=basic("robot$team+ci", "robot-secret"))
    assert r.status == 401
    assert (await call(bare, "GET", f"{BASE}/ci"))[1]["revoked"] is True  # the record stays
    assert (await call(bare, "POST", f"{BASE}/nope/revoke"))[0] == 404
    [row] = await audit_rows(bare, "robot.revoke")
    assert (row.actor, row.target, row.tenant) == ("ada", "robot$team+ci", "team")


async def test_delete(bare):
    assert (await call(bare, "DELETE", f"{BASE}/ci", "tenant_admin"))[0] == 204
    assert (await call(bare, "GET", f"{BASE}/ci", "tenant_admin"))[0] == 404
    assert (await call(bare, "DELETE", f"{BASE}/ci", "tenant_admin"))[0] == 404
    assert (await bare.get("/api/v1/me", headers=basic("robot$team+ci", "robot-secret"))).status == 401
    [row] = await audit_rows(bare, "robot.delete")
    assert row.target == "robot$team+ci"


async def test_list_and_unknown_tenant(bare):
    for i in range(3):
        await call(bare, "POST", BASE, json={**GOOD, "name": f"r{i}"})
    status, body, _ = await call(bare, "GET", f"{BASE}?limit=2", "tenant_admin")
    assert [r["name"] for r in body["items"]] == ["ci", "r0"]
    status, body, _ = await call(bare, "GET", f"{BASE}?limit=2&cursor={body['next_cursor']}", "tenant_admin")
    assert status == 200 and [r["name"] for r in body["items"]] == ["r1", "r2"] and body["next_cursor"] is None
    assert (await call(bare, "GET", "/api/v1/tenants/nope/robots"))[0] == 404
    assert (await call(bare, "POST", "/api/v1/tenants/nope/robots",
                       json={**GOOD, "repositories": ["nope/x"]}))[0] == 404


async def test_glob_patterns_that_name_canonical_paths_are_kept(bare):
    patterns = ["team/ci-*", "team/*.v?", "team/**/x", "team/a__*", "team/*"]
    status, body, _ = await call(bare, "POST", BASE, "tenant_admin", json={**GOOD, "repositories": patterns})
    assert status == 201 and body["repositories"] == patterns, body
