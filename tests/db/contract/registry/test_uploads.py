"""registry.uploads: rows, the size compare-and-set (one winner of two), expiry order, existence
of many ids, and completion."""

from __future__ import annotations

import asyncio
import time

import pytest

from hub.db.base import QuotaExceededError

from .common import digest


async def test_upload_rows(registry):  # from tests/db/test_store.py
    uid = "0f8fad5b-d9cb-469f-a165-70867728950e"
    await registry.uploads.create(uid, "team/app")
    record = await registry.uploads.get(uid)
    assert (record.id, record.repository, record.size) == (uid, "team/app", 0)
    assert await registry.uploads.set_size(uid, 0, 10)
    assert not await registry.uploads.set_size(uid, 0, 20)  # compare-and-set lost
    assert await registry.uploads.set_size(uid, None, 30)
    assert (await registry.uploads.get(uid)).size == 30
    assert await registry.uploads.existing([uid, "7c9e6679-7425-40de-944b-e07fc1f90ae7"]) == {uid}
    assert await registry.uploads.existing([]) == set()
    assert await registry.uploads.expired(time.time() + 10) == [uid]
    assert await registry.uploads.expired(time.time() - 3600) == []

    await registry.tenants.create("team", quota_bytes=20)
    with pytest.raises(QuotaExceededError):
        await registry.uploads.complete(uid, "team/app", digest("data"), 30)
    assert await registry.uploads.get(uid) is not None  # nothing changed
    assert await registry.blobs.size_in("team/app", digest("data")) is None
    await registry.uploads.complete(uid, "team/app", digest("data"), 20)
    assert await registry.uploads.get(uid) is None
    assert await registry.blobs.size_in("team/app", digest("data")) == 20
    assert not await registry.uploads.delete(uid)


async def test_a_second_create_of_one_id_is_refused_and_changes_nothing(registry):
    await registry.uploads.create("u1", "team/app")
    assert await registry.uploads.set_size("u1", None, 5)
    with pytest.raises(Exception):  # noqa: B017 - an id is unique (each driver has its own error type)
        await registry.uploads.create("u1", "team/other")
    record = await registry.uploads.get("u1")
    assert (record.repository, record.size) == ("team/app", 5)


async def test_size_updates_touch_the_row_and_set_size_of_nothing_is_false(registry):
    await registry.uploads.create("u1", "team/app")
    created = await registry.uploads.get("u1")
    assert created.created_at == created.updated_at
    assert await registry.uploads.set_size("u1", 0, 5)
    touched = await registry.uploads.get("u1")
    assert touched.created_at == created.created_at and touched.updated_at >= created.updated_at
    assert not await registry.uploads.set_size("ghost", None, 5)
    assert not await registry.uploads.set_size("ghost", 0, 5)


async def test_expired_uploads_oldest_first_and_limited(registry):
    ids = ["u-c", "u-a", "u-b"]
    for uid in ids:
        await registry.uploads.create(uid, "team/app")
    assert await registry.uploads.set_size("u-c", None, 1)  # touched last: now the newest
    assert await registry.uploads.expired(time.time() + 10) == ["u-a", "u-b", "u-c"]
    assert await registry.uploads.expired(time.time() + 10, limit=2) == ["u-a", "u-b"]


async def test_existing_over_many_ids(registry):
    real = [f"u{i}" for i in (0, 499, 500, 1199)]
    for uid in real:
        await registry.uploads.create(uid, "team/app")
    asked = [f"u{i}" for i in range(1200)]  # more than one SQL statement takes in SQLite
    assert await registry.uploads.existing(asked) == set(real)
    assert await registry.uploads.existing(asked + asked) == set(real)


async def test_delete_and_complete(registry):
    await registry.uploads.create("u1", "team/app")
    await registry.uploads.create("u2", "team/app")
    assert await registry.uploads.delete("u1") and not await registry.uploads.delete("u1")
    await registry.uploads.complete("u2", "team/other", digest("data"), 4)  # completes into the name given
    assert await registry.uploads.get("u2") is None
    assert await registry.blobs.size_in("team/other", digest("data")) == 4
    assert await registry.blobs.size_in("team/app", digest("data")) is None


async def test_of_two_size_compare_and_sets_exactly_one_wins(writers):
    a, b = writers
    await a.uploads.create("u1", "team/app")
    for round_ in range(5):
        size = (await b.uploads.get("u1")).size
        won = await asyncio.gather(a.uploads.set_size("u1", size, size + 10 + round_),
                                   b.uploads.set_size("u1", size, size + 20 + round_))
        assert sorted(won) == [False, True]
        winner = size + (10 if won[0] else 20) + round_
        assert (await a.uploads.get("u1")).size == winner
