"""The Proxy: cache-or-fetch for manifests and blobs of pull-through cache repositories.

What is stored where:
- Cached manifests, tags and blob links are ordinary rows of the cache repository
  `<upstream>/<repository>` (see routing.py); blob bytes are ordinary content-addressed blobs.
  So catalog, quotas (a tenant named like the upstream, if one exists), GC and the local
  read path apply unchanged. Manifests are stored without requiring what they reference to be
  present: blobs and child manifests are fetched when they are asked for.
- `proxy_tags` (metadata store) holds when each cached tag was last confirmed upstream; it
  survives restarts and is shared by replicas.
- A blob being fetched streams into an upload path of storage (the Registry's own monolithic
  upload: hashed as it arrives, verified, moved into place, linked). The waiting clients
  read it as it is written, from the upload file itself when storage is a local disk and
  otherwise from a local anonymous spool file (flight.py).

Freshness: a manifest by digest is never fetched again. A manifest by tag is served from the
cache while younger than its upstream's `manifest_revalidate_seconds`; after that one HEAD
asks the upstream for the tag's digest (free on Docker Hub) and only a changed digest is
fetched. If the upstream is unavailable or rate-limited, the cached copy is served (a log
line and `daohub_proxy_cache_requests{result="stale"}`).

Single flight, in this process by key (Coalescer, BlobFlight), and across replicas by the
metadata store's lock on the same key: a replica that finds the key held waits for it, then
finds the content in the store (or fetches it itself, if the other fetch failed).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

from storage_backends import StorageError

from ..background import every
from ..db import ManifestRecord
from ..db.base import QuotaExceededError
from ..errors import BlobUnknown, DigestInvalid, ManifestUnknown, NameUnknown, OciError
from ..metrics import ProxyMetrics
from ..registry.names import digest_of, looks_like_digest, parse_digest, validate_tag
from ..registry.service import Registry, _quota_denied
from .client import SERVE_STALE, UpstreamClient, UpstreamFailed, UpstreamNotFound, UpstreamUnavailable
from .eviction import BLOB_GRACE_SECONDS, EvictionReport, PullLog, evict
from .flight import BlobFlight, Coalescer
from .routing import Router, Target, Upstream
from .settings import ProxySettings
from .upstreams import upstream_from_record

log = logging.getLogger("daohub.proxy")

# Noted pulls reach the store within this long (eviction flushes first, wherever it runs).
PULL_FLUSH_SECONDS = 30.0
# A client of an upstream changed or deleted through the API is closed this long after, when
# the requests that were using it have finished (a longer blob transfer is cut).
RETIRED_CLIENT_SECONDS = 900.0


class Proxy:
    def __init__(self, settings: ProxySettings, registry: Registry, metrics: ProxyMetrics):
        self.registry = registry
        self.store = registry.store
        self.metrics = metrics
        self._timeouts = {"connect_timeout": settings.connect_timeout_seconds,
                          "read_timeout": settings.read_timeout_seconds}
        upstreams = [Upstream.from_config(u) for u in settings.upstreams]
        self.router = Router(upstreams, settings.default_mirror, self._tenant_exists,
                             stored=self._stored_upstreams, version=self.store.upstreams_version,
                             refresh_seconds=settings.upstream_refresh_seconds, on_change=self._sync_clients)
        self.clients = {u.name: UpstreamClient(u, metrics, **self._timeouts) for u in upstreams}
        # Clients of upstreams changed or deleted through the API, with when: a request may still
        # be using one, so each is closed only after RETIRED_CLIENT_SECONDS (or at shutdown).
        self._retired: list[tuple[UpstreamClient, float]] = []
        self._opened = False
        self.pulls = PullLog(settings.pull_record_seconds)
        self.eviction_interval = settings.eviction_interval_seconds
        self.blob_grace = BLOB_GRACE_SECONDS
        self.spool_dir = settings.spool_dir
        self.max_manifest_bytes = settings.max_manifest_bytes
        # Seconds since the epoch; replaceable so tests can move time.
        self.clock: Callable[[], float] = time.time
        self._manifests = Coalescer()
        self._heads = Coalescer()
        self._flights: dict[str, BlobFlight] = {}

    async def open(self) -> None:
        Path(self.spool_dir).mkdir(parents=True, exist_ok=True)
        for client in self.clients.values():
            await client.open()
        self._opened = True
        await self.router.refresh(force=True)

    async def settled(self) -> None:
        """Wait until every blob fetch under way has landed in storage or failed (its clients may
        have had their bytes before that: they go out once verified)."""
        while tasks := [f.task for f in self._flights.values() if f.task is not None and not f.task.done()]:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def close(self) -> None:
        await self._manifests.aclose()
        await self._heads.aclose()
        # A fetch whose bytes all arrived and verified is only committing: let it land, so the
        # shutdown does not throw away a download its clients already have. The rest stop.
        landing = [f.task for f in self._flights.values() if f.task is not None and f.verified]
        await asyncio.gather(*landing, return_exceptions=True)
        tasks = [f.task for f in self._flights.values() if f.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for client in [*self.clients.values(), *(c for c, _ in self._retired)]:
            await client.close()
        try:
            await self.pulls.flush(self.store)
        except Exception:
            log.exception("could not record the last pulls at shutdown")

    async def _tenant_exists(self, name: str) -> bool:
        return await self.store.get_tenant(name) is not None

    # Upstreams -----------------------------------------------------------------------------------
    async def _stored_upstreams(self) -> list[Upstream]:
        return [upstream_from_record(r) for r in await self.store.list_upstreams()]

    def _sync_clients(self, upstreams: dict[str, Upstream]) -> None:
        """Give every routed upstream a client of its own URL and credentials."""
        for name in list(self.clients):
            up = upstreams.get(name)
            if up is None or not up.same_connection(self.clients[name].upstream):
                self._retired.append((self.clients.pop(name), time.monotonic()))
        for name, up in upstreams.items():
            if name not in self.clients:
                client = self.clients[name] = UpstreamClient(up, self.metrics, **self._timeouts)
                if self._opened:
                    client.start()
            else:
                self.clients[name].upstream = up  # same connection; other settings may have changed

    def _client(self, target: Target) -> UpstreamClient:
        client = self.clients.get(target.upstream.name)
        if client is None:
            raise NameUnknown(f"upstream {target.upstream.name!r} was removed", detail={"upstream": target.upstream.name})
        return client

    # Cache bounds --------------------------------------------------------------------------------
    def note_pull(self, repository: str, digest: str) -> None:
        self.pulls.note(repository, digest, self.clock())

    def start_background(self, *, evict: bool = True) -> list[asyncio.Task]:
        """The serve process's loops: writing noted pulls, and periodic eviction (every replica
        runs it, and of one machine's workers only the one that runs the background jobs; the
        store lock lets one at a time do the work)."""
        tasks = [asyncio.create_task(self._every(PULL_FLUSH_SECONDS, self._flush_pulls), name="proxy-pulls")]
        if evict and self.eviction_interval > 0:
            tasks.append(asyncio.create_task(self._every(self.eviction_interval, self.evict), name="proxy-evict"))
        return tasks

    @staticmethod
    async def _every(seconds: float, job) -> None:
        await every(seconds, job, log, f"pull-through cache: {getattr(job, '__name__', 'a periodic job')}")

    async def _flush_pulls(self) -> None:
        await self._close_retired()
        await self.pulls.flush(self.store)

    async def _close_retired(self, grace: float = RETIRED_CLIENT_SECONDS) -> None:
        now = time.monotonic()
        done = [c for c, at in self._retired if now - at >= grace]
        self._retired = [(c, at) for c, at in self._retired if now - at < grace]
        for client in done:
            await client.close()

    async def evict(self, *, wait: bool = False, dry_run: bool = False) -> EvictionReport:
        """One eviction run over every upstream with a cap or TTL (skipped if another runs)."""
        await self.pulls.flush(self.store)
        await self.router.refresh(force=True)
        return await evict(self.registry, list(self.router.upstreams.values()), self.clock(),
                           metrics=self.metrics, wait=wait, dry_run=dry_run, grace=self.blob_grace)

    # Manifests -----------------------------------------------------------------------------------
    async def manifest(self, target: Target, reference: str) -> ManifestRecord:
        """The manifest `reference` of `target`, from the cache while fresh, else from upstream."""
        by_digest = looks_like_digest(reference)
        reference = str(parse_digest(reference)) if by_digest else validate_tag(reference)
        record = await self._cached_manifest(target, reference, by_digest)
        if record is not None:
            self.metrics.cache.labels(target.upstream.name, "manifest", "hit").inc()
            return record
        return await self._manifests.run(
            f"{target.cache}:{reference}", lambda: self._refresh_manifest(target, reference, by_digest),
            on_join=lambda: self.metrics.coalesced.labels(target.upstream.name, "manifest").inc())

    async def _cached_manifest(self, target: Target, reference: str, by_digest: bool) -> ManifestRecord | None:
        """The cached manifest if it may be served without asking the upstream."""
        record = await self.store.get_manifest(target.cache, reference, by_digest=by_digest)
        if record is None or by_digest:
            return record
        checked = await self.store.proxy_tag_checked_at(target.cache, reference)
        if checked is not None and self.clock() - checked < target.upstream.revalidate_seconds:
            return record
        return None

    async def _refresh_manifest(self, target: Target, reference: str, by_digest: bool) -> ManifestRecord:
        async with self.store.lock(f"proxy:manifest:{target.cache}:{reference}"):
            # Another replica may have refreshed it while this one waited for the lock.
            record = await self._cached_manifest(target, reference, by_digest)
            if record is not None:
                return record
            stale = None if by_digest else await self.store.get_manifest(target.cache, reference, by_digest=False)
            try:
                return await self._fetch_manifest(target, reference, by_digest, stale)
            except SERVE_STALE as exc:
                if stale is None:
                    raise
                upstream = target.upstream.name
                self.metrics.cache.labels(upstream, "manifest", "stale").inc()
                log.warning("serving cached %s:%s (%s): upstream %r failed to revalidate it: %s",
                            target.cache, reference, stale.digest, upstream, exc.message)
                return stale

    async def _fetch_manifest(self, target: Target, reference: str, by_digest: bool,
                              stale: ManifestRecord | None) -> ManifestRecord:
        client = self._client(target)
        upstream = target.upstream.name
        try:
            fetch_ref = reference
            if stale is not None:
                head = await client.head_manifest(target.remote, reference)
                if head.digest == stale.digest:
                    await self.store.set_proxy_tag_checked(target.cache, reference, self.clock())
                    self.metrics.cache.labels(upstream, "manifest", "revalidated").inc()
                    return stale
                if head.digest and _is_digest(head.digest):
                    fetch_ref = head.digest  # the tag moved: fetch exactly what the HEAD announced
            fetched = await client.get_manifest(target.remote, fetch_ref, self.max_manifest_bytes)
        except UpstreamNotFound as exc:
            raise self._not_found(target, "manifest", reference, exc) from None
        self.metrics.cache.labels(upstream, "manifest", "miss").inc()
        digest = self._verify_manifest(target, fetch_ref if looks_like_digest(fetch_ref) else None, fetched)
        tags = [] if by_digest else [reference]
        await self.registry.put_manifest(target.cache, digest, fetched.content, fetched.media_type or None, tags,
                                         verify_references=False)
        if not by_digest:
            await self.store.set_proxy_tag_checked(target.cache, reference, self.clock())
        record = await self.store.get_manifest(target.cache, digest, by_digest=True)
        if record is None:  # deleted in between: nothing sensible to serve
            raise ManifestUnknown(detail={"reference": reference})
        return record

    def _verify_manifest(self, target: Target, wanted: str | None, fetched) -> str:
        """The digest of a fetched manifest, checked against what was asked for and what was announced."""
        upstream = target.upstream.name
        claims = [c for c in (wanted, fetched.digest) if c]
        try:
            algorithm = parse_digest(claims[0]).algorithm if claims else "sha256"
        except DigestInvalid:
            algorithm = "sha256"
        digest = str(digest_of(fetched.content, algorithm))
        for claim in claims:
            if claim != digest:
                raise UpstreamFailed(f"upstream {upstream!r} sent a manifest whose digest {digest} is not the "
                                     f"{claim} it announced", detail={"upstream": upstream})
        return digest

    # Blobs ---------------------------------------------------------------------------------------
    async def blob(self, target: Target, digest_str: str) -> BlobFlight | None:
        """None when the blob is (now) linked into the cache repository: serve it from storage.

        Otherwise the running flight, with this caller attached as a reader of its spool (it
        must detach). Raises the flight's error if it failed before streaming began."""
        digest = str(parse_digest(digest_str))
        upstream = target.upstream.name
        if await self.store.get_blob_size(target.cache, digest) is not None:
            self.metrics.cache.labels(upstream, "blob", "hit").inc()
            return None
        key = f"{upstream}:{digest}"
        flight = self._flights.get(key)
        if flight is None:
            flight = BlobFlight(upstream, target.cache, digest, self.spool_dir)
            self._flights[key] = flight
            flight.task = asyncio.create_task(self._fetch_blob(flight, target), name=f"proxy blob {key}")
            flight.task.add_done_callback(lambda t: self._landed(key, flight, t))
        else:
            self.metrics.coalesced.labels(upstream, "blob").inc()
        if flight.repository != target.cache and not flight.finished:
            flight.also_link.add(target.cache)
        await flight.started.wait()
        if flight.error is not None:
            raise _client_error(flight.error)
        if flight.attach():
            return flight
        await self._link(target.cache, digest)
        return None

    def _landed(self, key: str, flight: BlobFlight, task: asyncio.Task) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]
        if not task.cancelled():
            task.exception()  # retrieved here: every client may have gone

    async def _link(self, repository: str, digest: str) -> None:
        """Link a blob that is in storage into `repository` (a fetch for another one brought it)."""
        if not await self._link_present(repository, digest):
            raise BlobUnknown("the blob was fetched but is gone again", detail={"digest": digest})

    async def _link_present(self, repository: str, digest: str) -> bool:
        """Link the blob into `repository` if its bytes are stored; False if they are not."""
        if await self.store.get_blob_size(repository, digest) is not None:
            return True
        # The bytes another repository links may be evicted meanwhile: the digest's lock keeps
        # them until this link commits (hub/registry/service.py).
        async with self.registry.blob_lock(digest):
            size = await self.store.get_global_blob_size(digest)
            if size is None:
                return False
            try:
                await self.store.link_blob(repository, digest, size)
            except QuotaExceededError as exc:
                raise _quota_denied(exc) from None
        return True

    async def _fetch_blob(self, flight: BlobFlight, target: Target) -> None:
        upstream = target.upstream.name
        gauge = self.metrics.fetches_in_flight.labels(upstream)
        gauge.inc()
        try:
            async with self.store.lock(f"proxy:blob:{upstream}:{flight.digest}"):
                await self._fetch_blob_locked(flight, target)
            for repository in flight.also_link:
                try:
                    await self._link(repository, flight.digest)
                except OciError as exc:
                    log.warning("could not link fetched blob %s into %s: %s", flight.digest, repository, exc.message)
            flight.finish(local=flight.local or not flight.started.is_set())
        except BaseException as exc:
            flight.finish(exc)
            if not isinstance(exc, asyncio.CancelledError | OciError):
                log.exception("fetching blob %s from %r failed", flight.digest, upstream)
            raise
        finally:
            gauge.dec()

    async def _fetch_blob_locked(self, flight: BlobFlight, target: Target) -> None:
        digest, upstream = flight.digest, target.upstream.name
        client = self.clients[upstream]
        if await self.store.get_blob_size(target.cache, digest) is not None:
            flight.local = True  # another replica finished while this one waited for the lock
            return
        size = await self.store.get_global_blob_size(digest)
        try:
            if size is not None:
                # The bytes are here already (another repository or upstream): confirm that the
                # upstream serves this digest in this repository, then link instead of downloading
                # (unless they were evicted meanwhile).
                await client.head_blob(target.remote, digest)
                if await self._link_present(target.cache, digest):
                    flight.local = True
                    self.metrics.cache.labels(upstream, "blob", "linked").inc()
                    return
            self.metrics.cache.labels(upstream, "blob", "miss").inc()
            async with client.open_blob(target.remote, digest) as resp:
                length = resp.content_length
                limit = self.registry.max_blob_bytes
                if limit and length is not None and length > limit:
                    raise UpstreamFailed(f"blob {digest} of upstream {upstream!r} is {length} bytes, over the "
                                         f"registry's limit of {limit}")
                flight.begin(length)
                await self.registry.monolithic_upload(target.cache, digest, self._tee(flight, resp, client),
                                                      watch=flight)
        except UpstreamNotFound as exc:
            raise self._not_found(target, "blob", digest, exc) from None
        except DigestInvalid:
            raise UpstreamFailed(f"upstream {upstream!r} sent blob bytes that do not match {digest}",
                                 detail={"upstream": upstream, "digest": digest}) from None
        except StorageError:
            raise  # logged by the caller as an unexpected failure

    async def _tee(self, flight: BlobFlight, resp, client: UpstreamClient):
        """The upstream body as it arrives, spooled for the readers on its way into storage."""
        counter = self.metrics.bytes_fetched.labels(flight.upstream)
        received = 0
        try:
            async for chunk in resp.content.iter_any():
                flight.append(chunk)
                received += len(chunk)
                counter.inc(len(chunk))
                yield chunk
        except TimeoutError:
            raise client.unavailable("timeout", "the blob transfer stalled") from None
        except Exception as exc:
            if isinstance(exc, OciError):
                raise
            raise client.unavailable("cut", f"the blob transfer was cut ({type(exc).__name__})") from None
        if flight.size is not None and received != flight.size:
            raise client.unavailable("cut", f"the blob transfer ended after {received} of {flight.size} bytes")

    async def head_blob(self, target: Target, digest_str: str) -> int | None:
        """Size of a blob not yet cached, as the upstream (or a running fetch) says; None if unknown."""
        digest = str(parse_digest(digest_str))
        flight = self._flights.get(f"{target.upstream.name}:{digest}")
        if flight is not None and flight.size is not None:
            return flight.size
        client = self._client(target)

        async def head() -> int | None:
            try:
                return await client.head_blob(target.remote, digest)
            except UpstreamNotFound as exc:
                raise self._not_found(target, "blob", digest, exc) from None

        return await self._heads.run(f"{target.upstream.name}:{target.remote}:{digest}", head)

    # Tags ----------------------------------------------------------------------------------------
    async def list_tags(self, target: Target, n: int, last: str | None) -> list[str] | None:
        """The upstream's tag list; None when the upstream is unavailable (serve the cached tags)."""
        client = self._client(target)
        try:
            body = await client.list_tags(target.remote, n, last, self.max_manifest_bytes)
        except SERVE_STALE as exc:
            log.warning("listing cached tags of %s: upstream %r failed: %s", target.cache, target.upstream.name,
                        exc.message)
            return None
        except UpstreamNotFound as exc:
            raise self._not_found(target, "repository", target.remote, exc) from None
        return body["tags"]

    def _not_found(self, target: Target, kind: str, reference: str, exc: UpstreamNotFound) -> OciError:
        detail = {"upstream": target.upstream.name, "name": target.remote, "reference": reference}
        message = f"{kind} {reference} not found at upstream {target.upstream.name!r} ({target.remote})"
        if exc.code == "NAME_UNKNOWN" or kind == "repository":
            return NameUnknown(message, detail=detail)
        if kind == "blob":
            return BlobUnknown(message, detail=detail)
        return ManifestUnknown(message, detail=detail)


def _client_error(error: BaseException) -> BaseException:
    """What a waiting client is told about a fetch that failed before any byte was streamed."""
    if isinstance(error, OciError):
        return error
    if isinstance(error, asyncio.CancelledError):
        return UpstreamUnavailable("-", "shutdown", "the fetch was cancelled (server shutting down)")
    return OciError("fetching the blob from the upstream failed")


def _is_digest(value: str) -> bool:
    """A well-formed digest (an upstream's header goes into a URL path only if it is one)."""
    try:
        parse_digest(value)
    except DigestInvalid:
        return False
    return True
