"""Tenant members: listing, adding, role changes that take effect at once, removal."""

from __future__ import annotations

import pytest

from .conftest import audit_rows, call, field_errors

BASE = "/api/v1/tenants/team/members"


async def test_list_members(bare):
    status, body, _ = await call(bare, "GET", BASE, "tenant_admin")
    assert status == 200 and body == {"items": [
        {"username": "ada", "role": "admin"}, {"username": "alice", "role": "developer"},
        {"username": "gary", "role": "guest"}, {"username": "mary", "role": "maintainer"}], "next_cursor": None}
    status, body, r = await call(bare, "GET", f"{BASE}?limit=3", "tenant_admin")
    assert len(body["items"]) == 3 and body["next_cursor"] and 'rel="next"' in r.headers["Link"]
    status, body, _ = await call(bare, "GET", f"{BASE}?cursor={body['next_cursor']}", "tenant_admin")
    assert body == {"items": [{"username": "mary", "role": "maintainer"}], "next_cursor": None}
    assert (await call(bare, "GET", "/api/v1/tenants/nope/members"))[0] == 404


async def test_add_change_and_remove_a_member(api):
    # bob (admin of "other") joins team as a guest, then becomes maintainer, then leaves.
    status, body, _ = await call(api, "PUT", f"{BASE}/bob", "tenant_admin", json={"role": "guest"})
    assert status == 200 and body == {"username": "bob", "role": "guest"}
    me = (await call(api, "GET", "/api/v1/me", "other_admin"))[1]
    assert me["memberships"] == [{"tenant": "other", "role": "admin"}, {"tenant": "team", "role": "guest"}]
    assert (await call(api, "GET", "/api/v1/repositories/team/app/tags", "other_admin"))[0] == 200
    assert (await call(api, "PATCH", "/api/v1/repositories/team/app", "other_admin", json={"public": True}))[0] == 403
    await call(api, "PUT", f"{BASE}/bob", "tenant_admin", json={"role": "maintainer"})
    assert (await call(api, "PATCH", "/api/v1/repositories/team/app", "other_admin", json={"public": False}))[0] == 200
    assert (await call(api, "DELETE", f"{BASE}/bob", "tenant_admin"))[0] == 204
    assert (await call(api, "GET", "/api/v1/repositories/team/app/tags", "other_admin"))[0] == 403
    assert (await call(api, "DELETE", f"{BASE}/bob", "tenant_admin"))[0] == 404
    rows = await audit_rows(api, "tenant.member")
    assert [(r.actor, r.target, r.tenant, r.detail_json) for r in rows] == [
        ("ada", "team/bob", "team", '{"role": null}'),
        ("ada", "team/bob", "team", '{"role": "maintainer"}'),
        ("ada", "team/bob", "team", '{"role": "guest"}'),
    ]


async def test_promote_to_tenant_admin(bare):
    await call(bare, "PUT", f"{BASE}/alice", "tenant_admin", json={"role": "admin"})
    assert (await call(bare, "GET", BASE, "developer"))[0] == 200


@pytest.mark.parametrize(("body", "pointer"), [
    ({"role": "owner"}, "#/role"), ({"role": None}, "#/role"), ({}, "#/role"),
    ({"role": "guest", "expires": 1}, "#/expires"),
])
async def test_member_validation(bare, body, pointer):
    status, problem, _ = await call(bare, "PUT", f"{BASE}/bob", "tenant_admin", json=body)
    assert status == 422 and pointer in field_errors(problem)


async def test_unknown_user_or_tenant(bare):
    assert (await call(bare, "PUT", f"{BASE}/nobody", "tenant_admin", json={"role": "guest"}))[0] == 404
    assert (await call(bare, "PUT", "/api/v1/tenants/nope/members/alice", json={"role": "guest"}))[0] == 404
    assert (await call(bare, "DELETE", f"{BASE}/nobody", "tenant_admin"))[0] == 404
