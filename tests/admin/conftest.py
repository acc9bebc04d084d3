"""An auth-enabled hub with tenants, users of every role, a robot and a few repositories."""

from __future__ import annotations

import json as jsonlib
import time

import pytest

from auth.passwords import hash_secret
from hub.app import create_app
from hub.config import load_config
from hub.db.identity import RobotRecord
from hub.keys import AUTH, STORE
from tests.registry.conftest import DATABASE_SETUP, METADATA_STORES, basic, bearer, push_image, token

# role -> (username, password); "robot" is robot$team+ci, "anonymous" sends nothing.
CREDENTIALS = {
    "guest": ("gary", "gary-pw-123"), "developer": ("alice", "alice-pw-123"),
    "maintainer": ("mary", "mary-pw-123"), "tenant_admin": ("ada", "ada-pw-1234"),
    "other_admin": ("bob", "bob-pw-1234"), "robot": ("robot$team+ci", "robot-secret"),
    "platform_admin": ("root", "root-pw-123"),
}
ROLES = ["anonymous", "guest", "developer", "maintainer", "tenant_admin", "other_admin", "robot", "platform_admin"]
MEMBERS = (("gary", "team", "guest"), ("alice", "team", "developer"), ("mary", "team", "maintainer"),
           ("ada", "team", "admin"), ("bob", "other", "admin"))


def headers(role: str) -> dict[str, str]:
    if role == "anonymous":
        return {}
    return basic(*CREDENTIALS[role])


def make_config(tmp_path, database: dict | None = None, **auth):
    return load_config(environ={}, overrides={
        "data_dir": str(tmp_path), "log": {"access_log": False}, "database": database or {},
        "webhooks": {"enabled": False},  # no delivery worker: the webhook API's tests see the queue as they left it
        "auth": {"enabled": True, "password_memory_kib": 64, "password_time_cost": 1,
                 "login_failure_limit": 1000, **auth},
    })


async def seed(client, *, images: bool = True) -> None:
    app = client.server.app
    auth, store = app[AUTH], app[STORE]
    await store.create_tenant("team", "The Team", 10_000_000)
    await store.create_tenant("other")
    for user, tenant, role in MEMBERS:
        await store.create_user(user, await auth.hash_password(CREDENTIALS_BY_USER[user]))
        await store.set_membership(tenant, user, role)
    await store.create_user("root", await auth.hash_password("root-pw-123"), is_admin=True)
    await store.create_robot(RobotRecord("team", "ci", hash_secret("robot-secret"), ("team/ci/*",),
                                         ("pull", "push"), None, False, time.time()))
    if images:
        root = await token(client, "repository:team/app:pull,push", "repository:other/secret:pull,push",
                           "repository:team/pub:pull,push", user="root", password="root-pw-123")
        await push_image(client, "team/app", root, tag="v1")
        await push_image(client, "team/app", root, tag="v2")
        await push_image(client, "team/pub", root, tag="v1")
        await push_image(client, "other/secret", root, tag="v1")
        await store.set_repository_public("team/pub", True)


CREDENTIALS_BY_USER = {user: password for user, password in CREDENTIALS.values()}


@pytest.fixture(params=METADATA_STORES)
async def api(request, aiohttp_client, tmp_path):
    database = DATABASE_SETUP[request.param](request, tmp_path)
    client = await aiohttp_client(create_app(make_config(tmp_path, database)))
    await seed(client)
    return client


@pytest.fixture(params=METADATA_STORES)
async def bare(request, aiohttp_client, tmp_path):
    """The same users and tenants without any repositories (cheaper)."""
    database = DATABASE_SETUP[request.param](request, tmp_path)
    client = await aiohttp_client(create_app(make_config(tmp_path, database)))
    await seed(client, images=False)
    return client


async def audit_rows(client, action: str | None = None) -> list:
    rows = await client.server.app[STORE].audit_entries(10_000, None)
    return [r for r in rows if action is None or r.action == action]




async def call(client, method: str, path: str, role: str = "platform_admin", *, json=None, data=None,
               extra: dict | None = None):
    """(status, parsed body or None, response) of one request as `role`."""
    r = await client.request(method, path, json=json, data=data, headers={**headers(role), **(extra or {})})
    text = await r.text()
    return r.status, (jsonlib.loads(text) if text else None), r


def field_errors(problem: dict) -> dict[str, str]:
    """pointer or parameter -> detail, from a validation problem."""
    assert problem["type"] == "urn:daohub:problem:validation-error", problem
    assert problem["status"] == 422 and problem["title"] and problem["detail"]
    return {e.get("pointer") or e["parameter"]: e["detail"] for e in problem["errors"]}


__all__ = ["CREDENTIALS", "ROLES", "audit_rows", "basic", "bearer", "call", "field_errors", "headers", "make_config",
           "push_image", "seed", "token"]
