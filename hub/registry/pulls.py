"""Tag pull times, noted on the hot path and written off it (issue 16).

A manifest GET or HEAD by tag notes (repository, tag, time) in a dict in memory; by digest it
notes (repository, digest, time), which the flush turns into a pull of every tag pointing at that
digest. Nothing else happens on the request: no I/O, no lock, one dict assignment. A background
task flushes the dict every `flush_seconds`, or as soon as it holds `flush_entries` distinct
keys, as one upsert (RetentionStore.record_tag_pulls) that keeps the greater of the stored and
the noted time: replicas sharing a database may flush in any order and the result is the latest
pull from any of them. A key pulled many times within one period costs one row in the batch.

With `events` on (events.pull_events), the same flush writes one aggregated `pull` event per
key (EventStore.record_pull_events: how many pulls, the first and last time), so the outbox
holds pulls without a row per request: at most one event per tag (or digest) per replica and
flush period, whatever the pull rate.

What can be lost: a replica killed with kill -9 loses the pulls it noted since its last flush (at
most flush_seconds of them); a flush that fails keeps its notes for the next one. Retention rules
count days, so a second is far below what they can tell apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from ..background import stop_if_cancelled

log = logging.getLogger("daohub.retention")


class TagPulls:
    def __init__(self, store, *, flush_seconds: float = 1.0, flush_entries: int = 10_000, events: bool = False):
        self.store = store
        self.flush_seconds = flush_seconds
        self.flush_entries = flush_entries
        self.events = events
        self._pending: dict[tuple[str, str, bool], float] = {}
        self._counts: dict[tuple[str, str, bool], tuple[float, int]] = {}  # (first, count), with events
        self._full = asyncio.Event()

    def note(self, repository: str, reference: str, by_digest: bool) -> None:
        """A pull now (the hot path: no I/O)."""
        key = (repository, reference, by_digest)
        self._pending[key] = now = time.time()
        if self.events:
            first, count = self._counts.get(key, (now, 0))
            self._counts[key] = (first, count + 1)
        if len(self._pending) >= self.flush_entries:
            self._full.set()

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def flush(self) -> int:
        """Write what is noted; on failure the notes are kept for the next flush."""
        if not self._pending:
            return 0
        batch, self._pending = self._pending, {}
        counts, self._counts = self._counts, {}
        self._full.clear()
        try:
            await self.store.record_tag_pulls((r, ref, d, at) for (r, ref, d), at in batch.items())
            if counts:
                await self.store.record_pull_events(
                    (r, ref, d, n, first, batch.get((r, ref, d), first)) for (r, ref, d), (first, n) in counts.items())
        except BaseException:
            # Both again next time: pull times keep the greater (writing them twice is harmless),
            # and the events were not written.
            for key, at in batch.items():
                self._pending[key] = max(at, self._pending.get(key, at))
            for key, (first, n) in counts.items():
                was_first, was_n = self._counts.get(key, (first, 0))
                self._counts[key] = (min(first, was_first), n + was_n)
            raise
        return len(batch)

    async def run(self) -> None:
        """serve's loop: flush every flush_seconds, or sooner when flush_entries are waiting."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._full.wait(), self.flush_seconds)
            try:
                await self.flush()
            except Exception as exc:
                stop_if_cancelled(exc)
                log.exception("writing tag pull times failed (kept for the next flush)")
