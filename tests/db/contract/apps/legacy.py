"""The apps area's target API (docs/design/metadata-split.md §3.3: apps.index) mapped onto today's
MetadataStore (the app store index methods of sqlite.py and postgres.py), so the contract suite pins
today's behaviour before anything moves. Step 4b replaces it by the real area store
(`hub/db/apps/`) and deletes this adapter; the tests do not change. `unindex_app_versions` has no
counterpart: the plan deletes it (no caller)."""

from __future__ import annotations

from hub.db.base import AppIndexEntry, AppVersionRecord, MetadataStore


class Index:
    def __init__(self, store: MetadataStore):
        self.store = store

    async def index(self, repository: str, tag: str, digest: str, entry: AppIndexEntry) -> bool:
        return await self.store.index_app_version(repository, tag, digest, entry)

    async def page(self, limit: int, after: str | None, *, tenants: frozenset[str] | None = None,
                   tenant: str | None = None) -> list[AppVersionRecord]:
        return await self.store.list_app_versions(limit, after, tenants=tenants, tenant=tenant)

    async def versions_of(self, repository: str) -> list[AppVersionRecord]:
        return await self.store.app_versions_of(repository)

    async def get(self, repository: str, tag: str) -> AppVersionRecord | None:
        return await self.store.get_app_version(repository, tag)

    async def set_deprecated(self, repository: str, tag: str, deprecated: bool) -> bool:
        return await self.store.set_app_version_deprecated(repository, tag, deprecated)
