"""In-memory driver, for fast tests. Not for production: nothing survives a restart."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from .base import FileInfo, FileWriter, StorageDriver
from .errors import InvalidOffsetError, PathNotFoundError, WriterClosedError


class _MemoryWriter(FileWriter):
    def __init__(self, driver: MemoryDriver, path: str, buf: bytearray):
        self._driver = driver
        self.path = path
        self._buf = buf
        self._done = False

    @property
    def size(self) -> int:
        return len(self._buf)

    def _check(self) -> None:
        if self._done:
            raise WriterClosedError(self.path)

    async def write(self, data: bytes) -> int:
        self._check()
        self._buf += data
        self._driver._pending_mtime[self.path] = time.time()
        return len(data)

    async def close(self) -> None:
        if not self._done:
            self._done = True
            self._driver._pending[self.path] = self._buf
            self._driver._pending_mtime.setdefault(self.path, time.time())

    async def commit(self) -> None:
        self._check()
        self._done = True
        self._driver._pending.pop(self.path, None)
        self._driver._pending_mtime.pop(self.path, None)
        self._driver._objects[self.path] = (bytes(self._buf), time.time())

    async def cancel(self) -> None:
        self._done = True
        self._driver._pending.pop(self.path, None)
        self._driver._pending_mtime.pop(self.path, None)


class MemoryDriver(StorageDriver):
    name = "memory"

    def __init__(self) -> None:
        self._objects: dict[str, tuple[bytes, float]] = {}
        self._pending: dict[str, bytearray] = {}
        self._pending_mtime: dict[str, float] = {}

    def _is_dir(self, path: str) -> bool:
        prefix = path + "/" if path else ""
        return any(k.startswith(prefix) for k in self._objects) or any(
            k.startswith(prefix) for k in self._pending
        )

    async def get_content(self, path: str) -> bytes:
        try:
            return self._objects[path][0]
        except KeyError:
            raise PathNotFoundError(path) from None

    async def put_content(self, path: str, data: bytes) -> None:
        self._objects[path] = (bytes(data), time.time())

    async def reader(self, path: str, offset: int = 0, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        data = await self.get_content(path)
        if offset < 0 or offset > len(data):
            raise InvalidOffsetError(path, offset)

        async def gen() -> AsyncIterator[bytes]:
            for i in range(offset, len(data), chunk_size):
                yield data[i : i + chunk_size]

        return gen()

    async def writer(self, path: str, append: bool = False, *, scratch: bool = False) -> FileWriter:
        if append:
            if path in self._pending:
                buf = self._pending.pop(path)
            elif path in self._objects:
                buf = bytearray(self._objects[path][0])
            else:
                raise PathNotFoundError(path)
        else:
            buf = bytearray()
            self._pending[path] = buf
            self._pending_mtime[path] = time.time()
        return _MemoryWriter(self, path, buf)

    async def stat(self, path: str) -> FileInfo:
        if path in self._objects:
            data, mtime = self._objects[path]
            return FileInfo(path, len(data), mtime)
        if path in self._pending:
            return FileInfo(path, len(self._pending[path]), self._pending_mtime.get(path, time.time()))
        if self._is_dir(path):
            return FileInfo(path, 0, time.time(), is_dir=True)
        raise PathNotFoundError(path)

    async def list(self, path: str) -> list[str]:
        prefix = path + "/" if path else ""
        children = set()
        for key in list(self._objects) + list(self._pending):
            if key.startswith(prefix):
                rest = key[len(prefix) :]
                children.add(prefix + rest.split("/", 1)[0])
        if not children and path:
            raise PathNotFoundError(path)
        return sorted(children)

    async def move(self, src: str, dst: str) -> None:
        if src not in self._objects:
            raise PathNotFoundError(src)
        self._objects[dst] = self._objects.pop(src)

    async def delete(self, path: str) -> None:
        prefix = path + "/"
        found = False
        for table in (self._objects, self._pending):
            for key in [k for k in table if k == path or k.startswith(prefix)]:
                del table[key]
                self._pending_mtime.pop(key, None)
                found = True
        if not found:
            raise PathNotFoundError(path)
