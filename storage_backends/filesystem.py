"""Local filesystem driver; also the driver for a shared NFS mount used by many replicas.

Durability: committed objects and moved files are fsynced, and so is the directory
that received them. Atomicity: put_content writes a temp file beside the target and
renames it into place; readers never see a partial object. Nothing relies on local
locks, so several processes (or hosts on one NFS export) can share a root.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import os
import shutil
import stat
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from .base import FileInfo, FileWriter, StorageDriver
from .errors import InvalidOffsetError, PathNotFoundError, StorageError, WriterClosedError

_run = asyncio.to_thread
_CREATE_ATTEMPTS = 10  # creates retried after another replica pruned the directory
_RMTREE_HANDLER = "onexc" if sys.version_info >= (3, 12) else "onerror"  # onerror is deprecated in 3.12


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        return  # another replica deleted what was in it and pruned it: nothing left to persist
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _FsWriter(FileWriter):
    def __init__(self, driver: FilesystemDriver, path: str, fd: int, size: int):
        self._driver = driver
        self.path = path
        self._fd: int | None = fd
        self._size = size
        self._ended = False  # committed or cancelled: a late cancel() must not touch the object

    @property
    def size(self) -> int:
        return self._size

    def _require_fd(self) -> int:
        if self._fd is None:
            raise WriterClosedError(self.path)
        return self._fd

    async def write(self, data: bytes) -> int:
        fd = self._require_fd()
        n = len(data)
        if n:
            await _run(_write_all, fd, data)
            self._size += n
        return n

    async def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            await _run(os.close, fd)

    async def commit(self) -> None:
        fd = self._require_fd()
        self._fd = None
        self._ended = True
        full = self._driver._full(self.path)

        def _commit() -> None:
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            _fsync_dir(full.parent)

        await _run(_commit)

    async def cancel(self) -> None:
        if self._ended:
            return
        self._ended = True
        fd, self._fd = self._fd, None
        full = self._driver._full(self.path)

        def _cancel() -> None:
            if fd is not None:
                os.close(fd)
            try:
                os.unlink(full)
            except FileNotFoundError:
                pass
            self._driver._prune(full.parent)

        await _run(_cancel)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


@dataclasses.dataclass(frozen=True, kw_only=True)
class FilesystemParams:
    """storage.filesystem: the directory holding the objects (created if missing). May be a shared
    (NFS) mount used by several replicas at once."""

    root: str

    def __post_init__(self) -> None:
        if not str(self.root):
            raise ValueError("storage.filesystem.root is required")


class FilesystemDriver(StorageDriver):
    name = "filesystem"

    def __init__(self, params: FilesystemParams):
        self.root = Path(params.root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _full(self, path: str) -> Path:
        return self.root / path if path else self.root

    def _prune(self, directory: Path) -> None:
        """Remove empty directories from `directory` up to (not including) the root."""
        while directory != self.root and self.root in directory.parents:
            try:
                directory.rmdir()
            except OSError:
                return
            directory = directory.parent

    def _makedirs(self, directory: Path) -> list[Path]:
        """Create `directory` and its missing parents; returns the ones created, outermost first.

        Raises FileNotFoundError when another replica prunes a parent meanwhile; callers retry.
        """
        missing = []
        while directory != self.root and not directory.is_dir():
            missing.append(directory)
            directory = directory.parent
        created = []
        for directory in reversed(missing):
            try:
                os.mkdir(directory, 0o755)
            except FileExistsError:
                continue
            created.append(directory)
        return created

    def _retrying(self, target: Path, op):
        """Run op() after creating target's parent; retry if a concurrent prune removed it.

        New directories are fsynced into their parents only after op() put something in them:
        an empty directory can be pruned by another replica at any moment, so the gap between
        creating it and using it stays as short as possible.
        """
        for attempt in range(_CREATE_ATTEMPTS):
            try:
                created = self._makedirs(target.parent)
                result = op()
            except FileNotFoundError:
                if attempt == _CREATE_ATTEMPTS - 1:
                    raise
                continue
            for directory in created:
                _fsync_dir(directory.parent)
            return result
        return None

    async def get_content(self, path: str) -> bytes:
        full = self._full(path)

        def _read() -> bytes:
            try:
                return full.read_bytes()
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                raise PathNotFoundError(path) from None

        return await _run(_read)

    async def put_content(self, path: str, data: bytes) -> None:
        full = self._full(path)

        def _put() -> None:
            tmp = full.with_name(f".tmp-{full.name}-{uuid.uuid4().hex}")

            def _write_tmp() -> None:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                try:
                    _write_all(fd, data)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.replace(tmp, full)

            try:
                self._retrying(full, _write_tmp)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            _fsync_dir(full.parent)

        await _run(_put)

    async def reader(self, path: str, offset: int = 0, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        full = self._full(path)

        def _open():
            try:
                f = open(full, "rb")  # noqa: SIM115 - handed to the generator, closed there
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                raise PathNotFoundError(path) from None
            size = os.fstat(f.fileno()).st_size
            if offset < 0 or offset > size:
                f.close()
                raise InvalidOffsetError(path, offset)
            f.seek(offset)
            return f

        f = await _run(_open)

        async def gen() -> AsyncIterator[bytes]:
            try:
                while True:
                    chunk = await _run(f.read, chunk_size)
                    if not chunk:
                        return
                    yield chunk
            finally:
                f.close()

        return gen()

    async def writer(self, path: str, append: bool = False, *, scratch: bool = False) -> FileWriter:
        full = self._full(path)

        def _open() -> tuple[int, int]:
            if append:
                try:
                    fd = os.open(full, os.O_WRONLY | os.O_APPEND)
                except (FileNotFoundError, NotADirectoryError):
                    raise PathNotFoundError(path) from None
            else:
                fd = self._retrying(
                    full, lambda: os.open(full, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
                )
                # Durable before the caller records the upload anywhere: a crash must not lose it.
                # Not for a scratch writer (commit() syncs the directory): on ext4 this fsync
                # waits for a journal commit, which waits for the dirty data of every other
                # upload being written, 20-80 ms each for the parallel blobs of a cold pull.
                if not scratch:
                    _fsync_dir(full.parent)
            return fd, os.fstat(fd).st_size

        fd, size = await _run(_open)
        return _FsWriter(self, path, fd, size)

    async def stat(self, path: str) -> FileInfo:
        full = self._full(path)

        def _stat() -> FileInfo:
            try:
                st = full.stat()
            except (FileNotFoundError, NotADirectoryError):
                raise PathNotFoundError(path) from None
            is_dir = stat.S_ISDIR(st.st_mode)
            return FileInfo(path, 0 if is_dir else st.st_size, st.st_mtime, is_dir)

        return await _run(_stat)

    async def list(self, path: str) -> list[str]:
        full = self._full(path)

        def _list() -> list[str]:
            try:
                names = os.listdir(full)
            except (FileNotFoundError, NotADirectoryError):
                raise PathNotFoundError(path) from None
            prefix = path + "/" if path else ""
            return sorted(prefix + n for n in names if not n.startswith(".tmp-"))

        return await _run(_list)

    async def move(self, src: str, dst: str) -> None:
        full_src, full_dst = self._full(src), self._full(dst)

        def _move() -> None:
            if not full_src.is_file():
                raise PathNotFoundError(src)
            try:
                self._retrying(full_dst, lambda: os.replace(full_src, full_dst))
            except FileNotFoundError:
                raise PathNotFoundError(src) from None
            _fsync_dir(full_dst.parent)
            if full_src.parent != full_dst.parent:
                _fsync_dir(full_src.parent)
                self._prune(full_src.parent)

        await _run(_move)

    async def delete(self, path: str) -> None:
        full = self._full(path)

        def _delete() -> None:
            def vanished(function, name, error) -> None:
                # Another replica deleting the same tree removed this entry first: go on.
                exc = error[1] if isinstance(error, tuple) else error
                if not (isinstance(exc, FileNotFoundError) and name != str(full)):
                    raise exc

            try:
                if full.is_dir() and not full.is_symlink():
                    shutil.rmtree(full, **{_RMTREE_HANDLER: vanished})
                else:
                    full.unlink()
            except (FileNotFoundError, NotADirectoryError):
                raise PathNotFoundError(path) from None
            except OSError as exc:
                if exc.errno == errno.ENOENT:
                    raise PathNotFoundError(path) from None
                raise StorageError(f"delete {path}: {exc}") from exc
            self._prune(full.parent)

        await _run(_delete)

    def local_path(self, path: str) -> Path | None:
        return self._full(path)
