"""Tenant isolation of the app store, over SQLite and PostgreSQL.

The rule: an app is visible exactly to those who may pull its repository. A private app answers
every other caller (another tenant's admin, a robot of another tenant, anonymous callers) on every
path (list, categories, detail, version, icons, render, Portainer feed, deprecate, delete) exactly
as an app that does not exist: 404 with the same body, or simply not listed. Changes need the
registry's rights on top of seeing the app (403 when seen but not allowed)."""

from __future__ import annotations

import time

import pytest

from auth.passwords import hash_secret
from hub.db.identity import RobotRecord
from hub.keys import STORE

from . import hubs
from .hubs import headers, publish_body

auth_hub = hubs.auth_hub  # the fixture

OUTSIDERS = ["anonymous", "other_admin", "other_robot"]
INSIDERS = ["guest", "developer", "maintainer", "tenant_admin", "platform_admin", "robot"]
APP = "/api/v1/appstore/apps/team/secret"


def creds(role: str) -> dict:
    if role == "other_robot":
        return hubs.basic("robot$other+ci", "other-secret")
    return headers(role)


@pytest.fixture
async def catalog(auth_hub):
    """team/secret (private, with an icon) and team/pub (public), published as a developer."""
    store = auth_hub.server.app[STORE]
    await store.create_robot(RobotRecord("other", "ci", hash_secret("other-secret"), ("other/**",),
                                         ("pull", "push", "delete"), None, False, time.time()))
    for repository, key in (("team/secret", "secret"), ("team/pub", "pub")):
        r = await auth_hub.post(f"/api/v1/appstore/apps/{repository}/versions", headers=headers("developer"),
                                json=publish_body(key, with_icon=True, categories=(f"cat-{key}",)))
        assert r.status == 201, await r.text()
    await store.set_repository_public("team/pub", True)
    return auth_hub


def private_reads(version: str = "1.0.0") -> list[tuple[str, str, dict | None]]:
    return [("GET", APP, None), ("GET", f"{APP}/icon", None), ("GET", f"{APP}/versions/{version}", None),
            ("GET", f"{APP}/versions/{version}/icon", None),
            ("POST", f"{APP}/versions/{version}/render", {"values": {}})]


@pytest.mark.parametrize("role", OUTSIDERS)
async def test_outsiders_cannot_tell_a_private_app_from_a_missing_one(catalog, role):
    for method, path, body in private_reads():
        hidden = await catalog.request(method, path, json=body, headers=creds(role))
        missing = await catalog.request(method, path.replace("team/secret", "team/nothing"), json=body,
                                        headers=creds(role))
        assert hidden.status == missing.status == 404, (role, path)
        hidden_body, missing_body = await hidden.json(), await missing.json()
        assert hidden_body.pop("instance") != missing_body.pop("instance")
        assert hidden_body == missing_body, (role, path)
    for method, body in (("PATCH", {"deprecated": True}), ("DELETE", None)):
        r = await catalog.request(method, f"{APP}/versions/1.0.0", json=body, headers=creds(role))
        # Anonymous callers are asked to sign in before anything is looked up.
        assert r.status == (401 if role == "anonymous" else 404), (role, method, await r.text())
    assert (await catalog.server.app[STORE].get_app_version("team/secret", "1.0.0")) is not None


@pytest.mark.parametrize("role", OUTSIDERS)
async def test_outsiders_list_only_public_apps(catalog, role):
    r = await catalog.get("/api/v1/appstore/apps", headers=creds(role))
    assert [a["repository"] for a in (await r.json())["items"]] == ["team/pub"]
    r = await catalog.get("/api/v1/appstore/apps", params={"tenant": "team", "q": "secret"}, headers=creds(role))
    assert (await r.json())["items"] == []
    r = await catalog.get("/api/v1/appstore/categories", headers=creds(role))
    assert await r.json() == {"items": [{"name": "cat-pub", "apps": 1}]}
    # The public app itself is readable by everyone, anonymous callers included.
    for method, path, body in private_reads():
        r = await catalog.request(method, path.replace("team/secret", "team/pub"), json=body, headers=creds(role))
        assert r.status == 200, (role, path, await r.text())


@pytest.mark.parametrize("role", INSIDERS)
async def test_members_and_robots_of_the_tenant_see_the_private_app(catalog, role):
    r = await catalog.get("/api/v1/appstore/apps", headers=creds(role))
    listed = [a["repository"] for a in (await r.json())["items"]]
    # The robot's patterns (team/ci/*) do not cover team/secret: it sees what it may pull.
    assert listed == (["team/pub"] if role == "robot" else ["team/pub", "team/secret"])
    for method, path, body in private_reads():
        r = await catalog.request(method, path, json=body, headers=creds(role))
        assert r.status == (404 if role == "robot" else 200), (role, path)


@pytest.mark.parametrize("role, status", [("anonymous", 401), ("other_admin", 403), ("other_robot", 403),
                                          ("guest", 403), ("robot", 403), ("developer", 201)])
async def test_publishing_needs_push(catalog, role, status):
    r = await catalog.post(f"{APP}/versions", json=publish_body("secret", "2.0.0"), headers=creds(role))
    assert r.status == status, await r.text()


@pytest.mark.parametrize("role, deprecate, delete", [
    ("guest", 403, 403), ("developer", 403, 403), ("maintainer", 200, 204), ("tenant_admin", 200, 204),
    ("platform_admin", 200, 204)])
async def test_deprecate_and_delete_need_rights_over_the_repository(catalog, role, deprecate, delete):
    r = await catalog.patch(f"{APP}/versions/1.0.0", json={"deprecated": True}, headers=creds(role))
    assert r.status == deprecate, await r.text()
    if deprecate == 200:
        assert (await r.json())["deprecated"] is True
    r = await catalog.delete(f"{APP}/versions/1.0.0", headers=creds(role))
    assert r.status == delete, await r.text()
    gone = await catalog.server.app[STORE].get_app_version("team/secret", "1.0.0") is None
    assert gone == (delete == 204)


@pytest.mark.parametrize("role", OUTSIDERS)
async def test_portainer_feeds_leave_private_apps_out(catalog, role):
    for feed in ("v2", "v3"):
        for params in ({}, {"tenant": "team"}):
            r = await catalog.get(f"/api/v1/appstore/portainer/{feed}.json", params=params, headers=creds(role))
            assert r.status == 200, await r.text()
            text = await r.text()
            assert "secret" not in text.lower() and "cat-pub" in text


async def test_wrong_credentials_are_refused_not_treated_as_anonymous(catalog):
    r = await catalog.get("/api/v1/appstore/apps", headers=hubs.basic("alice", "wrong-password"))
    assert r.status == 401
    r = await catalog.get("/api/v1/appstore/apps", headers={"Authorization": "Bearer not.a.token"})
    assert r.status == 401
