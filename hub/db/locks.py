"""Named locks, the building blocks of MetadataStore.lock(): in one process, and across the
processes of one machine."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import random
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


class FileLocks:
    """Named locks across processes on one machine: a POSIX record lock on one byte of `path`
    per key (at an offset hashed from it), for the SQLite store, whose CLI commands (`daohub
    proxy evict`, `purge-uploads`) run in processes of their own beside `serve`.

    Record locks belong to the process, not the task, so KeyedLocks in front must keep two
    tasks of one process from "sharing" a key; and a process must keep the file open while it
    holds any (closing any descriptor of it drops them all), hence one descriptor, kept. Taking
    a lock is a non-blocking fcntl call; waiting polls with backoff, like the advisory locks."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None

    def open(self) -> None:
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases whatever this process still holds
            self._fd = None

    @staticmethod
    def _offset(key: str) -> int:
        # 56 bits: collisions are negligible, and the offset stays a valid off_t.
        return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=7).digest(), "big")

    # Writers' intent (SqliteStore's background writes): one byte past every key's offset.
    _WRITERS = 1 << 56

    def announce_write(self) -> None:
        """Mark this process as about to write (until `write_done`): a shared lock, blocking for
        at most the moment another process's `others_writing` holds it exclusively."""
        if self._fd is not None:
            fcntl.lockf(self._fd, fcntl.LOCK_SH, 1, self._WRITERS)

    def write_done(self) -> None:
        if self._fd is not None:
            fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, self._WRITERS)

    def others_writing(self) -> bool:
        """Whether another process announced a write. Record locks never conflict within one
        process, so this process's own announcements do not count."""
        if self._fd is None or self._try(self._WRITERS):
            if self._fd is not None:
                fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, self._WRITERS)
            return False
        return True

    def _try(self, offset: int) -> bool:
        try:
            fcntl.lockf(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, offset)
        except (BlockingIOError, PermissionError):
            return False
        return True

    @contextlib.asynccontextmanager
    async def hold(self, key: str, *, wait: bool = True) -> AsyncIterator[bool]:
        """Yield True while holding `key` across processes (the caller excludes its own tasks)."""
        if self._fd is None:
            yield True  # not opened (an in-memory database): one process is all there is
            return
        offset = self._offset(key)
        delay = 0.005
        while not self._try(offset):
            if not wait:
                yield False
                return
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 0.1)
        try:
            yield True
        finally:
            if self._fd is not None:
                fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, offset)
