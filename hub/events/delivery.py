"""The webhook delivery worker: serve runs one per replica (docs/events.md, "Delivery").

It claims due deliveries from the store (EventStore.webhook_claim: one worker per delivery
across replicas, a lease that a killed replica's claims run out of), POSTs each CloudEvent with
its signature headers, and records the attempt: delivered on a 2xx answer; otherwise retried
with exponential backoff and jitter until webhooks.max_attempts, then dead. A destination that
is not allowed (netguard) is dead at once: retrying cannot make it allowed.

At least once: the delivery row is marked only after the receiver answered, so a replica killed
between the answer and the mark makes another replica send it again after the lease; receivers
deduplicate by the idempotency key (the event id). Nothing here runs on a request's path: a
push only writes its event and delivery rows (hub/db/event_store.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import time
import uuid

from typing import TYPE_CHECKING

import aiohttp
from aiohttp.abc import AbstractResolver
from yarl import URL

from ..background import stop_if_cancelled
from ..db.base import MetadataStore
from ..db.event_store import AttemptResult
from . import cloudevents, signing
from .netguard import ForbiddenDestination, GuardedResolver, check_literal, networks

if TYPE_CHECKING:
    WebhooksConfig = object  # hub.config's webhooks.* settings: any object with those attributes

log = logging.getLogger("daohub.webhooks")

USER_AGENT = "DaoHub-Webhooks/1"
_ERROR_BYTES = 200


def backoff(settings: WebhooksConfig, tries: int, rand: float | None = None) -> float:
    """The wait after the `tries`-th failed attempt: base * 2**(tries-1), at most the maximum,
    with jitter (between half of it and all of it)."""
    delay = min(settings.backoff_max_seconds, settings.backoff_base_seconds * 2 ** max(0, tries - 1))
    return delay * (0.5 + 0.5 * (random.random() if rand is None else rand))


class Deliverer:
    def __init__(self, store, settings: WebhooksConfig, *, resolver: AbstractResolver | None = None,
                 owner: str | None = None, metrics=None):
        self.store = store
        self.metrics = metrics  # hub.metrics.WebhookMetrics, or None
        self.settings = settings
        self.allowed = networks(settings.allowed_networks)
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._resolver = resolver
        self._session: aiohttp.ClientSession | None = None
        self._wake = asyncio.Event()
        self._stopping = False

    async def open(self) -> None:
        # No DNS cache: every new connection resolves (and is checked) again. A kept-alive
        # connection goes on to the address that was checked when it was opened, which is what
        # DNS rebinding cannot change; idle ones are closed after 15 s.
        connector = aiohttp.TCPConnector(resolver=GuardedResolver(self.allowed, self._resolver),
                                         use_dns_cache=False, keepalive_timeout=15)
        self._session = aiohttp.ClientSession(connector=connector, trust_env=False,
                                              headers={"User-Agent": USER_AGENT}, auto_decompress=False)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def wake(self) -> None:
        """Look for due deliveries now, not at the next poll."""
        self._wake.set()

    async def run_once(self) -> int:
        """Claim one batch, send it, and record every attempt in one transaction; how many were
        claimed."""
        claims = await self.store.webhook_claim(self.owner, lease_seconds=self.settings.lease_seconds,
                                                limit=self.settings.concurrency)
        if claims:
            results = await asyncio.gather(*(self._attempt(c) for c in claims))
            await self._record(list(zip(claims, results, strict=True)))
        return len(claims)

    async def stop(self, task: asyncio.Task) -> None:
        """End `task` (running `run`) the gentle way: no new claims, the batch in flight finishes
        and is recorded (so a clean shutdown sends nothing twice), within the attempt timeout;
        then it is cancelled."""
        self._stopping = True
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), self.settings.timeout_seconds + 5)
        except TimeoutError:
            pass
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def run(self) -> None:
        """serve's loop: batches back to back while there are due deliveries, then a poll every
        poll_interval_seconds (or sooner when woken), until stop(). Its writes are background
        ones (MetadataStore.background: on SQLite pushes go first)."""
        with MetadataStore.background():
            await self._loop()

    async def _loop(self) -> None:
        while not self._stopping:
            try:
                claimed = await self.run_once()
            except Exception as exc:
                stop_if_cancelled(exc)
                log.exception("claiming webhook deliveries failed")
                claimed = 0
            if not claimed and not self._stopping:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), self.settings.poll_interval_seconds)
                except TimeoutError:
                    pass

    async def _attempt(self, claim) -> AttemptResult:
        try:
            result = await self.deliver(claim)
        except Exception as exc:  # a bug here must not lose the claim for longer than its lease
            stop_if_cancelled(exc)
            log.exception("webhook delivery %s failed unexpectedly", claim.id)
            result = self._failed(claim, None, None, f"internal error: {type(exc).__name__}")
        if self.metrics is not None:
            self.metrics.observe(result.outcome, result.latency_ms)
        return result

    async def _record(self, results) -> None:
        try:
            kept = await self.store.webhook_finish_batch(self.owner, results)
        except Exception as exc:
            stop_if_cancelled(exc)
            log.exception("recording %d webhook attempts failed (they are sent again after their lease)",
                          len(results))
            return
        for (claim, _), ok in zip(results, kept, strict=True):
            if not ok:
                log.info("webhook delivery %s was taken over by another worker during attempt %s", claim.id,
                         claim.attempt)

    def _failed(self, claim, status: int | None, latency_ms: float | None, error: str, *,
                final: bool = False) -> AttemptResult:
        if final or claim.tries >= self.settings.max_attempts:
            return AttemptResult("dead", status, latency_ms, error)
        return AttemptResult("retry", status, latency_ms, error, time.time() + backoff(self.settings, claim.tries))

    async def deliver(self, claim) -> AttemptResult:
        """One attempt: POST the event, judge the answer."""
        assert self._session is not None, "deliverer not open"
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": f"{cloudevents.MEDIA_TYPE}; charset=utf-8",
            signing.TIMESTAMP_HEADER: timestamp,
            signing.SIGNATURE_HEADER: signing.signature_header(claim.secrets, timestamp, claim.body),
            signing.IDEMPOTENCY_HEADER: claim.event_id,
            signing.EVENT_ID_HEADER: claim.event_id,
            signing.DELIVERY_HEADER: str(claim.id),
            signing.ATTEMPT_HEADER: str(claim.attempt),
        }
        started = time.perf_counter()

        def elapsed() -> float:
            return round((time.perf_counter() - started) * 1000, 3)

        try:
            url = URL(claim.url)
            check_literal(url, self.allowed)
            timeout = aiohttp.ClientTimeout(total=self.settings.timeout_seconds)
            async with self._session.post(url, data=claim.body, headers=headers, allow_redirects=False,
                                          timeout=timeout) as response:
                snippet = await response.content.read(self.settings.max_response_bytes)
                status = response.status
        except ForbiddenDestination as exc:
            return self._failed(claim, None, elapsed(), f"forbidden destination: {exc}", final=True)
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, ForbiddenDestination) or isinstance(exc.__cause__, ForbiddenDestination):
                return self._failed(claim, None, elapsed(), f"forbidden destination: {exc.os_error}", final=True)
            return self._failed(claim, None, elapsed(), f"connection failed: {exc.os_error or exc}")
        except TimeoutError:
            return self._failed(claim, None, elapsed(), f"timed out after {self.settings.timeout_seconds:g} s")
        except (aiohttp.ClientError, ValueError) as exc:
            return self._failed(claim, None, elapsed(), f"{type(exc).__name__}: {exc}"[:_ERROR_BYTES])
        latency = elapsed()
        if 200 <= status < 300:
            return AttemptResult("delivered", status, latency, None)
        text = snippet[:_ERROR_BYTES].decode("utf-8", "replace").strip()
        why = f"HTTP {status}" + (" (redirects are not followed)" if 300 <= status < 400 else "")
        return self._failed(claim, status, latency, f"{why}: {text}" if text else why)
