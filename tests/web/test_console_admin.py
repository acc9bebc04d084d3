"""The console's tenant-administration pages over HTTP (aiohttp's test client, on SQLite and
PostgreSQL, with tests/admin's users and images): promotions awaiting approval (approve through the
form; the requester has no Approve button and a direct POST is refused; another tenant's admin gets
404), GC reports (a tenant's, and every run on the platform page), retention rules with a dry-run
preview and the immutable-tag rules, members (change a role, add and remove a member, audited as the
API does), and the signing keys on the platform page (no secret in the page). Every page answers
through the same services as the admin API (tests/admin/test_*_api.py)."""

from __future__ import annotations

import json
import re
from html import unescape

import pytest

from hub.app import create_app
from hub.keys import AUTH
from hub.web.pages import CSP
from tests.admin.conftest import CREDENTIALS, audit_rows, call, make_config, seed
from tests.registry.conftest import DATABASE_SETUP, METADATA_STORES

from .test_pages import csrf_of, origin

HTML = {"Accept": "text/html"}


@pytest.fixture(params=METADATA_STORES)
async def hub(request, aiohttp_client, tmp_path):
    """On both metadata stores (tests/registry/conftest.py starts PostgreSQL), as tests/admin's `api`."""
    client = await aiohttp_client(create_app(make_config(tmp_path, DATABASE_SETUP[request.param](request, tmp_path))))
    await seed(client)
    return client


async def as_user(client, role: str) -> None:
    """Sign `role`'s user in, in place of whoever was signed in."""
    client.session.cookie_jar.clear()
    r = await client.get("/apps/login")
    user, password = CREDENTIALS[role]
    r = await client.post("/apps/login", data={"csrf": csrf_of(await r.text()), "username": user,
                                               "password": password, "next": "/console/"},
                          headers=origin(client), allow_redirects=False)
    assert r.status == 303, await r.text()


async def get(client, path: str, expect: int = 200) -> str:
    r = await client.get(path, headers=HTML)
    text = await r.text()
    assert r.status == expect, (path, r.status, text[:1500])
    assert r.content_type == "text/html" and r.headers["Content-Security-Policy"] == CSP
    return unescape(text)


async def post(client, path: str, form: dict, expect: int = 303, csrf_from: str | None = None):
    """POST a console form with the CSRF token of the page at `csrf_from` (default: `path`)."""
    token = csrf_of(await get(client, csrf_from or path, expect=200))
    r = await client.post(path, data={"csrf": token, **form}, headers={**origin(client), **HTML},
                          allow_redirects=False)
    text = await r.text()
    assert r.status == expect, (path, r.status, text[:1500])
    return r, unescape(text)


# Promotions ---------------------------------------------------------------------------------------
async def pending_promotion(client) -> dict:
    status, body, _ = await call(client, "PUT", "/api/v1/tenants/team/promotion-gates", "tenant_admin",
                                 json={"gates": [{"repositories": "team/prod", "approval": {"role": "maintainer"}}]})
    assert status == 200, body
    status, body, _ = await call(client, "POST", "/api/v1/promotions", "developer",
                                 json={"source": "team/app:v1", "target": "team/prod:v1"})
    assert status == 202 and body["state"] == "pending", body
    return body


async def test_a_maintainer_approves_a_pending_promotion_through_the_form(hub):
    promotion = await pending_promotion(hub)
    await as_user(hub, "maintainer")
    text = await get(hub, "/console/t/team/promotions")
    section = text.split("Awaiting approval")[1].split("Recently decided")[0]
    for shown in (f"#{promotion['id']}", "team/app:v1", "team/prod:v1", promotion["digest"], "alice",
                  "a maintainer of the target's tenant, not the requester"):
        assert shown in section, shown
    assert f'aria-label="Approve promotion {promotion["id"]}"' in section
    assert f'aria-label="Reject promotion {promotion["id"]}"' in section
    r, _ = await post(hub, "/console/t/team/promotions", {"action": "approve", "id": str(promotion["id"]),
                                                          "reason": "looks good"})
    assert r.headers["Location"].startswith("/console/t/team/promotions?done=")
    text = await get(hub, r.headers["Location"])
    assert f"promotion {promotion['id']} to team/prod:v1: completed" in text
    assert "No promotion is waiting for approval." in text
    recent = text.split("Recently decided")[1]
    assert "completed (looks good)" in recent and "mary" in recent
    status, body, _ = await call(hub, "GET", f"/api/v1/promotions/{promotion['id']}", "developer")
    assert (body["state"], body["decided_by"]) == ("completed", "mary")
    audited = [(a.actor, a.action, a.target) for a in await audit_rows(hub)]
    assert {("mary", "promotion.approve", "team/prod:v1"), ("mary", "promotion.complete", "team/prod:v1")} <= set(audited)


async def test_the_requester_has_no_approve_button_and_a_direct_post_is_refused(hub):
    promotion = await pending_promotion(hub)
    await as_user(hub, "developer")  # alice asked for it
    text = await get(hub, "/console/t/team/promotions")
    assert f"#{promotion['id']}" in text and "Approve" not in text
    assert f'aria-label="Withdraw promotion {promotion["id"]}"' in text  # the API lets a requester withdraw
    _, refused = await post(hub, "/console/t/team/promotions", {"action": "approve", "id": str(promotion["id"])},
                            expect=403)
    assert "needs a maintainer" in refused
    # A guest may read the page but decides nothing either.
    await as_user(hub, "guest")
    text = await get(hub, "/console/t/team/promotions")
    assert f"#{promotion['id']}" in text and "<button" not in text.split("Awaiting approval")[1]
    await post(hub, "/console/t/team/promotions", {"action": "reject", "id": str(promotion["id"])}, expect=403)
    # Without the CSRF token, nothing happens either.
    r = await hub.post("/console/t/team/promotions", data={"action": "reject", "id": str(promotion["id"])},
                       headers={**origin(hub), **HTML})
    assert r.status == 403
    status, body, _ = await call(hub, "GET", f"/api/v1/promotions/{promotion['id']}", "developer")
    assert body["state"] == "pending"


async def test_the_requester_withdraws_and_an_outsider_gets_404(hub):
    promotion = await pending_promotion(hub)
    await as_user(hub, "other_admin")
    await get(hub, "/console/t/team/promotions", expect=404)
    await get(hub, "/console/t/other/promotions")  # their own tenant's page works, and shows nothing of team's
    assert "team/prod" not in await get(hub, "/console/t/other/promotions")
    # Nor may they decide team's promotion through their own tenant's page.
    await post(hub, "/console/t/other/promotions", {"action": "approve", "id": str(promotion["id"])}, expect=404)
    await as_user(hub, "developer")
    r, _ = await post(hub, "/console/t/team/promotions", {"action": "reject", "id": str(promotion["id"])})
    assert f"promotion {promotion['id']} to team/prod:v1: rejected" in await get(hub, r.headers["Location"])
    assert ("alice", "promotion.reject") in [(a.actor, a.action) for a in await audit_rows(hub)]


# GC reports ----------------------------------------------------------------------------------------
async def test_gc_reports_for_the_tenant_and_the_platform(hub):
    status, body, _ = await call(hub, "POST", "/api/v1/gc/runs", "platform_admin", json={"dry_run": False})
    assert status == 201, body
    status, body, _ = await call(hub, "POST", "/api/v1/gc/runs", "platform_admin", json={"tenant": "team"})
    assert status == 201, body
    status, body, _ = await call(hub, "POST", "/api/v1/gc/runs", "platform_admin", json={"tenant": "other"})
    assert status == 201, body
    _, listed, _ = await call(hub, "GET", "/api/v1/gc/runs", "platform_admin")
    _, team_runs, _ = await call(hub, "GET", "/api/v1/gc/runs?tenant=team", "tenant_admin")
    team_runs = team_runs["items"]
    await as_user(hub, "tenant_admin")
    text = await get(hub, "/console/t/team/gc")
    rows = re.findall(r"<tr><td>(\d+)</td>", text)
    assert rows == [str(r["id"]) for r in team_runs] and rows, (rows, team_runs, listed)
    for key, value in team_runs[0]["counts"].items():
        assert f"{key} {value}" in text
    await get(hub, "/console/platform/gc", expect=404)  # a tenant admin is not the platform admin
    # The dry run a tenant admin may ask the API for, from the page: the same counts, audited, nothing recorded.
    _, api_dry, _ = await call(hub, "POST", "/api/v1/gc/runs", "tenant_admin", json={"dry_run": True, "tenant": "team"})
    before = await audit_rows(hub, "gc.run")
    _, shown = await post(hub, "/console/t/team/gc", {"action": "dry-run"}, expect=200)
    status_line = shown.split('id="gc-preview-heading"')[1].split("</p>")[0]
    assert "nothing was changed" in status_line
    for key, value in api_dry["counts"].items():
        assert f"{key} {value}" in status_line, key
    after = await audit_rows(hub, "gc.run")
    assert len(after) == len(before) + 1 and (after[0].actor, after[0].target) == ("ada", "team")
    assert re.findall(r"<tr><td>(\d+)</td>", shown) == rows  # a dry run is not in the history
    await post(hub, "/console/t/team/gc", {"action": "run"}, expect=422)
    await as_user(hub, "maintainer")
    await get(hub, "/console/t/team/gc", expect=403)
    await post(hub, "/console/t/team/gc", {"action": "dry-run"}, expect=403, csrf_from="/console/t/team/promotions")
    await as_user(hub, "other_admin")
    await get(hub, "/console/t/team/gc", expect=404)
    await as_user(hub, "platform_admin")
    text = await get(hub, "/console/platform/gc")
    assert re.findall(r"<tr><td>(\d+)</td>", text) == [str(r["id"]) for r in listed["items"]]
    assert 'href="/console/platform/gc"' in await get(hub, "/console/platform")


# Retention -----------------------------------------------------------------------------------------
async def test_retention_rules_and_a_dry_run_preview_that_changes_nothing(hub):
    policy = {"rules": [{"repositories": "team/app", "tags": {"glob": "**"}, "keep": {"latest_pushed": 1}}]}
    status, body, _ = await call(hub, "PUT", "/api/v1/tenants/team/retention-policy", "tenant_admin", json=policy)
    assert status == 200, body
    status, body, _ = await call(hub, "PUT", "/api/v1/tenants/team/immutable-tags", "tenant_admin",
                                 json={"rules": [{"repositories": "team/pub", "tags": {"glob": "v*"}}]})
    assert status == 200, body
    _, api_dry, _ = await call(hub, "POST", "/api/v1/retention/runs", "tenant_admin",
                               json={"dry_run": True, "tenant": "team"})
    would = sorted((v["repository"], v["tag"]) for v in api_dry["verdicts"] if v["outcome"] == "would delete")
    assert would  # team/app keeps only its newest tag; team/pub's tag is kept by no rule (the tenant's whole policy)
    await as_user(hub, "tenant_admin")
    text = await get(hub, "/console/t/team/retention")
    assert "rules[0]" in text and '"latest_pushed": 1' in text and "Dry run" not in text
    assert "team/pub" in text.split("Immutable-tag rules")[1]
    before = len(await audit_rows(hub))
    _, shown = await post(hub, "/console/t/team/retention", {"action": "dry-run"}, expect=200)
    preview = shown.split('id="preview-heading"')[1].split("Immutable-tag rules")[0]
    assert f"would delete {len(would)} ({api_dry['counts']['tags']} tags read)" in preview
    assert "nothing was changed" in preview
    kept = sum("rules[0]" in v["rules"] for v in api_dry["verdicts"])
    assert kept == 1 and "<code>rules[0]</code></td><td><code>" in shown
    assert re.search(rf'"latest_pushed": 1[^<]*</code></td><td>{kept}</td>', shown)
    assert sorted(re.findall(r"<tr><td>([^<]+)</td><td>([^<]+)</td><td><code>sha256", preview)) == would
    # Nothing was deleted or audited: the tags are all still there.
    assert len(await audit_rows(hub)) == before
    _, tags, _ = await call(hub, "GET", "/api/v1/repositories/team/app/tags", "tenant_admin")
    assert sorted(t["name"] for t in tags["items"]) == ["v1", "v2"]
    # Only the dry run: a real run goes through the API or the CLI.
    await post(hub, "/console/t/team/retention", {"action": "run"}, expect=422, csrf_from="/console/t/team/retention")
    await as_user(hub, "maintainer")
    await post(hub, "/console/t/team/retention", {"action": "dry-run"}, expect=403,
               csrf_from="/console/t/team/promotions")
    await as_user(hub, "other_admin")
    await get(hub, "/console/t/team/retention", expect=404)


# Members -------------------------------------------------------------------------------------------
async def test_a_tenant_admin_changes_adds_and_removes_members_audited(hub):
    await as_user(hub, "tenant_admin")
    text = await get(hub, "/console/t/team/members")
    assert all(user in text for user in ("gary", "alice", "mary", "ada"))
    r, _ = await post(hub, "/console/t/team/members", {"action": "set", "username": "gary", "role": "developer"})
    assert "gary: developer" in await get(hub, r.headers["Location"])
    await post(hub, "/console/t/team/members", {"action": "set", "username": "bob", "role": "guest"})
    await post(hub, "/console/t/team/members", {"action": "remove", "username": "alice"})
    _, members, _ = await call(hub, "GET", "/api/v1/tenants/team/members", "tenant_admin")
    assert {m["username"]: m["role"] for m in members["items"]} == {
        "gary": "developer", "mary": "maintainer", "ada": "admin", "bob": "guest"}
    audited = [(a.actor, a.target, json.loads(a.detail_json or "null")) for a in await audit_rows(hub, "tenant.member")]
    assert ("ada", "team/gary", {"role": "developer"}) in audited and ("ada", "team/alice", {"role": None}) in audited
    _, text = await post(hub, "/console/t/team/members", {"action": "set", "username": "gary", "role": "owner"},
                         expect=422)
    assert "Role: one of guest, developer, maintainer, admin." in text
    _, text = await post(hub, "/console/t/team/members", {"action": "set", "username": "nobody", "role": "guest"},
                         expect=404)
    assert "no such user" in text
    await post(hub, "/console/t/team/members", {"action": "remove", "username": "bob"})  # an outsider again
    # A maintainer sees no members page, and a POST is refused; an outsider learns nothing.
    await as_user(hub, "maintainer")
    await get(hub, "/console/t/team/members", expect=403)
    assert 'href="/console/t/team/members"' not in await get(hub, "/console/t/team/promotions")
    await post(hub, "/console/t/team/members", {"action": "remove", "username": "ada"}, expect=403,
               csrf_from="/console/t/team/promotions")
    await as_user(hub, "other_admin")
    await get(hub, "/console/t/team/members", expect=404)
    await post(hub, "/console/t/team/members", {"action": "remove", "username": "ada"}, expect=404,
               csrf_from="/console/t/other/members")
    _, members, _ = await call(hub, "GET", "/api/v1/tenants/team/members", "tenant_admin")
    assert "ada" in {m["username"] for m in members["items"]}


# Signing keys --------------------------------------------------------------------------------------
async def test_the_platform_page_lists_signing_keys_without_secrets(hub):
    ring = hub.server.app[AUTH].verifier_keyring()
    await as_user(hub, "platform_admin")
    text = await get(hub, "/console/platform")
    keys = text.split("Signing keys")[1]
    for i, key in enumerate(ring.keys):
        assert f"<code>{key.kid}</code>" in keys
    assert "active: signs new tokens" in keys
    assert "PRIVATE KEY" not in text and "BEGIN" not in text
