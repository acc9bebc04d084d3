"""identity.tenants: create, get, page, update, delete, set_member, members."""

from __future__ import annotations

import time

import pytest

from hub.db.identity import RobotRecord, TenantNotEmptyError

from ..registry.common import digest
from .common import BYTEWISE, GAP, SHUFFLED, chunks, walk


async def test_a_second_create_returns_false_and_keeps_the_first_row(identity):
    assert await identity.tenants.create("team", "The Team", 5)
    assert not await identity.tenants.create("team", "Other", 7)
    assert not await identity.tenants.create("team")
    t = await identity.tenants.get("team")
    assert (t.name, t.display_name, t.quota_bytes) == ("team", "The Team", 5) and t.created_at > 0
    assert await identity.tenants.page(10, None) == [t]
    assert await identity.tenants.create("free")
    assert (await identity.tenants.get("free")).display_name == "" and (await identity.tenants.get("free")).quota_bytes is None
    assert await identity.tenants.get("ghost") is None


async def test_pages_are_in_byte_order(identity):
    for name in SHUFFLED:
        assert await identity.tenants.create(name)
    page = identity.tenants.page
    assert [t.name for t in await page(100, None)] == BYTEWISE
    assert await walk(page, 1) == chunks(BYTEWISE, 1)
    assert await walk(page, 3) == chunks(BYTEWISE, 3)
    assert await walk(page, len(BYTEWISE)) == [BYTEWISE]
    assert await page(10, BYTEWISE[-1]) == []
    assert [t.name for t in await page(2, GAP)] == ["a_b", "ab"]
    assert await page(10, "zzz") == []


async def test_pages_of_only_some_tenants(identity):
    for name in SHUFFLED:
        await identity.tenants.create(name)
    only = ["b", "a.b", "ghost", "a0", "B", "a0"]  # unknown and repeated names are fine
    visible = ["B", "a.b", "a0", "b"]
    page = identity.tenants.page
    assert [t.name for t in await page(100, None, only=only)] == visible
    assert await walk(lambda limit, after: page(limit, after, only=only), 1) == chunks(visible, 1)
    # Full pages of visible tenants, whatever lies between them.
    assert await walk(lambda limit, after: page(limit, after, only=only), 2) == chunks(visible, 2)
    assert [t.name for t in await page(10, GAP, only=only)] == ["b"]
    assert await page(10, "b", only=only) == []
    assert await page(10, None, only=[]) == []
    assert await page(10, None, only=["ghost"]) == []


async def test_update_sets_fields_and_refuses_others(identity):
    await identity.tenants.create("team", "Team", 5)
    t = await identity.tenants.update("team", {"display_name": "T", "quota_bytes": 7})
    assert (t.display_name, t.quota_bytes) == ("T", 7)
    assert (await identity.tenants.update("team", {"quota_bytes": None})).quota_bytes is None
    assert await identity.tenants.update("team", {}) == await identity.tenants.get("team")
    with pytest.raises(ValueError):
        await identity.tenants.update("team", {"display_name": "X", "name": "other"})
    assert (await identity.tenants.get("team")).display_name == "T"
    assert await identity.tenants.update("ghost", {"display_name": "G"}) is None
    assert await identity.tenants.get("ghost") is None


async def test_members_set_change_remove_and_page_in_byte_order(identity):
    await identity.tenants.create("team")
    await identity.tenants.create("other")
    for name in SHUFFLED:
        await identity.users.create(name, "h")
        assert await identity.tenants.set_member("team", name, "guest")
    assert await identity.tenants.set_member("other", "ab", "admin")
    members = identity.tenants.members
    assert [m.username for m in await members("team", 100, None)] == BYTEWISE
    assert await walk(lambda limit, after: members("team", limit, after), 1, "username") == chunks(BYTEWISE, 1)
    assert await walk(lambda limit, after: members("team", limit, after), 3, "username") == chunks(BYTEWISE, 3)
    assert await members("team", 10, BYTEWISE[-1]) == []
    assert [m.username for m in await members("team", 2, GAP)] == ["a_b", "ab"]
    assert await members("team", 10, "zzz") == []
    assert await members("ghost", 10, None) == []

    # Setting a role again changes it (one row, the last value); None removes the member.
    assert await identity.tenants.set_member("team", "ab", "maintainer")
    assert await identity.tenants.set_member("team", "ab", "developer")
    assert [(m.username, m.role) for m in await members("team", 100, "a_b")] == [("ab", "developer"), ("b", "guest")]
    assert await identity.users.memberships("ab") == {"team": "developer", "other": "admin"}
    assert await identity.tenants.set_member("team", "ab", None)
    assert await identity.users.memberships("ab") == {"other": "admin"}
    assert await identity.tenants.set_member("team", "ab", None)  # removing a non-member is fine

    # Unknown tenant or user: False, and no row.
    assert not await identity.tenants.set_member("ghost", "ab", "admin")
    assert not await identity.tenants.set_member("team", "ghost", "admin")
    assert await identity.users.memberships("ab") == {"other": "admin"}
    assert "ghost" not in [m.username for m in await members("team", 100, None)]


def _robot(tenant: str, name: str) -> RobotRecord:
    return RobotRecord(tenant, name, "hash", (f"{tenant}/*",), ("pull",), None, False, time.time())


async def test_delete_refuses_a_tenant_with_repositories_and_deletes_nothing(identity, add_repository):
    await identity.tenants.create("t", "T", 9)
    await identity.users.create("alice", "h")
    await identity.tenants.set_member("t", "alice", "admin")
    await identity.robots.create(_robot("t", "ci"))
    # Names next to the tenant's range that are not in it: another tenant's repositories.
    for name in ("t0/x", "t-x/y", "tt/x", "t.x/y", "s/x"):
        await add_repository(name)
    await add_repository("t/x")

    with pytest.raises(TenantNotEmptyError):
        await identity.tenants.delete("t")
    assert (await identity.tenants.get("t")).display_name == "T"
    assert await identity.users.memberships("alice") == {"t": "admin"}
    assert await identity.robots.get("t", "ci") is not None


async def test_delete_ignores_repositories_of_neighbouring_names(identity, add_repository):
    await identity.tenants.create("t")
    await identity.tenants.create("tt")
    await identity.users.create("alice", "h")
    await identity.tenants.set_member("t", "alice", "admin")
    await identity.tenants.set_member("tt", "alice", "guest")
    await identity.robots.create(_robot("t", "ci"))
    await identity.robots.create(_robot("tt", "ci"))
    for name in ("t0/x", "t-x/y", "tt/x", "t.x/y", "s/x", "t"):
        await add_repository(name)

    assert await identity.tenants.delete("t")
    assert not await identity.tenants.delete("t")
    assert not await identity.tenants.delete("ghost")
    assert await identity.tenants.get("t") is None
    # Its memberships and robots went with it; the neighbour's stay.
    assert await identity.users.memberships("alice") == {"tt": "guest"}
    assert await identity.robots.get("t", "ci") is None
    assert await identity.robots.get("tt", "ci") is not None
    assert [t.name for t in await identity.tenants.page(10, None)] == ["tt"]
    # A tenant of the same name starts empty.
    assert await identity.tenants.create("t")
    assert await identity.robots.page("t", 10, None) == []
    assert await identity.tenants.members("t", 10, None) == []


async def test_tenant_deletion_refuses_a_tenant_with_repositories(identity, registry):  # from tests/db/test_store.py
    await identity.tenants.create("team")
    await identity.users.create("alice", "h")
    await identity.tenants.set_member("team", "alice", "guest")
    await identity.robots.create(RobotRecord("team", "ci", "s", ("team/*",), ("pull",), None, False, time.time()))
    await registry.uploads.create("0f8fad5b-d9cb-469f-a165-70867728950e", "team/app")
    with pytest.raises(TenantNotEmptyError):
        await identity.tenants.delete("team")
    assert await identity.tenants.get("team") is not None
    assert await registry.repositories.delete("team/app") and not await registry.repositories.delete("team/app")
    assert await registry.uploads.get("0f8fad5b-d9cb-469f-a165-70867728950e") is None
    await registry.blobs.link("team-b/x", digest("x"), 1)  # another tenant's repository
    assert await identity.tenants.delete("team")
    assert not await identity.tenants.delete("team")
    assert await identity.users.memberships("alice") == {}
    assert await identity.robots.get("team", "ci") is None
