"""The cache area's target API (docs/design/metadata-split.md §3.3) mapped onto today's
MetadataStore (hub/db/sqlite_proxy.py and postgres_proxy.py, plus the proxy-tag methods of
sqlite.py and postgres.py), so the contract suite pins today's behaviour before anything moves.
Step 4c replaces each sub-store here by the real area store (`hub/db/cache/`) and deletes its
adapter; the tests do not change.

Adapted differently:
- `upstreams.page(limit, after)`: today's list_upstreams returns every upstream in name order; the
  adapter cuts the page out of it, so the tests pin the order and the page rule the area must keep.
- Eviction: today one transaction (`evict_image`). After step 4e it is
  `registry.manifests.delete_image`, then `cache.proxy_tags.forget_untagged` and
  `cache.images.freed_bytes` (§3.3); `evict()` below is the one place that changes then.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from hub.db.base import MetadataStore
from hub.db.proxy_store import CachedImage, EvictedImage, UpstreamRecord


class _Over:
    def __init__(self, store: MetadataStore):
        self.store = store


class Upstreams(_Over):
    async def page(self, limit: int, after: str | None) -> list[UpstreamRecord]:
        return [u for u in await self.store.list_upstreams() if after is None or u.name > after][:limit]

    async def get(self, name: str) -> UpstreamRecord | None:
        return await self.store.get_upstream(name)

    async def create(self, record: UpstreamRecord) -> bool:
        return await self.store.create_upstream(record)

    async def update(self, name: str, changes: Mapping[str, object]) -> UpstreamRecord | None:
        return await self.store.update_upstream(name, changes)

    async def delete(self, name: str) -> bool:
        return await self.store.delete_upstream(name)

    async def version(self) -> int:
        return await self.store.upstreams_version()


class ProxyTags(_Over):
    async def checked_at(self, repository: str, tag: str) -> float | None:
        return await self.store.proxy_tag_checked_at(repository, tag)

    async def set_checked(self, repository: str, tag: str, checked_at: float) -> None:
        await self.store.set_proxy_tag_checked(repository, tag, checked_at)


class Images(_Over):
    async def record_pulls(self, pulls: Iterable[tuple[str, str, float]]) -> None:
        await self.store.record_pulls(pulls)

    async def size(self, namespace: str) -> int:
        return await self.store.cache_size(namespace)

    async def images(self, namespace: str) -> list[CachedImage]:
        return await self.store.cache_images(namespace)


@dataclasses.dataclass(frozen=True)
class CacheStores:
    upstreams: Upstreams
    proxy_tags: ProxyTags
    images: Images
    store: MetadataStore  # for evict() only, until step 4e


def cache_over(store: MetadataStore) -> CacheStores:
    return CacheStores(Upstreams(store), ProxyTags(store), Images(store), store)


async def evict(cache: CacheStores, repository: str, digest: str, namespace: str) -> EvictedImage:
    """Evict one cached image: its manifests, the proxy tags whose tag went, the links nothing left
    references, the repository if empty; and how many bytes the namespace no longer links."""
    return await cache.store.evict_image(repository, digest, namespace)
