"""cache.proxy_tags: when a cached tag was last confirmed upstream, per repository and tag; the
last write wins; nothing without the repository; gone with the repository or, on eviction, with
the tag."""

from __future__ import annotations

import asyncio

from .common import NS, digest, image
from .legacy import evict


async def test_checked_at_per_repository_and_tag_and_the_last_write_wins(cache, registry):
    await image(registry, f"{NS}/a", {digest("l"): 1}, tag="v1")
    await image(registry, f"{NS}/b", {digest("l"): 1}, tag="v1")
    assert await cache.proxy_tags.checked_at(f"{NS}/a", "v1") is None
    await cache.proxy_tags.set_checked(f"{NS}/a", "v1", 100.5)
    await cache.proxy_tags.set_checked(f"{NS}/a", "latest", 7.0)  # a tag the repository lacks: still kept
    assert await cache.proxy_tags.checked_at(f"{NS}/a", "v1") == 100.5
    assert await cache.proxy_tags.checked_at(f"{NS}/a", "latest") == 7.0
    assert await cache.proxy_tags.checked_at(f"{NS}/b", "v1") is None
    assert await cache.proxy_tags.checked_at(f"{NS}/a", "V1") is None
    await cache.proxy_tags.set_checked(f"{NS}/a", "v1", 50.0)  # the last write, even an older time
    assert await cache.proxy_tags.checked_at(f"{NS}/a", "v1") == 50.0


async def test_nothing_without_the_repository(cache, registry):
    await cache.proxy_tags.set_checked(f"{NS}/ghost", "v1", 1.0)
    assert await cache.proxy_tags.checked_at(f"{NS}/ghost", "v1") is None
    assert not await registry.repositories.exists(f"{NS}/ghost")
    assert await registry.repositories.summaries(NS, 10, None) == []


async def test_gone_with_the_repository(cache, registry):
    await image(registry, f"{NS}/a", {digest("l"): 1}, tag="v1")
    await cache.proxy_tags.set_checked(f"{NS}/a", "v1", 1.0)
    assert await registry.repositories.delete(f"{NS}/a")
    assert await cache.proxy_tags.checked_at(f"{NS}/a", "v1") is None
    await image(registry, f"{NS}/a", {digest("l"): 1}, tag="v1")  # the same name again starts unchecked
    assert await cache.proxy_tags.checked_at(f"{NS}/a", "v1") is None


async def test_eviction_forgets_the_tags_that_went_only(cache, registry):
    old = await image(registry, f"{NS}/a", {digest("o"): 1}, tag="old", salt="old")
    await image(registry, f"{NS}/a", {digest("n"): 1}, tag="new", salt="new")
    for tag, at in (("old", 1.0), ("new", 2.0), ("never-pulled", 3.0)):
        await cache.proxy_tags.set_checked(f"{NS}/a", tag, at)
    assert (await evict(cache, f"{NS}/a", old.digest, NS)).manifests == (old.digest,)
    assert await cache.proxy_tags.checked_at(f"{NS}/a", "old") is None
    assert await cache.proxy_tags.checked_at(f"{NS}/a", "never-pulled") is None  # no such tag either
    assert await cache.proxy_tags.checked_at(f"{NS}/a", "new") == 2.0


async def test_concurrent_checks_of_one_tag_leave_one_of_the_values(writers, writers_registry):
    a, b = writers
    await image(writers_registry, f"{NS}/a", {digest("l"): 1}, tag="v1")
    await asyncio.gather(*((a if i % 2 else b).proxy_tags.set_checked(f"{NS}/a", "v1", float(i)) for i in range(10)))
    assert await b.proxy_tags.checked_at(f"{NS}/a", "v1") in {float(i) for i in range(10)}
