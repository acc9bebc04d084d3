"""Two PostgresStores (two pools: two replicas) on one database, racing each other."""

from __future__ import annotations

import asyncio
import itertools

import asyncpg

from hub.db import schema
from hub.db.base import QuotaExceededError

from .test_store import digest, manifest

ROUNDS = 20


async def test_concurrent_tag_updates_leave_one_tag_on_one_of_the_manifests(replicas):
    a, b = replicas
    await a.link_blob("team/app", digest("l"), 1)
    candidates = [manifest([digest("l")], salt=str(i)) for i in range(ROUNDS)]

    async def push(store, m):
        assert await store.put_manifest("team/app", m, ["latest", f"v{m.annotations_json}"]) == []

    await asyncio.gather(*(push(s, m) for s, m in zip(itertools.cycle(replicas), candidates, strict=False)))
    tags = await a.list_tag_records("team/app", 1000, None)
    assert len(tags) == ROUNDS + 1
    latest = await b.get_manifest("team/app", "latest", by_digest=False)
    assert latest.digest in {m.digest for m in candidates}
    assert {r.manifest_count for r in [await a.repository_summary("team/app")]} == {ROUNDS}


async def test_concurrent_pushes_into_a_tenant_never_pass_its_quota(replicas):
    a, b = replicas
    size, room = 1000, 7
    await a.create_tenant("team", quota_bytes=size * room)
    blobs = [digest(f"blob{i}") for i in range(4 * room)]
    shared = digest("shared")  # linked by many pushes, counted once

    async def push(store, i, d):
        try:
            if i % 2:
                await store.link_blob(f"team/repo{i % 3}", d, size)
            else:
                uid = f"00000000-0000-4000-8000-{i:012d}"
                await store.create_upload(uid, f"team/repo{i % 3}")
                await store.complete_upload(uid, f"team/repo{i % 3}", d, size)
            return d
        except QuotaExceededError as exc:
            assert exc.used + size > exc.limit
            return None

    jobs = [push(s, i, d) for i, (s, d) in enumerate(zip(itertools.cycle(replicas), blobs, strict=False))]
    jobs += [push(s, i, shared) for i, s in zip(range(100, 106), itertools.cycle(replicas), strict=False)]
    results = await asyncio.gather(*jobs)
    linked = {d for d in results if d is not None}
    usage = await b.tenant_usage("team")
    assert usage <= size * room
    assert usage == size * len(linked)  # every accepted push is there, every refused one is not
    assert len(linked) == room  # and the quota was used up, not refused early
    for d in blobs:
        present = any([await a.get_blob_size(f"team/repo{r}", d) for r in range(3)])
        assert present == (d in linked)


async def test_concurrent_completion_of_one_upload(replicas):
    a, b = replicas
    await a.create_tenant("team", quota_bytes=10_000)
    uid = "6fa459ea-ee8a-4ca4-894e-db77e160355e"
    await a.create_upload(uid, "team/app")
    d = digest("the blob")
    await asyncio.gather(*(s.complete_upload(uid, "team/app", d, 500) for s in (a, b) * 5))
    assert await a.get_upload(uid) is None
    assert await b.get_blob_size("team/app", d) == 500
    assert await a.repositories_linking(d) == ["team/app"]
    assert await b.tenant_usage("team") == 500


async def test_concurrent_links_of_one_blob_and_new_repositories(replicas):
    jobs = [s.link_blob(f"team/r{i % 4}", digest("same"), 42) for i, s in zip(range(40), itertools.cycle(replicas),
                                                                              strict=False)]
    await asyncio.gather(*jobs)
    a, _ = replicas
    assert await a.repositories_linking(digest("same")) == [f"team/r{i}" for i in range(4)]


async def test_concurrent_login_attempts_reserve_exactly_the_limit(replicas):
    limits = [("user:a|ip:1.2.3.4", 10), ("ip:1.2.3.4", 100)]
    results = await asyncio.gather(*(s.reserve_login_attempt(limits, 300)
                                     for s in itertools.islice(itertools.cycle(replicas), 50)))
    assert sum(r is None for r in results) == 10
    # The refused 40 took nothing from the address's count: 90 attempts are left there.
    other = [("user:b|ip:1.2.3.4", 1000), ("ip:1.2.3.4", 100)]
    results = await asyncio.gather(*(s.reserve_login_attempt(other, 300)
                                     for s in itertools.islice(itertools.cycle(replicas), 95)))
    assert sum(r is None for r in results) == 90


async def test_concurrent_key_rotations_keep_the_newest_n(replicas):
    await asyncio.gather(*(s.add_signing_key(f"k{i}", "pem", retire_older_than_rank=3)
                           for i, s in zip(range(10), itertools.cycle(replicas), strict=False)))
    assert len(await replicas[0].signing_keys()) == 3


async def test_migrations_from_two_replicas_at_once(postgres_cluster):
    url = postgres_cluster.create_database()  # empty, not from the migrated template
    try:
        stores = [await open_store_unmigrated(url) for _ in range(2)]
        try:
            applied = await asyncio.gather(*(s.migrate() for s in stores))
            latest = len(schema.load("postgres"))
            assert sorted(applied, key=len) == [[], list(range(1, latest + 1))]
            assert [await s.schema_version() for s in stores] == [latest, latest]
        finally:
            for s in stores:
                await s.close()
    finally:
        postgres_cluster.drop_database(url.rsplit("/", 1)[1])


async def open_store_unmigrated(url: str):
    from hub.db import create_store

    store = create_store(url, pool_min_size=1, pool_max_size=2)
    await store.open()
    return store


# Cross-replica locks -------------------------------------------------------------------------
async def test_lock_excludes_across_replicas(replicas):
    a, b = replicas
    order: list[str] = []

    async def second() -> None:
        async with b.lock("upload:u1") as held:
            assert held
            order.append("b")

    async with a.lock("upload:u1"):
        async with b.lock("upload:u1", wait=False) as probe:
            assert probe is False
        async with b.lock("upload:u2", wait=False) as other:
            assert other is True
        waiter = asyncio.create_task(second())
        await asyncio.sleep(0.3)  # time for b to try (and fail) several times
        order.append("a done")
    await asyncio.wait_for(waiter, 30)
    assert order == ["a done", "b"]


async def test_try_locks_across_replicas_in_one_statement_each_way(replicas, postgres_url):
    a, b = replicas
    admin = await asyncpg.connect(postgres_url)
    advisory = ("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")
    try:
        async with a.lock("blob:x"):
            async with b.try_locks([f"blob:{i}" for i in range(50)] + ["blob:x"]) as held:
                assert held == {f"blob:{i}" for i in range(50)}  # not x, which a holds
                assert await admin.fetchval(advisory) == 51
                async with a.try_locks(["blob:1", "blob:x2"]) as other:
                    assert other == {"blob:x2"}
        assert await admin.fetchval(advisory) == 0  # every one released at the end of its block
        async with b.lock("blob:x", wait=False) as free:
            assert free is True
    finally:
        await admin.close()


async def test_lock_of_a_killed_connection_is_released(replicas, postgres_url):
    a, b = replicas
    admin = await asyncpg.connect(postgres_url)
    try:
        async with a.lock("upload:u3"):
            pids = await admin.fetch("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
                                     "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")
            assert len(pids) == 1
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", pids[0][0])
            # The replica holding it "died": the other one gets it without waiting for a release.
            async with b.lock("upload:u3") as held:
                assert held
        async with a.lock("upload:u3", wait=False) as again:  # a reconnects and can lock again
            assert again is True
    finally:
        await admin.close()


async def test_cancelled_waiters_leave_no_lock_behind(replicas, postgres_url):
    a, b = replicas
    async with a.lock("upload:u4"):
        waiters = [asyncio.create_task(_hold(b, "upload:u4")) for _ in range(3)]
        await asyncio.sleep(0.05)
        for w in waiters:
            w.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
    # Requests cancelled at every point of acquiring (as client disconnects do).
    for _ in range(20):
        task = asyncio.create_task(_hold(b, "upload:u5"))
        await asyncio.sleep(0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    # A lock won by a cancelled attempt is given back in the background: wait for that (the
    # bound is generous for a loaded machine; a lock that is never given back fails here).
    admin = await asyncpg.connect(postgres_url)
    try:
        query = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
        for _ in range(300):
            if (held := await admin.fetchval(query)) == 0:
                break
            await asyncio.sleep(0.05)
        assert held == 0
    finally:
        await admin.close()
    for key in ("upload:u4", "upload:u5"):
        async with a.lock(key, wait=False) as held:
            assert held


async def _hold(store, key: str) -> None:
    async with store.lock(key):
        await asyncio.sleep(0.01)


async def test_pull_through_cache_checks_are_shared_between_replicas(replicas):
    a, b = replicas
    await a.set_proxy_tag_checked("cache/library/nginx", "latest", 100.0)  # no repository: nothing
    assert await b.proxy_tag_checked_at("cache/library/nginx", "latest") is None
    await a.link_blob("cache/library/nginx", digest("l"), 1)
    await asyncio.gather(*(s.set_proxy_tag_checked("cache/library/nginx", "latest", float(t))
                           for t, s in zip(range(200, 210), itertools.cycle(replicas), strict=False)))
    assert await b.proxy_tag_checked_at("cache/library/nginx", "latest") in {float(t) for t in range(200, 210)}
    await a.set_proxy_tag_checked("cache/library/nginx", "latest", 300.0)
    assert await b.proxy_tag_checked_at("cache/library/nginx", "latest") == 300.0
    # The cache stores a manifest before the blobs it references.
    m = manifest([digest("not yet fetched")], salt="cached")
    assert await b.put_manifest("cache/library/nginx", m, ["1.27"], verify_references=False) == []
    assert (await a.get_manifest("cache/library/nginx", "1.27", by_digest=False)).digest == m.digest
    assert await a.put_manifest("cache/library/nginx", manifest([digest("x")], salt="strict"), []) == [digest("x")]
