"""cache.upstreams: create, get, page (byte order), update, delete, and the change counter that
every change, and nothing else, bumps."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from hub.db.proxy_store import UpstreamRecord

from ..registry.common import BYTEWISE, SHUFFLED, names

UP = UpstreamRecord("ghcr.io", "https://ghcr.io", ("ghcr.example",), "bot", "s3cret", 60, ("team",), True,
                    1000, 7.5, 1.0, 1.0)


def upstream(name: str, **changes) -> UpstreamRecord:
    return dataclasses.replace(UP, name=name, **changes)


async def test_stored_upstreams_and_their_change_counter(cache):  # from tests/proxy/test_cache_store.py
    assert await cache.upstreams.version() == 0 and await cache.upstreams.page(100, None) == []
    assert await cache.upstreams.create(UP)
    assert not await cache.upstreams.create(UP)
    assert await cache.upstreams.version() == 1
    assert await cache.upstreams.get("ghcr.io") == UP and await cache.upstreams.page(100, None) == [UP]
    assert "s3cret" not in repr(UP)
    changed = await cache.upstreams.update("ghcr.io", {"aliases": (), "password": "", "username": "",
                                                       "max_size_bytes": None, "anonymous_pull": False})
    assert changed == dataclasses.replace(UP, aliases=(), password="", username="", max_size_bytes=None,
                                          anonymous_pull=False, updated_at=changed.updated_at)
    assert changed.updated_at > UP.updated_at and await cache.upstreams.version() == 2
    assert await cache.upstreams.update("nope", {"ttl_days": 1}) is None
    with pytest.raises(ValueError, match="cannot change"):
        await cache.upstreams.update("ghcr.io", {"name": "x"})
    assert await cache.upstreams.delete("ghcr.io") and not await cache.upstreams.delete("ghcr.io")
    assert await cache.upstreams.version() == 3 and await cache.upstreams.get("ghcr.io") is None


async def test_a_second_create_keeps_the_first_row_and_bumps_nothing(cache):
    assert await cache.upstreams.create(UP)
    assert not await cache.upstreams.create(upstream("ghcr.io", url="https://other", tenants=()))
    assert await cache.upstreams.get("ghcr.io") == UP
    assert await cache.upstreams.page(10, None) == [UP]
    assert await cache.upstreams.version() == 1


async def test_what_changes_nothing_bumps_nothing(cache):
    assert await cache.upstreams.create(UP)
    assert await cache.upstreams.update("ghost", {"url": "https://x"}) is None
    assert not await cache.upstreams.delete("ghost")
    with pytest.raises(ValueError):
        await cache.upstreams.update("ghcr.io", {"url": "https://x", "created_at": 5.0})
    assert await cache.upstreams.get("ghcr.io") == UP  # the refused update wrote no field
    assert await cache.upstreams.version() == 1
    assert await cache.upstreams.get("ghost") is None


async def test_every_field_reads_back_as_written(cache):
    bare = UpstreamRecord("docker.io", "https://registry-1.docker.io", (), "", "", 0, (), False, None, None,
                          1_700_000_000.25, 1_700_000_000.5)
    assert await cache.upstreams.create(bare)
    assert await cache.upstreams.get("docker.io") == bare
    changed = await cache.upstreams.update("docker.io", {
        "aliases": ("a.example", "b.example"), "tenants": ("t1", "t2"), "anonymous_pull": True,
        "max_size_bytes": 10**12, "ttl_days": 0.5, "manifest_revalidate_seconds": 3600,
        "url": "https://mirror.example", "username": "u", "password": "p"})
    assert changed == dataclasses.replace(
        bare, aliases=("a.example", "b.example"), tenants=("t1", "t2"), anonymous_pull=True,
        max_size_bytes=10**12, ttl_days=0.5, manifest_revalidate_seconds=3600, url="https://mirror.example",
        username="u", password="p", updated_at=changed.updated_at)
    assert changed.created_at == bare.created_at
    assert await cache.upstreams.get("docker.io") == changed


async def test_pages_in_byte_order(cache):
    for name in SHUFFLED:
        assert await cache.upstreams.create(upstream(name))
    assert names(await cache.upstreams.page(100, None)) == BYTEWISE
    walked, after = [], None
    while page := names(await cache.upstreams.page(1, after)):
        walked += page
        after = page[-1]
    assert walked == BYTEWISE
    assert names(await cache.upstreams.page(4, None)) == BYTEWISE[:4]
    assert names(await cache.upstreams.page(4, "a0")) == ["a_b", "ab"]
    assert names(await cache.upstreams.page(10, "a.c")) == ["a/b", "a0", "a_b", "ab"]  # in a gap
    assert await cache.upstreams.page(10, "ab") == []  # after the last
    assert await cache.upstreams.page(10, "zzz") == []  # past the end
    assert names(await cache.upstreams.page(6, None)) == BYTEWISE  # exactly limit long


async def test_ten_concurrent_creations_make_one_row_and_one_bump(writers):
    a, b = writers
    created = await asyncio.gather(*((a if i % 2 else b).upstreams.create(upstream("ghcr.io", url=f"https://{i}"))
                                     for i in range(10)))
    assert created.count(True) == 1
    winner = created.index(True)
    assert (await b.upstreams.get("ghcr.io")).url == f"https://{winner}"
    assert await a.upstreams.version() == 1
    # Concurrent changes each bump once: the counter tells a replica that something changed.
    await asyncio.gather(*((a if i % 2 else b).upstreams.update("ghcr.io", {"ttl_days": float(i)})
                           for i in range(10)))
    assert await b.upstreams.version() == 11
    assert (await a.upstreams.get("ghcr.io")).ttl_days in {float(i) for i in range(10)}
