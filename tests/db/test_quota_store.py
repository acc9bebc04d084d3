"""Tenant usage in both stores: distinct blobs plus distinct manifests, the room an upload has,
and manifests refused past the quota; on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from auth.policy import CatalogScope, pattern_regex
from hub.db.base import QuotaExceededError, QuotaRoom

from .test_store import digest, manifest


async def test_usage_counts_each_manifest_once_per_tenant(store):
    assert await store.create_tenant("team", "Team", 1000)
    await store.link_blob("team/a", digest("x"), 100)
    await store.link_blob("team/b", digest("x"), 100)
    m = manifest(blobs=[digest("x")])
    assert await store.put_manifest("team/a", m, ["v1"]) == []
    assert await store.put_manifest("team/b", m, ["v1", "v2"]) == []
    await store.link_blob("teamx/a", digest("x"), 100)  # a tenant whose name sorts next to "team/"
    assert await store.put_manifest("teamx/a", m, ["v1"]) == []
    assert await store.tenant_usage("team") == 100 + len(m.content)
    assert await store.tenant_usage("teamx") == 100 + len(m.content)
    assert await store.delete_manifest("team/a", m.digest)
    assert await store.tenant_usage("team") == 100 + len(m.content)
    assert await store.delete_manifest("team/b", m.digest)
    assert await store.tenant_usage("team") == 100


async def test_manifest_past_the_quota_changes_nothing(store):
    assert await store.create_tenant("team", "Team", 200)
    await store.link_blob("team/a", digest("x"), 150)
    big = manifest(blobs=[digest("x")], salt="s" * 60)
    with pytest.raises(QuotaExceededError) as exc:
        await store.put_manifest("team/a", big, ["v1"])
    assert (exc.value.used, exc.value.limit, exc.value.needed, exc.value.kind) == (150, 200, len(big.content),
                                                                                   "manifest")
    assert await store.get_manifest("team/a", "v1", by_digest=False) is None
    assert await store.get_manifest("team/a", big.digest, by_digest=True) is None
    assert await store.tenant_usage("team") == 150
    # Without a quota, and in the pull-through cache's way (references not verified), it goes in.
    assert await store.update_tenant("team", {"quota_bytes": None})
    assert await store.put_manifest("team/a", big, ["v1"], verify_references=False) == []
    assert await store.tenant_usage("team") == 150 + len(big.content)


async def test_quota_room_counts_other_unfinished_uploads(store):
    assert await store.quota_room("team/a") is None  # no tenant, no quota
    assert await store.create_tenant("team", "Team", 1000)
    await store.link_blob("team/a", digest("x"), 100)
    for upload_id, repository, size in (("u1", "team/a", 30), ("u2", "team/b", 50), ("u3", "teamx/a", 400)):
        await store.create_upload(upload_id, repository)
        await store.set_upload_size(upload_id, None, size)
    assert await store.quota_room("team/a") == QuotaRoom("team", 1000, 100, 80)
    assert await store.quota_room("team/a", upload_id="u1") == QuotaRoom("team", 1000, 100, 50)
    assert (await store.quota_room("team/a", upload_id="u1")).free(30) == 1000 - 100 - 50 - 30
    assert await store.quota_room("team/c", digest=digest("x")) is None  # counted already: adds nothing
    assert await store.quota_room("team/c", digest=digest("y")) == QuotaRoom("team", 1000, 100, 80)


async def test_catalog_scope_filters_in_the_query(store):
    m = manifest()
    for name in ("alpine", "other/a", "other/pub", "team/a", "team/ci/x", "team/ci/x/deep", "teamx/ci/x"):
        assert await store.put_manifest(name, m, ["v1"], verify_references=False) == []
    assert await store.set_repository_public("other/pub", True)
    assert await store.list_repositories(10, None, CatalogScope()) == []
    assert await store.list_repositories(10, None, CatalogScope(frozenset({"team"}), public=True)) == [
        "other/pub", "team/a", "team/ci/x", "team/ci/x/deep"]
    assert await store.list_repositories(10, None, CatalogScope(frozenset({"alpine"}))) == []
    robot = CatalogScope(public=True, robot_tenant="team", robot_patterns=(pattern_regex("team/ci/*"),))
    assert await store.list_repositories(10, None, robot) == ["other/pub", "team/ci/x"]
    assert await store.list_repositories(1, "other/pub", robot) == ["team/ci/x"]
    deep = CatalogScope(robot_tenant="team", robot_patterns=(pattern_regex("*/ci/**"),))
    assert await store.list_repositories(10, None, deep) == ["team/ci/x", "team/ci/x/deep"]


async def test_repository_delete_and_upload_cleanup_release_their_bytes(store):
    assert await store.create_tenant("team", "Team", 1000)
    await store.link_blob("team/a", digest("x"), 100)
    await store.link_blob("team/b", digest("y"), 200)
    m = manifest(blobs=[digest("y")])
    assert await store.put_manifest("team/b", m, ["v1"]) == []
    await store.create_upload("u1", "team/b")
    await store.set_upload_size("u1", None, 300)
    assert await store.quota_room("team/a") == QuotaRoom("team", 1000, 300 + len(m.content), 300)
    assert await store.delete_repository("team/b")  # its manifests, links and uploads go with it
    assert await store.tenant_usage("team") == 100
    assert await store.quota_room("team/a") == QuotaRoom("team", 1000, 100, 0)
