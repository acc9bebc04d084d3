"""Online garbage collection: deleted images free their storage while pushes and pulls go on.

What is collected. A manifest nothing references (no tag, no index in its repository, no stored
subject it is a referrer of) once it is older than the grace period; a repository's blob link no
manifest of that repository references, once the link is older than the grace period (linking a
blob again, by a push or a mount, refreshes that time); a blob row and its bytes once no
repository links it. App versions hold their tag, and the pull-through cache's manifests are left
to its own eviction (hub/proxy/eviction.py), which unlinks and deletes them on its own bounds.

Review queues, not scans. Every event that may orphan something (a manifest, tag or repository
delete, a tag moved, a cache eviction, an app version deleted with its tag) queues a review of the
digest in its own transaction: triggers of migration 0009 do it, so no code path can forget one.
A pass takes the reviews queued before now - grace (`GcStore.gc_claim`: FOR UPDATE SKIP LOCKED
and a lease on PostgreSQL, so workers on every replica share the queue and never take one twice),
manifests first (their deletes queue their children, due at once), then links, then blobs.

Each verdict re-checks every reference (`GcStore.gc_verdict`), in batches of verdicts that commit
as one transaction (`GcStore.gc_verdicts`); link and blob verdicts run under the digest's lock
(Registry.blob_lock; a batch takes its digests' free locks in one round trip), held through the
delete of the bytes after the commit. A push of the same digest takes that lock from "are the bytes there?" to
its link's commit (Registry._place), a mount from the source's link to its own: so it either
links first (and the verdict keeps the blob) or finds the row gone and moves its own bytes in.
A crash between the commit and the delete of the bytes leaves only an object no row names: the
sweep (`--sweep`) deletes those once they are older than the grace period, under the same lock.

Tenants' usage is computed from links and manifests (hub/db/base.py QUOTA_USAGE_SQL), so it
drops by exactly the freed bytes in the verdict's transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable

from storage_backends import StorageError

from ..background import every
from ..db.gc_store import RUN_COUNTS, GcReview, GcVerdict
from .names import parse_digest
from .service import blob_lock_key

log = logging.getLogger("daohub.gc")

# The lock a SQLite pass holds (one worker at a time there; PostgreSQL workers share the queue).
PASS_LOCK = "gc:pass"
SWEEP_CURSOR = "gc.sweep_cursor"
# Tests only: seconds to sleep between a verdict's commit and the delete of the bytes (kill -9 there).
PAUSE_ENV = "DAOHUB_TEST_GC_PAUSE"  # not a config key: reserved in hub.config
_LISTED = 1000  # digests named in a report, per kind
_BLOB_PATH = re.compile(r"^blobs/([a-z0-9]+)/[0-9a-f]{2}/([0-9a-f]+)$")


@dataclasses.dataclass
class GcReport:
    dry_run: bool
    tenant: str | None
    grace_seconds: float
    sweep: bool = False
    run_id: int | None = None
    ran: bool = True  # False: another pass held the lock
    started_at: float = 0.0
    duration_seconds: float = 0.0
    counts: dict[str, int] = dataclasses.field(default_factory=lambda: dict.fromkeys(RUN_COUNTS, 0))
    tenant_bytes_freed: dict[str, int] = dataclasses.field(default_factory=dict)
    # What went (or, in a dry run, would go): {"repository", "digest", "size"} ({"digest", "size"} for blobs).
    manifests: list[dict] = dataclasses.field(default_factory=list)
    links: list[dict] = dataclasses.field(default_factory=list)
    blobs: list[dict] = dataclasses.field(default_factory=list)
    orphans: list[dict] = dataclasses.field(default_factory=list)
    errors: list[str] = dataclasses.field(default_factory=list)
    # Who watches the run (hub/cli/progress.Meter: grow(n), advance(n, nbytes=)); not a field, so
    # never in as_dict() or the stored report.
    progress = None

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def _note(self, listing: list, entry: dict) -> None:
        if len(listing) < _LISTED:
            listing.append(entry)

    def count(self, review: GcReview, verdict: GcVerdict) -> None:
        if self.progress is not None:
            self.progress.advance(1, nbytes=verdict.size if verdict.action == "deleted" and verdict.blob_deleted
                                  else 0)
        prefix = "manifests" if review.kind == "manifest" else "blobs"
        self.counts[f"{prefix}_reviewed"] += 1
        if verdict.action in ("kept", "deferred"):
            self.counts[f"{prefix}_kept"] += 1
        if verdict.action != "deleted":
            return
        if verdict.tenant_freed:
            self.tenant_bytes_freed[verdict.tenant] = self.tenant_bytes_freed.get(verdict.tenant, 0) + \
                verdict.tenant_freed
        if review.kind == "manifest":
            self.counts["manifests_deleted"] += 1
            self._note(self.manifests, {"repository": review.repository, "digest": review.digest,
                                        "size": verdict.size})
        if review.kind == "link":
            self.counts["links_deleted"] += 1
            self._note(self.links, {"repository": review.repository, "digest": review.digest,
                                    "size": verdict.size})
        if verdict.blob_deleted:
            self.counts["blobs_deleted"] += 1
            self.counts["bytes_freed"] += verdict.size
            self._note(self.blobs, {"digest": review.digest, "size": verdict.size})


class Collector:
    """Runs GC passes over a Registry's store and storage."""

    def __init__(self, registry, *, grace_seconds: float = 86400.0, batch_size: int = 500,
                 lease_seconds: float = 300.0, concurrency: int = 8, verdict_batch: int = 32, metrics=None,
                 cache_namespaces: Callable[[], Awaitable[list[str]]] | None = None):
        self.registry = registry
        self.store = registry.store
        self.grace_seconds = grace_seconds
        self.batch_size = batch_size
        self.lease_seconds = lease_seconds
        self.concurrency = concurrency
        self.verdict_batch = max(1, verdict_batch)
        self.metrics = metrics
        self.cache_namespaces = cache_namespaces

    async def run(self, *, dry_run: bool = False, tenant: str | None = None, sweep: bool = False,
                  grace_seconds: float | None = None, wait: bool = True, progress=None) -> GcReport:
        """One pass: the due reviews (and with `sweep`, the storage sweep). A dry run changes nothing.
        Its writes are the store's background ones: on SQLite pushes and pulls go first.
        `progress` (grow/advance, as hub/cli/progress.Meter) counts the reviews as they are done,
        against the reviews due when the pass starts (the total grows as deletes queue more)."""
        with self.store.background():
            return await self._run(dry_run, tenant, sweep, grace_seconds, wait, progress)

    async def _run(self, dry_run: bool, tenant: str | None, sweep: bool, grace_seconds: float | None,
                   wait: bool, progress=None) -> GcReport:
        grace = self.grace_seconds if grace_seconds is None else grace_seconds
        report = GcReport(dry_run, tenant, grace, sweep=sweep, started_at=time.time())
        report.progress = progress
        single = self.store.dialect == "sqlite"
        async with self.store.lock(PASS_LOCK, wait=wait) if single else _held() as held:
            if not held:
                report.ran = False
                return report
            if not dry_run:
                report.run_id = await self.store.gc_start_run(dry_run=False, tenant=tenant, sweep=sweep,
                                                              grace_seconds=grace)
            cutoff = report.started_at - grace
            if progress is not None:
                backlog = await self.store.gc_backlog(cutoff)
                progress.grow(sum(backlog[f"{kind}_due"] for kind in ("manifest", "link", "blob")
                                  if not (kind == "blob" and tenant is not None)))
            names = await self.cache_namespaces() if self.cache_namespaces else []
            namespaces = tuple(f"{n}/" for n in names)
            try:
                if dry_run:
                    await self._dry_pass(report, cutoff, tenant, namespaces)
                else:
                    await self._pass(report, cutoff, tenant, namespaces, ignore_claims=single)
                if sweep:
                    await self._sweep(report, cutoff, dry_run)
            except Exception as exc:
                log.exception("GC pass failed")
                report.errors.append(f"{type(exc).__name__}: {exc}")
            report.duration_seconds = time.time() - report.started_at
            if report.run_id is not None:
                await self.store.gc_finish_run(report.run_id, report.counts, report.tenant_bytes_freed,
                                               report.errors)
        self._log(report)
        if self.metrics is not None:
            self.metrics.observe(report)
            if report.ran and not report.dry_run:
                self.metrics.observe_backlog(await self.store.gc_backlog(time.time() - grace))
        return report

    # The pass ----------------------------------------------------------------------------------
    async def _pass(self, report: GcReport, cutoff: float, tenant: str | None, namespaces: tuple[str, ...],
                    *, ignore_claims: bool) -> None:
        # One worker on SQLite: claims left by a killed process need not wait for their lease.
        claim_cutoff = float("inf") if ignore_claims else None
        for kind in ("manifest", "link", "blob"):
            if kind == "blob" and tenant is not None:
                continue  # blob rows belong to no tenant; a tenant's link verdicts decide its blobs
            while True:
                reviews = await self.store.gc_claim(kind, cutoff, limit=self.batch_size, tenant=tenant,
                                                    lease_seconds=self.lease_seconds,
                                                    claimed_before=claim_cutoff)
                if not reviews:
                    break
                if not await self._decide(report, kind, reviews, cutoff, namespaces):
                    break  # nothing moves: leave the rest (claimed for their lease) to a later pass

    async def _decide(self, report: GcReport, kind: str, reviews: list[GcReview], cutoff: float,
                      namespaces: tuple[str, ...]) -> bool:
        """The verdicts of one claim; True if any was done.

        In batches of about `verdict_batch` reviews, each one transaction (one commit, not one per
        review), a few batches at once to hide round trips. A digest's reviews (its links in
        several repositories) stay in one batch. Link and blob batches take their digests' locks
        without waiting, in one round trip (store.try_locks), and hold them through the delete of
        the bytes; a digest whose lock another holder has (a push of it, say), and a batch that
        failed, get one verdict each after, as before batching (waiting for the lock)."""
        by_digest: dict[str, list[GcReview]] = {}
        for review in reviews:
            by_digest.setdefault(review.digest, []).append(review)
        batches: list[list[list[GcReview]]] = [[]]
        for group in by_digest.values():
            if batches[-1] and sum(map(len, batches[-1])) + len(group) > self.verdict_batch:
                batches.append([])
            batches[-1].append(group)
        gate = asyncio.Semaphore(self.concurrency)
        batches = [batch for batch in batches if batch]
        deletes = _BatchDeletes(self.registry.storage, len(batches))
        results = await asyncio.gather(*(self._batch(gate, deletes, report, kind, batch, cutoff, namespaces)
                                         for batch in batches))
        done = any(ok for ok, _ in results)
        left = [group for _, groups in results for group in groups]
        if left:
            deletes = _BatchDeletes(self.registry.storage, len(left))
            singles = await asyncio.gather(*(self._try_reviews(gate, deletes, report, group, cutoff, namespaces)
                                             for group in left))
            done = done or any(singles)
        return done

    async def _batch(self, gate: asyncio.Semaphore, deletes: _BatchDeletes, report: GcReport, kind: str,
                     groups: list[list[GcReview]], cutoff: float, namespaces: tuple[str, ...]
                     ) -> tuple[bool, list[list[GcReview]]]:
        """One batch's verdicts in one transaction: (whether done, the groups left to single verdicts).
        The bytes go with the other batches' of the claim, in one storage batch (_BatchDeletes)."""
        keys = {blob_lock_key(group[0].digest): group for group in groups}
        try:
            async with self.store.try_locks(keys) if kind != "manifest" else _all_held(keys) as held:
                mine = [group for key, group in keys.items() if key in held]
                left = [group for key, group in keys.items() if key not in held]
                batch = [review for group in mine for review in group]
                if not batch:
                    return False, left
                try:
                    async with gate:
                        verdicts = await self.store.gc_verdicts(
                            batch, cutoff, keeps=[self._keep(r, namespaces) for r in batch])
                except Exception as exc:  # a database error: each review is tried again on its own
                    log.warning("GC batch of %d %s reviews failed: %s", len(batch), kind, exc)
                    return False, left + mine
                # After the commit, still under the locks. A failure (or a crash) here leaves
                # objects no row names: the sweep's.
                paths = [parse_digest(r.digest).blob_path for r, v in zip(batch, verdicts) if v.blob_deleted]
                failures = await deletes.delete_all(paths) if paths else {}
        finally:
            deletes.finished()
        for review, verdict in zip(batch, verdicts):
            report.count(review, verdict)
        for path, error in failures.items():
            report.errors.append(f"delete of {path}: {type(error).__name__}: {error}")
        return True, left

    async def _try_reviews(self, gate: asyncio.Semaphore, deletes: _BatchDeletes, report: GcReport,
                           reviews: list[GcReview], cutoff: float, namespaces: tuple[str, ...]) -> bool:
        """The reviews of one digest; True if any was done."""
        done = False
        try:
            for review in reviews:
                try:
                    await self._review(gate, deletes, report, review, cutoff, namespaces)
                    done = True
                except Exception as exc:  # a storage or database error: the review stays for later
                    log.warning("GC review of %s %s failed: %s", review.kind, review.digest, exc)
                    report.errors.append(f"{review.kind} {review.digest}: {type(exc).__name__}: {exc}")
        finally:
            deletes.finished()
        return done

    @staticmethod
    def _keep(review: GcReview, namespaces: tuple[str, ...]) -> str | None:
        """Why a review is kept before any check: a cache namespace's manifests are its eviction's."""
        if review.kind == "manifest" and namespaces and review.repository.startswith(namespaces):
            return "cache namespace"
        return None

    async def _review(self, gate: asyncio.Semaphore, deletes: _BatchDeletes, report: GcReport,
                      review: GcReview, cutoff: float, namespaces: tuple[str, ...]) -> None:
        if review.kind == "manifest":
            async with gate:
                verdict = await self.store.gc_verdict(review, cutoff, keep=self._keep(review, namespaces))
        else:
            async with contextlib.AsyncExitStack() as held:
                await self._lock_blob(held, deletes, review.digest)
                async with gate:
                    verdict = await self.store.gc_verdict(review, cutoff)
                if verdict.blob_deleted:
                    # After the blob row's commit, still under its lock (out of the gate: the
                    # batch goes once every other verdict of the claim is done or waiting too).
                    # A failure (or a crash) here leaves an object no row names: the sweep's.
                    error = await deletes.delete(parse_digest(review.digest).blob_path)
                    if error is not None:
                        raise error
        report.count(review, verdict)

    async def _lock_blob(self, held: contextlib.AsyncExitStack, deletes: _BatchDeletes, digest: str) -> None:
        """The digest's lock, onto `held`. Taken already, it is waited for as idle (see _BatchDeletes)."""
        key = blob_lock_key(digest)
        async with contextlib.AsyncExitStack() as attempt:
            if await attempt.enter_async_context(self.store.lock(key, wait=False)):
                held.push_async_exit(attempt.pop_all())
                return
        async with deletes.idle():
            await held.enter_async_context(self.store.lock(key))

    async def _dry_pass(self, report: GcReport, cutoff: float, tenant: str | None,
                        namespaces: tuple[str, ...]) -> None:
        """The verdicts a pass would give, in transactions rolled back; a manifest that would go
        counts as gone for the verdicts after it (its children are reviewed as they would be)."""
        gone: dict[int, set[str]] = {}
        seen: set[tuple[str, int, str]] = set()
        followers: dict[str, list[GcReview]] = {"manifest": [], "link": [], "blob": []}
        for kind in ("manifest", "link", "blob"):
            if kind == "blob" and tenant is not None:
                continue
            after = None
            while True:
                reviews = await self.store.gc_claim(kind, cutoff, limit=self.batch_size, tenant=tenant,
                                                    claim=False, after=after)
                if not reviews:
                    break
                after = (reviews[-1].repository_id, reviews[-1].digest)
                for review in reviews:
                    await self._dry_review(report, review, cutoff, namespaces, gone, seen, followers)
            while followers[kind]:
                await self._dry_review(report, followers[kind].pop(0), cutoff, namespaces, gone, seen,
                                       followers)

    async def _dry_review(self, report, review: GcReview, cutoff, namespaces, gone, seen, followers) -> None:
        key = (review.kind, review.repository_id, review.digest)
        if key in seen:
            return
        seen.add(key)
        verdict = await self.store.gc_verdict(review, cutoff, dry_run=True,
                                              keep=self._keep(review, namespaces),
                                              gone=gone.get(review.repository_id, ()))
        report.count(review, verdict)
        if review.kind == "manifest" and verdict.action == "deleted":
            gone.setdefault(review.repository_id, set()).add(review.digest)
            for kind, digest in verdict.children:
                followers[kind].append(dataclasses.replace(review, kind=kind, digest=digest))

    # The sweep ---------------------------------------------------------------------------------
    async def _sweep(self, report: GcReport, cutoff: float, dry_run: bool) -> None:
        """Delete stored blobs no row names, older than the grace period. Resumable: the last
        path done is kept (server_state gc.sweep_cursor) and the next sweep starts after it."""
        storage = self.registry.storage
        if not dry_run:
            queued = await self.store.gc_backfill()
            if queued:
                log.info("GC sweep queued %d reviews of data the queue had not seen", queued)
        cursor = "" if dry_run else (await self.store.server_state(SWEEP_CURSOR) or "")
        batch: list = []
        async for info in storage.walk("blobs"):
            if info.path <= cursor:
                continue
            batch.append(info)
            if len(batch) >= 1000:
                await self._sweep_batch(report, batch, cutoff, dry_run)
                if not dry_run:
                    await self.store.set_server_state(SWEEP_CURSOR, batch[-1].path)
                batch = []
        await self._sweep_batch(report, batch, cutoff, dry_run)
        if not dry_run:
            await self.store.set_server_state(SWEEP_CURSOR, "")  # done: the next sweep starts over

    async def _sweep_batch(self, report: GcReport, batch: list, cutoff: float, dry_run: bool) -> None:
        named = {}
        for info in batch:
            m = _BLOB_PATH.match(info.path)
            if m:
                named[f"{m.group(1)}:{m.group(2)}"] = info
        known = await self.store.gc_known_blobs(list(named))
        orphans = {digest: info for digest, info in named.items() if digest not in known and info.mtime <= cutoff}
        if dry_run:
            for digest, info in orphans.items():
                report.counts["orphans_deleted"] += 1
                report._note(report.orphans, {"digest": digest, "size": info.size})
            return
        if not orphans:
            return
        # Every orphan's lock (in path order, as every sweep takes them), then one check and one
        # batch delete: a push of one of them meanwhile brought its row with the lock held.
        async with contextlib.AsyncExitStack() as locks:
            for digest in orphans:
                await locks.enter_async_context(self.registry.blob_lock(digest))
            for digest in await self.store.gc_known_blobs(list(orphans)):
                del orphans[digest]
            failures = dict(await self.registry.storage.delete_many([info.path for info in orphans.values()]))
        for digest, info in orphans.items():
            if info.path in failures:
                report.errors.append(f"sweep {info.path}: {failures[info.path]}")
                continue
            report.counts["orphans_deleted"] += 1
            report.counts["bytes_freed"] += info.size
            report._note(report.orphans, {"digest": digest, "size": info.size})

    def _log(self, report: GcReport) -> None:
        if not report.ran:
            return
        c = report.counts
        log.info("GC %s%s: %d manifests reviewed, %d deleted; %d blob reviews, %d links and %d blobs "
                 "deleted, "
                 "%d orphans swept, %d bytes freed in %.2fs%s", "dry run" if report.dry_run else "pass",
                 f" of tenant {report.tenant}" if report.tenant else "", c["manifests_reviewed"],
                 c["manifests_deleted"], c["blobs_reviewed"], c["links_deleted"], c["blobs_deleted"],
                 c["orphans_deleted"], c["bytes_freed"], report.duration_seconds,
                 f", {len(report.errors)} errors" if report.errors else "")


class _BatchDeletes:
    """The deletes of bytes a claim's concurrent verdicts ask for, sent as storage batches
    (StorageDriver.delete_many). Each asking task waits, holding its digests' locks, until its
    paths are done: a batch goes when every task still running waits, or 1,000 paths do. A task waiting
    for a digest's lock someone holds is not running: it may be a task of another replica that
    waits for its own batch, itself held up by a task waiting for a lock this batch holds."""

    def __init__(self, storage, tasks: int, limit: int = 1000):
        self.storage = storage
        self.running = tasks
        self.limit = limit
        self.waiting: list[tuple[str, asyncio.Future]] = []  # paths not yet sent
        self.waiters = 0  # tasks waiting for their paths
        self._flushes: set[asyncio.Task] = set()

    async def delete(self, path: str) -> StorageError | None:
        """Delete `path` with the others; the error if it could not be deleted."""
        return (await self.delete_all([path])).get(path)

    async def delete_all(self, paths: list[str]) -> dict[str, StorageError]:
        """Delete `paths` with the others; the errors of those that could not be deleted."""
        loop = asyncio.get_running_loop()
        futures = [(path, loop.create_future()) for path in paths]
        self.waiting.extend(futures)
        self.waiters += 1
        self._maybe_flush()
        try:
            results = [await future for _, future in futures]
        finally:
            self.waiters -= 1
        return {path: error for (path, _), error in zip(futures, results) if error is not None}

    def finished(self) -> None:
        self.running -= 1
        self._maybe_flush()

    @contextlib.asynccontextmanager
    async def idle(self):
        """A block in which the task waits on something other than this batch."""
        self.finished()
        try:
            yield
        finally:
            self.running += 1

    def _maybe_flush(self) -> None:
        if self.waiting and (len(self.waiting) >= self.limit or self.waiters >= self.running):
            batch, self.waiting = self.waiting, []
            task = asyncio.create_task(self._flush(batch))
            self._flushes.add(task)
            task.add_done_callback(self._flushes.discard)

    async def _flush(self, batch: list[tuple[str, asyncio.Future]]) -> None:
        try:
            failures = await _delete_bytes(self.storage, [path for path, _ in batch])
        except BaseException as exc:  # cancelled, say: the waiters must not hang
            for path, future in batch:
                if not future.done():
                    future.set_result(StorageError(f"delete of {path} not done: {exc!r}"))
            raise
        for path, future in batch:
            if not future.done():
                future.set_result(failures.get(path))


async def _delete_bytes(storage, paths: list[str]) -> dict[str, StorageError]:
    """Delete the bytes of blobs whose rows went (StorageDriver.delete_many); the failures by path."""
    pause = os.environ.get(PAUSE_ENV)
    if pause:
        await asyncio.sleep(float(pause))
    return dict(await storage.delete_many(paths))


class _all_held:
    """An async context yielding every key as held (manifest verdicts take no lock)."""

    def __init__(self, keys):
        self.keys = set(keys)

    async def __aenter__(self) -> set[str]:
        return self.keys

    async def __aexit__(self, *exc) -> None:
        return None


class _held:
    """An async context that yields True (PostgreSQL passes need no pass lock)."""

    async def __aenter__(self) -> bool:
        return True

    async def __aexit__(self, *exc) -> None:
        return None


async def run_periodically(collector: Collector, interval: float) -> None:
    """`serve`'s loop: a pass every `interval` seconds (on SQLite, skipped while one runs elsewhere)."""
    await every(interval, lambda: collector.run(wait=False), log, "GC pass")
