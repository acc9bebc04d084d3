"""Repositories of a tenant (listing per policy, visibility, deletion) and their tags."""

from __future__ import annotations

import pytest

from hub.keys import STORAGE, STORE

from .conftest import audit_rows, bearer, call, field_errors, push_image, token


async def root_token(client, *repos: str) -> str:
    return await token(client, *(f"repository:{r}:pull,push,delete" for r in repos), user="root",
                       password="root-pw-123")


async def test_list_repositories(api):
    status, body, _ = await call(api, "GET", "/api/v1/tenants/team/repositories", "guest")
    assert status == 200 and body["next_cursor"] is None
    app, pub = body["items"]
    assert app == {"name": "team/app", "tenant": "team", "public": False, "size_bytes": app["size_bytes"],
                   "tag_count": 2, "manifest_count": 2, "created_at": app["created_at"]}
    assert app["size_bytes"] > 0 and pub["name"] == "team/pub" and pub["public"] is True and pub["tag_count"] == 1
    # Outsiders see the public repositories only.
    status, body, _ = await call(api, "GET", "/api/v1/tenants/team/repositories", "other_admin")
    assert [r["name"] for r in body["items"]] == ["team/pub"]
    assert (await call(api, "GET", "/api/v1/tenants/nope/repositories"))[0] == 404


async def test_filtered_pages_skip_what_you_cannot_see(api):
    tok = await root_token(api, *(f"team/r{i}" for i in range(6)))
    for i in range(6):
        await push_image(api, f"team/r{i}", tok)
        if i % 2:
            await call(api, "PATCH", f"/api/v1/repositories/team/r{i}", json={"public": True})
    seen, cursor = [], None
    while True:
        query = "limit=2" + (f"&cursor={cursor}" if cursor else "")
        status, body, _ = await call(api, "GET", f"/api/v1/tenants/team/repositories?{query}", "other_admin")
        assert status == 200 and len(body["items"]) <= 2
        seen += [r["name"] for r in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == ["team/pub", "team/r1", "team/r3", "team/r5"]


async def test_make_public_then_private(api):
    anon = await token(api, "repository:team/app:pull")
    assert (await api.get("/v2/team/app/manifests/v1", headers=bearer(anon))).status == 401
    status, body, _ = await call(api, "PATCH", "/api/v1/repositories/team/app", "maintainer", json={"public": True})
    assert status == 200 and body["public"] is True and body["name"] == "team/app" and body["tag_count"] == 2
    anon = await token(api, "repository:team/app:pull")
    assert (await api.get("/v2/team/app/manifests/v1", headers=bearer(anon))).status == 200
    await call(api, "PATCH", "/api/v1/repositories/team/app", "tenant_admin", json={"public": False})
    anon = await token(api, "repository:team/app:pull")
    assert (await api.get("/v2/team/app/manifests/v1", headers=bearer(anon))).status == 401
    rows = await audit_rows(api, "repo.visibility")
    assert [(r.actor, r.target, r.tenant, r.detail_json) for r in rows][:2] == [
        ("ada", "team/app", "team", '{"visibility": "private"}'),
        ("mary", "team/app", "team", '{"visibility": "public"}')]


@pytest.mark.parametrize("body", [{}, {"public": "yes"}, {"public": 1}, {"public": True, "name": "x"}])
async def test_repository_update_validation(api, body):
    status, problem, _ = await call(api, "PATCH", "/api/v1/repositories/team/app", json=body)
    assert status == 422 and field_errors(problem)


async def test_update_unknown_repository(api):
    assert (await call(api, "PATCH", "/api/v1/repositories/team/nope", json={"public": True}))[0] == 404
    assert (await call(api, "PATCH", "/api/v1/repositories/team/nope", "maintainer", json={"public": True}))[0] == 404
    assert (await call(api, "PATCH", "/api/v1/repositories/team/Bad..Name", json={"public": True}))[0] == 404
    assert not await api.server.app[STORE].repository_exists("team/nope")


async def test_delete_repository_leaves_blobs_for_gc(api):
    tok = await root_token(api, "team/gone")
    config_digest = await push_image(api, "team/gone", tok)
    storage = api.server.app[STORAGE]
    blob_path = f"blobs/sha256/{config_digest[7:9]}/{config_digest[7:]}"
    await storage.stat(blob_path)
    assert (await call(api, "DELETE", "/api/v1/repositories/team/gone", "maintainer"))[0] == 204
    r = await api.get("/v2/team/gone/tags/list", headers=bearer(tok))
    assert r.status == 404 and (await r.json())["errors"][0]["code"] == "NAME_UNKNOWN"
    assert (await api.head(f"/v2/team/gone/blobs/{config_digest}", headers=bearer(tok))).status == 404
    await storage.stat(blob_path)  # the bytes stay until GC
    names = [r["name"] for r in (await call(api, "GET", "/api/v1/tenants/team/repositories"))[1]["items"]]
    assert "team/gone" not in names
    assert (await call(api, "DELETE", "/api/v1/repositories/team/gone"))[0] == 404
    [row] = await audit_rows(api, "repo.delete")
    assert (row.actor, row.target, row.tenant) == ("mary", "team/gone", "team")
    # The name can be pushed to again, from scratch.
    await push_image(api, "team/gone", tok, tag="again")
    assert (await call(api, "GET", "/api/v1/repositories/team/gone/tags"))[1]["items"][0]["name"] == "again"


async def test_list_tags(api):
    tok = await root_token(api, "team/many")
    digests = {}
    for tag in ("b", "a", "c"):
        await push_image(api, "team/many", tok, tag=tag)
        r = await api.head(f"/v2/team/many/manifests/{tag}", headers=bearer(tok))
        digests[tag] = r.headers["Docker-Content-Digest"]
    status, body, r = await call(api, "GET", "/api/v1/repositories/team/many/tags?limit=2", "guest")
    assert [t["name"] for t in body["items"]] == ["a", "b"] and body["items"][0]["digest"] == digests["a"]
    assert set(body["items"][0]) == {"name", "digest", "updated_at"}
    link = r.headers["Link"]
    assert link.startswith("</api/v1/repositories/team/many/tags?") and link.endswith('>; rel="next"')
    status, body, _ = await call(api, "GET", link[1:link.index(">")], "guest")
    assert status == 200 and body == {"items": [{"name": "c", "digest": digests["c"], "updated_at": body["items"][0]["updated_at"]}],
                    "next_cursor": None}
    assert (await call(api, "GET", "/api/v1/repositories/team/nope/tags"))[0] == 404
    assert (await call(api, "GET", "/api/v1/repositories/team/nope/tags", "guest"))[0] == 404
    assert (await call(api, "GET", "/api/v1/repositories/other/secret/tags", "guest"))[0] == 403


async def test_delete_tag(api):
    status, _, _ = await call(api, "DELETE", "/api/v1/repositories/team/app/tags/v1", "maintainer")
    assert status == 204
    names = [t["name"] for t in (await call(api, "GET", "/api/v1/repositories/team/app/tags"))[1]["items"]]
    assert names == ["v2"]
    assert (await call(api, "DELETE", "/api/v1/repositories/team/app/tags/v1"))[0] == 404
    assert (await call(api, "DELETE", "/api/v1/repositories/team/app/tags/-bad-"))[0] == 404
    assert (await call(api, "DELETE", "/api/v1/repositories/team/app/tags/v2", "developer"))[0] == 403
    [row] = await audit_rows(api, "tag.delete")
    assert (row.actor, row.target, row.tenant) == ("mary", "team/app:v1", "team")
