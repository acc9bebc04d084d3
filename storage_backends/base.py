"""The storage driver interface.

A driver stores bytes at slash-separated paths and knows nothing of OCI. Paths are
relative ("blobs/sha256/ab/abcd..."), never start with "/" and never contain "." or ".."
components; `checked.CheckedDriver` enforces that for every driver.

Writers are the one subtle part. `writer(path)` starts a new object at `path`;
`writer(path, append=True)` resumes one that an earlier writer `close()`d (possibly in
another process or replica). Until `commit()` the data need not be readable with
`reader`/`get_content`. `commit()` makes it durable and readable; `cancel()` discards it.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Self

from .errors import PathNotFoundError, StorageError

if TYPE_CHECKING:
    from .plainhttp import HttpBody


@dataclasses.dataclass(frozen=True, slots=True)
class FileInfo:
    path: str
    size: int
    mtime: float
    is_dir: bool = False


class FileWriter(abc.ABC):
    """A resumable writer. `size` is the number of bytes durably accepted so far."""

    path: str

    @property
    @abc.abstractmethod
    def size(self) -> int: ...

    @abc.abstractmethod
    async def write(self, data: bytes) -> int:
        """Append `data`; returns len(data)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Flush and release; the data can be resumed with writer(path, append=True)."""

    @abc.abstractmethod
    async def commit(self) -> None:
        """Make the data durable and readable at `path`. The writer is closed afterwards."""

    @abc.abstractmethod
    async def cancel(self) -> None:
        """Discard everything written. The writer is closed afterwards."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            await self.cancel()
        else:
            await self.close()


class StorageDriver(abc.ABC):
    """Bytes at paths. About ten async methods; keep it that small."""

    name: str = "abstract"

    @abc.abstractmethod
    async def get_content(self, path: str) -> bytes: ...

    @abc.abstractmethod
    async def put_content(self, path: str, data: bytes) -> None:
        """Atomically replace the object at `path`."""

    @abc.abstractmethod
    async def reader(self, path: str, offset: int = 0, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        """An iterator over the bytes from `offset`.

        Raises PathNotFoundError / InvalidOffsetError when awaited, before any byte is
        produced, so a caller can still answer with an error status.
        """

    @abc.abstractmethod
    async def writer(self, path: str, append: bool = False, *, scratch: bool = False) -> FileWriter:
        """A writer of `path`, new (replacing what is there) or, with `append`, resuming one.

        `scratch`: the caller records the writer nowhere before it commits or cancels it (a
        blob received in one request), so its creation need not be durable on its own; commit()
        still makes everything durable."""

    @abc.abstractmethod
    async def stat(self, path: str) -> FileInfo: ...

    @abc.abstractmethod
    async def list(self, path: str) -> list[str]:
        """Direct children of directory `path` as full paths, sorted."""

    @abc.abstractmethod
    async def move(self, src: str, dst: str) -> None:
        """Atomically move `src` to `dst`, replacing `dst`."""

    @abc.abstractmethod
    async def delete(self, path: str) -> None:
        """Delete the object or the whole tree at `path`."""

    async def delete_many(self, paths: Sequence[str]) -> list[tuple[str, StorageError]]:
        """Delete the objects (files, not trees) at `paths`, in as few round trips as the store
        allows. A path already gone is no failure. Returns the paths not deleted, with why; a
        failure of some paths does not stop the others. This default deletes one by one."""
        failures: list[tuple[str, StorageError]] = []
        for path in paths:
            try:
                await self.delete(path)
            except PathNotFoundError:
                pass
            except Exception as exc:  # CheckedDriver makes it a StorageError
                failures.append((path, exc))  # type: ignore[arg-type]
        return failures

    async def redirect_url(self, path: str, method: str = "GET", expires_in: int | None = None) -> str | None:
        """A URL a client can fetch the object from directly, or None if unsupported.

        `expires_in` is the URL's lifetime in seconds; None means the driver's configured one.
        """
        return None

    async def socket_reader(self, path: str, offset: int, length: int, etag: str | None = None) -> HttpBody | None:
        """Bytes [offset, offset + length) of the object as the body of a plain-HTTP response,
        on a socket of its own, for the zero-copy relay (hub/relay.py); None where the driver
        cannot give one (not an HTTP store, a TLS endpoint, turned off).

        Without `etag` (the first open) anything unusual also gives None: the caller then
        uses reader(), which reports errors properly. With `etag` (resuming after the
        connection broke) the bytes must come from the object that had that ETag; the driver
        retries by its own policy and raises StorageError when it gives up."""
        return None

    async def walk(self, path: str) -> AsyncIterator[FileInfo]:
        """Every file (not directory) below `path`, depth first, in sorted order."""
        try:
            children = await self.list(path)
        except PathNotFoundError:
            return
        for child in children:
            info = await self.stat(child)
            if info.is_dir:
                async for sub in self.walk(child):
                    yield sub
            else:
                yield info

    def local_path(self, path: str) -> Path | None:
        """The local file that holds the bytes at `path` (committed, or being written by a
        writer), for sendfile and for readers that follow a write; None if there is none."""
        return None

    async def aclose(self) -> None:
        """Release pools and clients."""
