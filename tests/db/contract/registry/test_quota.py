"""registry.quota: usage is distinct blobs plus distinct manifests of the tenant's range, the room
an upload has, refusals that write nothing, and concurrent links that never pass the quota."""

from __future__ import annotations

import asyncio

import pytest

from hub.db.base import QuotaExceededError, QuotaRoom

from .common import digest, manifest


async def test_quota_counts_distinct_blobs_of_the_tenant_only(registry):  # from tests/db/test_store.py
    assert await registry.tenants.create("team", "Team", 100)
    await registry.blobs.link("team/a", digest("x"), 60)
    await registry.blobs.link("team/b", digest("x"), 60)  # the same blob counts once
    await registry.blobs.link("team-b/a", digest("y"), 1000)  # other tenants sort right next to "team/"
    await registry.blobs.link("team.c/a", digest("z"), 1000)
    await registry.blobs.link("teamd/a", digest("w"), 1000)
    assert await registry.quota.usage("team") == 60
    await registry.quota.check("team/c", digest("x"), 60)  # already counted
    with pytest.raises(QuotaExceededError) as exc:
        await registry.quota.check("team/c", digest("v"), 41)
    assert (exc.value.tenant, exc.value.used, exc.value.limit, exc.value.needed) == ("team", 60, 100, 41)
    with pytest.raises(QuotaExceededError):
        await registry.blobs.link("team/c", digest("v"), 41)
    assert await registry.blobs.size_in("team/c", digest("v")) is None
    await registry.blobs.link("team/c", digest("v"), 40)
    assert await registry.quota.usage("team") == 100
    await registry.blobs.link("free/a", digest("big"), 10**12)  # no tenant row: no quota
    assert await registry.tenants.update("team", {"quota_bytes": None})
    await registry.blobs.link("team/c", digest("u"), 10**9)


async def test_usage_counts_each_manifest_once_per_tenant(registry):  # from tests/db/test_quota_store.py
    assert await registry.tenants.create("team", "Team", 1000)
    await registry.blobs.link("team/a", digest("x"), 100)
    await registry.blobs.link("team/b", digest("x"), 100)
    m = manifest(blobs=[digest("x")])
    assert await registry.manifests.put("team/a", m, ["v1"]) == []
    assert await registry.manifests.put("team/b", m, ["v1", "v2"]) == []
    await registry.blobs.link("teamx/a", digest("x"), 100)  # a tenant whose name sorts next to "team/"
    assert await registry.manifests.put("teamx/a", m, ["v1"]) == []
    assert await registry.quota.usage("team") == 100 + len(m.content)
    assert await registry.quota.usage("teamx") == 100 + len(m.content)
    assert await registry.manifests.delete("team/a", m.digest)
    assert await registry.quota.usage("team") == 100 + len(m.content)
    assert await registry.manifests.delete("team/b", m.digest)
    assert await registry.quota.usage("team") == 100


async def test_manifest_past_the_quota_changes_nothing(registry):  # from tests/db/test_quota_store.py
    assert await registry.tenants.create("team", "Team", 200)
    await registry.blobs.link("team/a", digest("x"), 150)
    big = manifest(blobs=[digest("x")], salt="s" * 60)
    with pytest.raises(QuotaExceededError) as exc:
        await registry.manifests.put("team/a", big, ["v1"])
    assert (exc.value.used, exc.value.limit, exc.value.needed, exc.value.kind) == (150, 200, len(big.content),
                                                                                   "manifest")
    assert await registry.manifests.get("team/a", "v1", by_digest=False) is None
    assert await registry.manifests.get("team/a", big.digest, by_digest=True) is None
    assert await registry.quota.usage("team") == 150
    # Without a quota, and in the pull-through cache's way (references not verified), it goes in.
    assert await registry.tenants.update("team", {"quota_bytes": None})
    assert await registry.manifests.put("team/a", big, ["v1"], verify_references=False) == []
    assert await registry.quota.usage("team") == 150 + len(big.content)


async def test_quota_room_counts_other_unfinished_uploads(registry):  # from tests/db/test_quota_store.py
    assert await registry.quota.room("team/a") is None  # no tenant, no quota
    assert await registry.tenants.create("team", "Team", 1000)
    await registry.blobs.link("team/a", digest("x"), 100)
    for upload_id, repository, size in (("u1", "team/a", 30), ("u2", "team/b", 50), ("u3", "teamx/a", 400)):
        await registry.uploads.create(upload_id, repository)
        await registry.uploads.set_size(upload_id, None, size)
    assert await registry.quota.room("team/a") == QuotaRoom("team", 1000, 100, 80)
    assert await registry.quota.room("team/a", upload_id="u1") == QuotaRoom("team", 1000, 100, 50)
    assert (await registry.quota.room("team/a", upload_id="u1")).free(30) == 1000 - 100 - 50 - 30
    assert await registry.quota.room("team/c", digest=digest("x")) is None  # counted already: adds nothing
    assert await registry.quota.room("team/c", digest=digest("y")) == QuotaRoom("team", 1000, 100, 80)


async def test_repository_delete_and_upload_cleanup_release_their_bytes(registry):  # from test_quota_store.py
    assert await registry.tenants.create("team", "Team", 1000)
    await registry.blobs.link("team/a", digest("x"), 100)
    await registry.blobs.link("team/b", digest("y"), 200)
    m = manifest(blobs=[digest("y")])
    assert await registry.manifests.put("team/b", m, ["v1"]) == []
    await registry.uploads.create("u1", "team/b")
    await registry.uploads.set_size("u1", None, 300)
    assert await registry.quota.room("team/a") == QuotaRoom("team", 1000, 300 + len(m.content), 300)
    assert await registry.repositories.delete("team/b")  # its manifests, links and uploads go with it
    assert await registry.quota.usage("team") == 100
    assert await registry.quota.room("team/a") == QuotaRoom("team", 1000, 100, 0)


async def test_tenant_range_at_its_edges(registry):
    assert await registry.tenants.create("t", "T", 10**6)
    for i, name in enumerate(["tt/x", "t0", "t-x/y", "t/x", "t", "t.x/y"]):
        await registry.blobs.link(name, digest(name), 10**i)
        await registry.uploads.create(f"u-{name}", name)
        await registry.uploads.set_size(f"u-{name}", None, 7 * 10**i)
    assert await registry.quota.usage("t") == 10**3  # "t/x" only
    assert await registry.quota.room("t/new") == QuotaRoom("t", 10**6, 10**3, 7 * 10**3)
    assert await registry.quota.room("t/new", digest=digest("t/x")) is None
    assert await registry.quota.room("t/new", digest=digest("t0")) == QuotaRoom("t", 10**6, 10**3, 7 * 10**3)
    await registry.quota.check("t/new", digest("t/x"), 10**9)  # counted already
    with pytest.raises(QuotaExceededError):
        await registry.quota.check("t/new", digest("t0"), 10**6 - 10**3 + 1)  # another tenant's blob counts anew
    await registry.quota.check("t/new", digest("t0"), 10**6 - 10**3)


async def test_a_refused_completion_and_a_refused_put_write_nothing(registry):
    assert await registry.tenants.create("team", "Team", 100)
    await registry.blobs.link("team/a", digest("x"), 90)
    await registry.uploads.create("u1", "team/new")
    with pytest.raises(QuotaExceededError) as exc:
        await registry.uploads.complete("u1", "team/new", digest("y"), 11)
    assert (exc.value.kind, exc.value.needed) == ("blob", 11)
    assert (await registry.uploads.get("u1")).repository == "team/new"
    assert await registry.blobs.size_anywhere(digest("y")) is None
    m = manifest([digest("x")], salt="s" * 20)
    with pytest.raises(QuotaExceededError):
        await registry.manifests.put("team/b", m, ["v1"])
    assert not await registry.repositories.exists("team/b")
    assert await registry.quota.usage("team") == 90
    await registry.uploads.complete("u1", "team/new", digest("x"), 90)  # counted already: fits
    assert await registry.uploads.get("u1") is None


async def test_twenty_links_into_a_quota_tenant_never_pass_it(writers):
    a, b = writers
    size, room = 10, 7
    assert await a.tenants.create("team", "Team", size * room)

    async def link(handle, i: int) -> bool:
        try:
            await handle.blobs.link(f"team/r{i % 3}", digest(f"blob{i}"), size)
        except QuotaExceededError:
            return False
        return True

    linked = await asyncio.gather(*(link(a if i % 2 else b, i) for i in range(20)))
    assert linked.count(True) == room
    assert await a.quota.usage("team") == size * room
    assert await b.quota.usage("team") == size * room
    linked_blobs = [i for i in range(20) if await b.blobs.size_anywhere(digest(f"blob{i}")) is not None]
    assert linked_blobs == [i for i, ok in enumerate(linked) if ok]


async def test_sums_are_ints_in_both_dialects(registry):
    """PostgreSQL's SUM is numeric (a Decimal, which compares equal to an int): the stores cast."""
    assert await registry.tenants.create("team", "Team", 10**12)
    await registry.blobs.link("team/a", digest("x"), 3 * 10**9)
    await registry.uploads.create("u1", "team/a")
    await registry.uploads.set_size("u1", None, 5)
    assert await registry.manifests.put("team/a", manifest([digest("x")]), ["v1"]) == []
    usage = await registry.quota.usage("team")
    room = await registry.quota.room("team/b")
    summary = await registry.repositories.summary("team/a")
    numbers = [usage, room.limit, room.used, room.uploading, summary.size_bytes, summary.tag_count,
               summary.manifest_count]
    assert [type(n) for n in numbers] == [int] * len(numbers)
    assert (room.used, room.uploading, summary.size_bytes) == (usage, 5, 3 * 10**9)
