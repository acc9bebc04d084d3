"""identity.robots: create, get, page, revoke, delete."""

from __future__ import annotations

import time

from hub.db.identity import RobotRecord

from .common import BYTEWISE, GAP, SHUFFLED, chunks, walk


def robot(tenant: str, name: str, **changes) -> RobotRecord:
    fields = dict(secret_hash="hash", repositories=(f"{tenant}/*",), actions=("pull",), expires_at=None,
                  revoked=False, created_at=1_700_000_000.5)
    fields.update(changes)
    return RobotRecord(tenant, name, **fields)


async def test_a_robot_reads_back_as_written(identity):
    await identity.tenants.create("team")
    ci = robot("team", "ci", repositories=("team/ci/*", "team/x"), actions=("pull", "push"),
               expires_at=time.time() + 60)
    old = robot("team", "old", repositories=(), actions=(), revoked=True)
    assert await identity.robots.create(ci) and await identity.robots.create(old)
    assert await identity.robots.get("team", "ci") == ci
    assert await identity.robots.get("team", "old") == old
    assert await identity.robots.get("team", "ghost") is None
    assert await identity.robots.get("ghost", "ci") is None


async def test_a_second_create_returns_false_and_keeps_the_first_row(identity):
    await identity.tenants.create("team")
    first = robot("team", "ci", secret_hash="h1")
    assert await identity.robots.create(first)
    assert not await identity.robots.create(robot("team", "ci", secret_hash="h2", actions=("push",)))
    assert await identity.robots.page("team", 10, None) == [first]
    # An unknown tenant: False, and no row anywhere.
    assert not await identity.robots.create(robot("ghost", "ci"))
    assert await identity.robots.page("ghost", 10, None) == []
    assert await identity.robots.get("ghost", "ci") is None


async def test_pages_are_per_tenant_and_in_byte_order(identity):
    await identity.tenants.create("team")
    await identity.tenants.create("other")
    for name in SHUFFLED:
        assert await identity.robots.create(robot("team", name))
    assert await identity.robots.create(robot("other", "a1"))  # another tenant's robot, in the gap
    page = identity.robots.page
    assert [r.name for r in await page("team", 100, None)] == BYTEWISE
    assert await walk(lambda limit, after: page("team", limit, after), 1) == chunks(BYTEWISE, 1)
    assert await walk(lambda limit, after: page("team", limit, after), 3) == chunks(BYTEWISE, 3)
    assert await walk(lambda limit, after: page("team", limit, after), len(BYTEWISE)) == [BYTEWISE]
    assert await page("team", 10, BYTEWISE[-1]) == []
    assert [r.name for r in await page("team", 2, GAP)] == ["a_b", "ab"]
    assert await page("team", 10, "zzz") == []
    assert [(r.tenant, r.name) for r in await page("other", 10, None)] == [("other", "a1")]


async def test_revoke_keeps_the_row_and_delete_removes_it(identity):
    await identity.tenants.create("team")
    await identity.tenants.create("other")
    await identity.robots.create(robot("team", "ci"))
    await identity.robots.create(robot("other", "ci"))

    assert await identity.robots.revoke("team", "ci")
    revoked = await identity.robots.get("team", "ci")
    assert revoked == robot("team", "ci", revoked=True)
    assert await identity.robots.revoke("team", "ci")  # again: still there, still revoked
    assert not await identity.robots.revoke("team", "ghost")
    assert not await identity.robots.revoke("ghost", "ci")
    assert not (await identity.robots.get("other", "ci")).revoked  # same name, other tenant

    assert await identity.robots.delete("team", "ci")
    assert not await identity.robots.delete("team", "ci")
    assert not await identity.robots.delete("ghost", "ci")
    assert await identity.robots.get("team", "ci") is None
    assert await identity.robots.get("other", "ci") == robot("other", "ci")
    assert await identity.robots.create(robot("team", "ci"))  # the name is free again


async def test_robots(identity):  # from tests/db/test_store.py
    await identity.tenants.create("team")
    robot = RobotRecord("team", "ci", "hash", ("team/ci/*", "team/x"), ("pull", "push"), time.time() + 60, False,
                        time.time())
    assert await identity.robots.create(robot) and not await identity.robots.create(robot)
    assert not await identity.robots.create(RobotRecord("ghost", "ci", "h", (), (), None, False, 0.0))
    assert await identity.robots.get("team", "ci") == robot
    await identity.robots.create(RobotRecord("team", "build", "h", (), ("pull",), None, False, time.time()))
    assert [r.name for r in await identity.robots.page("team", 10, None)] == ["build", "ci"]
    assert [r.name for r in await identity.robots.page("team", 10, "build")] == ["ci"]
    assert await identity.robots.revoke("team", "ci") and (await identity.robots.get("team", "ci")).revoked
    assert not await identity.robots.revoke("other", "ci")
    assert await identity.robots.delete("team", "ci") and await identity.robots.get("team", "ci") is None
