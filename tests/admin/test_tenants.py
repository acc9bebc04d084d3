"""Tenants: listing per caller, creation and its validation, changes, deletion, quota usage."""

from __future__ import annotations

import hashlib
import os

import pytest

from hub.keys import STORE

from .conftest import audit_rows, call, field_errors, headers, push_image, token


async def test_platform_admin_lists_all_members_list_their_own(bare):
    status, body, _ = await call(bare, "GET", "/api/v1/tenants")
    assert status == 200 and [t["name"] for t in body["items"]] == ["other", "team"]
    assert body["items"][1] == {"name": "team", "display_name": "The Team", "quota_bytes": 10_000_000,
                                "created_at": body["items"][1]["created_at"]}
    assert body["next_cursor"] is None
    for role, expected in (("tenant_admin", ["team"]), ("guest", ["team"]), ("other_admin", ["other"])):
        status, body, _ = await call(bare, "GET", "/api/v1/tenants", role)
        assert [t["name"] for t in body["items"]] == expected, role


async def test_tenant_pages_follow_cursor_and_link(bare):
    for i in range(5):
        assert (await call(bare, "POST", "/api/v1/tenants", json={"name": f"t{i}"}))[0] == 201
    seen, path = [], "/api/v1/tenants?limit=2"
    while path:
        status, body, r = await call(bare, "GET", path)
        assert status == 200 and len(body["items"]) <= 2
        seen += [t["name"] for t in body["items"]]
        if body["next_cursor"]:
            link = r.headers["Link"]
            assert link.endswith('>; rel="next"') and f"cursor={body['next_cursor']}" in link
            path = link[1:link.index(">")]
        else:
            assert "Link" not in r.headers
            path = None
    assert seen == ["other", "t0", "t1", "t2", "t3", "t4", "team"]


async def test_create_tenant(bare):
    status, body, r = await call(bare, "POST", "/api/v1/tenants",
                                 json={"name": "acme", "display_name": "ACME Inc.", "quota_bytes": 5000})
    assert status == 201 and r.headers["Location"] == "/api/v1/tenants/acme"
    assert body["name"] == "acme" and body["display_name"] == "ACME Inc." and body["quota_bytes"] == 5000
    assert (await call(bare, "GET", "/api/v1/tenants/acme"))[1] == body
    status, problem, r = await call(bare, "POST", "/api/v1/tenants", json={"name": "acme"})
    assert status == 409 and problem["type"] == "urn:daohub:problem:conflict"
    assert r.headers["Content-Type"].startswith("application/problem+json")
    [row] = await audit_rows(bare, "tenant.create")
    assert (row.actor, row.target, row.tenant) == ("root", "acme", "acme")


@pytest.mark.parametrize(("body", "pointer"), [
    ({"name": "Acme"}, "#/name"),
    ({"name": "a/b"}, "#/name"),
    ({"name": "-a"}, "#/name"),
    ({"name": "a..b"}, "#/name"),
    ({"name": "a" * 65}, "#/name"),
    ({"name": ""}, "#/name"),
    ({"name": 5}, "#/name"),
    ({"name": None}, "#/name"),
    ({"name": "ok\n"}, "#/name"),
    ({}, "#/name"),
    ({"name": "ok", "owner": "me"}, "#/owner"),
    ({"name": "ok", "quota_bytes": -1}, "#/quota_bytes"),
    ({"name": "ok", "quota_bytes": 1.5}, "#/quota_bytes"),
    ({"name": "ok", "quota_bytes": True}, "#/quota_bytes"),
    ({"name": "ok", "display_name": ["x"]}, "#/display_name"),
    ({"name": "ok", "display_name": "x" * 201}, "#/display_name"),
])
async def test_create_tenant_validation(bare, body, pointer):
    status, problem, r = await call(bare, "POST", "/api/v1/tenants", json=body)
    assert status == 422, problem
    assert r.headers["Content-Type"].startswith("application/problem+json")
    assert pointer in field_errors(problem)
    assert problem["instance"] == "/api/v1/tenants"
    assert (await call(bare, "GET", "/api/v1/tenants/ok"))[0] == 404


async def test_every_bad_field_is_listed(bare):
    status, problem, _ = await call(bare, "POST", "/api/v1/tenants",
                                    json={"name": "BAD", "quota_bytes": "lots", "colour": "red"})
    assert status == 422
    assert set(field_errors(problem)) == {"#/name", "#/quota_bytes", "#/colour"}


@pytest.mark.parametrize("raw", [b"{", b"", b"   ", b"NaN", b'{"name": Infinity}', b"\xff"])
async def test_body_that_is_not_json(bare, raw):
    status, problem, _ = await call(bare, "POST", "/api/v1/tenants", data=raw,
                                    extra={"Content-Type": "application/json"})
    assert status == 400 and problem["type"] == "urn:daohub:problem:malformed-request"


async def test_body_that_is_not_an_object(bare):
    status, problem, _ = await call(bare, "POST", "/api/v1/tenants", json=["team"])
    assert status == 422 and field_errors(problem) == {"#": "must be of type object"}


async def test_get_missing_tenant(bare):
    assert (await call(bare, "GET", "/api/v1/tenants/nope"))[0] == 404
    # Someone who is not a member learns nothing about whether it exists.
    assert (await call(bare, "GET", "/api/v1/tenants/nope", "tenant_admin"))[0] == 403
    assert (await call(bare, "GET", "/api/v1/tenants/other", "tenant_admin"))[0] == 403


async def test_update_tenant(bare):
    status, body, _ = await call(bare, "PATCH", "/api/v1/tenants/team", json={"quota_bytes": None})
    assert status == 200 and body["quota_bytes"] is None and body["display_name"] == "The Team"
    status, body, _ = await call(bare, "PATCH", "/api/v1/tenants/team",
                                 json={"display_name": "Renamed", "quota_bytes": 42})
    assert (body["display_name"], body["quota_bytes"]) == ("Renamed", 42)
    assert (await call(bare, "GET", "/api/v1/tenants/team/quota", "guest"))[1]["limit_bytes"] == 42
    status, problem, _ = await call(bare, "PATCH", "/api/v1/tenants/team", json={})
    assert status == 422 and "#" in field_errors(problem)
    status, problem, _ = await call(bare, "PATCH", "/api/v1/tenants/team", json={"name": "x"})
    assert status == 422 and "#/name" in field_errors(problem)
    assert (await call(bare, "PATCH", "/api/v1/tenants/nope", json={"display_name": "x"}))[0] == 404
    rows = await audit_rows(bare, "tenant.update")
    assert [r.detail_json for r in rows] == ['{"display_name": "Renamed", "quota_bytes": 42}', '{"quota_bytes": null}']
    # A tenant admin reads, but does not change, the tenant's settings.
    assert (await call(bare, "PATCH", "/api/v1/tenants/team", "tenant_admin", json={"quota_bytes": None}))[0] == 403
    assert (await call(bare, "GET", "/api/v1/tenants/team", "tenant_admin"))[0] == 200


async def test_delete_tenant_refused_while_it_has_repositories(api):
    status, problem, _ = await call(api, "DELETE", "/api/v1/tenants/team")
    assert status == 409 and "repositories" in problem["detail"]
    assert (await call(api, "GET", "/api/v1/tenants/team"))[0] == 200
    for repo in ("team/app", "team/pub"):
        assert (await call(api, "DELETE", f"/api/v1/repositories/{repo}"))[0] == 204
    assert (await call(api, "DELETE", "/api/v1/tenants/team"))[0] == 204
    assert (await call(api, "GET", "/api/v1/tenants/team"))[0] == 404
    assert (await call(api, "DELETE", "/api/v1/tenants/team"))[0] == 404
    # Its members and robots went with it.
    assert (await call(api, "GET", "/api/v1/me", "tenant_admin"))[1]["memberships"] == []
    assert (await call(api, "GET", "/api/v1/me", "robot"))[0] == 401
    [row] = await audit_rows(api, "tenant.delete")
    assert (row.target, row.tenant) == ("team", "team")


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def test_quota_counts_distinct_blobs_of_the_tenant(bare):
    await call(bare, "POST", "/api/v1/tenants", json={"name": "q", "quota_bytes": 10_000})
    assert (await call(bare, "GET", "/api/v1/tenants/q/quota"))[1] == {"tenant": "q", "limit_bytes": 10_000,
                                                                      "used_bytes": 0}
    tok = await token(bare, "repository:q/a:pull,push", "repository:q/b:pull,push", "repository:other/c:pull,push",
                      user="root", password="root-pw-123")
    shared, own = os.urandom(100), os.urandom(50)
    for repo, data in (("q/a", shared), ("q/b", shared), ("q/b", own), ("other/c", os.urandom(70))):
        r = await bare.post(f"/v2/{repo}/blobs/uploads/?digest={_sha(data)}", data=data,
                            headers={"Authorization": f"Bearer {tok}"})
        assert r.status == 201
    status, body, _ = await call(bare, "GET", "/api/v1/tenants/q/quota")
    assert status == 200 and body == {"tenant": "q", "limit_bytes": 10_000, "used_bytes": 150}
    assert body["used_bytes"] == await bare.server.app[STORE].tenant_usage("q")
    repos = {r["name"]: r for r in (await call(bare, "GET", "/api/v1/tenants/q/repositories"))[1]["items"]}
    assert repos["q/a"]["size_bytes"] == 100 and repos["q/b"]["size_bytes"] == 150
    assert (await call(bare, "GET", "/api/v1/tenants/other/quota"))[1]["used_bytes"] == 70
    assert (await call(bare, "GET", "/api/v1/tenants/nope/quota"))[0] == 404


async def test_quota_visible_to_members_only(api):
    for role, expected in (("guest", 200), ("developer", 200), ("other_admin", 403)):
        assert (await call(api, "GET", "/api/v1/tenants/team/quota", role))[0] == expected
    r = await api.get("/api/v1/tenants/team/quota", headers=headers("anonymous"))
    assert r.status == 401


async def test_created_tenant_is_usable(bare):
    await call(bare, "POST", "/api/v1/tenants", json={"name": "fresh"})
    await call(bare, "PUT", "/api/v1/tenants/fresh/members/alice", json={"role": "developer"})
    tok = await token(bare, "repository:fresh/app:pull,push", user="alice", password="alice-pw-123")
    await push_image(bare, "fresh/app", tok)
    items = (await call(bare, "GET", "/api/v1/tenants/fresh/repositories", "developer"))[1]["items"]
    assert [r["name"] for r in items] == ["fresh/app"]
