"""Every role x every registry action, with the exact expected outcome.

Roles: nobody (anonymous token), guest, developer, maintainer and admin of tenant "team",
a robot of "team" limited to team/ci/*, the admin of tenant "other", and the platform admin.
"""

from __future__ import annotations

import base64
import json
import os
import time

import pytest

from auth.passwords import hash_secret
from hub.db.identity import RobotRecord
from hub.keys import AUTH, STORE

from .conftest import bearer, push_image, sha256, token

ROLES = ["anonymous", "guest", "developer", "maintainer", "admin", "robot", "other_admin", "platform_admin"]
ACTIONS = ["pull", "tag_list", "referrers", "push", "delete", "mount_from_other_tenant", "catalog",
           "head_foreign_digest"]
ALL_SCOPES = ["repository:team/app:pull,push,delete", "repository:team/mount:pull,push",
              "repository:other/secret:pull", "registry:catalog:*"]

Y, N = True, False
EXPECTED = {
    # head_foreign: the digest of other/secret's config asked for through team/app. Nobody gets
    # it, not even the platform admin: the blob is not linked into team/app.
    #                  pull tags refs push del  mount catalog(sees team/app) head_foreign
    "anonymous":      (N,   N,   N,   N,   N,   N,    N,  N),
    "guest":          (Y,   Y,   Y,   N,   N,   N,    Y,  N),
    "developer":      (Y,   Y,   Y,   Y,   N,   N,    Y,  N),
    "maintainer":     (Y,   Y,   Y,   Y,   Y,   N,    Y,  N),
    "admin":          (Y,   Y,   Y,   Y,   Y,   N,    Y,  N),
    "robot":          (N,   N,   N,   N,   N,   N,    N,  N),
    "other_admin":    (N,   N,   N,   N,   N,   N,    N,  N),
    "platform_admin": (Y,   Y,   Y,   Y,   Y,   Y,    Y,  N),
}
CREDENTIALS = {
    "guest": ("gary", "gary-pw"), "developer": ("alice", "alice-pw"), "maintainer": ("mary", "mary-pw"),
    "admin": ("ada", "ada-pw"), "robot": ("robot$team+ci", "robot-secret"), "other_admin": ("bob", "bob-pw"),
    "platform_admin": ("root", "root-pw"),
}


@pytest.fixture
async def world(hub):
    store, auth = hub.server.app[STORE], hub.server.app[AUTH]
    for user, role in (("mary", "maintainer"), ("ada", "admin")):
        await store.create_user(user, await auth.hash_password(f"{user}-pw"))
        await store.set_membership("team", user, role)
    await store.create_user("root", await auth.hash_password("root-pw"), is_admin=True)
    root = await token(hub, "repository:team/app:pull,push", "repository:other/secret:pull,push",
                       user="root")
    await push_image(hub, "team/app", root, tag="v1")
    secret = await push_image(hub, "other/secret", root, tag="v1")
    return {"secret_blob": secret}


async def outcome(hub, world, role: str, action: str) -> bool:
    user, password = CREDENTIALS.get(role, (None, None))
    tok = await token(hub, *ALL_SCOPES, user=user, password=password)
    h = bearer(tok)
    if action == "pull":
        return (await hub.get("/v2/team/app/manifests/v1", headers=h)).status == 200
    if action == "tag_list":
        return (await hub.get("/v2/team/app/tags/list", headers=h)).status == 200
    if action == "referrers":
        return (await hub.get(f"/v2/team/app/referrers/{sha256(b'x')}", headers=h)).status == 200
    if action == "push":
        data = os.urandom(64)
        r = await hub.post(f"/v2/team/app/blobs/uploads/?digest={sha256(data)}", data=data, headers=h)
        return r.status == 201
    if action == "delete":
        return (await hub.delete("/v2/team/app/manifests/v1", headers=h)).status == 202
    if action == "mount_from_other_tenant":
        r = await hub.post(f"/v2/team/mount/blobs/uploads/?mount={world['secret_blob']}&from=other/secret",
                           headers=h)
        assert r.status in (201, 202, 401), r.status
        return r.status == 201
    if action == "catalog":
        r = await hub.get("/v2/_catalog", headers=h)
        if r.status != 200:
            return False
        names = (await r.json())["repositories"]
        assert "other/secret" not in names or role in ("other_admin", "platform_admin")
        return "team/app" in names
    if action == "head_foreign_digest":
        # The digest of other/secret's config, asked for through team/app: never there.
        r = await hub.head(f"/v2/team/app/blobs/{world['secret_blob']}", headers=h)
        assert r.status in (401, 404)
        return r.status == 200
    raise AssertionError(action)


@pytest.mark.parametrize("role", ROLES)
async def test_isolation_matrix(hub, world, role):
    got = {action: await outcome(hub, world, role, action) for action in ACTIONS}
    assert got == dict(zip(ACTIONS, EXPECTED[role]))


async def test_robot_works_inside_its_patterns(hub, world):
    tok = await token(hub, "repository:team/ci/app:pull,push,delete", user="robot$team+ci",
                      password="robot-secret")
    granted = {a["name"]: a["actions"] for a in json.loads(
        base64.urlsafe_b64decode(tok.split(".")[1] + "==="))["access"]}
    assert granted == {"team/ci/app": ["pull", "push"]}
    await push_image(hub, "team/ci/app", tok)


async def test_expired_or_revoked_robot_gets_nothing(hub):
    store = hub.server.app[STORE]
    await store.create_robot(RobotRecord("team", "old", hash_secret("old-secret"), ("team/**",), ("pull",),
                                         time.time() - 1, False, time.time() - 100))
    r = await hub.get("/auth/token", params={"scope": "repository:team/app:pull"},
                      headers={"Authorization": "Basic " + base64.b64encode(
                          b"robot$team+old:old-secret").decode()})
    assert r.status == 401
