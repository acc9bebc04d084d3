"""registry.repositories: the catalog in byte order, tenant ranges at their edges, pages (also
pages filtered by a catalog scope), visibility, summaries and concurrent creation."""

from __future__ import annotations

import asyncio

from auth.policy import CatalogScope, pattern_regex

from .common import BYTEWISE, SHUFFLED, digest, manifest, names

# The edges of tenant "t": only "t/x" is in it; "t" and "t0" bound the range, "t-x/y", "t.x/y"
# and "tt/x" are other tenants whose names sort close by.
EDGES = ["tt/x", "t0", "t-x/y", "t/x", "t", "t.x/y"]


async def _with_manifest(registry, name: str, salt: str = "") -> None:
    assert await registry.manifests.put(name, manifest(salt=salt), ["v1"], verify_references=False) == []


async def test_catalog_lists_repositories_with_manifests_in_byte_order(registry):  # from tests/db/test_store.py
    repository_names = ["team/b", "team/a", "team-x/c", "team.y/d", "Team/e", "team/a/deep"]
    for name in repository_names:
        await registry.blobs.link(name, digest("l"), 1)
        assert await registry.manifests.put(name, manifest([digest("l")]), []) == []
    await registry.uploads.create("3b9c1f4e-4a53-4a47-9cb1-2d6f9a4e9c11", "team/only-an-upload")
    assert await registry.repositories.page(100, None) == sorted(repository_names)
    assert await registry.repositories.page(2, "team-x/c") == ["team.y/d", "team/a"]
    assert await registry.repositories.exists("team/only-an-upload")


async def test_repository_visibility_and_summaries(registry):  # from tests/db/test_store.py
    await registry.blobs.link("team/app", digest("a"), 10)
    await registry.blobs.link("team/app", digest("b"), 5)
    await registry.manifests.put("team/app", manifest([digest("a"), digest("b")]), ["v1", "v2"])
    assert await registry.repositories.set_public("team/new", True)  # creates the row
    assert await registry.repositories.public(["team/new", "team/app", "ghost/x"]) == {"team/new"}
    assert await registry.repositories.public([]) == set()
    assert await registry.repositories.set_public("team/new", False)
    assert await registry.repositories.public(["team/new"]) == set()
    summaries = await registry.repositories.summaries("team", 10, None)
    assert [(s.name, s.public, s.size_bytes, s.tag_count, s.manifest_count) for s in summaries] == [
        ("team/app", False, 15, 2, 1), ("team/new", False, 0, 0, 0)]
    assert [s.name for s in await registry.repositories.summaries("team", 10, "team/app")] == ["team/new"]
    assert (await registry.repositories.summary("team/app")).size_bytes == 15
    assert await registry.repositories.summary("ghost/x") is None
    assert await registry.tags.page("ghost/x", 10, None) is None


async def test_catalog_scope_filters_in_the_query(registry):  # from tests/db/test_quota_store.py
    m = manifest()
    for name in ("alpine", "other/a", "other/pub", "team/a", "team/ci/x", "team/ci/x/deep", "teamx/ci/x"):
        assert await registry.manifests.put(name, m, ["v1"], verify_references=False) == []
    assert await registry.repositories.set_public("other/pub", True)
    assert await registry.repositories.page(10, None, CatalogScope()) == []
    assert await registry.repositories.page(10, None, CatalogScope(frozenset({"team"}), public=True)) == [
        "other/pub", "team/a", "team/ci/x", "team/ci/x/deep"]
    assert await registry.repositories.page(10, None, CatalogScope(frozenset({"alpine"}))) == []
    robot = CatalogScope(public=True, robot_tenant="team", robot_patterns=(pattern_regex("team/ci/*"),))
    assert await registry.repositories.page(10, None, robot) == ["other/pub", "team/ci/x"]
    assert await registry.repositories.page(1, "other/pub", robot) == ["team/ci/x"]
    deep = CatalogScope(robot_tenant="team", robot_patterns=(pattern_regex("*/ci/**"),))
    assert await registry.repositories.page(10, None, deep) == ["team/ci/x", "team/ci/x/deep"]


async def test_catalog_order_is_bytewise_where_collations_differ(registry):
    for name in SHUFFLED:
        await _with_manifest(registry, f"t/{name}")
    assert await registry.repositories.page(100, None) == [f"t/{n}" for n in BYTEWISE]
    assert [s.name for s in await registry.repositories.summaries("t", 100, None)] == [f"t/{n}" for n in BYTEWISE]


async def test_catalog_pages(registry):
    for name in SHUFFLED:
        await _with_manifest(registry, f"t/{name}")
    expected = [f"t/{n}" for n in BYTEWISE]
    walked, after = [], None
    while page := await registry.repositories.page(1, after):
        walked += page
        after = page[-1]
    assert walked == expected
    assert await registry.repositories.page(3, None) == expected[:3]
    assert await registry.repositories.page(3, expected[2]) == expected[3:]  # a page exactly limit long
    assert await registry.repositories.page(3, expected[-1]) == []  # after the last item
    assert await registry.repositories.page(10, "t/a.c") == expected[2:]  # in a gap
    assert await registry.repositories.page(10, "u") == []  # past the end
    assert await registry.repositories.page(6, None) == expected


async def test_tenant_ranges_at_their_edges(registry):
    for name in EDGES:
        await _with_manifest(registry, name)
    assert await registry.repositories.page(10, None) == ["t", "t-x/y", "t.x/y", "t/x", "t0", "tt/x"]
    assert [s.name for s in await registry.repositories.summaries("t", 10, None)] == ["t/x"]
    assert await registry.repositories.page(10, None, CatalogScope(frozenset({"t"}))) == ["t/x"]
    assert await registry.repositories.page(10, None, CatalogScope(frozenset({"t-x", "tt"}))) == ["t-x/y", "tt/x"]
    everything = CatalogScope(robot_tenant="t", robot_patterns=(pattern_regex("**"),))
    assert await registry.repositories.page(10, None, everything) == ["t/x"]


async def test_filtered_pages_are_full_of_visible_repositories(registry):
    visible = ["b/1", "b/2", "b/3", "pub/x"]
    hidden = ["a/1", "b-x/1", "b.x/1", "b0", "ba/1"]  # other tenants, sorting around "b/"
    for name in hidden + visible:
        await _with_manifest(registry, name)
    assert await registry.repositories.set_public("pub/x", True)
    scope = CatalogScope(frozenset({"b"}), public=True)
    assert await registry.repositories.page(2, None, scope) == ["b/1", "b/2"]
    assert await registry.repositories.page(2, "b/2", scope) == ["b/3", "pub/x"]
    assert await registry.repositories.page(2, "pub/x", scope) == []
    assert await registry.repositories.page(1, "b-x/1", scope) == ["b/1"]  # after an item the caller cannot see
    walked, after = [], None
    while page := await registry.repositories.page(1, after, scope):
        walked += page
        after = page[-1]
    assert walked == visible


async def test_summaries_page_within_the_tenant(registry):
    for name in ["team/a", "team/b", "team/c", "team-x/a", "teamx/a"]:
        await registry.uploads.create(f"u-{name}", name)  # summaries list repositories without manifests too
    assert [s.name for s in await registry.repositories.summaries("team", 2, None)] == ["team/a", "team/b"]
    assert [s.name for s in await registry.repositories.summaries("team", 2, "team/b")] == ["team/c"]
    assert await registry.repositories.summaries("team", 2, "team/c") == []
    assert await registry.repositories.summaries("nobody", 2, None) == []


async def test_visibility_is_an_upsert(registry):
    assert await registry.repositories.set_public("team/app", True)
    assert await registry.repositories.set_public("team/app", True)  # a second time: still one row
    assert [s.name for s in await registry.repositories.summaries("team", 10, None)] == ["team/app"]
    await _with_manifest(registry, "team/app")
    assert (await registry.repositories.summary("team/app")).public is True  # a push keeps it public
    big = [f"team/r{i}" for i in range(1200)]  # more names than one SQL statement takes in SQLite
    assert await registry.repositories.public(big + ["team/app"]) == {"team/app"}


async def test_delete_takes_what_the_repository_holds(registry):
    await registry.blobs.link("team/app", digest("l"), 1)
    assert await registry.manifests.put("team/app", manifest([digest("l")]), ["v1"]) == []
    await registry.uploads.create("u1", "team/app")
    assert await registry.repositories.delete("team/app")
    assert not await registry.repositories.exists("team/app")
    assert await registry.tags.page("team/app", 10, None) is None
    assert await registry.uploads.get("u1") is None
    assert await registry.blobs.linking(digest("l")) == []
    assert not await registry.repositories.delete("team/app")


async def test_ten_creations_of_one_repository_leave_one_row(writers):
    a, b = writers
    uploads = [f"u{i}" for i in range(4)]
    await asyncio.gather(
        *((a if i % 2 else b).uploads.create(u, "team/new") for i, u in enumerate(uploads)),
        *((b if i % 2 else a).blobs.link("team/new", digest(str(i)), 1) for i in range(3)),
        *((a if i % 2 else b).repositories.set_public("team/new", True) for i in range(3)))
    assert [s.name for s in await a.repositories.summaries("team", 10, None)] == ["team/new"]
    assert names(await b.tags.page("team/new", 10, None)) == []
    assert {(await a.uploads.get(u)).repository for u in uploads} == {"team/new"}
    assert sorted(await b.blobs.linking(digest("0")) + await b.blobs.linking(digest("2"))) == ["team/new"] * 2


async def test_robot_patterns_with_punctuation_match_alike(registry):
    """The patterns are regular expressions run by Python's re (SQLite) or PostgreSQL's engine."""
    for name in ["team/ci-x/a", "team/ci.x/a", "team/ci_x/a", "team/cixx/a", "team/ci-x/a/b", "team/CI-X/a"]:
        await _with_manifest(registry, name)
    for pattern, expected in [
        ("team/ci-x/*", ["team/ci-x/a"]),
        ("team/ci.x/*", ["team/ci.x/a"]),  # the dot is no wildcard
        ("team/ci_x/*", ["team/ci_x/a"]),
        ("team/ci?x/*", ["team/ci-x/a", "team/ci.x/a", "team/ci_x/a", "team/cixx/a"]),
        ("team/ci-x/**", ["team/ci-x/a", "team/ci-x/a/b"]),
        ("team/*/a", ["team/CI-X/a", "team/ci-x/a", "team/ci.x/a", "team/ci_x/a", "team/cixx/a"]),
    ]:
        scope = CatalogScope(robot_tenant="team", robot_patterns=(pattern_regex(pattern),))
        assert await registry.repositories.page(10, None, scope) == expected, pattern
