"""Single flight: one upstream fetch per key in this process, shared by every waiting client.

`Coalescer` runs one task per key and lets any number of callers await its result. The task
is independent of its callers: a caller that goes away (a client disconnect cancels its
handler) stops waiting, and the fetch goes on for the others and for the cache.

`BlobFlight` is the state of one blob being fetched. Clients read the blob's bytes from a
local file at their own offsets as the fetch writes them, so a client that joins late starts
at byte 0 without a second download, and a slow client holds back nobody. When storage is a
local filesystem that file is the upload file storage is writing (the bytes are written
once); otherwise the fetch task appends each chunk, as it arrives from the upstream, to an
anonymous spool file (unlinked at creation, so nothing is left behind even on a crash) while
the same chunks stream into storage. Readers send spans of the file with sendfile(2) where
the event loop can, or read it in chunks of at most READ_SIZE bytes: memory stays bounded.

Until the fetch has verified the digest, readers are held back one byte short of the end:
a client is never sent a whole-looking blob that then fails verification. The last byte goes
out as soon as the bytes hash right, while the fetch goes on making them durable in storage:
a cold pull then costs about as much as a direct one, not that plus a storage commit. A failed fetch
wakes every reader with FlightFailed; the HTTP layer then cuts the connection, which is how
a client of a streamed response with a Content-Length sees a failed transfer.
"""

from __future__ import annotations

import asyncio
import io
import os
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

READ_SIZE = 1 << 20


def forget_task(tasks: dict, key, task: asyncio.Task) -> None:
    """Done callback: drop a finished shared task and retrieve its error (its waiters may be gone)."""
    if tasks.get(key) is task:
        del tasks[key]
    if not task.cancelled():
        task.exception()


class Coalescer:
    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task] = {}

    async def run(self, key: str, factory: Callable[[], Awaitable[T]],
                  on_join: Callable[[], None] | None = None) -> T:
        task = self._tasks.get(key)
        if task is None:
            task = asyncio.create_task(factory(), name=f"proxy {key}")
            self._tasks[key] = task
            task.add_done_callback(lambda t: forget_task(self._tasks, key, t))
        elif on_join is not None:
            on_join()
        return await asyncio.shield(task)

    async def aclose(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class FlightFailed(Exception):
    """The fetch a reader was following failed; `error` says why."""

    def __init__(self, error: BaseException):
        super().__init__(str(error))
        self.error = error


class BlobFlight:
    def __init__(self, upstream: str, repository: str, digest: str, spool_dir: str):
        self.upstream = upstream
        self.repository = repository
        self.digest = digest
        self.spool_dir = spool_dir
        self.size: int | None = None  # the upstream's Content-Length, once known
        self.received = 0
        self.finished = False
        self.error: BaseException | None = None
        # Every byte arrived and hashes to the digest (the commit into storage may still run).
        self.verified = False
        # Finished without a spool: the blob was already in storage (another replica fetched it).
        self.local = False
        # More repositories of this upstream that asked for the blob while it was on its way.
        self.also_link: set[str] = set()
        self.started = asyncio.Event()  # streaming began, or the flight finished
        self.task: asyncio.Task | None = None
        self._progress = asyncio.Event()
        self._fd: int | None = None
        self._spooling = False
        self._readers = 0

    # The fetch task's side (an UploadWatch of the storage upload, plus append) -------------------
    def begin(self, size: int | None) -> None:
        self.size = size

    def opened(self, local_file: str | None) -> None:
        """The upload is open; `local_file` is where storage writes its bytes, if local."""
        if local_file is not None:
            self._fd = os.open(local_file, os.O_RDONLY)
            self._spooling = False
        else:
            self._fd = _anonymous_file(self.spool_dir)
            self._spooling = True
        self.started.set()

    def append(self, chunk: bytes) -> None:
        """A chunk from the upstream, on its way into storage."""
        if not self._spooling:
            return  # readers follow the storage file instead (written())
        # Plain writes on the event loop: they land in the page cache in microseconds, and
        # readers are woken only once the bytes are there. pwrite: readers' sendfile may move
        # the descriptor's offset.
        view = memoryview(chunk)
        while view:
            written = os.pwrite(self._fd, view, self.received)
            view = view[written:]
            self.received += written
        self._wake()

    def written(self, total: int) -> None:
        if not self._spooling:
            self.received = total
            self._wake()

    def hashed(self) -> None:
        self.verified = True
        self._wake()

    def finish(self, error: BaseException | None = None, *, local: bool = False) -> None:
        self.finished = True
        self.error = error
        self.local = local and error is None
        self.started.set()
        self._wake()
        self._close_if_unused()

    # Readers ---------------------------------------------------------------------------------------
    def attach(self) -> bool:
        """Become a reader of the file; False if the flight has already finished (read storage)."""
        if self.finished or self._fd is None:
            return False
        self._readers += 1
        return True

    def detach(self) -> None:
        self._readers -= 1
        self._close_if_unused()

    def file(self) -> io.FileIO:
        """The blob's local file, for an attached reader's sendfile (valid until it detaches)."""
        return io.FileIO(self._fd, "rb", closefd=False)

    async def spans(self, start: int, end: int | None) -> AsyncIterator[tuple[int, int]]:
        """(offset, length) spans covering bytes [start, end) of the blob (to its end when `end`
        is None) in the file, each as soon as it is readable.

        Only for an attached reader. Raises FlightFailed if the fetch fails first."""
        offset = start
        while end is None or offset < end:
            progress = self._progress
            limit = self._readable() if end is None else min(self._readable(), end)
            if offset < limit:
                yield offset, limit - offset
                offset = limit
                continue
            if self.error is not None and not (self.verified and offset >= self.received):
                raise FlightFailed(self.error)
            if (self.finished or self.verified) and offset >= self.received:
                return
            await progress.wait()

    async def chunks(self, start: int, end: int | None) -> AsyncIterator[bytes]:
        """Bytes [start, end) as `spans`, read in pieces of at most READ_SIZE."""
        async for offset, length in self.spans(start, end):
            stop = offset + length
            while offset < stop:
                data = os.pread(self._fd, min(stop - offset, READ_SIZE), offset)
                if not data:
                    raise FlightFailed(RuntimeError("blob file shorter than recorded"))
                offset += len(data)
                yield data

    def _readable(self) -> int:
        if self.verified or (self.finished and self.error is None):
            return self.received
        if self.size is not None:
            return min(self.received, self.size - 1)
        return self.received

    def _wake(self) -> None:
        progress, self._progress = self._progress, asyncio.Event()
        progress.set()

    def _close_if_unused(self) -> None:
        if self.finished and self._readers == 0 and self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _anonymous_file(directory: str) -> int:
    """A read-write file descriptor of a file without a name (O_TMPFILE where the filesystem has it)."""
    try:
        return os.open(directory, os.O_TMPFILE | os.O_RDWR, 0o600)
    except (AttributeError, OSError):
        fd, path = tempfile.mkstemp(dir=directory, prefix="spool-")
        os.unlink(path)
        return fd
