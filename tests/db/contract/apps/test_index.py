"""apps.index: a version is indexed only at the tag's current manifest and counts only while the
tag still points there; a re-index keeps `deprecated`; pages by repository in byte order, filtered
by tenant and by what a caller may see (public or one of its tenants)."""

from __future__ import annotations

import dataclasses

from hub.db.base import AppIndexEntry

from ..registry.common import BYTEWISE, SHUFFLED, digest, manifest

ENTRY = AppIndexEntry("voting", "Voting app", "Vote for cats or dogs", ("demo", "web"), "1.0.0",
                      '{"compose": "services: {}"}', digest("icon"), "image/png")


async def push(registry, repository: str, tag: str, salt: str = "") -> str:
    await registry.blobs.link(repository, digest("l"), 1)
    m = manifest([digest("l")], salt=salt)
    assert await registry.manifests.put(repository, m, [tag]) == []
    return m.digest


async def indexed(apps, registry, repository: str, tag: str = "1.0.0", salt: str = "", **entry) -> str:
    d = await push(registry, repository, tag, salt)
    assert await apps.index(repository, tag, d, dataclasses.replace(ENTRY, **entry))
    return d


def keys(records) -> list[tuple[str, str]]:
    return [(r.repository, r.tag) for r in records]


async def test_a_version_reads_back_as_indexed(apps, registry):
    d = await indexed(apps, registry, "team/voting")
    got = await apps.get("team/voting", "1.0.0")
    assert (got.repository, got.tag, got.digest, got.app_key, got.title, got.summary, got.categories, got.version,
            got.deprecated, got.public, got.icon_digest, got.icon_media_type, got.document) == (
        "team/voting", "1.0.0", d, "voting", "Voting app", "Vote for cats or dogs", ("demo", "web"), "1.0.0",
        False, False, digest("icon"), "image/png", '{"compose": "services: {}"}')
    assert got.indexed_at > 0
    listed = await apps.versions_of("team/voting")
    assert [dataclasses.replace(r, document=None) for r in listed] == [dataclasses.replace(got, document=None)]
    assert listed[0].document is None  # only get() reads the document
    assert await apps.get("team/voting", "2.0.0") is None and await apps.get("team/other", "1.0.0") is None


async def test_only_the_tags_current_manifest_is_indexed(apps, registry):
    d = await push(registry, "team/voting", "1.0.0")
    assert not await apps.index("team/voting", "1.0.0", digest("another manifest"), ENTRY)
    assert not await apps.index("team/voting", "2.0.0", d, ENTRY)  # no such tag
    assert not await apps.index("team/ghost", "1.0.0", d, ENTRY)  # no such repository
    assert await apps.versions_of("team/voting") == [] and await apps.page(10, None) == []
    assert not await registry.repositories.exists("team/ghost")


async def test_a_version_counts_only_while_its_tag_points_at_it(apps, registry):
    first = await indexed(apps, registry, "team/voting")
    second = await push(registry, "team/voting", "1.0.0", salt="moved")  # the tag moves on
    assert await apps.get("team/voting", "1.0.0") is None
    assert await apps.versions_of("team/voting") == [] and await apps.page(10, None) == []
    assert second != first
    await registry.manifests.put("team/voting", manifest([digest("l")]), ["1.0.0"])  # and back
    assert (await apps.get("team/voting", "1.0.0")).digest == first
    assert await registry.tags.delete("team/voting", "1.0.0")
    assert await apps.get("team/voting", "1.0.0") is None


async def test_a_reindex_replaces_the_entry_and_keeps_deprecated(apps, registry):
    await indexed(apps, registry, "team/voting")
    assert await apps.set_deprecated("team/voting", "1.0.0", True)
    before = await apps.get("team/voting", "1.0.0")
    d = await push(registry, "team/voting", "1.0.0", salt="rebuilt")
    assert await apps.index("team/voting", "1.0.0", d, dataclasses.replace(ENTRY, title="Voting 2", categories=()))
    after = await apps.get("team/voting", "1.0.0")
    assert (after.digest, after.title, after.categories, after.deprecated) == (d, "Voting 2", (), True)
    assert after.indexed_at >= before.indexed_at
    assert len(await apps.versions_of("team/voting")) == 1  # one row per tag
    assert await apps.set_deprecated("team/voting", "1.0.0", False)
    assert (await apps.get("team/voting", "1.0.0")).deprecated is False


async def test_set_deprecated_of_nothing_is_false(apps, registry):
    await indexed(apps, registry, "team/voting")
    assert not await apps.set_deprecated("team/voting", "2.0.0", True)
    assert not await apps.set_deprecated("team/ghost", "1.0.0", True)
    assert not await apps.set_deprecated("other/voting", "1.0.0", True)
    assert (await apps.get("team/voting", "1.0.0")).deprecated is False


async def test_versions_of_one_repository_in_tag_byte_order(apps, registry):
    for i, tag in enumerate(SHUFFLED):
        await indexed(apps, registry, "team/voting", tag, salt=str(i))
    await indexed(apps, registry, "team/voting2", "1.0")
    assert [r.tag for r in await apps.versions_of("team/voting")] == BYTEWISE
    assert await apps.versions_of("team/ghost") == []


async def test_pages_count_repositories_in_byte_order(apps, registry):
    for i, name in enumerate(SHUFFLED):
        await indexed(apps, registry, f"t/{name}", "1.0", salt=str(i))
        await indexed(apps, registry, f"t/{name}", "2.0", salt=f"{i}b")
    expected = [f"t/{n}" for n in BYTEWISE]
    every = await apps.page(100, None)
    assert keys(every) == [(r, t) for r in expected for t in ("1.0", "2.0")]
    walked, after = [], None
    while page := await apps.page(1, after):
        assert len({r.repository for r in page}) == 1 and len(page) == 2  # a page holds whole repositories
        walked.append(page[0].repository)
        after = page[-1].repository
    assert walked == expected
    assert [r.repository for r in await apps.page(2, expected[1])][::2] == expected[2:4]
    assert [r.repository for r in await apps.page(10, "t/a.c")][::2] == expected[2:]  # after a name in a gap
    assert await apps.page(10, expected[-1]) == []
    assert [r.repository for r in await apps.page(6, None)][::2] == expected  # exactly limit long


async def test_pages_of_one_tenant_at_its_edges(apps, registry):
    for i, name in enumerate(["tt/x", "t0", "t-x/y", "t/x", "t", "t.x/y", "t/y"]):
        await indexed(apps, registry, name, salt=str(i))
    assert [r.repository for r in await apps.page(10, None, tenant="t")] == ["t/x", "t/y"]
    assert [r.repository for r in await apps.page(1, "t/x", tenant="t")] == ["t/y"]
    assert [r.repository for r in await apps.page(10, None, tenant="t-x")] == ["t-x/y"]
    assert await apps.page(10, None, tenant="nobody") == []


async def test_filtered_pages_are_full_of_visible_repositories(apps, registry):
    hidden = ["a/1", "b-x/1", "b.x/1", "ba/1", "c/1"]
    visible = ["b/1", "b/2", "pub/x", "team/app"]
    for i, name in enumerate(hidden + visible):
        await indexed(apps, registry, name, salt=str(i))
    assert await registry.repositories.set_public("pub/x", True)
    seen = frozenset({"b", "team", "ghost"})
    assert [r.repository for r in await apps.page(10, None, tenants=seen)] == visible
    assert [r.repository for r in await apps.page(2, None, tenants=seen)] == visible[:2]
    assert [r.repository for r in await apps.page(2, "b/2", tenants=seen)] == visible[2:]
    assert [r.repository for r in await apps.page(1, "b-x/1", tenants=seen)] == ["b/1"]  # after a hidden one
    assert [r.repository for r in await apps.page(10, None, tenants=frozenset())] == ["pub/x"]
    assert [(r.repository, r.public) for r in await apps.page(10, None, tenants=frozenset(), tenant="pub")] == [
        ("pub/x", True)]
    assert await apps.page(10, None, tenants=frozenset(), tenant="b") == []
    assert [r.repository for r in await apps.page(10, None, tenants=frozenset({"b"}), tenant="b")] == ["b/1", "b/2"]


async def test_a_repository_without_a_tenant_part(apps, registry):
    """A name without "/" belongs to no tenant, in the index pages as in the catalog
    (tests/db/contract/registry: CatalogScope({"alpine"}) lists no "alpine"). PostgreSQL's
    list_app_versions compared `split_part(name, '/', 1)`, which is the whole name, so a caller with
    a tenant "alpine" got the private repository "alpine" in its page (AppStore._visible dropped it
    again above the store); this suite found it."""
    await indexed(apps, registry, "alpine")
    assert [r.repository for r in await apps.page(10, None)] == ["alpine"]
    seen = [r.repository for r in await apps.page(10, None, tenants=frozenset({"alpine"}))]
    assert seen == []
    assert await apps.page(10, None, tenants=frozenset({"other"})) == []
