"""The registry area's target API (docs/design/metadata-split.md §3.3) mapped onto today's
MetadataStore (`SqliteStore` / `PostgresStore`), so the contract suite pins today's behaviour
before anything moves. Step 4e of the plan replaces each sub-store here by the real area store
(`hub/db/registry/`) and deletes its adapter; the tests do not change.

Not adapted yet: `manifests.delete_image` (today's `evict_image` also clears proxy tags and
counts freed bytes, which the cache area takes over), so the suite does not call it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from hub.db.base import MetadataStore, NewManifest


class _Over:
    def __init__(self, store: MetadataStore):
        self.store = store


class Repositories(_Over):
    async def exists(self, name: str) -> bool:
        return await self.store.repository_exists(name)

    async def page(self, limit: int, after: str | None, filter: Any = None) -> list[str]:
        return await self.store.list_repositories(limit, after, filter)

    async def public(self, names: list[str]) -> set[str]:
        return await self.store.public_repositories(names)

    async def set_public(self, name: str, public: bool) -> bool:
        return await self.store.set_repository_public(name, public)

    async def summaries(self, tenant: str, limit: int, after: str | None):
        return await self.store.repository_summaries(tenant, limit, after)

    async def summary(self, name: str):
        return await self.store.repository_summary(name)

    async def delete(self, name: str) -> bool:
        return await self.store.delete_repository(name)


class Manifests(_Over):
    async def get(self, repository: str, reference: str, *, by_digest: bool, with_content: bool = True):
        return await self.store.get_manifest(repository, reference, by_digest=by_digest, with_content=with_content)

    async def put(self, repository: str, manifest: NewManifest, tags: list[str], *,
                  verify_references: bool = True) -> list[str]:
        return await self.store.put_manifest(repository, manifest, tags, verify_references=verify_references)

    async def delete(self, repository: str, digest: str) -> bool:
        return await self.store.delete_manifest(repository, digest)

    async def referrers(self, repository: str, subject: str, artifact_type: str | None = None):
        return await self.store.list_referrers(repository, subject, artifact_type)


class Tags(_Over):
    async def page(self, repository: str, limit: int, after: str | None):
        """TagRecords (name, digest, updated_at); None: no repository. Pins that list_tags, which
        the registry serves today, gives the same names as list_tag_records."""
        records = await self.store.list_tag_records(repository, limit, after)
        names = await self.store.list_tags(repository, limit, after)
        assert names == (None if records is None else [t.name for t in records])
        return records

    async def delete(self, repository: str, tag: str) -> bool:
        return await self.store.delete_tag(repository, tag)


class Blobs(_Over):
    async def size_in(self, repository: str, digest: str) -> int | None:
        return await self.store.get_blob_size(repository, digest)

    async def size_anywhere(self, digest: str) -> int | None:
        return await self.store.get_global_blob_size(digest)

    async def linking(self, digest: str, limit: int = 100) -> list[str]:
        return await self.store.repositories_linking(digest, limit)

    async def link(self, repository: str, digest: str, size: int) -> None:
        await self.store.link_blob(repository, digest, size)

    async def unlink(self, repository: str, digest: str) -> bool:
        return await self.store.unlink_blob(repository, digest)

    async def delete_if_unlinked(self, digest: str) -> bool:
        return await self.store.delete_unlinked_blob(digest)


class Uploads(_Over):
    async def create(self, upload_id: str, repository: str) -> None:
        await self.store.create_upload(upload_id, repository)

    async def get(self, upload_id: str):
        return await self.store.get_upload(upload_id)

    async def set_size(self, upload_id: str, expected: int | None, size: int) -> bool:
        return await self.store.set_upload_size(upload_id, expected, size)

    async def delete(self, upload_id: str) -> bool:
        return await self.store.delete_upload(upload_id)

    async def expired(self, updated_before: float, limit: int = 1000) -> list[str]:
        return await self.store.expired_uploads(updated_before, limit)

    async def existing(self, upload_ids: list[str]) -> set[str]:
        return await self.store.uploads_exist(upload_ids)

    async def complete(self, upload_id: str, repository: str, digest: str, size: int) -> None:
        await self.store.complete_upload(upload_id, repository, digest, size)


class Quota(_Over):
    async def usage(self, tenant: str) -> int:
        return await self.store.tenant_usage(tenant)

    async def check(self, repository: str, digest: str, size: int) -> None:
        await self.store.check_quota(repository, digest, size)

    async def room(self, repository: str, *, upload_id: str | None = None, digest: str | None = None):
        return await self.store.quota_room(repository, upload_id=upload_id, digest=digest)


class Tenants(_Over):
    """The two identity.tenants calls the registry tests need to set a quota up."""

    async def create(self, name: str, display_name: str = "", quota_bytes: int | None = None) -> bool:
        return await self.store.create_tenant(name, display_name, quota_bytes)

    async def update(self, name: str, fields: dict[str, Any]):
        return await self.store.update_tenant(name, fields)


@dataclasses.dataclass(frozen=True)
class RegistryStores:
    """What `registry` will be: one object per sub-store, all over one engine."""

    repositories: Repositories
    manifests: Manifests
    tags: Tags
    blobs: Blobs
    uploads: Uploads
    quota: Quota
    tenants: Tenants  # identity's, for set-up only


def registry_over(store: MetadataStore) -> RegistryStores:
    return RegistryStores(Repositories(store), Manifests(store), Tags(store), Blobs(store), Uploads(store),
                          Quota(store), Tenants(store))
