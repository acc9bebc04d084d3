"""registry.tags: bytewise order, pages, the upsert (last writer wins, one row) and delete."""

from __future__ import annotations

import asyncio

from .common import BYTEWISE, SHUFFLED, digest, manifest, names


async def _tagged(registry, tags, repository="team/app", salt=""):
    await registry.blobs.link(repository, digest("l"), 1)
    m = manifest([digest("l")], salt=salt)
    assert await registry.manifests.put(repository, m, tags) == []
    return m


async def test_tags_sort_bytewise_page_and_move(registry):  # from tests/db/test_store.py
    await registry.blobs.link("team/app", digest("l"), 1)
    first, second = manifest([digest("l")], salt="1"), manifest([digest("l")], salt="2")
    tag_names = ["b", "a", "Z", "A", "v1.10", "v1.9", "_x", "a-b", "a.b"]
    assert await registry.manifests.put("team/app", first, tag_names) == []
    assert names(await registry.tags.page("team/app", 100, None)) == sorted(tag_names)  # Python sorts code points = bytes here
    assert names(await registry.tags.page("team/app", 3, None)) == ["A", "Z", "_x"]
    assert names(await registry.tags.page("team/app", 3, "_x")) == ["a", "a-b", "a.b"]
    assert await registry.tags.page("team/none", 10, None) is None

    assert await registry.manifests.put("team/app", second, ["a"]) == []
    assert (await registry.manifests.get("team/app", "a", by_digest=False)).digest == second.digest
    records = {t.name: t.digest for t in await registry.tags.page("team/app", 100, None)}
    assert records["a"] == second.digest and records["b"] == first.digest
    assert await registry.tags.delete("team/app", "b") and not await registry.tags.delete("team/app", "b")
    assert await registry.manifests.delete("team/app", first.digest)
    assert names(await registry.tags.page("team/app", 100, None)) == ["a"]  # tags of the deleted manifest went with it
    assert not await registry.manifests.delete("team/app", first.digest)
    assert not await registry.tags.delete("nobody/here", "a")


async def test_order_is_bytewise_where_collations_differ(registry):
    m = await _tagged(registry, SHUFFLED)
    page = await registry.tags.page("team/app", 100, None)
    assert names(page) == BYTEWISE
    assert {t.digest for t in page} == {m.digest}


async def test_pages(registry):
    await _tagged(registry, SHUFFLED)
    walked, after = [], None
    while page := names(await registry.tags.page("team/app", 1, after)):
        assert len(page) == 1
        walked += page
        after = page[-1]
    assert walked == BYTEWISE
    assert names(await registry.tags.page("team/app", 4, None)) == BYTEWISE[:4]
    assert names(await registry.tags.page("team/app", 4, "a0")) == ["a_b", "ab"]
    assert names(await registry.tags.page("team/app", 10, "ab")) == []  # after the last item
    assert names(await registry.tags.page("team/app", 10, "a.c")) == ["a/b", "a0", "a_b", "ab"]  # in a gap
    assert names(await registry.tags.page("team/app", 10, "a")) == BYTEWISE  # before the first
    assert names(await registry.tags.page("team/app", 10, "zzz")) == []  # past the end
    assert names(await registry.tags.page("team/app", 6, None)) == BYTEWISE  # exactly limit long
    assert names(await registry.tags.page("team/app", 6, "ab")) == []


async def test_an_empty_repository_has_an_empty_page_not_none(registry):
    await registry.uploads.create("0f8fad5b-d9cb-469f-a165-70867728950e", "team/empty")
    assert await registry.tags.page("team/empty", 10, None) == []


async def test_upsert_moves_a_tag_and_keeps_one_row(registry):
    first = await _tagged(registry, ["latest", "v1"], salt="1")
    before = {t.name: t for t in await registry.tags.page("team/app", 10, None)}
    second = await _tagged(registry, ["latest", "latest"], salt="2")  # a duplicate in one call
    after = {t.name: t for t in await registry.tags.page("team/app", 10, None)}
    assert sorted(after) == ["latest", "v1"]
    assert after["latest"].digest == second.digest and after["v1"].digest == first.digest
    assert after["latest"].updated_at >= before["latest"].updated_at
    assert after["v1"] == before["v1"]  # untouched
    third = await _tagged(registry, ["latest"], salt="3")
    assert (await registry.manifests.get("team/app", "latest", by_digest=False)).digest == third.digest


async def test_tags_are_per_repository(registry):
    m = await _tagged(registry, ["v1"])
    await _tagged(registry, ["v2"], repository="team/other")
    assert names(await registry.tags.page("team/app", 10, None)) == ["v1"]
    assert not await registry.tags.delete("team/other", "v1")
    assert await registry.tags.delete("team/app", "v1")
    assert await registry.manifests.get("team/app", m.digest, by_digest=True) is not None  # the manifest stays
    assert names(await registry.tags.page("team/other", 10, None)) == ["v2"]


async def test_ten_writers_of_one_tag_leave_one_row(writers):
    a, b = writers
    await a.blobs.link("team/app", digest("l"), 1)
    candidates = [manifest([digest("l")], salt=str(i)) for i in range(10)]
    results = await asyncio.gather(*(
        (a if i % 2 else b).manifests.put("team/app", m, ["latest"]) for i, m in enumerate(candidates)))
    assert results == [[]] * 10
    page = await a.tags.page("team/app", 100, None)
    assert names(page) == ["latest"]
    assert page[0].digest in {m.digest for m in candidates}
    assert (await b.manifests.get("team/app", "latest", by_digest=False)).digest == page[0].digest
    last = manifest([digest("l")], salt="last")
    assert await b.manifests.put("team/app", last, ["latest"]) == []
    assert [(t.name, t.digest) for t in await a.tags.page("team/app", 100, None)] == [("latest", last.digest)]
