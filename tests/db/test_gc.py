"""Online GC over each store (SQLite and PostgreSQL) and the filesystem driver: what the review
queue collects, what it keeps (shared layers, links made again within the grace period, blobs a
push brings while a verdict holds them), dry runs, tag deletes, and the storage sweep."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time

import pytest

import storage_backends
from hub.registry import gc as gc_module
from hub.registry.gc import Collector, GcReport
from hub.registry.names import parse_digest
from hub.registry.service import Registry
from tests.helpers.faultproxy import FaultProxy, Seen
from tests.helpers.fixtures_s3 import moto_s3, s3_options, stop_moto_servers  # noqa: F401 (fixtures)

from .conftest import open_store
from .test_store import manifest


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def chunks(data: bytes):
    yield data


@pytest.fixture
async def registry(store, tmp_path):
    storage = storage_backends.create("filesystem", root=str(tmp_path / "storage"))
    yield Registry(store, storage)
    await storage.aclose()


async def push_blob(registry: Registry, repository: str, data: bytes) -> str:
    return str(await registry.monolithic_upload(repository, sha(data), chunks(data)))


async def stored(registry: Registry, digest: str) -> bool:
    try:
        await registry.storage.stat(parse_digest(digest).blob_path)
    except storage_backends.PathNotFoundError:
        return False
    return True


async def two_images(registry: Registry):
    """Images A and B in team/app sharing one layer: A = (a-config, a-layer, shared),
    B = (b-config, shared)."""
    store = registry.store
    assert await store.create_tenant("team", "Team", None)
    blobs = {name: await push_blob(registry, "team/app", name.encode() * 100)
             for name in ("a-config", "a-layer", "b-config", "shared")}
    a = manifest(blobs=[blobs["a-config"], blobs["a-layer"], blobs["shared"]], salt="A")
    b = manifest(blobs=[blobs["b-config"], blobs["shared"]], salt="B")
    assert await store.put_manifest("team/app", a, ["a"]) == []
    assert await store.put_manifest("team/app", b, ["b"]) == []
    return blobs, a, b


async def test_deleted_image_frees_exactly_its_own_blobs(registry):
    store = registry.store
    blobs, a, b = await two_images(registry)
    before = await store.tenant_usage("team")
    assert await store.delete_manifest("team/app", a.digest)
    own = sorted([blobs["a-config"], blobs["a-layer"]])

    collector = Collector(registry, grace_seconds=3600)
    early = await collector.run(dry_run=True)
    assert early.counts["links_deleted"] == 0  # within the grace period nothing is due

    dry = await collector.run(dry_run=True, grace_seconds=0)
    assert sorted(x["digest"] for x in dry.blobs) == own
    assert sorted(x["digest"] for x in dry.links) == own
    own_bytes = 800 + 700  # a-config and a-layer, 100 times each
    assert dry.tenant_bytes_freed == {"team": own_bytes}
    for digest in blobs.values():  # a dry run changes nothing
        assert await stored(registry, digest)
        assert await store.get_blob_size("team/app", digest) is not None
    assert await store.tenant_usage("team") == before - len(a.content)
    assert (await store.gc_backlog(time.time()))["link_due"] == 3

    done = await collector.run(grace_seconds=0)
    assert sorted(x["digest"] for x in done.blobs) == own
    assert done.counts["blobs_deleted"] == 2 and done.counts["bytes_freed"] == own_bytes
    for digest in own:
        assert not await stored(registry, digest)
        assert await store.get_global_blob_size(digest) is None
    for name in ("b-config", "shared"):
        assert await stored(registry, blobs[name])
        assert await store.get_blob_size("team/app", blobs[name]) == 100 * len(name)
    assert await store.tenant_usage("team") == before - len(a.content) - own_bytes
    assert done.tenant_bytes_freed == {"team": own_bytes}
    runs = await store.gc_runs()
    assert runs[0].id == done.run_id and runs[0].counts["blobs_deleted"] == 2 and runs[0].finished_at
    assert runs[0].tenant_bytes_freed == {"team": own_bytes}
    again = await collector.run(grace_seconds=0)  # the queue is empty: nothing more goes
    assert again.counts["blobs_reviewed"] == 0 and await stored(registry, blobs["shared"])


async def test_tag_delete_frees_the_manifest_and_then_its_blobs_in_one_pass(registry):
    store = registry.store
    blobs, a, b = await two_images(registry)
    assert await store.delete_tag("team/app", "a")
    dry = await Collector(registry).run(dry_run=True, grace_seconds=0)
    assert [m["digest"] for m in dry.manifests] == [a.digest]
    assert sorted(x["digest"] for x in dry.blobs) == sorted([blobs["a-config"], blobs["a-layer"]])
    assert await store.get_manifest("team/app", a.digest, by_digest=True) is not None
    before = await store.tenant_usage("team")
    done = await Collector(registry).run(grace_seconds=0)
    assert [m["digest"] for m in done.manifests] == [a.digest]
    assert sorted(x["digest"] for x in done.blobs) == sorted(x["digest"] for x in dry.blobs)
    # The manifest's bytes and its own blobs', as the dry run said.
    assert done.tenant_bytes_freed == dry.tenant_bytes_freed == {"team": len(a.content) + 800 + 700}
    assert await store.tenant_usage("team") == before - len(a.content) - 1500
    assert await store.get_manifest("team/app", a.digest, by_digest=True) is None
    assert await store.get_manifest("team/app", "b", by_digest=False) is not None


async def test_moved_tag_frees_the_old_manifest_but_keeps_a_tagged_one(registry):
    store = registry.store
    blobs, a, b = await two_images(registry)
    assert await store.put_manifest("team/app", b, ["a"]) == []  # tag a moves from A to B
    done = await Collector(registry).run(grace_seconds=0)
    assert [m["digest"] for m in done.manifests] == [a.digest]
    assert await store.get_manifest("team/app", "a", by_digest=False) is not None


async def relink_a_layer_within_grace(registry, relink) -> GcReport:
    """Delete image A, then (`relink`) link its a-layer again; a pass whose grace period ends
    between the two: A's config goes, and its a-layer must stay."""
    blobs, a, b = await two_images(registry)
    assert await registry.store.delete_manifest("team/app", a.digest)
    await asyncio.sleep(0.05)
    between = time.time()
    await asyncio.sleep(0.05)
    await relink(blobs["a-layer"])
    await asyncio.sleep(0.05)
    done = await Collector(registry).run(grace_seconds=time.time() - between)
    assert [x["digest"] for x in done.blobs] == [blobs["a-config"]]
    assert await registry.store.get_blob_size("team/app", blobs["a-layer"]) == 700
    return done


async def test_blob_linked_again_within_the_grace_period_is_kept(registry):
    store = registry.store
    blobs = {"a-layer": sha(b"a-layer" * 100)}

    async def push_again(digest: str) -> None:  # a client pushes a-layer again: the link is made again
        assert await push_blob(registry, "team/app", b"a-layer" * 100) == digest

    await relink_a_layer_within_grace(registry, push_again)
    assert await stored(registry, blobs["a-layer"])
    # Reviewed again once the new link is past the grace period, nothing referencing it: it goes.
    later = await Collector(registry).run(grace_seconds=0)
    assert [x["digest"] for x in later.blobs] == [blobs["a-layer"]]


async def test_push_of_the_same_digest_during_a_verdict_is_never_broken(registry, monkeypatch):
    """The verdict deleted the row and holds the blob's lock until the bytes are gone; a push of
    the same bytes waits for it, finds the row gone and moves its own bytes in."""
    store = registry.store
    blobs, a, b = await two_images(registry)
    assert await store.delete_manifest("team/app", a.digest)
    monkeypatch.setenv(gc_module.PAUSE_ENV, "0.5")
    run = asyncio.create_task(Collector(registry).run(grace_seconds=0))
    while await store.get_global_blob_size(blobs["a-layer"]) is not None:
        await asyncio.sleep(0.01)
    # Committed: the row is gone, the bytes not yet. The push must not link bytes about to go.
    assert await push_blob(registry, "team/other", b"a-layer" * 100) == blobs["a-layer"]
    await run
    assert await store.get_blob_size("team/other", blobs["a-layer"]) == 700
    location = await registry.stat_blob("team/other", blobs["a-layer"])
    body = b"".join([c async for c in await registry.open_blob(location)])
    assert body == b"a-layer" * 100


async def test_index_children_and_referrers_follow_their_parent(registry):
    store = registry.store
    blobs, a, b = await two_images(registry)
    index = manifest(children=[a.digest, b.digest], salt="index")
    signature = manifest(blobs=[blobs["shared"]], subject=index.digest, salt="sig")
    assert await store.put_manifest("team/app", index, ["multi"]) == []
    assert await store.put_manifest("team/app", signature, []) == []
    assert await store.delete_tag("team/app", "a")
    kept = await Collector(registry).run(grace_seconds=0)
    assert kept.manifests == []  # A is still a child of the tagged index
    assert await store.delete_tag("team/app", "multi")
    dry = await Collector(registry).run(dry_run=True, grace_seconds=0)
    assert sorted(m["digest"] for m in dry.manifests) == sorted([index.digest, signature.digest, a.digest])
    done = await Collector(registry).run(grace_seconds=0)
    assert sorted(m["digest"] for m in done.manifests) == sorted(m["digest"] for m in dry.manifests)
    assert sorted(x["digest"] for x in done.blobs) == sorted([blobs["a-config"], blobs["a-layer"]])
    assert await store.get_manifest("team/app", "b", by_digest=False) is not None


async def test_repository_delete_frees_blobs_no_other_repository_links(registry):
    store = registry.store
    blobs, a, b = await two_images(registry)
    assert await push_blob(registry, "team/keep", b"shared" * 100) == blobs["shared"]
    assert await store.delete_repository("team/app")
    done = await Collector(registry).run(grace_seconds=0)
    assert sorted(x["digest"] for x in done.blobs) == sorted(
        blobs[n] for n in ("a-config", "a-layer", "b-config"))
    assert await stored(registry, blobs["shared"])


async def test_tenant_run_touches_only_that_tenant(registry):
    store = registry.store
    blobs, a, b = await two_images(registry)
    other = await push_blob(registry, "else/app", b"other" * 10)
    assert await store.put_manifest("else/app", manifest(blobs=[other], salt="o"), ["x"]) == []
    assert await store.delete_tag("else/app", "x")
    assert await store.delete_manifest("team/app", a.digest)
    done = await Collector(registry).run(grace_seconds=0, tenant="else")
    assert [x["digest"] for x in done.blobs] == [other]
    assert await stored(registry, blobs["a-layer"])


async def test_sweep_deletes_old_orphans_and_keeps_young_ones(registry, tmp_path):
    store = registry.store
    blobs, a, b = await two_images(registry)
    root = tmp_path / "storage"
    old, young = sha(b"old orphan"), sha(b"young orphan")
    for digest, data, age in ((old, b"old orphan", 7200), (young, b"young orphan", 0)):
        path = root / parse_digest(digest).blob_path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.utime(path, (time.time() - age, time.time() - age))
    dry = await Collector(registry, grace_seconds=3600).run(dry_run=True, sweep=True)
    assert [x["digest"] for x in dry.orphans] == [old] and await stored(registry, old)
    done = await Collector(registry, grace_seconds=3600).run(sweep=True)
    assert [x["digest"] for x in done.orphans] == [old]
    assert not await stored(registry, old) and await stored(registry, young)
    for digest in blobs.values():
        assert await stored(registry, digest)
    assert await store.server_state(gc_module.SWEEP_CURSOR) == ""


async def test_sweep_resumes_after_its_cursor(registry, tmp_path):
    root = tmp_path / "storage"
    orphans = sorted(sha(f"orphan {i}".encode()) for i in range(3))
    for digest in orphans:
        path = root / parse_digest(digest).blob_path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
        os.utime(path, (time.time() - 7200, time.time() - 7200))
    # A sweep stopped after the first object: the next one starts after it.
    await registry.store.set_server_state(gc_module.SWEEP_CURSOR, parse_digest(orphans[0]).blob_path)
    done = await Collector(registry, grace_seconds=60).run(sweep=True)
    assert [x["digest"] for x in done.orphans] == orphans[1:]
    assert await stored(registry, orphans[0])


async def test_two_replicas_share_the_queue_and_delete_each_blob_once(replicas, tmp_path):
    """Two PostgreSQL workers (two pools, as two replicas) collect one backlog at once: claims
    (FOR UPDATE SKIP LOCKED) and the verdicts' row locks give each blob to exactly one of them."""
    storages = [storage_backends.create("filesystem", root=str(tmp_path / "storage")) for _ in replicas]
    registries = [Registry(store, storage) for store, storage in zip(replicas, storages, strict=True)]
    try:
        digests = [await push_blob(registries[0], "team/app", f"blob {i}".encode()) for i in range(60)]
        m = manifest(blobs=digests, salt="many")
        assert await replicas[0].put_manifest("team/app", m, []) == []
        assert await replicas[0].delete_manifest("team/app", m.digest)
        reports = await asyncio.gather(*(Collector(r, batch_size=7).run(grace_seconds=0) for r in registries))
        assert all(r.errors == [] for r in reports)
        deleted = [x["digest"] for r in reports for x in r.blobs]
        assert sorted(deleted) == sorted(digests)  # each once, by one of the two
        assert sum(r.counts["links_deleted"] for r in reports) == len(digests)
        for digest in digests:
            assert not await stored(registries[1], digest)
            assert await replicas[1].get_global_blob_size(digest) is None
        assert (await replicas[1].gc_backlog(time.time()))["link_queued"] == 0
    finally:
        for storage in storages:
            await storage.aclose()


async def test_sweep_on_s3_deletes_old_orphans_and_keeps_young_ones(store, moto_s3):
    """On S3 (moto) an object's age is its LastModified (whole seconds): an orphan written 3 s
    before the sweep is past a 2 s grace period, one written just before is not."""
    storage = storage_backends.create("s3", **s3_options(server=moto_s3))
    registry = Registry(store, storage)
    try:
        kept = await push_blob(registry, "team/app", b"linked")
        old, young = sha(b"old orphan"), sha(b"young orphan")
        await storage.put_content(parse_digest(old).blob_path, b"old orphan")
        await asyncio.sleep(3)
        await storage.put_content(parse_digest(young).blob_path, b"young orphan")
        done = await Collector(registry, grace_seconds=2).run(sweep=True)
        assert [x["digest"] for x in done.orphans] == [old] and done.errors == []
        assert not await stored(registry, old)
        assert await stored(registry, young) and await stored(registry, kept)
    finally:
        await storage.aclose()


def is_delete_objects(seen: Seen) -> bool:
    return seen.method == "POST" and "delete" in seen.query


async def test_collector_and_sweep_on_s3_delete_in_batches_of_a_thousand(postgres_url, moto_s3):
    """The 1,200 blobs of a deleted manifest go in 2 DeleteObjects requests (claims of 1,000
    link reviews, each claim's deletes in one batch), and 1,200 planted orphans in 2 more (sweep
    pages of 1,000): not one DELETE per object. Counted at a proxy in front of moto. On
    PostgreSQL only, as S3 is deployed (stateless replicas): the batching is the storage side's,
    and the collector's verdicts are tested on both dialects above (a SQLite run cost 53 s)."""
    store = await open_store(postgres_url, pool_min_size=1, pool_max_size=4)
    try:
        await _batches_of_a_thousand(store, moto_s3)
    finally:
        await store.close()


async def _batches_of_a_thousand(store, moto_s3) -> None:
    with FaultProxy(moto_s3.url) as proxy:
        # Pushed and planted straight into moto (the proxy is slow at thousands of PUTs); the
        # collector's deletes and lists go through the proxy, where they are counted.
        options = s3_options(server=moto_s3)  # one bucket, reached both ways
        direct = storage_backends.create("s3", **options)
        storage = storage_backends.create("s3", **{**options, "endpoint": proxy.url})
        pusher, registry = Registry(store, direct), Registry(store, storage)
        try:
            gate = asyncio.Semaphore(16)

            async def push(i: int) -> str:
                async with gate:
                    return await push_blob(pusher, "team/app", f"blob {i}".encode())

            digests = await asyncio.gather(*(push(i) for i in range(1200)))
            m = manifest(blobs=digests, salt="many")
            assert await store.put_manifest("team/app", m, []) == []
            assert await store.delete_manifest("team/app", m.digest)
            assert len([x async for x in storage.walk("blobs")]) == 1200  # stored where the collector looks
            proxy.requests.clear()
            done = await Collector(registry, batch_size=1000).run(grace_seconds=0)
            assert done.errors == [] and done.counts["blobs_deleted"] == 1200
            assert proxy.count(is_delete_objects) == 2
            assert proxy.count(lambda seen: seen.method == "DELETE") == 0
            assert [x async for x in storage.walk("blobs")] == []

            orphans = [sha(f"orphan {i}".encode()) for i in range(1200)]

            async def plant(digest: str) -> None:
                async with gate:
                    await direct.put_content(parse_digest(digest).blob_path, digest.encode())

            await asyncio.gather(*(plant(d) for d in orphans))
            assert len([x async for x in storage.walk("blobs")]) == 1200
            proxy.requests.clear()
            swept = await Collector(registry).run(sweep=True, grace_seconds=0)
            assert swept.errors == [] and swept.counts["orphans_deleted"] == 1200
            assert proxy.count(is_delete_objects) == 2
            assert proxy.count(lambda seen: seen.method == "DELETE") == 0
            assert [x async for x in storage.walk("blobs")] == []
        finally:
            await storage.aclose()
            await direct.aclose()


async def test_cache_namespace_manifests_are_left_to_eviction(registry):
    """An untagged manifest of a pull-through cache namespace stays (its eviction decides); a
    tenant's goes."""
    store = registry.store
    layer = await push_blob(registry, "docker.io/library/x", b"cached layer")
    cached = manifest(blobs=[layer], salt="cached")
    assert await store.put_manifest("docker.io/library/x", cached, ["latest"], verify_references=False) == []
    assert await store.delete_tag("docker.io/library/x", "latest")

    async def namespaces() -> list[str]:
        return ["docker.io"]

    done = await Collector(registry, cache_namespaces=namespaces).run(grace_seconds=0)
    assert done.manifests == [] and done.counts["manifests_kept"] == 1
    assert await store.get_manifest("docker.io/library/x", cached.digest, by_digest=True) is not None
    assert await stored(registry, layer)
    assert (await store.gc_backlog(time.time()))["manifest_queued"] == 0  # reviewed: not taken again


async def test_a_review_queued_twice_is_queued_again_not_refused(registry):
    """The triggers queue a review that may be queued already (a tag moved away twice from one
    manifest, a tag deleted from a manifest already under review): the push or delete goes on."""
    store = registry.store
    blobs, a, b = await two_images(registry)
    for target in (b, a, b, a, b):  # tag a moves between A and B: A is queued three times
        assert await store.put_manifest("team/app", target, ["a"]) == []
    assert await store.put_manifest("team/app", a, ["x"]) == []
    assert await store.delete_tag("team/app", "x")  # A queued once more
    assert (await store.gc_backlog(time.time()))["manifest_queued"] == 2
    done = await Collector(registry).run(grace_seconds=0)
    assert [m["digest"] for m in done.manifests] == [a.digest]


async def test_mount_of_a_blob_linked_already_starts_its_grace_period_over(registry):
    """A client about to reference a blob its repository still links (unreferenced, queued for
    review) mounts it: the link is made again, so GC keeps it."""
    async def mount(digest: str) -> None:
        assert await registry.mount_blob("team/app", digest, None, lambda _: True)

    await relink_a_layer_within_grace(registry, mount)


async def test_the_run_history_keeps_the_last_runs(registry, monkeypatch):
    from hub.db import gc_store

    monkeypatch.setattr(gc_store, "RUNS_KEPT", 3)
    ids = [(await Collector(registry).run()).run_id for _ in range(5)]
    assert [r.id for r in await registry.store.gc_runs()] == ids[:1:-1]
    assert [r.id for r in await registry.store.gc_runs(2, before=ids[4])] == [ids[3], ids[2]]


async def test_an_evicted_cache_image_frees_its_blobs_unless_a_tenant_links_them(registry):
    """Evicting a cached image (the cache's own eviction) queues its links; the pass deletes the
    blobs only the cache held and keeps one a tenant's repository still links."""
    store = registry.store
    own = await push_blob(registry, "docker.io/library/x", b"cached only")
    shared = await push_blob(registry, "docker.io/library/x", b"cached and pushed")
    cached = manifest(blobs=[own, shared], salt="cached")
    assert await store.put_manifest("docker.io/library/x", cached, ["latest"], verify_references=False) == []
    assert await push_blob(registry, "team/app", b"cached and pushed") == shared
    mine = manifest(blobs=[shared], salt="mine")
    assert await store.put_manifest("team/app", mine, ["v1"]) == []
    await store.evict_image("docker.io/library/x", cached.digest, "docker.io")

    async def namespaces() -> list[str]:
        return ["docker.io"]

    done = await Collector(registry, cache_namespaces=namespaces).run(grace_seconds=0)
    assert done.errors == [] and {b["digest"] for b in done.blobs} == {own}
    assert not await stored(registry, own) and await store.get_global_blob_size(own) is None
    assert await stored(registry, shared) and await store.get_blob_size("team/app", shared) is not None


async def test_batched_verdicts_leave_a_locked_digest_to_wait_and_share_blob_rows(registry):
    """Verdicts go in batches, one transaction each. A digest whose lock a push holds is left out
    of its batch and judged on its own once the lock is free (the pass waits for it); a digest
    linked in two repositories is unlinked from both in one batch and its blob row and bytes go
    exactly once."""
    store = registry.store
    assert await store.create_tenant("team", "Team", None)
    own = [await push_blob(registry, "team/app", f"own {i}".encode()) for i in range(40)]
    shared = await push_blob(registry, "team/app", b"shared")
    assert await registry.mount_blob("team/other", shared, "team/app", lambda repo: True)
    m = manifest(blobs=own + [shared], salt="batched")
    other = manifest(blobs=[shared], salt="other")
    assert await store.put_manifest("team/app", m, []) == []
    assert await store.put_manifest("team/other", other, []) == []
    assert await store.delete_manifest("team/app", m.digest)
    assert await store.delete_manifest("team/other", other.digest)

    locked, released = own[7], asyncio.Event()
    taken = asyncio.Event()

    async def push_holding_the_lock() -> None:
        async with registry.blob_lock(locked):
            taken.set()
            await released.wait()

    holder = asyncio.create_task(push_holding_the_lock())
    await taken.wait()
    run = asyncio.create_task(Collector(registry, verdict_batch=8).run(grace_seconds=0))
    for _ in range(200):  # the pass decides every other digest, then waits for the lock
        if not await stored(registry, own[0]) and not await stored(registry, shared):
            break
        await asyncio.sleep(0.05)
    assert not run.done() and await stored(registry, locked)
    released.set()
    report = await run
    await holder
    assert report.errors == []
    assert report.counts["blobs_deleted"] == 41 and report.counts["links_deleted"] == 42
    for digest in own + [shared]:
        assert not await stored(registry, digest)
        assert await store.get_global_blob_size(digest) is None
