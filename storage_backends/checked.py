"""One wrapper for every driver: path checks and error normalisation.

Drivers then only have to be correct for well-formed paths, and callers get only
StorageError subclasses, whatever a driver's library raises.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from .base import FileInfo, FileWriter, StorageDriver
from .errors import StorageError
from .paths import check_path
from .plainhttp import HttpBody


def _normalise(path: str, exc: Exception) -> StorageError:
    if isinstance(exc, StorageError):
        return exc
    err = StorageError(f"{type(exc).__name__} on {path}: {exc}")
    err.__cause__ = exc
    return err


class CheckedDriver(StorageDriver):
    def __init__(self, inner: StorageDriver):
        self.inner = inner
        self.name = inner.name

    async def get_content(self, path: str) -> bytes:
        check_path(path)
        try:
            return await self.inner.get_content(path)
        except Exception as exc:
            raise _normalise(path, exc) from exc

    async def put_content(self, path: str, data: bytes) -> None:
        check_path(path)
        try:
            await self.inner.put_content(path, data)
        except Exception as exc:
            raise _normalise(path, exc) from exc

    async def reader(self, path: str, offset: int = 0, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        check_path(path)
        try:
            return await self.inner.reader(path, offset, chunk_size)
        except Exception as exc:
            raise _normalise(path, exc) from exc

    async def writer(self, path: str, append: bool = False, *, scratch: bool = False) -> FileWriter:
        check_path(path)
        try:
            return await self.inner.writer(path, append, scratch=scratch)
        except Exception as exc:
            raise _normalise(path, exc) from exc

    async def stat(self, path: str) -> FileInfo:
        check_path(path, allow_root=True)
        try:
            return await self.inner.stat(path)
        except Exception as exc:
            raise _normalise(path, exc) from exc

    async def list(self, path: str) -> list[str]:
        check_path(path, allow_root=True)
        try:
            return await self.inner.list(path)
        except Exception as exc:
            raise _normalise(path, exc) from exc

    async def move(self, src: str, dst: str) -> None:
        check_path(src)
        check_path(dst)
        try:
            await self.inner.move(src, dst)
        except Exception as exc:
            raise _normalise(src, exc) from exc

    async def delete(self, path: str) -> None:
        check_path(path)
        try:
            await self.inner.delete(path)
        except Exception as exc:
            raise _normalise(path, exc) from exc

    async def delete_many(self, paths: Sequence[str]) -> list[tuple[str, StorageError]]:
        for path in paths:
            check_path(path)
        try:
            failures = await self.inner.delete_many(paths)
        except Exception as exc:  # the whole call failed: every path did
            return [(path, _normalise(path, exc)) for path in paths]
        return [(path, _normalise(path, exc)) for path, exc in failures]

    async def redirect_url(self, path: str, method: str = "GET", expires_in: int | None = None) -> str | None:
        check_path(path)
        try:
            return await self.inner.redirect_url(path, method, expires_in)
        except Exception as exc:
            raise _normalise(path, exc) from exc

    async def socket_reader(self, path: str, offset: int, length: int, etag: str | None = None) -> HttpBody | None:
        check_path(path)
        try:
            return await self.inner.socket_reader(path, offset, length, etag)
        except Exception as exc:
            raise _normalise(path, exc) from exc

    async def walk(self, path: str) -> AsyncIterator[FileInfo]:
        check_path(path, allow_root=True)
        async for info in self.inner.walk(path):
            yield info

    def local_path(self, path: str) -> Path | None:
        check_path(path)
        return self.inner.local_path(path)

    async def aclose(self) -> None:
        await self.inner.aclose()
