"""registry.blobs: links per repository, a second link, who links a blob (bytewise), and the
delete of a blob nothing links."""

from __future__ import annotations

import pytest

from hub.db.base import QuotaExceededError

from .common import BYTEWISE, SHUFFLED, digest


async def test_blob_links_are_per_repository(registry):  # from tests/db/test_store.py
    d = digest("blob")
    assert await registry.blobs.size_anywhere(d) is None
    await registry.blobs.link("team/a", d, 4)
    await registry.blobs.link("team/a", d, 4)  # idempotent
    await registry.blobs.link("other/b", d, 4)
    assert await registry.blobs.size_in("team/a", d) == 4
    assert await registry.blobs.size_in("team/c", d) is None
    assert await registry.blobs.linking(d) == ["other/b", "team/a"]
    assert await registry.blobs.unlink("team/a", d) and not await registry.blobs.unlink("team/a", d)
    assert not await registry.blobs.unlink("no/repo", d)
    assert await registry.blobs.size_anywhere(d) == 4
    await registry.blobs.unlink("other/b", d)
    assert await registry.blobs.size_anywhere(d) is None  # the bytes may go to GC now


async def test_linking_in_byte_order_and_limited(registry):
    d = digest("blob")
    for name in SHUFFLED:
        await registry.blobs.link(f"t/{name}", d, 1)
    await registry.blobs.link("t/other", digest("other"), 1)
    assert await registry.blobs.linking(d) == [f"t/{n}" for n in BYTEWISE]
    assert await registry.blobs.linking(d, limit=2) == ["t/a-b", "t/a.b"]
    assert await registry.blobs.linking(digest("nobody")) == []


async def test_the_first_size_stays(registry):
    d = digest("blob")
    await registry.blobs.link("team/a", d, 4)
    await registry.blobs.link("team/b", d, 9)  # a blob's size is its content's: the first record stays
    assert await registry.blobs.size_in("team/b", d) == 4
    assert await registry.blobs.size_anywhere(d) == 4


async def test_delete_if_unlinked(registry):
    d = digest("blob")
    assert not await registry.blobs.delete_if_unlinked(d)  # no row at all
    await registry.blobs.link("team/a", d, 4)
    assert not await registry.blobs.delete_if_unlinked(d)  # linked: kept
    assert await registry.blobs.size_in("team/a", d) == 4
    assert await registry.blobs.unlink("team/a", d)
    assert await registry.blobs.delete_if_unlinked(d)
    assert not await registry.blobs.delete_if_unlinked(d)
    await registry.blobs.link("team/a", d, 7)  # a new row, with the new size
    assert await registry.blobs.size_in("team/a", d) == 7


async def test_a_refused_link_creates_no_repository(registry):
    assert await registry.tenants.create("team", "Team", 10)
    with pytest.raises(QuotaExceededError):
        await registry.blobs.link("team/new", digest("big"), 11)
    assert not await registry.repositories.exists("team/new")
    assert await registry.blobs.size_anywhere(digest("big")) is None
    assert await registry.quota.usage("team") == 0
