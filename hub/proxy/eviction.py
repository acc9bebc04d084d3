"""Cache bounds: least-recently-pulled eviction under a size cap, and a TTL for unpulled images.

Last-pulled times. A pull (GET or HEAD of a cached manifest) is noted in memory; a note for an
image already written within `pull_record_seconds` is dropped, and the rest are written in one
batch by the serve process's flush loop and before every eviction. So the hot path never waits
for the store, an image costs at most one row write per interval per replica, and eviction
order is exact to that interval (plus one flush period for another replica's pulls).

Eviction, per upstream with a cap or a TTL, one run at a time across replicas (store lock):
images (see hub/db/proxy_store.py) not pulled within the TTL go, then the least recently
pulled go until the namespace fits its cap. Each image goes in one transaction: its
manifests, tags and the repository's blob links nothing else in it references. A blob's bytes
are deleted only when no repository at all links it any more: a blob also linked by a
tenant's repository (pushed there, or mounted) stays. Bytes are deleted before the blob's row,
so a failure leaves a row for a later run rather than a row whose bytes are gone.

A blob's bytes go under the digest's lock (Registry.blob_lock, see hub/registry/service.py),
held from the final "nothing links it" check through the byte and row deletes. Every path
that links bytes it found present (a push that skips the move, a mount, the cache linking a
blob another repository brought) holds the same lock from that check through its link, so a
push of the very same bytes, on any replica and into any repository, either links first (and
the bytes stay) or finds them gone and moves its own in. The grace period between unlinking
and deleting is not needed for that; it stays as a margin for replicas of an older version
(which push without the lock) during a rolling upgrade.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import OrderedDict
from collections.abc import Iterable

from storage_backends import PathNotFoundError, StorageError

from ..registry.names import parse_digest
from .routing import Upstream

log = logging.getLogger("daohub.proxy")

EVICTION_LOCK = "proxy:evict"
# Between unlinking an evicted image's blobs and deleting the bytes nothing links any more.
BLOB_GRACE_SECONDS = 2.0
# How many images' last write times a process remembers (older ones may be written again).
_REMEMBERED = 100_000
DAY = 86400.0


class PullLog:
    def __init__(self, interval: float):
        self.interval = interval
        self._written: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._pending: dict[tuple[str, str], float] = {}

    def note(self, repository: str, digest: str, at: float) -> None:
        key = (repository, digest)
        last = self._written.get(key)
        if last is not None and 0 <= at - last < self.interval:
            return
        self._written[key] = at
        self._written.move_to_end(key)
        if len(self._written) > _REMEMBERED:
            self._written.popitem(last=False)
        self._pending[key] = at

    async def flush(self, store) -> int:
        """Write the pending notes; on failure they are kept for the next flush."""
        if not self._pending:
            return 0
        batch, self._pending = self._pending, {}
        try:
            await store.record_pulls((repo, digest, at) for (repo, digest), at in batch.items())
        except BaseException:
            for key, at in batch.items():
                self._pending[key] = max(at, self._pending.get(key, at))
            raise
        return len(batch)


@dataclasses.dataclass
class UpstreamEviction:
    upstream: str
    size_before: int = 0
    size_after: int = 0
    images: list[str] = dataclasses.field(default_factory=list)  # "<repository>@<digest>"
    expired: int = 0  # of them, by TTL
    evicted_bytes: int = 0  # the namespace's size reduction
    blobs_deleted: int = 0
    deleted_bytes: int = 0  # bytes removed from blob storage

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class EvictionReport:
    ran: bool = True  # False: another process held the eviction lock
    upstreams: list[UpstreamEviction] = dataclasses.field(default_factory=list)

    def as_dict(self) -> dict:
        return {"ran": self.ran, "upstreams": [u.as_dict() for u in self.upstreams]}


async def evict(registry, upstreams: Iterable[Upstream], now: float, *, metrics=None,
                wait: bool = False, dry_run: bool = False, grace: float = BLOB_GRACE_SECONDS) -> EvictionReport:
    """One eviction run over `upstreams` (those with a cap or a TTL)."""
    store = registry.store
    bounded = [u for u in upstreams if u.max_size_bytes > 0 or u.ttl_days > 0]
    async with store.lock(EVICTION_LOCK, wait=wait) as held:
        if not held:
            return EvictionReport(ran=False)
        report = EvictionReport()
        for upstream in bounded:
            expiry = now - upstream.ttl_days * DAY if upstream.ttl_days > 0 else None
            report.upstreams.append(await _evict_upstream(registry, upstream.name, expiry, upstream.max_size_bytes,
                                                          metrics, dry_run, grace=grace))
        return report


async def purge(registry, namespace: str, *, metrics=None, grace: float = BLOB_GRACE_SECONDS) -> UpstreamEviction:
    """Evict every image of a cache namespace (its upstream was deleted)."""
    async with registry.store.lock(EVICTION_LOCK):
        return await _evict_upstream(registry, namespace, None, 0, metrics, False, everything=True, grace=grace)


async def _evict_upstream(registry, name: str, expiry: float | None, cap: int, metrics, dry_run: bool, *,
                          everything: bool = False, grace: float = BLOB_GRACE_SECONDS) -> UpstreamEviction:
    store = registry.store
    result = UpstreamEviction(name)
    unlinked: set[str] = set()
    size = result.size_before = await store.cache_size(name)
    for image in await store.cache_images(name):
        expired = expiry is not None and image.last_pulled < expiry
        if not (everything or expired or (cap and size > cap)):
            break  # oldest first: every later image is newer, and the cache fits
        result.images.append(f"{image.repository}@{image.digest}")
        result.expired += expired
        if dry_run:
            size -= image.size  # an estimate: a layer shared with a newer image would stay
            continue
        evicted = await store.evict_image(image.repository, image.digest, name)
        size -= evicted.freed_bytes
        result.evicted_bytes += evicted.freed_bytes
        unlinked.update(evicted.unlinked)
        if evicted.manifests:
            why = "its upstream was deleted" if everything else "not pulled within its TTL" if expired else \
                "over its size cap"
            log.info("evicted %s@%s from the cache of %r (%s, %d bytes freed in the cache)", image.repository,
                     image.digest, name, why, evicted.freed_bytes)
    if unlinked:
        # Not needed with the blob lock; a margin for pushes by replicas that predate it.
        await wait_grace(grace)
    for digest in sorted(unlinked):
        async with registry.blob_lock(digest):
            deleted = await _delete_blob(registry, digest)
        if deleted is not None:
            result.blobs_deleted += 1
            result.deleted_bytes += deleted
    result.size_after = size if not dry_run else result.size_before
    if metrics is not None and not dry_run:
        metrics.evicted_images.labels(name).inc(len(result.images))
        metrics.evicted_bytes.labels(name).inc(result.evicted_bytes)
        metrics.deleted_bytes.labels(name).inc(result.deleted_bytes)
        metrics.cache_size.labels(name).set(result.size_after)
    return result


async def wait_grace(seconds: float) -> None:
    await asyncio.sleep(seconds)


async def checked_unlinked(digest: str) -> None:
    """Runs between the final check and the delete, under the blob's lock (tests pause here)."""


async def _delete_blob(registry, digest: str) -> int | None:
    """Delete a blob's bytes and row if no repository links it; its size if this call did.
    The caller holds the blob's lock."""
    store = registry.store
    size = await store.get_global_blob_size(digest)
    if size is not None:
        return None  # still linked somewhere (a tenant's repository, another cache)
    await checked_unlinked(digest)
    try:
        path = parse_digest(digest).blob_path
        stat = await registry.storage.stat(path)
        await registry.storage.delete(path)
    except PathNotFoundError:
        stat = None
    except StorageError as exc:
        log.warning("could not delete evicted blob %s: %s (its row stays for a later run)", digest, exc)
        return None
    if not await store.delete_unlinked_blob(digest):
        # Linked again between the check and the delete: only a path that links without the
        # blob's lock can do that, which is a bug, and the bytes may now be missing.
        if await store.get_global_blob_size(digest) is not None:
            log.error("blob %s was linked without its lock while eviction deleted its bytes: push it again",
                      digest)
        return None
    return stat.size if stat is not None else 0
