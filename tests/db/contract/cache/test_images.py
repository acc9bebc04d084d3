"""cache.images and eviction: the namespace's size (distinct blobs), its images least recently
pulled first, pull times that only move forward, the namespace's edges, and what an eviction
removes and frees (once, even for two evictions at once)."""

from __future__ import annotations

import asyncio
import time

from hub.db.proxy_store import EvictedImage

from ..registry.common import names
from .common import NS, digest, image
from .legacy import evict

NOTHING = EvictedImage((), (), 0)


async def test_images_in_eviction_order_and_size(cache, registry):  # from tests/proxy/test_cache_store.py
    shared, a1, b1 = digest(b"shared"), digest(b"a1"), digest(b"b1")
    a = await image(registry, f"{NS}/a", {shared: 100, a1: 10}, tag="1")
    b = await image(registry, f"{NS}/b", {shared: 100, b1: 20}, tag="1")
    await image(registry, "team/app", {shared: 100}, tag="1")  # outside the namespace
    # An index and its platform manifest: one image, pulled when either was.
    c1 = digest(b"c1")
    child = await image(registry, f"{NS}/c", {c1: 5}, salt="child")
    index = await image(registry, f"{NS}/c", {}, tag="1", children=[child.digest])
    assert await cache.images.size(NS) == 135

    await cache.images.record_pulls([(f"{NS}/a", a.digest, 300.0), (f"{NS}/b", b.digest, 100.0),
                                     (f"{NS}/c", child.digest, 200.0), (f"{NS}/gone", a.digest, 1.0)])
    await cache.images.record_pulls([(f"{NS}/b", b.digest, 50.0)])  # older than what is recorded: kept at 100
    images = await cache.images.images(NS)
    assert [(i.repository, i.digest, i.last_pulled, i.size) for i in images] == [
        (f"{NS}/b", b.digest, 100.0, 120), (f"{NS}/c", index.digest, 200.0, 5), (f"{NS}/a", a.digest, 300.0, 110)]

    evicted = await evict(cache, f"{NS}/b", b.digest, NS)
    assert evicted.manifests == (b.digest,) and set(evicted.unlinked) == {shared, b1}
    assert evicted.freed_bytes == 20  # the shared blob is still in the namespace (a)
    assert not await registry.repositories.exists(f"{NS}/b")
    assert await evict(cache, f"{NS}/b", b.digest, NS) == type(evicted)((), (), 0)
    # Unlinked everywhere: its row may go. Still linked (by a and team/app): it stays.
    assert await registry.blobs.delete_if_unlinked(b1) and not await registry.blobs.delete_if_unlinked(b1)
    assert not await registry.blobs.delete_if_unlinked(shared)

    evicted = await evict(cache, f"{NS}/c", index.digest, NS)
    assert set(evicted.manifests) == {index.digest, child.digest} and evicted.unlinked == (c1,)
    assert evicted.freed_bytes == 5 and await registry.tags.page(f"{NS}/c", 10, None) is None
    assert [i.digest for i in await cache.images.images(NS)] == [a.digest]
    assert await cache.images.size(NS) == 110

    evicted = await evict(cache, f"{NS}/a", a.digest, NS)
    assert evicted.freed_bytes == 110 and await cache.images.size(NS) == 0
    assert await registry.blobs.size_anywhere(shared) == 100  # team/app links it


async def test_a_platform_manifest_another_index_uses_stays(cache, registry):  # from tests/proxy/test_cache_store.py
    blob = digest(b"layer")
    child = await image(registry, f"{NS}/m", {blob: 7}, salt="child")
    old = await image(registry, f"{NS}/m", {}, tag="old", children=[child.digest])
    new = await image(registry, f"{NS}/m", {}, tag="new", children=[child.digest], salt="new")
    await cache.images.record_pulls([(f"{NS}/m", old.digest, 1.0), (f"{NS}/m", new.digest, 2.0)])
    assert [i.digest for i in await cache.images.images(NS)] == [old.digest, new.digest]
    evicted = await evict(cache, f"{NS}/m", old.digest, NS)
    assert evicted.manifests == (old.digest,) and evicted.unlinked == () and evicted.freed_bytes == 0
    assert await registry.manifests.get(f"{NS}/m", child.digest, by_digest=True) is not None
    assert names(await registry.tags.page(f"{NS}/m", 10, None)) == ["new"]


async def test_the_namespace_at_its_edges(cache, registry):
    inside = await image(registry, "c/x", {digest("in"): 1}, tag="v1")
    for i, name in enumerate(["c", "c0", "c-x/y", "c.x/y", "cc/x", "b/x"]):
        await image(registry, name, {digest(name): 10 ** (i + 1)}, tag="v1")
    assert await cache.images.size("c") == 1
    assert [(i.repository, i.digest) for i in await cache.images.images("c")] == [("c/x", inside.digest)]
    assert await cache.images.size("c-x") == 1000 and await cache.images.size("nobody") == 0
    assert await cache.images.images("nobody") == []


async def test_ties_sort_by_repository_bytewise_then_digest_and_unpulled_images_by_creation(cache, registry):
    before = time.time()
    pushed = {}
    for repo in ["ab", "a_b", "a/b", "a-b", "a0", "a.b"]:
        pushed[repo] = [await image(registry, f"{NS}/{repo}", {digest(repo + s): 1}, salt=s) for s in ("1", "2")]
    after = time.time()
    await cache.images.record_pulls([(f"{NS}/{repo}", m.digest, 500.0) for repo, ms in pushed.items() for m in ms])
    order = [(i.repository, i.digest) for i in await cache.images.images(NS)]
    assert order == [(f"{NS}/{repo}", d) for repo in ["a-b", "a.b", "a/b", "a0", "a_b", "ab"]
                     for d in sorted(m.digest for m in pushed[repo])]
    # Never pulled: its creation time counts, so it sorts after the ones pulled at 500 and before a
    # later pull, even in a repository whose name sorts first.
    late = await image(registry, f"{NS}/0", {digest("z"): 1})
    listed = await cache.images.images(NS)
    assert (listed[-1].repository, listed[-1].digest) == (f"{NS}/0", late.digest)
    assert after <= listed[-1].last_pulled <= time.time()
    assert all(i.last_pulled == 500.0 for i in listed[:-1]) and before < after
    await cache.images.record_pulls([(f"{NS}/ab", pushed["ab"][0].digest, time.time() + 3600)])
    assert [i.repository for i in await cache.images.images(NS)][-2:] == [f"{NS}/0", f"{NS}/ab"]


async def test_pull_times_only_move_forward(cache, registry):
    m = await image(registry, f"{NS}/a", {digest("l"): 1})
    await cache.images.record_pulls([])
    await cache.images.record_pulls([(f"{NS}/a", m.digest, 10.0), (f"{NS}/a", m.digest, 30.0),
                                     (f"{NS}/a", m.digest, 20.0)])  # one batch, one manifest: the latest
    assert [i.last_pulled for i in await cache.images.images(NS)] == [30.0]
    await cache.images.record_pulls([(f"{NS}/a", m.digest, 25.0), (f"{NS}/a", digest("gone"), 99.0)])
    assert [i.last_pulled for i in await cache.images.images(NS)] == [30.0]
    await cache.images.record_pulls([(f"{NS}/a", m.digest, 40.0)])
    assert [i.last_pulled for i in await cache.images.images(NS)] == [40.0]


async def test_what_an_eviction_frees_and_keeps(cache, registry):
    own, in_ns, outside, neighbour = digest("own"), digest("in-ns"), digest("outside"), digest("neighbour")
    m = await image(registry, f"{NS}/a", {own: 1, in_ns: 10, outside: 100, neighbour: 1000}, tag="v1")
    await registry.blobs.link(f"{NS}/b", in_ns, 10)  # still in the namespace: not freed
    await registry.blobs.link("team/app", outside, 100)  # linked outside only: the namespace frees it
    await registry.blobs.link(f"{NS}0/x", neighbour, 1000)  # a namespace sorting next to it: freed too
    await registry.blobs.link(f"{NS}/a", digest("loose"), 10000)  # linked, but no manifest references it
    await registry.uploads.create("u1", f"{NS}/a")  # an unfinished upload keeps the repository
    evicted = await evict(cache, f"{NS}/a", m.digest, NS)
    assert evicted == EvictedImage((m.digest,), tuple(sorted([own, in_ns, outside, neighbour, digest("loose")])),
                                   1 + 100 + 1000 + 10000)
    assert await registry.repositories.exists(f"{NS}/a")
    assert await registry.tags.page(f"{NS}/a", 10, None) == []
    assert await registry.blobs.size_in(f"{NS}/a", own) is None
    assert await registry.blobs.size_anywhere(own) is None  # linked nowhere now
    assert await registry.blobs.delete_if_unlinked(own)  # but its row stayed, for GC to take
    assert await cache.images.size(NS) == 10
    assert await evict(cache, f"{NS}/a", m.digest, NS) == NOTHING
    assert await evict(cache, f"{NS}/ghost", m.digest, NS) == NOTHING


async def test_a_failed_eviction_writes_nothing(cache, registry):
    m = await image(registry, f"{NS}/a", {digest("l"): 1}, tag="v1")
    # Not a root, or not there: nothing is removed, not even the unreferenced link or a proxy tag.
    await registry.blobs.link(f"{NS}/a", digest("loose"), 5)
    await cache.proxy_tags.set_checked(f"{NS}/a", "gone", 1.0)
    assert await evict(cache, f"{NS}/a", digest("no such manifest"), NS) == NOTHING
    assert await registry.blobs.size_in(f"{NS}/a", digest("loose")) == 5
    assert await cache.proxy_tags.checked_at(f"{NS}/a", "gone") == 1.0
    assert (await registry.manifests.get(f"{NS}/a", "v1", by_digest=False)).digest == m.digest


async def test_two_evictions_of_one_image_report_it_once(writers, writers_registry):
    """Two callers evict each image at once; the images go one after the other, as under the
    proxy's eviction lock (evictions of different images of one namespace at once are not pinned)."""
    a, b = writers
    shared = digest("shared")
    ms = [await image(writers_registry, f"{NS}/r{i}", {shared: 50, digest(f"own{i}"): i + 1}, tag="v1")
          for i in range(3)]
    freed = []
    for i, m in enumerate(ms):
        pair = await asyncio.gather(evict(a, f"{NS}/r{i}", m.digest, NS), evict(b, f"{NS}/r{i}", m.digest, NS))
        assert NOTHING in pair and [e.manifests for e in pair].count((m.digest,)) == 1
        freed.append(sum(e.freed_bytes for e in pair))
    assert freed == [1, 2, 3 + 50]  # the shared blob is freed once, with the last image linking it
    assert await b.images.size(NS) == 0 and await a.images.images(NS) == []
