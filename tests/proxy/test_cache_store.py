"""The metadata store's pull-through cache methods, the same over SQLite and PostgreSQL:
stored upstreams and their change counter, pull times, cache size, images in eviction order,
and evicting an image."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest

from hub.db import NewManifest, create_store
from hub.db.proxy_store import UpstreamRecord
from tests.registry.conftest import METADATA_STORES

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
NS = "cache.test"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _manifest(blobs=(), children=(), salt="") -> NewManifest:
    content = json.dumps({"blobs": list(blobs), "children": list(children), "salt": salt}).encode()
    return NewManifest(_digest(content), OCI_MANIFEST, content, None, None, None, tuple(blobs), tuple(children))


@pytest.fixture(params=METADATA_STORES)
async def store(request, tmp_path):
    url = f"sqlite:///{tmp_path}/daohub.db" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    s = create_store(url, pool_min_size=1, pool_max_size=4)
    await s.open()
    await s.migrate()
    yield s
    await s.close()


async def _image(store, repository: str, sizes: dict[str, int], tag: str | None = None, **kw) -> NewManifest:
    for digest, size in sizes.items():
        await store.link_blob(repository, digest, size)
    m = _manifest(list(sizes), **kw)
    assert await store.put_manifest(repository, m, [tag] if tag else []) == []
    return m


UP = UpstreamRecord("ghcr.io", "https://ghcr.io", ("ghcr.example",), "bot", "s3cret", 60, ("team",), True,
                    1000, 7.5, 1.0, 1.0)


async def test_stored_upstreams_and_their_change_counter(store):
    assert await store.upstreams_version() == 0 and await store.list_upstreams() == []
    assert await store.create_upstream(UP)
    assert not await store.create_upstream(UP)
    assert await store.upstreams_version() == 1
    assert await store.get_upstream("ghcr.io") == UP and await store.list_upstreams() == [UP]
    assert "s3cret" not in repr(UP)
    changed = await store.update_upstream("ghcr.io", {"aliases": (), "password": "", "username": "",
                                                       "max_size_bytes": None, "anonymous_pull": False})
    assert changed == dataclasses.replace(UP, aliases=(), password="", username="", max_size_bytes=None,
                                          anonymous_pull=False, updated_at=changed.updated_at)
    assert changed.updated_at > UP.updated_at and await store.upstreams_version() == 2
    assert await store.update_upstream("nope", {"ttl_days": 1}) is None
    with pytest.raises(ValueError, match="cannot change"):
        await store.update_upstream("ghcr.io", {"name": "x"})
    assert await store.delete_upstream("ghcr.io") and not await store.delete_upstream("ghcr.io")
    assert await store.upstreams_version() == 3 and await store.get_upstream("ghcr.io") is None


async def test_images_in_eviction_order_and_size(store):
    shared, a1, b1 = _digest(b"shared"), _digest(b"a1"), _digest(b"b1")
    a = await _image(store, f"{NS}/a", {shared: 100, a1: 10}, tag="1")
    b = await _image(store, f"{NS}/b", {shared: 100, b1: 20}, tag="1")
    await _image(store, "team/app", {shared: 100}, tag="1")  # outside the namespace
    # An index and its platform manifest: one image, pulled when either was.
    c1 = _digest(b"c1")
    child = await _image(store, f"{NS}/c", {c1: 5}, salt="child")
    index = await _image(store, f"{NS}/c", {}, tag="1", children=[child.digest])
    assert await store.cache_size(NS) == 135

    await store.record_pulls([(f"{NS}/a", a.digest, 300.0), (f"{NS}/b", b.digest, 100.0),
                              (f"{NS}/c", child.digest, 200.0), (f"{NS}/gone", a.digest, 1.0)])
    await store.record_pulls([(f"{NS}/b", b.digest, 50.0)])  # older than what is recorded: kept at 100
    images = await store.cache_images(NS)
    assert [(i.repository, i.digest, i.last_pulled, i.size) for i in images] == [
        (f"{NS}/b", b.digest, 100.0, 120), (f"{NS}/c", index.digest, 200.0, 5), (f"{NS}/a", a.digest, 300.0, 110)]

    evicted = await store.evict_image(f"{NS}/b", b.digest, NS)
    assert evicted.manifests == (b.digest,) and set(evicted.unlinked) == {shared, b1}
    assert evicted.freed_bytes == 20  # the shared blob is still in the namespace (a)
    assert not await store.repository_exists(f"{NS}/b")
    assert await store.evict_image(f"{NS}/b", b.digest, NS) == type(evicted)((), (), 0)
    # Unlinked everywhere: its row may go. Still linked (by a and team/app): it stays.
    assert await store.delete_unlinked_blob(b1) and not await store.delete_unlinked_blob(b1)
    assert not await store.delete_unlinked_blob(shared)

    evicted = await store.evict_image(f"{NS}/c", index.digest, NS)
    assert set(evicted.manifests) == {index.digest, child.digest} and evicted.unlinked == (c1,)
    assert evicted.freed_bytes == 5 and await store.list_tags(f"{NS}/c", 10, None) is None
    assert [i.digest for i in await store.cache_images(NS)] == [a.digest]
    assert await store.cache_size(NS) == 110

    evicted = await store.evict_image(f"{NS}/a", a.digest, NS)
    assert evicted.freed_bytes == 110 and await store.cache_size(NS) == 0
    assert await store.get_global_blob_size(shared) == 100  # team/app links it


async def test_a_platform_manifest_another_index_uses_stays(store):
    blob = _digest(b"layer")
    child = await _image(store, f"{NS}/m", {blob: 7}, salt="child")
    old = await _image(store, f"{NS}/m", {}, tag="old", children=[child.digest])
    new = await _image(store, f"{NS}/m", {}, tag="new", children=[child.digest], salt="new")
    await store.record_pulls([(f"{NS}/m", old.digest, 1.0), (f"{NS}/m", new.digest, 2.0)])
    assert [i.digest for i in await store.cache_images(NS)] == [old.digest, new.digest]
    evicted = await store.evict_image(f"{NS}/m", old.digest, NS)
    assert evicted.manifests == (old.digest,) and evicted.unlinked == () and evicted.freed_bytes == 0
    assert await store.get_manifest(f"{NS}/m", child.digest, by_digest=True) is not None
    assert await store.list_tags(f"{NS}/m", 10, None) == ["new"]
