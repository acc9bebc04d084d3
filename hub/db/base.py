"""The metadata store interface. SQLite (embedded) and PostgreSQL implement it.

No SQL lives outside hub/db. Methods take repository *names*; the store maps them to
ids. Every multi-row change is one transaction.
"""

from __future__ import annotations

import abc
import contextlib
import contextvars
import dataclasses
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING

from .. import actor

if TYPE_CHECKING:
    from auth.policy import CatalogScope


@dataclasses.dataclass(frozen=True, slots=True)
class UploadRecord:
    id: str
    repository: str
    size: int
    created_at: float
    updated_at: float


@dataclasses.dataclass(frozen=True, slots=True)
class ManifestRecord:
    digest: str
    media_type: str
    size: int
    content: bytes | None
    subject: str | None = None
    artifact_type: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class NewManifest:
    digest: str
    media_type: str
    content: bytes
    subject: str | None
    artifact_type: str | None
    annotations_json: str | None
    blob_refs: tuple[str, ...]
    manifest_refs: tuple[str, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class ReferrerRecord:
    digest: str
    media_type: str
    size: int
    artifact_type: str | None
    annotations_json: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class AppIndexEntry:
    """What the app store's catalog index keeps of one app version (see appstore.catalog)."""

    app_key: str
    title: str
    summary: str
    categories: tuple[str, ...]
    version: str
    document: str  # JSON served by the catalog: metadata and compose files
    icon_digest: str | None = None
    icon_media_type: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class AppVersionRecord:
    repository: str
    tag: str
    digest: str
    app_key: str
    title: str
    summary: str
    categories: tuple[str, ...]
    version: str
    deprecated: bool
    public: bool
    icon_digest: str | None
    icon_media_type: str | None
    indexed_at: float
    document: str | None = None  # only when asked for


def app_categories_text(categories: tuple[str, ...]) -> str:
    """Categories as stored: '|a|b|', so `LIKE '%|a|%'` filters one (names never hold '|')."""
    return "|" + "".join(c.replace("|", " ") + "|" for c in categories)


def app_version_record(row) -> AppVersionRecord:
    """An AppVersionRecord from a row of the stores' app columns (and optionally the document)."""
    categories = tuple(c for c in row[6].split("|") if c)
    return AppVersionRecord(row[0], row[1], row[2], row[3], row[4], row[5], categories, row[7], bool(row[8]),
                            bool(row[9]), row[10], row[11], row[12], row[13] if len(row) > 13 else None)


class QuotaExceededError(Exception):
    """Linking a blob, storing a manifest or receiving upload data (`kind`) would take a tenant
    past its storage quota. Nothing was written."""

    def __init__(self, tenant: str, used: int, limit: int, needed: int, *, kind: str = "blob", uploading: int = 0):
        super().__init__(f"tenant {tenant} would exceed its quota")
        self.tenant, self.used, self.limit, self.needed = tenant, used, limit, needed
        self.kind, self.uploading = kind, uploading


@dataclasses.dataclass(frozen=True, slots=True)
class QuotaRoom:
    """A tenant's quota as an upload sees it: `used` bytes committed (blobs and manifests) and
    `uploading` bytes held by its other unfinished uploads, against `limit`."""

    tenant: str
    limit: int
    used: int
    uploading: int

    def free(self, held: int = 0) -> int:
        """Bytes an upload that already holds `held` may still receive."""
        return self.limit - self.used - self.uploading - held


# A tenant's usage, the same rule in both stores (placeholders filled per dialect): every distinct
# blob linked into one of its repositories, plus every distinct manifest stored in one, each
# digest counted once however many repositories hold it.
QUOTA_USAGE_SQL = (
    "(SELECT COALESCE(SUM(b.size), 0) FROM blobs b WHERE b.digest IN ("
    "SELECT rb.digest FROM repository_blobs rb JOIN repositories r ON r.id = rb.repository_id "
    "WHERE r.name >= {low} AND r.name < {high}))"
    " + (SELECT COALESCE(SUM(s), 0) FROM (SELECT MAX(m.size) AS s FROM manifests m "
    "JOIN repositories r ON r.id = m.repository_id WHERE r.name >= {low} AND r.name < {high} "
    "GROUP BY m.digest) AS distinct_manifests)")
# Whether a digest is already counted for a tenant, by kind.
QUOTA_COUNTED_SQL = {
    kind: f"SELECT 1 FROM {table} x JOIN repositories r ON r.id = x.repository_id "
          "WHERE x.digest = {digest} AND r.name >= {low} AND r.name < {high} LIMIT 1"
    for kind, table in (("blob", "repository_blobs"), ("manifest", "manifests"))
}


# Set while a background job (GC) writes: see MetadataStore.background().
_BACKGROUND: contextvars.ContextVar[bool] = contextvars.ContextVar("daohub_store_background", default=False)


class MetadataStore(abc.ABC):
    dialect: str = "abstract"

    @staticmethod
    @contextlib.contextmanager
    def background():
        """Within this block (and the tasks it starts) writes give way to other writers.

        A background job's many small transactions must not hold up a push or a pull. On
        PostgreSQL they do not (row locks, no global writer), so this changes nothing there;
        SQLite has one writer per database, and SqliteStore lets foreground writers, of this
        process and of every other process on the database, go first."""
        token = _BACKGROUND.set(True)
        try:
            yield
        finally:
            _BACKGROUND.reset(token)

    @staticmethod
    def in_background() -> bool:
        return _BACKGROUND.get()

    # Who the writes are for (hub/actor.py), here too for the store's own code.
    acting_as = staticmethod(actor.acting_as)
    set_actor = staticmethod(actor.set_actor)
    current_actor = staticmethod(actor.current_actor)

    @abc.abstractmethod
    async def open(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise if the store cannot answer a trivial query."""

    @abc.abstractmethod
    async def migrate(self) -> list[int]:
        """Apply pending migrations; return the versions applied."""

    @abc.abstractmethod
    async def schema_version(self) -> int: ...

    @abc.abstractmethod
    def lock(self, key: str, *, wait: bool = True) -> contextlib.AbstractAsyncContextManager[bool]:
        """`async with store.lock(key) as held:` excludes every other holder of `key`, in this
        process and in every replica sharing the store, until the block ends.

        It yields True once held; with wait=False it yields False at once if `key` is taken.
        Locks are not reentrant: do not take a key inside a block that holds it."""

    @contextlib.asynccontextmanager
    async def try_locks(self, keys: Iterable[str]) -> AsyncIterator[set[str]]:
        """`async with store.try_locks(keys) as held:` holds those of `keys` that are free now (none
        is waited for) until the block ends; `held` is the set of them. For a batch of work on
        many keys that leaves the taken ones for later. This takes them one by one; a store may
        take them all in one round trip."""
        async with contextlib.AsyncExitStack() as stack:
            held: set[str] = set()
            for key in dict.fromkeys(keys):
                if await stack.enter_async_context(self.lock(key, wait=False)):
                    held.add(key)
            yield held

    # Repositories -----------------------------------------------------------------
    @abc.abstractmethod
    async def repository_exists(self, repository: str) -> bool: ...

    @abc.abstractmethod
    async def list_repositories(self, limit: int, last: str | None, scope: CatalogScope | None = None) -> list[str]:
        """Repositories holding at least one manifest, in lexical order after `last`; with `scope`,
        only those it lets the caller see (auth.policy.catalog_scope), so a page is full of them."""

    # Blobs ------------------------------------------------------------------------
    @abc.abstractmethod
    async def get_blob_size(self, repository: str, digest: str) -> int | None:
        """Size of `digest` if it is linked into `repository`, else None."""

    @abc.abstractmethod
    async def get_global_blob_size(self, digest: str) -> int | None:
        """Size of `digest` if any repository links it (the bytes exist), else None."""

    @abc.abstractmethod
    async def repositories_linking(self, digest: str, limit: int = 100) -> list[str]: ...

    @abc.abstractmethod
    async def link_blob(self, repository: str, digest: str, size: int, *, mounted_from: str | None = None) -> None:
        """Link a blob into a repository; raises QuotaExceededError if the tenant has no room.
        `mounted_from` (a cross-repository mount: the repository it came from) writes a
        blob.mounted event when the link is new."""

    @abc.abstractmethod
    async def tenant_usage(self, tenant: str) -> int:
        """Bytes of the distinct blobs linked into the tenant's repositories (`<tenant>/...`) plus
        those of the distinct manifests stored in them."""

    @abc.abstractmethod
    async def check_quota(self, repository: str, digest: str, size: int) -> None:
        """Raise QuotaExceededError if linking `digest` now would exceed the tenant's quota."""

    @abc.abstractmethod
    async def quota_room(self, repository: str, *, upload_id: str | None = None,
                         digest: str | None = None) -> QuotaRoom | None:
        """The quota of the repository's tenant for upload data: its usage and the recorded sizes
        of its unfinished uploads other than `upload_id`. None when the tenant has no quota, or
        when the blob `digest` is already counted for it (the upload will add nothing)."""

    @abc.abstractmethod
    async def unlink_blob(self, repository: str, digest: str) -> bool: ...

    # Uploads ----------------------------------------------------------------------
    @abc.abstractmethod
    async def create_upload(self, upload_id: str, repository: str) -> None: ...

    @abc.abstractmethod
    async def get_upload(self, upload_id: str) -> UploadRecord | None: ...

    @abc.abstractmethod
    async def set_upload_size(self, upload_id: str, expected: int | None, size: int) -> bool:
        """Record the durable size; with `expected`, only if the stored size equals it."""

    @abc.abstractmethod
    async def delete_upload(self, upload_id: str) -> bool: ...

    @abc.abstractmethod
    async def expired_uploads(self, updated_before: float, limit: int = 1000) -> list[str]:
        """Ids of uploads not touched since `updated_before`."""

    @abc.abstractmethod
    async def uploads_exist(self, upload_ids: list[str]) -> set[str]:
        """The subset of `upload_ids` that have a row."""

    @abc.abstractmethod
    async def complete_upload(self, upload_id: str, repository: str, digest: str, size: int) -> None:
        """Link the blob into the repository and drop the upload row, atomically.

        Raises QuotaExceededError (and changes nothing) if the tenant has no room."""

    # Manifests and tags -------------------------------------------------------------
    @abc.abstractmethod
    async def get_manifest(self, repository: str, reference: str, *, by_digest: bool,
                           with_content: bool = True) -> ManifestRecord | None: ...

    @abc.abstractmethod
    async def put_manifest(self, repository: str, manifest: NewManifest, tags: list[str], *,
                           verify_references: bool = True) -> list[str]:
        """Store the manifest and point `tags` at it; raises QuotaExceededError (and changes
        nothing) if its bytes would take the tenant past its quota.

        Returns the referenced digests missing from the repository; when that list is
        not empty nothing was written. With verify_references=False (the pull-through
        cache, which stores a manifest before it fetches what it references) nothing is
        checked and the references are still recorded.
        """

    @abc.abstractmethod
    async def delete_manifest(self, repository: str, digest: str) -> bool:
        """Delete the manifest and every tag pointing at it."""

    @abc.abstractmethod
    async def delete_tag(self, repository: str, tag: str) -> bool: ...

    @abc.abstractmethod
    async def list_tags(self, repository: str, limit: int, last: str | None) -> list[str] | None:
        """Tags in lexical order after `last`; None if the repository does not exist."""

    @abc.abstractmethod
    async def list_referrers(self, repository: str, subject: str,
                             artifact_type: str | None = None) -> list[ReferrerRecord]: ...

    # Pull-through cache ---------------------------------------------------------------
    # Not abstract so a store without them still serves everything else; the cache needs them.
    async def proxy_tag_checked_at(self, repository: str, tag: str) -> float | None:
        """When the cached `tag` of `repository` was last confirmed upstream (epoch seconds)."""
        raise NotImplementedError(f"{type(self).__name__} does not support the pull-through cache yet")

    async def set_proxy_tag_checked(self, repository: str, tag: str, checked_at: float) -> None:
        """Record that `tag` was confirmed upstream at `checked_at` (no-op without the repository)."""
        raise NotImplementedError(f"{type(self).__name__} does not support the pull-through cache yet")

    # App store catalog index -------------------------------------------------------------------
    # Not abstract, like the cache's: a store without them serves the registry; the app store needs them.
    async def index_app_version(self, repository: str, tag: str, digest: str, entry: AppIndexEntry) -> bool:
        """Index `tag` of `repository` as an app version, if the tag points at `digest` right now
        (else nothing is written and False returned). A re-index keeps the deprecated flag."""
        raise NotImplementedError(f"{type(self).__name__} does not support the app store yet")

    async def unindex_app_versions(self, repository: str, tags: list[str]) -> None:
        """Drop the index rows of `tags` (moved to a manifest that is not an app)."""
        raise NotImplementedError(f"{type(self).__name__} does not support the app store yet")

    async def list_app_versions(self, limit: int, after: str | None, *, tenants: frozenset[str] | None = None,
                                tenant: str | None = None) -> list[AppVersionRecord]:
        """Every indexed version of the first `limit` app repositories named after `after`, in name
        order. `tenants` (None: all) keeps only public repositories and those of these tenants;
        `tenant` keeps only that tenant's repositories. Without documents."""
        raise NotImplementedError(f"{type(self).__name__} does not support the app store yet")

    async def app_versions_of(self, repository: str) -> list[AppVersionRecord]:
        """The indexed versions of one repository (without documents)."""
        raise NotImplementedError(f"{type(self).__name__} does not support the app store yet")

    async def get_app_version(self, repository: str, tag: str) -> AppVersionRecord | None:
        """One indexed version, with its document."""
        raise NotImplementedError(f"{type(self).__name__} does not support the app store yet")

    async def set_app_version_deprecated(self, repository: str, tag: str, deprecated: bool) -> bool:
        raise NotImplementedError(f"{type(self).__name__} does not support the app store yet")
