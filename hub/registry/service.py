"""OCI registry semantics over a metadata store and a storage driver. No HTTP here.

Handlers pass request bodies in as async iterators of bytes; everything that can go
wrong raises an OciError subclass.

Blob bytes and links, and the per-digest lock (`blob_lock`). Bytes live once per digest and
may be deleted once no repository links them (the pull-through cache's eviction). So whoever
creates a link that relies on bytes being there (a push that finds them present and skips
the move, a cross-repository mount, the cache linking a blob another repository brought)
holds the digest's lock from that check through the link's commit, and whoever deletes the
bytes holds it from the final "nothing links it" check through the delete. A push of the
same digest therefore either links before the check (and the bytes stay) or checks after the
delete (and moves its own bytes in). On PostgreSQL it is an advisory lock, across replicas.
Reads take no lock: a linked blob is not deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from storage_backends import PathNotFoundError, StorageDriver, StorageError

from ..db import ManifestRecord, MetadataStore, NewManifest, ReferrerRecord
from ..db.base import QuotaExceededError, QuotaRoom
from ..db.immutable_store import TagImmutableError
from ..db.promotion_store import CopyPlan, PromotionRecord, PromotionRequest
from ..events import cloudevents
from ..errors import (
    BlobUnknown,
    BlobUploadUnknown,
    Denied,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameUnknown,
    PayloadTooLarge,
    RangeNotSatisfiable,
    SizeInvalid,
)
from ..retention.immutable import tag_guard
from .manifests import ParsedManifest, parse_manifest
from .mediatypes import IMAGE_MANIFESTS
from .names import Digest, digest_of, is_tag, looks_like_digest, parse_digest, validate_tag

if TYPE_CHECKING:
    from auth.policy import CatalogScope

log = logging.getLogger("daohub.registry")

# Bytes gathered from the network before one write+hash step (512 KiB: measured 104 MB peak RSS
# for 20 concurrent uploads against 129 MB with 1 MiB, for ~5% of push speed: 188 vs 199 MB/s). Two per upload
# are alive at once (one being written and hashed, one filling), which bounds memory.
BUFFER_SIZE = 512 * 1024

ReadCheck = Callable[[str], bool]
# A promotion's bounds: the manifests it copies (an index, its children and their referrers), and the
# size of an image config read for its labels.
MAX_PROMOTED_MANIFESTS = 1000
MAX_CONFIG_BYTES = 1 << 20


class ManifestHook(Protocol):
    """Sees manifests as they are pushed: `before_put` may refuse one (raise an OciError) and
    returns what `after_put` needs (None: nothing to do); `after_put` runs once it is stored."""

    async def before_put(self, repository: str, content: bytes, parsed: ParsedManifest) -> object | None: ...

    async def after_put(self, repository: str, digest: str, tags: list[str], state: object) -> None: ...


class UploadWatch(Protocol):
    """Follows a monolithic upload as it happens (the pull-through cache serves its clients
    from it while the bytes arrive).

    `opened` names the local file the bytes are written to, when the storage has one (None:
    the bytes go to remote storage); `written` gives the count of bytes now in that file (or on
    their way to storage), after each write; `hashed` is called once every byte has arrived
    and hashes to the digest, before the data is made durable and published."""

    def opened(self, local_file: str | None) -> None: ...

    def written(self, total: int) -> None: ...

    def hashed(self) -> None: ...


@dataclasses.dataclass(slots=True)
class _RunningHash:
    """The hash of an upload's first `offset` bytes, kept by the process that received them."""

    algorithm: str
    hasher: object
    offset: int
    touched: float


@dataclasses.dataclass(frozen=True, slots=True)
class BlobLocation:
    digest: Digest
    size: int
    storage_path: str


def blob_lock_key(digest: str) -> str:
    return f"blob:{digest}"


def upload_path(upload_id: str) -> str:
    return f"uploads/{upload_id}/data"


def _valid_upload_id(upload_id: str) -> bool:
    try:
        return str(uuid.UUID(upload_id)) == upload_id
    except ValueError:
        return False


_NEEDS = {"blob": "this blob needs {} more", "manifest": "this manifest needs {} more",
          "upload": "this upload would hold {}"}


def _quota_denied(exc: QuotaExceededError) -> Denied:
    held = f", its unfinished uploads hold {exc.uploading} more," if exc.uploading else ""
    return Denied(
        f"storage quota exceeded: tenant {exc.tenant} uses {exc.used} of {exc.limit} bytes{held} "
        f"and {_NEEDS[exc.kind].format(exc.needed)}",
        detail={"tenant": exc.tenant, "used_bytes": exc.used, "limit_bytes": exc.limit,
                "uploading_bytes": exc.uploading, "requested_bytes": exc.needed, "kind": exc.kind},
    )


def _immutable_denied(exc: TagImmutableError) -> Denied:
    """DENIED, with the rule named: docker, podman and skopeo print the message as it is."""
    return Denied(str(exc), detail={"repository": exc.repository, "tag": exc.tag, "reason": "immutable tag"})


class _OverQuota(Denied):
    """Upload data refused for the tenant's quota: the request's bytes are not kept."""


@dataclasses.dataclass(frozen=True, slots=True)
class _Allowance:
    """How many more bytes one request may add to an upload that holds `held`, in a tenant with a
    quota: a session's ("upload") or a blob's sent whole ("blob")."""

    room: QuotaRoom
    held: int
    kind: str

    @property
    def free(self) -> int:
        return self.room.free(self.held)

    def refusal(self, adding: int) -> _OverQuota:
        exc = QuotaExceededError(self.room.tenant, self.room.used, self.room.limit, self.held + adding,
                                 kind=self.kind, uploading=self.room.uploading)
        denied = _quota_denied(exc)
        return _OverQuota(denied.message, detail=denied.detail)


class Registry:
    def __init__(self, store: MetadataStore, storage: StorageDriver, *, max_manifest_bytes: int = 4 << 20,
                 max_blob_bytes: int = 0, hash_cache_size: int = 4096,
                 immutable_app_versions: bool = False):
        self.store = store
        self.storage = storage
        self.max_manifest_bytes = max_manifest_bytes
        self.max_blob_bytes = max_blob_bytes
        self._hashes: OrderedDict[str, _RunningHash] = OrderedDict()
        self._hash_cache_size = hash_cache_size
        # Writers of uploads receiving data in this process right now, for live status.
        self._active_writers: dict[str, object] = {}
        # Told about every manifest pushed with its references verified (the app store's index).
        self.manifest_hooks: list[ManifestHook] = []
        # Immutable tags hold on every path that changes tags through this store, this
        # Registry's or another service's: the store checks them inside each such transaction.
        # With `immutable_app_versions`, a tag publishing an app version never moves either.
        store.tag_guard = tag_guard(immutable_app_versions)

    # Blobs ---------------------------------------------------------------------------
    async def _quota_refused(self, exc: QuotaExceededError, repository: str) -> Denied:
        """The 403 for a push the quota refused, with its quota.exceeded event."""
        denied = _quota_denied(exc)
        await self._quota_exceeded_event(repository, denied.detail)
        return denied

    async def _quota_exceeded_event(self, repository: str, detail: dict) -> None:
        """A refused push's quota.exceeded event, in a transaction of its own (the refused change
        rolled back, or never started); a failure to write it is logged, the refusal stands."""
        try:
            await self.store.record_event(cloudevents.QUOTA_EXCEEDED, repository=None, subject=detail["tenant"],
                                          tenant=detail["tenant"], data={
                                              "tenant": detail["tenant"], "repository": repository,
                                              "used_bytes": detail["used_bytes"], "limit_bytes": detail["limit_bytes"],
                                              "requested_bytes": detail["requested_bytes"], "kind": detail["kind"]})
        except Exception:
            log.exception("writing the quota.exceeded event of %s failed", repository)

    async def stat_blob(self, repository: str, digest_str: str) -> BlobLocation:
        digest = parse_digest(digest_str)
        size = await self.store.get_blob_size(repository, str(digest))
        if size is None:
            raise BlobUnknown(detail={"digest": digest_str})
        return BlobLocation(digest, size, digest.blob_path)

    def local_blob_path(self, blob: BlobLocation) -> Path | None:
        return self.storage.local_path(blob.storage_path)

    async def open_blob(self, blob: BlobLocation, offset: int = 0) -> AsyncIterator[bytes]:
        try:
            return await self.storage.reader(blob.storage_path, offset)
        except PathNotFoundError:
            log.error("blob %s is linked but missing from storage", blob.digest)
            raise BlobUnknown("blob data is missing from storage", detail={"digest": str(blob.digest)}) from None

    async def blob_redirect_url(self, blob: BlobLocation) -> str | None:
        return await self.storage.redirect_url(blob.storage_path)

    async def delete_blob(self, repository: str, digest_str: str) -> None:
        digest = parse_digest(digest_str)
        if not await self.store.unlink_blob(repository, str(digest)):
            raise BlobUnknown(detail={"digest": digest_str})

    def blob_lock(self, digest: str):
        """The lock of a digest's bytes (see the module docstring): `async with registry.blob_lock(d):`."""
        return self.store.lock(blob_lock_key(digest))

    async def mount_blob(self, repository: str, digest_str: str, source: str | None,
                         can_read: ReadCheck) -> bool:
        """Link a blob that `source` (or, without one, any readable repository) has. True if mounted."""
        digest = str(parse_digest(digest_str))
        if await self.store.get_blob_size(repository, digest) is not None:
            # Linked already: linked again (under the lock, as GC may be unlinking it), so GC's
            # grace period starts over for a blob a client is about to reference.
            async with self.blob_lock(digest):
                size = await self.store.get_blob_size(repository, digest)
                if size is not None:
                    await self.store.link_blob(repository, digest, size)
                    return True
        candidates = [source] if source else await self.store.repositories_linking(digest)
        candidates = [c for c in candidates if c != repository and can_read(c)]
        if not candidates:
            return False
        # Held from seeing the source's link to committing ours: the source may be unlinked
        # meanwhile (an evicted cache image), and then the bytes must wait for our link.
        async with self.blob_lock(digest):
            for candidate in candidates:
                size = await self.store.get_blob_size(candidate, digest)
                if size is not None:
                    try:
                        await self.store.link_blob(repository, digest, size, mounted_from=candidate)
                    except QuotaExceededError as exc:
                        raise await self._quota_refused(exc, repository) from None
                    return True
        return False

    # Uploads -------------------------------------------------------------------------
    async def start_upload(self, repository: str) -> str:
        upload_id = str(uuid.uuid4())
        writer = await self.storage.writer(upload_path(upload_id))
        await writer.close()
        await self.store.create_upload(upload_id, repository)
        return upload_id

    async def _get_upload(self, repository: str, upload_id: str):
        if not _valid_upload_id(upload_id):
            raise BlobUploadUnknown(detail={"uuid": upload_id[:100]})
        record = await self.store.get_upload(upload_id)
        if record is None or record.repository != repository:
            raise BlobUploadUnknown(detail={"uuid": upload_id})
        return record

    def _locked(self, upload_id: str, *, wait: bool = True):
        """Serialise requests on one upload, in this process and across replicas (a PATCH on
        one and the PUT on another): the store's lock, an advisory lock on PostgreSQL."""
        return self.store.lock(f"upload:{upload_id}", wait=wait)

    async def upload_status(self, repository: str, upload_id: str) -> int:
        """The number of bytes durably received for an upload."""
        record = await self._get_upload(repository, upload_id)
        active = self._active_writers.get(upload_id)
        if active is not None:
            # A request is appending right now (maybe stalled): report what has arrived so
            # far instead of waiting for it to end.
            return active.size
        async with self._locked(upload_id, wait=False) as held:
            if not held:
                # A request on another replica is writing (maybe stalled): answer with the size
                # it last made durable rather than wait for it.
                return record.size
            try:
                writer = await self.storage.writer(upload_path(upload_id), append=True)
            except PathNotFoundError:
                raise BlobUploadUnknown(detail={"uuid": upload_id}) from None
            size = writer.size
            await writer.close()
        if size != record.size:
            await self.store.set_upload_size(upload_id, None, size)
        return size

    def _take_hash(self, upload_id: str, algorithm: str, offset: int):
        running = self._hashes.pop(upload_id, None)
        if running is None or running.offset != offset or running.algorithm != algorithm:
            return None
        return running.hasher

    def _keep_hash(self, upload_id: str, algorithm: str, hasher, offset: int) -> None:
        self._hashes[upload_id] = _RunningHash(algorithm, hasher, offset, time.monotonic())
        self._hashes.move_to_end(upload_id)
        while len(self._hashes) > self._hash_cache_size:
            self._hashes.popitem(last=False)

    async def _pump(self, chunks: AsyncIterator[bytes], writer, hasher, limit: int | None,
                    progress: Callable[[int], None] | None = None, allowance: _Allowance | None = None) -> int:
        """Copy `chunks` into `writer`, hashing as bytes arrive. Returns bytes written.

        Writing and hashing run on worker threads (hashlib releases the GIL for large
        buffers) while the event loop keeps reading the next buffer from the network.
        If the stream breaks, everything received before the break is still written
        and hashed before the error propagates, so the upload stays resumable.
        `progress`, if given, gets the writer's size after each write. Past the tenant's quota
        (`allowance`) it raises _OverQuota before the chunk that crosses it is written; the caller
        discards what this request wrote.
        """
        loop = asyncio.get_running_loop()
        pending: asyncio.Future | None = None
        written = 0
        parts: list[bytes] = []
        buffered = 0

        def sink(data: bytes) -> None:
            if hasher is not None:
                hasher.update(data)

        async def flush(data: bytes) -> None:
            if hasher is not None:
                await asyncio.gather(writer.write(data), loop.run_in_executor(None, sink, data))
            else:
                await writer.write(data)
            if progress is not None:
                progress(writer.size)

        refused = False
        try:
            async for chunk in chunks:
                if not chunk:
                    continue
                written += len(chunk)
                if limit is not None and written > limit:
                    raise PayloadTooLarge("blob exceeds the size limit", detail={"limit": limit})
                if allowance is not None and written > allowance.free:
                    refused = True
                    raise allowance.refusal(written)
                parts.append(chunk)
                buffered += len(chunk)
                if buffered >= BUFFER_SIZE:
                    data = b"".join(parts)
                    parts.clear()
                    buffered = 0
                    if pending is not None:
                        await pending
                    pending = asyncio.ensure_future(flush(data))
        finally:
            if pending is not None:
                await pending
            if parts and not refused:
                await flush(b"".join(parts))
        return written

    async def _rehash(self, path: str, algorithm: str):
        hasher = Digest(algorithm, "").hasher()
        loop = asyncio.get_running_loop()
        async for chunk in await self.storage.reader(path):
            await loop.run_in_executor(None, hasher.update, chunk)
        return hasher

    def _size_limit(self, offset: int) -> int | None:
        return self.max_blob_bytes - offset if self.max_blob_bytes else None

    @staticmethod
    def _check_range(start_offset: int, content_range: tuple[int, int] | None,
                     content_length: int | None) -> None:
        if content_range is None:
            return
        start, end = content_range
        if start != start_offset or end < start:
            raise RangeNotSatisfiable(
                "chunk does not start at the current offset",
                detail={"offset": start_offset, "range": f"{start}-{end}"},
                headers={"Range": f"0-{max(start_offset - 1, 0)}"},
            )
        if content_length is not None and content_length != end - start + 1:
            raise RangeNotSatisfiable(
                "Content-Length does not match Content-Range",
                detail={"content_length": content_length, "range": f"{start}-{end}"},
                headers={"Range": f"0-{max(start_offset - 1, 0)}"},
            )

    async def append_upload(self, repository: str, upload_id: str, chunks: AsyncIterator[bytes],
                            content_range: tuple[int, int] | None = None,
                            content_length: int | None = None) -> int:
        """PATCH: append a chunk (or a whole stream). Returns the new size."""
        await self._get_upload(repository, upload_id)
        async with self._locked(upload_id):
            writer, hasher = await self._resume(upload_id, "sha256", content_range, content_length)
            start = writer.size
            await self._receive(repository, upload_id, writer, hasher, "sha256", chunks, content_length)
            await self._pause(upload_id, writer, "sha256", hasher)
            received = writer.size - start
        if content_range is not None and received != content_range[1] - content_range[0] + 1:
            raise SizeInvalid("chunk shorter than its Content-Range", detail={"received": received})
        return writer.size

    async def _resume(self, upload_id: str, algorithm: str, content_range: tuple[int, int] | None,
                      content_length: int | None):
        """Reopen an upload's data for appending; return the writer and the running hash (or None)."""
        try:
            writer = await self.storage.writer(upload_path(upload_id), append=True)
        except PathNotFoundError:
            raise BlobUploadUnknown(detail={"uuid": upload_id}) from None
        try:
            self._check_range(writer.size, content_range, content_length)
        except BaseException:
            await writer.close()
            raise
        hasher = self._take_hash(upload_id, algorithm, writer.size)
        if hasher is None and writer.size == 0:
            hasher = Digest(algorithm, "").hasher()
        self._active_writers[upload_id] = writer
        return writer, hasher

    async def _allowance(self, repository: str, held: int, length: int | None, *, upload_id: str | None = None,
                         digest: str | None = None) -> _Allowance | None:
        """The quota check before a request's body is read, for an upload that holds `held` bytes:
        a body announced (`length`) past the tenant's room is refused at once; else the allowance
        that stops a body of unannounced length as it crosses it. None: no limit applies."""
        room = await self.store.quota_room(repository, upload_id=upload_id, digest=digest)
        if room is None:
            return None
        allowance = _Allowance(room, held, "blob" if upload_id is None else "upload")
        if length is not None and length > allowance.free:
            refused = allowance.refusal(length)
            await self._quota_exceeded_event(repository, refused.detail)
            raise refused
        return allowance

    async def _receive(self, repository: str, upload_id: str, writer, hasher, algorithm: str,
                       chunks: AsyncIterator[bytes], content_length: int | None) -> None:
        """Append one request's body to a session upload (lock held, writer resumed), within the
        size limit and the tenant's quota. If it fails the writer is paused and what arrived is
        kept, so the upload can resume; but nothing is kept of a body refused for the quota."""
        start = writer.size
        try:
            allowance = await self._allowance(repository, start, content_length, upload_id=upload_id)
        except BaseException:
            await self._pause(upload_id, writer, algorithm, hasher)
            raise
        try:
            await self._pump(chunks, writer, hasher, self._size_limit(start), allowance=allowance)
        except _OverQuota as refused:
            await self._discard_since(upload_id, writer, start, algorithm, hasher)
            await self._quota_exceeded_event(repository, refused.detail)
            raise
        except BaseException:
            await self._pause(upload_id, writer, algorithm, None)  # how far the hash got is unknown; rebuilt at commit
            raise

    async def _discard_since(self, upload_id: str, writer, start: int, algorithm: str, hasher) -> None:
        """Undo the current request's bytes of an upload that held `start` before it. Nothing of a
        refused body is written before its first BUFFER_SIZE bytes are in, so usually there is
        nothing to undo. Storage cannot cut data short: past that, an upload that was empty is
        emptied again, and one that held bytes is dropped whole (BLOB_UPLOAD_UNKNOWN after)."""
        if writer.size == start:
            await self._pause(upload_id, writer, algorithm, hasher)
            return
        self._active_writers.pop(upload_id, None)
        self._hashes.pop(upload_id, None)
        await writer.cancel()
        if start:
            await self._drop_upload(upload_id)
            return
        emptied = await self.storage.writer(upload_path(upload_id))
        await emptied.close()
        await self.store.set_upload_size(upload_id, None, 0)

    async def _pause(self, upload_id: str, writer, algorithm: str, hasher) -> None:
        """Close the writer, record the durable size, keep the running hash for the next request."""
        self._active_writers.pop(upload_id, None)
        size = writer.size
        await writer.close()
        await self.store.set_upload_size(upload_id, None, size)
        if hasher is not None:
            self._keep_hash(upload_id, algorithm, hasher, size)

    async def complete_upload(self, repository: str, upload_id: str, digest_str: str | None,
                              chunks: AsyncIterator[bytes] | None = None,
                              content_range: tuple[int, int] | None = None,
                              content_length: int | None = None) -> Digest:
        """PUT: append the optional last chunk, verify the digest, and publish the blob."""
        if not digest_str:
            raise DigestInvalid("the digest query parameter is required")
        digest = parse_digest(digest_str)
        await self._get_upload(repository, upload_id)
        async with self._locked(upload_id):
            writer, hasher = await self._resume(upload_id, digest.algorithm, content_range, content_length)
            if chunks is not None:
                await self._receive(repository, upload_id, writer, hasher, digest.algorithm, chunks, content_length)
            size = writer.size
            self._active_writers.pop(upload_id, None)
            await writer.commit()
            await self._verify(repository, upload_path(upload_id), digest, size, hasher,
                               on_failure=lambda: self._drop_upload(upload_id))
            try:
                await self._place(upload_path(upload_id), digest,
                                  lambda: self.store.complete_upload(upload_id, repository, str(digest), size))
            except QuotaExceededError as exc:
                # Lost a race with another push into the tenant: nothing was linked or counted.
                await self._drop_upload(upload_id)
                raise await self._quota_refused(exc, repository) from None
            self._hashes.pop(upload_id, None)
            await self._delete_quietly(f"uploads/{upload_id}")
        return digest

    async def monolithic_upload(self, repository: str, digest_str: str, chunks: AsyncIterator[bytes],
                                watch: UploadWatch | None = None, content_length: int | None = None) -> Digest:
        """POST ?digest=: the whole blob in one request; no upload session is recorded.

        `watch` follows the upload: where its bytes are written and how far, and when they
        are verified (the pull-through cache then releases them to its waiting clients:
        whether the cache keeps them is its own business). A body past the tenant's quota
        (its `content_length` before any byte is read) is refused, and nothing of it kept."""
        digest = parse_digest(digest_str)
        allowance = await self._allowance(repository, 0, content_length, digest=str(digest))
        upload_id = str(uuid.uuid4())
        path = upload_path(upload_id)
        writer = await self.storage.writer(path, scratch=True)  # no session records it
        hasher = digest.hasher()
        try:
            if watch is not None:
                local = self.storage.local_path(path)
                watch.opened(None if local is None else str(local))
            await self._pump(chunks, writer, hasher, self._size_limit(0),
                             None if watch is None else watch.written, allowance)
            size = writer.size
            if watch is not None and hasher.hexdigest() == digest.hex:
                watch.hashed()
            await writer.commit()
            await self._verify(repository, path, digest, size, hasher, on_failure=None)
        except BaseException as exc:
            with contextlib.suppress(Exception):
                await writer.cancel()
            await self._delete_quietly(f"uploads/{upload_id}")
            if isinstance(exc, _OverQuota):  # crossed the quota mid-body (unannounced length)
                await self._quota_exceeded_event(repository, exc.detail)
            raise
        try:
            await self._place(path, digest, lambda: self.store.link_blob(repository, str(digest), size))
        except QuotaExceededError as exc:
            raise await self._quota_refused(exc, repository) from None
        finally:
            await self._delete_quietly(f"uploads/{upload_id}")
        return digest

    async def _verify(self, repository: str, path: str, digest: Digest, size: int, hasher, on_failure) -> None:
        """Check committed upload data at `path`: its digest, the size limit and the tenant's quota."""
        if hasher is None:
            hasher = await self._rehash(path, digest.algorithm)
        if hasher.hexdigest() != digest.hex:
            if on_failure is not None:
                await on_failure()
            raise DigestInvalid(detail={"digest": str(digest), "size": size})
        if self.max_blob_bytes and size > self.max_blob_bytes:
            if on_failure is not None:
                await on_failure()
            raise PayloadTooLarge("blob exceeds the size limit", detail={"limit": self.max_blob_bytes})
        try:
            # Checked before the data moves into place, so a refused push leaves no blob file.
            await self.store.check_quota(repository, str(digest), size)
        except QuotaExceededError as exc:
            if on_failure is not None:
                await on_failure()
            raise await self._quota_refused(exc, repository) from None

    async def _place(self, path: str, digest: Digest, link: Callable[[], Awaitable[None]]) -> None:
        """Move verified data at `path` to its content address unless the bytes are there, and
        link them (`link`), under the digest's lock: bytes found present cannot be deleted
        before the link commits."""
        async with self.blob_lock(str(digest)):
            if await self.store.get_global_blob_size(str(digest)) is None:
                await self.storage.move(path, digest.blob_path)
            await link()

    async def _delete_quietly(self, path: str) -> None:
        try:
            await self.storage.delete(path)
        except PathNotFoundError:
            pass
        except StorageError as exc:
            log.warning("could not delete %s: %s (GC will retry)", path, exc)

    async def _drop_upload(self, upload_id: str) -> None:
        self._hashes.pop(upload_id, None)
        await self.store.delete_upload(upload_id)
        await self._delete_quietly(f"uploads/{upload_id}")

    async def cancel_upload(self, repository: str, upload_id: str) -> None:
        await self._get_upload(repository, upload_id)
        async with self._locked(upload_id):
            await self._drop_upload(upload_id)

    async def purge_uploads(self, ttl_seconds: float, *, dry_run: bool = False) -> dict[str, int]:
        """Delete uploads untouched for `ttl_seconds`, and upload data with no session row.

        Safe with concurrent pushes and other replicas: a session is purged only once idle
        past the TTL, and a directory without a row only once its data is that old too
        (monolithic uploads have no row while they run).
        """
        cutoff = time.time() - ttl_seconds
        expired = await self.store.expired_uploads(cutoff)
        if not dry_run:
            for upload_id in expired:
                async with self._locked(upload_id):
                    await self._drop_upload(upload_id)
        orphans = 0
        try:
            entries = await self.storage.list("uploads")
        except PathNotFoundError:
            entries = []
        names = [e.rsplit("/", 1)[1] for e in entries]
        live = await self.store.uploads_exist([n for n in names if _valid_upload_id(n)])
        for name in names:
            if name in live or name in expired:
                continue
            try:
                info = await self.storage.stat(upload_path(name)) if _valid_upload_id(name) else None
            except PathNotFoundError:
                info = None
            mtime = info.mtime if info is not None else (await self.storage.stat(f"uploads/{name}")).mtime
            if mtime < cutoff:
                orphans += 1
                if not dry_run:
                    await self._delete_quietly(f"uploads/{name}")
        if expired or orphans:
            log.info("%s %d expired upload sessions and %d orphaned upload directories",
                     "would purge" if dry_run else "purged", len(expired), orphans)
        return {"expired_sessions": len(expired), "orphaned_data": orphans}

    # Manifests -----------------------------------------------------------------------
    async def get_manifest(self, repository: str, reference: str, *, with_content: bool = True) -> ManifestRecord:
        by_digest = looks_like_digest(reference)
        if by_digest:
            reference = str(parse_digest(reference))
        else:
            validate_tag(reference)
        record = await self.store.get_manifest(repository, reference, by_digest=by_digest,
                                               with_content=with_content)
        if record is None:
            if not await self.store.repository_exists(repository):
                raise NameUnknown(detail={"name": repository})
            raise ManifestUnknown(detail={"reference": reference})
        return record

    async def put_manifest(self, repository: str, reference: str, content: bytes, content_type: str | None,
                           extra_tags: list[str] | None = None, *,
                           verify_references: bool = True) -> tuple[Digest, str | None]:
        """Validate and store a manifest. Returns its digest and its subject (if any).

        verify_references=False stores it before what it references is present (the
        pull-through cache fetches blobs and child manifests only when they are asked for)."""
        if len(content) > self.max_manifest_bytes:
            raise PayloadTooLarge("manifest exceeds the size limit", detail={"limit": self.max_manifest_bytes})
        if extra_tags and not looks_like_digest(reference):
            raise ManifestInvalid("tag query parameters are only valid with a digest reference",
                                  detail={"reference": reference[:200]})
        # Every tag is checked before anything is stored, and all are set in the store's one
        # transaction with the manifest: all of them or none.
        tags = [validate_tag(t) for t in (extra_tags or [])]
        if looks_like_digest(reference):
            wanted = parse_digest(reference)
            digest = digest_of(content, wanted.algorithm)
            if digest != wanted:
                raise DigestInvalid("manifest digest does not match its content",
                                    detail={"expected": reference, "actual": str(digest)})
        else:
            tags.insert(0, validate_tag(reference))
            digest = digest_of(content)
        parsed = parse_manifest(content, content_type)
        if verify_references:
            await self._check_reference_sizes(repository, parsed)
        record = NewManifest(
            digest=str(digest),
            media_type=parsed.media_type,
            content=content,
            subject=parsed.subject,
            artifact_type=parsed.artifact_type,
            annotations_json=json.dumps(parsed.annotations, sort_keys=True) if parsed.annotations else None,
            blob_refs=parsed.blob_refs,
            manifest_refs=parsed.manifest_refs,
        )
        hooks = self.manifest_hooks if verify_references else []
        prepared = [await hook.before_put(repository, content, parsed) for hook in hooks]
        # The keyword only when it differs from the default: a store that predates it still pushes.
        options = {} if verify_references else {"verify_references": False}
        tags = list(dict.fromkeys(tags))
        try:
            missing = await self.store.put_manifest(repository, record, tags, **options)
        except QuotaExceededError as exc:
            raise await self._quota_refused(exc, repository) from None
        except TagImmutableError as exc:
            raise _immutable_denied(exc) from None
        if missing:
            raise ManifestBlobUnknown(detail={"missing": missing[:50]})
        for hook, state in zip(hooks, prepared, strict=True):
            if state is not None:
                try:
                    await hook.after_put(repository, str(digest), tags, state)
                except Exception:
                    # The manifest is in: a failing hook must not turn a stored push into an error.
                    log.exception("manifest hook %s failed for %s@%s", type(hook).__name__, repository, digest)
        return digest, parsed.subject

    async def _check_reference_sizes(self, repository: str, parsed: ParsedManifest) -> None:
        """MANIFEST_INVALID for a descriptor whose size is not that of the blob or child manifest
        the repository holds under its digest (a client trusting it would read short or long).
        A digest's size never changes, so this check outside the store's transaction is as good
        as one inside it; references the repository lacks are the store's to report
        (MANIFEST_BLOB_UNKNOWN)."""
        async def stored(digest: str, is_blob: bool) -> int | None:
            if is_blob:
                return await self.store.get_blob_size(repository, digest)
            found = await self.store.get_manifest(repository, digest, by_digest=True, with_content=False)
            return None if found is None else found.size

        refs = [(d, True) for d in parsed.blob_refs] + [(d, False) for d in parsed.manifest_refs]
        refs = [(d, is_blob) for d, is_blob in refs if d in parsed.ref_sizes]
        sizes = await asyncio.gather(*(stored(d, is_blob) for d, is_blob in refs))
        wrong = [{"digest": d, "size": parsed.ref_sizes[d], "stored_size": size}
                 for (d, _), size in zip(refs, sizes, strict=True)
                 if size is not None and size != parsed.ref_sizes[d]]
        if wrong:
            raise ManifestInvalid("a descriptor's size differs from the stored content's",
                                  detail={"mismatched": wrong[:50]})

    async def delete_manifest(self, repository: str, reference: str, *, actor: str = "anonymous") -> None:
        """The OCI DELETE: by digest, the manifest with every tag on it; by tag, the tag. Audited
        in the same transaction; DENIED while an immutable tag would go."""
        if looks_like_digest(reference):
            digest = str(parse_digest(reference))
            try:
                found = await self.store.delete_manifest_at(repository, digest, actor=actor)
            except TagImmutableError as exc:
                raise _immutable_denied(exc) from None
            if not found:
                raise ManifestUnknown(detail={"reference": reference})
        elif not await self.delete_tag(repository, reference, actor=actor):
            raise ManifestUnknown(detail={"reference": reference})

    async def delete_tag(self, repository: str, tag: str, *, digest: str | None = None, actor: str,
                         detail: dict | None = None) -> bool:
        """Delete a tag with its audit row by `actor`, in one transaction; with `digest`, only while
        the tag still points at it (a tag pushed again since the caller read it stays). GC's review of
        the manifest is queued in the same transaction (migration 0009's triggers). False if the tag
        is gone or moved; DENIED if it is immutable."""
        validate_tag(tag)
        try:
            return await self.store.delete_tag_at(repository, tag, digest, actor=actor, detail=detail)
        except TagImmutableError as exc:
            raise _immutable_denied(exc) from None

    async def delete_untagged_manifest(self, repository: str, digest: str, *, actor: str,
                                       detail: dict | None = None) -> bool:
        """Delete a manifest only while no tag points at it and no index lists it, with its audit row."""
        return await self.store.delete_untagged_manifest(repository, str(parse_digest(digest)), actor=actor,
                                                         detail=detail)

    async def list_tags(self, repository: str, limit: int, last: str | None) -> list[str]:
        tags = await self.store.list_tags(repository, limit, last)
        if tags is None:
            raise NameUnknown(detail={"name": repository})
        return tags

    async def list_repositories(self, limit: int, last: str | None, scope: CatalogScope | None = None) -> list[str]:
        """A catalog page: `limit` names after `last`, only those `scope` shows (None: all)."""
        return await self.store.list_repositories(limit, last, scope)

    async def public_repositories(self, names: list[str]) -> set[str]:
        """The subset of `names` that exist and are public."""
        return await self.store.public_repositories(names)

    async def list_referrers(self, repository: str, subject: str,
                             artifact_type: str | None = None) -> list[ReferrerRecord]:
        digest = str(parse_digest(subject))
        return await self.store.list_referrers(repository, digest, artifact_type)

    # Promotion (hub/registry/promotion.py) ------------------------------------------------------
    async def config_labels(self, repository: str, parsed: ParsedManifest) -> dict[str, str]:
        """The `config.Labels` of an image manifest's config blob in `repository` ({} for an index, an
        artifact whose config is not an image config, or a config past MAX_CONFIG_BYTES)."""
        if not parsed.blob_refs or parsed.media_type not in IMAGE_MANIFESTS:
            return {}
        config = parsed.blob_refs[0]
        size = await self.store.get_blob_size(repository, config)
        if size is None or size > MAX_CONFIG_BYTES:
            return {}
        chunks, digest = [], parse_digest(config)
        async for chunk in await self.open_blob(BlobLocation(digest, size, digest.blob_path)):
            chunks.append(chunk)
        try:
            doc = json.loads(b"".join(chunks))
        except ValueError:
            return {}
        labels = (doc.get("config") or {}).get("Labels") if isinstance(doc, dict) else None
        if not isinstance(labels, dict):
            return {}
        return {k: v for k, v in labels.items() if isinstance(k, str) and isinstance(v, str)}

    async def copy_plan(self, repository: str, digest: str, *, max_manifests: int = MAX_PROMOTED_MANIFESTS
                        ) -> CopyPlan:
        """What promoting manifest `digest` of `repository` copies: it, the child manifests of an index
        (recursively), the referrers of each of those (and theirs), and every blob they reference.
        Manifests come children first, referrers after their subject. MANIFEST_UNKNOWN if it is not
        there; MANIFEST_INVALID past `max_manifests`."""
        order: list[NewManifest] = []
        blobs: dict[str, int] = {}
        seen: set[str] = set()

        async def visit(d: str) -> None:
            if d in seen:
                return
            seen.add(d)
            if len(seen) > max_manifests:
                raise ManifestInvalid(f"a promotion copies at most {max_manifests} manifests",
                                      detail={"limit": max_manifests})
            record = await self.store.get_manifest(repository, d, by_digest=True)
            if record is None:
                raise ManifestUnknown(detail={"reference": d})
            parsed = parse_manifest(record.content, record.media_type)
            for child in parsed.manifest_refs:
                await visit(child)
            wanted = [b for b in parsed.blob_refs if b not in blobs]
            sizes = await self.store.linked_blob_sizes(repository, wanted)
            missing = [b for b in wanted if b not in sizes]
            if missing:
                raise ManifestBlobUnknown(detail={"missing": missing[:50]})
            blobs.update(sizes)
            order.append(NewManifest(
                digest=d, media_type=parsed.media_type, content=record.content, subject=parsed.subject,
                artifact_type=parsed.artifact_type,
                annotations_json=json.dumps(parsed.annotations, sort_keys=True) if parsed.annotations else None,
                blob_refs=parsed.blob_refs, manifest_refs=parsed.manifest_refs))
            for referrer in await self.store.list_referrers(repository, d):
                await visit(referrer.digest)

        await visit(str(parse_digest(digest)))
        return CopyPlan(str(parse_digest(digest)), tuple(order), tuple(sorted(blobs.items())))

    async def promote(self, plan: CopyPlan, target: str, **record) -> PromotionRecord:
        """Copy `plan` into the promotion's target and record the step (PromotionStore.complete_promotion:
        `request=` a new one, or `promotion_id=` and `approver=` an approved one), in one transaction,
        holding every blob's lock (module docstring) from before it to after its commit: the source's
        links it relies on cannot be the last ones GC deletes meanwhile. No bytes move. DENIED for the
        target's quota or an immutable target tag."""
        async with contextlib.AsyncExitStack() as held:
            for digest, _ in plan.blobs:  # in digest order: promotions sharing blobs never deadlock
                await held.enter_async_context(self.blob_lock(digest))
            try:
                return await self.store.complete_promotion(plan, **record)
            except QuotaExceededError as exc:
                raise await self._quota_refused(exc, target) from None
            except TagImmutableError as exc:
                raise _immutable_denied(exc) from None

    async def request_promotion(self, request: PromotionRequest) -> PromotionRecord:
        """Record a promotion that waits for an approval (nothing is copied yet)."""
        return await self.store.request_promotion(request)


__all__ = ["BlobLocation", "ManifestHook", "Registry", "blob_lock_key", "is_tag", "upload_path"]
