"""Process-local named locks, the building block of MetadataStore.lock()."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class KeyedLocks:
    """One asyncio.Lock per key, kept only while someone holds or waits for it."""

    def __init__(self) -> None:
        self._entries: dict[str, list] = {}  # key -> [lock, holders and waiters]

    def locked(self, key: str) -> bool:
        entry = self._entries.get(key)
        return entry is not None and entry[0].locked()

    @contextlib.asynccontextmanager
    async def hold(self, key: str, *, wait: bool = True) -> AsyncIterator[bool]:
        """Yield True while holding `key`; with wait=False, yield False at once if it is taken."""
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = [asyncio.Lock(), 0]
        lock = entry[0]
        if not wait and lock.locked():
            yield False
            return
        entry[1] += 1
        try:
            async with lock:
                yield True
        finally:
            entry[1] -= 1
            if entry[1] == 0 and self._entries.get(key) is entry:
                del self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)
