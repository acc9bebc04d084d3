"""NFSv3 driver: speaks NFS itself through libnfs, so no kernel mount (and no privileges) needed.

URL: `nfs://server/export/path[?nfsport=N&mountport=N&uid=N&gid=N]`. The path is the export's
real path (NFSv3 mounts do not use NFSv4 pseudo paths) and may go below the export; a missing
directory below the export is created. The query arguments are libnfs's own: with explicit
ports the portmapper is not asked. NFSv4 is refused: libnfs 4.0's NFSv4 writes of 4 KB or
more are broken.

Threads. libnfs's synchronous calls block, so they run on `threads` worker threads. Each worker
is a single thread that owns one libnfs context (one TCP connection and mount) for its life:
a context is never touched by two threads. The C library is called through ctypes, which
releases the GIL for the call's duration. (PyPI's SWIG binding of the same library holds the
GIL through every network round trip, so a thread pool over it would stall the event loop.)
A reader or writer is pinned to one worker, because its open file belongs to that worker's
context; everything else goes to the least busy worker.

Layout and atomicity are those of the filesystem driver, so one export can be shared by many
replicas: a writer's data file is the object itself (any replica resumes it by path; the size
is the file's size), `put_content` writes a uniquely named temp file beside the target, COMMITs
it (fsync) and renames it into place, and `move` is one RENAME. NFSv3 servers commit
namespace operations (CREATE, MKDIR, RENAME, REMOVE) to stable storage before replying, so
there is no directory fsync to send. Directories are created as needed and pruned when a
delete or move empties them; a create whose directory another replica just pruned retries.

Failures. A lost connection (server restarted or down) is dropped and the call is retried once
on a fresh connection, so the first call after a restart works; while the server stays down
calls fail fast with NfsUnavailableError, and later calls reconnect by themselves. Permission
problems raise NfsPermissionError, a file removed or replaced under an open reader or writer
raises NfsStaleHandleError. A namespace call unanswered after two seconds is sent again on a
fresh connection (ganesha silently drops some requests that race with a directory removal and
waits for a retransmission); a call unanswered after `timeout` seconds means a hung server
and is not retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import dataclasses
import errno
import functools
import os
import stat as stat_mod
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .base import FileInfo, FileWriter, StorageDriver
from .errors import InvalidOffsetError, PathNotFoundError, StorageError, WriterClosedError
from .paths import parent

# Errors -----------------------------------------------------------------------------------


class NfsError(StorageError):
    """An NFS call failed. `errno` is the error number libnfs reported (0 if none)."""

    def __init__(self, message: str, err: int = 0):
        super().__init__(message)
        self.errno = err


class NfsUnavailableError(NfsError):
    """The NFS server cannot be reached, refused the mount, or did not answer in time."""


class NfsPermissionError(NfsError):
    """The server denied the operation (export options, squashing, file permissions)."""


class NfsStaleHandleError(NfsError):
    """An open file was removed or replaced on the server (by another client) while in use."""


class _CallError(Exception):
    """A libnfs call failed; mapped to a StorageError at the operation or worker boundary."""

    def __init__(self, err: int, message: str):
        super().__init__(message)
        self.errno = err


class _Disconnected(Exception):
    """The connection is unusable; `retry` says whether a fresh one may repeat the call."""

    def __init__(self, message: str, retry: bool):
        super().__init__(message)
        self.retry = retry


_CONNECTION_ERRNOS = {errno.EIO, errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED, errno.ENOTCONN,
                      errno.EPIPE, errno.ESHUTDOWN, errno.EHOSTUNREACH, errno.ENETUNREACH}
_TIMEOUT_ERRNOS = {errno.ETIMEDOUT, errno.EINTR}  # libnfs reports its RPC timeout as EINTR
# A directory removed (pruned by another replica) between the LOOKUP that found it and the call
# that uses it answers NFS3ERR_STALE: for an operation by path that is "not there" like ENOENT.
_VANISHED_ERRNOS = {errno.ENOENT, errno.ESTALE}
_MISSING_ERRNOS = _VANISHED_ERRNOS | {errno.ENOTDIR, errno.EISDIR}
_PERMISSION_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS}


def _public_error(exc: _CallError) -> NfsError:
    if exc.errno in _PERMISSION_ERRNOS:
        return NfsPermissionError(f"NFS permission denied: {exc}", exc.errno)
    if exc.errno == errno.ESTALE:
        return NfsStaleHandleError(f"NFS stale file handle (removed or replaced by another client): {exc}",
                                   exc.errno)
    return NfsError(f"NFS error: {exc}", exc.errno)


# libnfs through ctypes ----------------------------------------------------------------------

_P = ctypes.c_void_p


class _Stat(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in (
        "dev", "ino", "mode", "nlink", "uid", "gid", "rdev", "size", "blksize", "blocks",
        "atime", "mtime", "ctime", "atime_nsec", "mtime_nsec", "ctime_nsec", "used")]


class _Timeval(ctypes.Structure):
    _fields_ = [("sec", ctypes.c_long), ("usec", ctypes.c_long)]


class _Dirent(ctypes.Structure):
    pass


_Dirent._fields_ = [
    ("next", ctypes.POINTER(_Dirent)), ("name", ctypes.c_char_p), ("inode", ctypes.c_uint64),
    ("type", ctypes.c_uint32), ("mode", ctypes.c_uint32), ("size", ctypes.c_uint64),
    ("atime", _Timeval), ("mtime", _Timeval), ("ctime", _Timeval),
    ("uid", ctypes.c_uint32), ("gid", ctypes.c_uint32), ("nlink", ctypes.c_uint32),
    ("dev", ctypes.c_uint64), ("rdev", ctypes.c_uint64), ("blksize", ctypes.c_uint64),
    ("blocks", ctypes.c_uint64), ("used", ctypes.c_uint64),
    ("atime_nsec", ctypes.c_uint32), ("mtime_nsec", ctypes.c_uint32), ("ctime_nsec", ctypes.c_uint32),
]


class _Url(ctypes.Structure):
    _fields_ = [("server", ctypes.c_char_p), ("path", ctypes.c_char_p), ("file", ctypes.c_char_p)]


_SIGNATURES: dict[str, tuple[Any, list[Any]]] = {
    "nfs_init_context": (_P, []),
    "nfs_destroy_context": (None, [_P]),
    "nfs_get_error": (ctypes.c_char_p, [_P]),
    "nfs_parse_url_dir": (ctypes.POINTER(_Url), [_P, ctypes.c_char_p]),
    "nfs_destroy_url": (None, [ctypes.POINTER(_Url)]),
    "nfs_set_timeout": (None, [_P, ctypes.c_int]),
    "nfs_set_autoreconnect": (None, [_P, ctypes.c_int]),
    "nfs_set_dircache": (None, [_P, ctypes.c_int]),
    "nfs_set_tcp_syncnt": (None, [_P, ctypes.c_int]),
    "nfs_mount": (ctypes.c_int, [_P, ctypes.c_char_p, ctypes.c_char_p]),
    "nfs_stat64": (ctypes.c_int, [_P, ctypes.c_char_p, ctypes.POINTER(_Stat)]),
    "nfs_fstat64": (ctypes.c_int, [_P, _P, ctypes.POINTER(_Stat)]),
    "nfs_open": (ctypes.c_int, [_P, ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(_P)]),
    "nfs_create": (ctypes.c_int, [_P, ctypes.c_char_p, ctypes.c_int, ctypes.c_int, ctypes.POINTER(_P)]),
    "nfs_close": (ctypes.c_int, [_P, _P]),
    "nfs_pread": (ctypes.c_int, [_P, _P, ctypes.c_uint64, ctypes.c_uint64, _P]),
    "nfs_pwrite": (ctypes.c_int, [_P, _P, ctypes.c_uint64, ctypes.c_uint64, _P]),
    "nfs_fsync": (ctypes.c_int, [_P, _P]),
    "nfs_ftruncate": (ctypes.c_int, [_P, _P, ctypes.c_uint64]),
    "nfs_mkdir2": (ctypes.c_int, [_P, ctypes.c_char_p, ctypes.c_int]),
    "nfs_rmdir": (ctypes.c_int, [_P, ctypes.c_char_p]),
    "nfs_unlink": (ctypes.c_int, [_P, ctypes.c_char_p]),
    "nfs_rename": (ctypes.c_int, [_P, ctypes.c_char_p, ctypes.c_char_p]),
    "nfs_opendir": (ctypes.c_int, [_P, ctypes.c_char_p, ctypes.POINTER(_P)]),
    "nfs_readdir": (ctypes.POINTER(_Dirent), [_P, _P]),
    "nfs_closedir": (None, [_P, _P]),
}


@functools.cache
def _libnfs() -> ctypes.CDLL:
    name = ctypes.util.find_library("nfs") or "libnfs.so.13"
    try:
        lib = ctypes.CDLL(name)  # CDLL (not PyDLL): the GIL is released during each call
    except OSError as exc:
        raise NfsError(f"libnfs is not installed ({name}: {exc}); install Debian's libnfs13") from None
    for fn, (restype, argtypes) in _SIGNATURES.items():
        func = getattr(lib, fn)
        func.restype = restype
        func.argtypes = argtypes
    return lib


_FILE_MODE = 0o644
_DIR_MODE = 0o755
_READ_BLOCK = 4 << 20
_WRITE_BLOCK = 64 << 20
_CREATE_ATTEMPTS = 10  # a create retried after another replica pruned its directory
_TCP_SYNCNT = 3
# ganesha drops (never answers) a request that hits a transient internal error, such as a LOOKUP
# in a directory another replica removes at that moment, expecting the client to retransmit;
# libnfs does not retransmit over TCP. So a namespace call first gets this short deadline, then
# is sent again on a fresh connection with the full timeout. (libnfs counts whole seconds.)
_RETRANSMIT_MS = 2000


def _nfs_path(path: str) -> bytes:
    return ("/" + path).encode()


class _Connection:
    """One libnfs context: a TCP connection and a mount. Created and used by one thread only."""

    def __init__(self, lib: ctypes.CDLL, url: str, timeout_ms: int):
        self.lib = lib
        self.timeout_ms = timeout_ms
        # Namespace calls (LOOKUP, MKDIR, CREATE, RENAME, ...) get a short first deadline while
        # `quick` is set: see _RETRANSMIT_MS. Data calls always get the full timeout.
        self.quick = False
        self._deadline_ms = timeout_ms
        self.ctx = self._mount(url, timeout_ms)

    def _new_context(self, url: str, timeout_ms: int) -> tuple[int, bytes, bytes]:
        lib = self.lib
        ctx = lib.nfs_init_context()
        if not ctx:
            raise NfsError("could not create an NFS context (out of memory?)")
        # An unreachable host fails after a few SYNs (seconds), not the kernel's two minutes;
        # the URL's tcp-syncnt argument, applied next, may say otherwise.
        lib.nfs_set_tcp_syncnt(ctx, _TCP_SYNCNT)
        parsed = lib.nfs_parse_url_dir(ctx, url.encode())  # also applies the URL's arguments
        if not parsed:
            message = (lib.nfs_get_error(ctx) or b"").decode(errors="replace")
            lib.nfs_destroy_context(ctx)
            raise NfsError(f"invalid NFS URL {url}: {message}")
        server, path = parsed.contents.server, parsed.contents.path or b"/"
        lib.nfs_destroy_url(parsed)
        # Failures must come back to us (the default reconnects forever inside the call), and
        # nothing may be cached on this side: other replicas change the directories.
        lib.nfs_set_autoreconnect(ctx, 0)
        lib.nfs_set_dircache(ctx, 0)
        lib.nfs_set_timeout(ctx, timeout_ms)
        return ctx, server, path

    def _try_mount(self, url: str, timeout_ms: int) -> tuple[int, int, str]:
        ctx, server, path = self._new_context(url, timeout_ms)
        rc = self.lib.nfs_mount(ctx, server, path)
        if rc == 0:
            return ctx, 0, ""
        message = (self.lib.nfs_get_error(ctx) or b"").decode(errors="replace")
        self.lib.nfs_destroy_context(ctx)
        return 0, -rc, message

    def _mount(self, url: str, timeout_ms: int) -> int:
        ctx, err, message = self._try_mount(url, timeout_ms)
        if ctx:
            return ctx
        split = urlsplit(url)
        where = f"{split.hostname}:{split.path}"
        if err in (errno.EACCES, errno.ENOENT) and self._create_root(split, timeout_ms):
            ctx, err, message = self._try_mount(url, timeout_ms)
            if ctx:
                return ctx
        if err in _PERMISSION_ERRNOS:
            raise NfsPermissionError(f"NFS server refused to mount {where}: {message}", err)
        raise NfsUnavailableError(f"NFS server unavailable: cannot mount {where}: {message}", err)

    def _create_root(self, split, timeout_ms: int) -> bool:
        """Mount the nearest mountable ancestor of the URL's path and create the rest."""
        parts = [p for p in split.path.split("/") if p]
        for keep in range(len(parts) - 1, 0, -1):
            ancestor = split._replace(path="/" + "/".join(parts[:keep])).geturl()
            ctx, _err, _message = self._try_mount(ancestor, timeout_ms)
            if not ctx:
                continue
            self.ctx = ctx
            try:
                _makedirs(self, "/".join(parts[keep:]))
            except (_CallError, _Disconnected):
                return False
            finally:
                self.lib.nfs_destroy_context(ctx)
                self.ctx = 0
            return True
        return False

    def destroy(self) -> None:
        if self.ctx:
            self.lib.nfs_destroy_context(self.ctx)
            self.ctx = 0

    # -- calls: each raises _Disconnected or _CallError on failure ------------------------------
    def _namespace(self) -> None:
        self._deadline_ms = min(_RETRANSMIT_MS, self.timeout_ms) if self.quick else self.timeout_ms
        self.lib.nfs_set_timeout(self.ctx, self._deadline_ms)

    def _data(self) -> None:
        self._deadline_ms = self.timeout_ms
        self.lib.nfs_set_timeout(self.ctx, self._deadline_ms)

    def _fail(self, rc: int, what: str) -> Exception:
        err = -rc
        message = (self.lib.nfs_get_error(self.ctx) or b"").decode(errors="replace")
        text = f"{what}: {os.strerror(err) if err > 0 else 'error'} ({message})"
        if err in _TIMEOUT_ERRNOS:
            # Only an early deadline is worth a second try; after the full one the server is hung.
            return _Disconnected(f"{what}: no answer from the NFS server in time ({message})",
                                 retry=self._deadline_ms < self.timeout_ms)
        if err in _CONNECTION_ERRNOS:
            return _Disconnected(text, retry=True)
        return _CallError(err, text)

    def _check(self, rc: int, what: str) -> int:
        if rc < 0:
            raise self._fail(rc, what)
        return rc

    def _classify_io_failure(self, rc: int, fh: int, what: str) -> Exception:
        # libnfs 4.0 reports I/O on a removed file as EFAULT with a garbled message; a GETATTR
        # on the same handle tells a stale handle apart from other failures.
        exc = self._fail(rc, what)
        if isinstance(exc, _CallError):
            st = _Stat()
            if self.lib.nfs_fstat64(self.ctx, fh, ctypes.byref(st)) == -errno.ESTALE:
                return _CallError(errno.ESTALE, f"{what}: stale file handle")
        return exc

    def stat(self, path: str) -> _Stat:
        self._namespace()
        st = _Stat()
        self._check(self.lib.nfs_stat64(self.ctx, _nfs_path(path), ctypes.byref(st)), f"stat {path}")
        return st

    def fstat(self, fh: int, path: str) -> _Stat:
        self._namespace()
        st = _Stat()
        rc = self.lib.nfs_fstat64(self.ctx, fh, ctypes.byref(st))
        self._check(rc, f"stat {path}")
        return st

    def open(self, path: str, flags: int) -> int:
        self._namespace()
        fh = _P()
        self._check(self.lib.nfs_open(self.ctx, _nfs_path(path), flags, ctypes.byref(fh)), f"open {path}")
        return fh.value

    def create(self, path: str, flags: int) -> int:
        self._namespace()
        fh = _P()
        rc = self.lib.nfs_create(self.ctx, _nfs_path(path), flags, _FILE_MODE, ctypes.byref(fh))
        self._check(rc, f"create {path}")
        return fh.value

    def close(self, fh: int, path: str) -> None:
        self._data()
        self._check(self.lib.nfs_close(self.ctx, fh), f"close {path}")

    def pread(self, fh: int, offset: int, count: int, path: str) -> bytes:
        self._data()
        buf = ctypes.create_string_buffer(count)
        rc = self.lib.nfs_pread(self.ctx, fh, offset, count, buf)
        if rc < 0:
            raise self._classify_io_failure(rc, fh, f"read {path}")
        return ctypes.string_at(buf, rc)

    def write_all(self, fh: int, offset: int, data: bytes, path: str) -> None:
        self._data()
        done, total = 0, len(data)
        while done < total:
            count = min(total - done, _WRITE_BLOCK)
            # Slicing copies, so only blocks of huge buffers and the rest of a short write do.
            chunk = data if count == total else data[done : done + count]
            rc = self.lib.nfs_pwrite(self.ctx, fh, offset + done, count, chunk)
            if rc < 0:
                raise self._classify_io_failure(rc, fh, f"write {path}")
            if rc == 0:
                raise _CallError(errno.EIO, f"write {path}: the server accepted no bytes")
            done += rc

    def fsync(self, fh: int, path: str) -> None:
        self._data()
        rc = self.lib.nfs_fsync(self.ctx, fh)
        if rc < 0:
            raise self._classify_io_failure(rc, fh, f"fsync {path}")

    def ftruncate(self, fh: int, size: int, path: str) -> None:
        self._data()
        self._check(self.lib.nfs_ftruncate(self.ctx, fh, size), f"truncate {path}")

    def mkdir(self, path: str) -> None:
        self._namespace()
        self._check(self.lib.nfs_mkdir2(self.ctx, _nfs_path(path), _DIR_MODE), f"mkdir {path}")

    def rmdir(self, path: str) -> None:
        self._namespace()
        self._check(self.lib.nfs_rmdir(self.ctx, _nfs_path(path)), f"rmdir {path}")

    def unlink(self, path: str) -> None:
        self._namespace()
        self._check(self.lib.nfs_unlink(self.ctx, _nfs_path(path)), f"unlink {path}")

    def rename(self, src: str, dst: str) -> None:
        self._namespace()
        self._check(self.lib.nfs_rename(self.ctx, _nfs_path(src), _nfs_path(dst)), f"rename {src} -> {dst}")

    def listdir(self, path: str) -> list[tuple[str, bool, int, float]]:
        """(name, is_dir, size, mtime) of every entry but '.' and '..' (READDIRPLUS gives attributes)."""
        self._namespace()
        handle = _P()
        self._check(self.lib.nfs_opendir(self.ctx, _nfs_path(path), ctypes.byref(handle)), f"list {path}")
        entries = []
        try:
            while True:
                ent = self.lib.nfs_readdir(self.ctx, handle)
                if not ent:
                    break
                e = ent.contents
                name = e.name.decode("utf-8", "surrogateescape")
                if name in (".", ".."):
                    continue
                mtime = e.mtime.sec + e.mtime_nsec / 1e9
                entries.append((name, stat_mod.S_ISDIR(e.mode), e.size, mtime))
        finally:
            self.lib.nfs_closedir(self.ctx, handle)
        return entries


# Operations, run on a worker thread with that worker's connection ---------------------------


def _missing(exc: _CallError) -> bool:
    return exc.errno in _MISSING_ERRNOS


@contextlib.contextmanager
def _not_found_as(path: str):
    """Turn "no such file or directory" (or a file where a directory should be) into PathNotFoundError."""
    try:
        yield
    except _CallError as exc:
        if _missing(exc):
            raise PathNotFoundError(path) from None
        raise


def _ignore(fn: Callable[[], Any]) -> None:
    """Best-effort cleanup: failures here must not hide the error being handled."""
    try:
        fn()
    except (_CallError, _Disconnected):
        pass


def _makedirs(conn: _Connection, directory: str) -> None:
    if not directory:
        return
    try:
        conn.mkdir(directory)
    except _CallError as exc:
        if exc.errno == errno.EEXIST:
            return
        if exc.errno not in _VANISHED_ERRNOS:
            raise
        _makedirs(conn, parent(directory))
        try:
            conn.mkdir(directory)
        except _CallError as again:
            if again.errno != errno.EEXIST:
                raise


def _prune(conn: _Connection, directory: str) -> None:
    """Remove empty directories from `directory` up to (not including) the root."""
    while directory:
        try:
            conn.rmdir(directory)
        except _CallError:
            return  # not empty, already gone, or not ours to remove
        directory = parent(directory)


def _create(conn: _Connection, path: str, flags: int) -> int:
    """Create `path`, making its directory first if missing (or just pruned by another replica)."""
    for attempt in range(_CREATE_ATTEMPTS):
        try:
            if attempt:
                _makedirs(conn, parent(path))
            return conn.create(path, flags)
        except _CallError as exc:
            if exc.errno not in _VANISHED_ERRNOS or attempt == _CREATE_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def _open_regular(conn: _Connection, path: str, flags: int) -> tuple[int, _Stat]:
    with _not_found_as(path):
        fh = conn.open(path, flags)
        st = conn.fstat(fh, path)
    if not stat_mod.S_ISREG(st.mode):
        _ignore(lambda: conn.close(fh, path))
        raise PathNotFoundError(path)
    return fh, st


class _Handle:
    """An open file of a pinned reader or writer; valid only on the connection that opened it."""

    def __init__(self, conn: _Connection, path: str, fh: int, ino: int):
        self.conn: _Connection | None = conn
        self.path = path
        self.fh = fh
        self.ino = ino
        self.dirty = False

    def current(self, conn: _Connection, flags: int, expected_size: int | None = None) -> int:
        """The handle on `conn`, reopened by path if the connection was replaced since."""
        if self.conn is conn:
            return self.fh
        # The old context is gone (reconnect): its handle died with it.
        fh, st = _open_regular(conn, self.path, flags)
        if st.ino != self.ino:
            _ignore(lambda: conn.close(fh, self.path))
            raise _CallError(errno.ESTALE, f"{self.path} was replaced while open")
        if expected_size is not None and st.size < expected_size:
            _ignore(lambda: conn.close(fh, self.path))
            raise NfsError(f"NFS server lost data of {self.path}: it has {st.size} bytes, "
                           f"{expected_size} were written")
        self.conn, self.fh = conn, fh
        return fh

    def release(self, conn: _Connection, *, sync: bool) -> None:
        """Close; with `sync`, COMMIT what was written first (on a fresh handle after a
        reconnect: COMMIT covers the whole file, whichever connection wrote it)."""
        if sync and self.dirty:
            conn.fsync(self.current(conn, os.O_WRONLY), self.path)
            self.dirty = False
        if self.conn is conn:
            self.conn = None
            conn.close(self.fh, self.path)
        self.conn = None


def _get_content(conn: _Connection, path: str) -> bytes:
    fh, _st = _open_regular(conn, path, os.O_RDONLY)
    parts = []
    offset = 0
    try:
        while True:
            chunk = conn.pread(fh, offset, _READ_BLOCK, path)
            if not chunk:
                return b"".join(parts)
            parts.append(chunk)
            offset += len(chunk)
    finally:
        _ignore(lambda: conn.close(fh, path))


def _put_content(conn: _Connection, path: str, data: bytes) -> None:
    name = path.rsplit("/", 1)[-1]
    tmp = f"{parent(path)}/.tmp-{name}-{uuid.uuid4().hex}".lstrip("/")
    # An unchecked create: the name is unique, and an exclusive create would leave the
    # verifier in the file's times on some servers.
    fh = _create(conn, tmp, os.O_WRONLY)
    try:
        try:
            conn.write_all(fh, 0, data, path)
            conn.fsync(fh, path)
        finally:
            conn.close(fh, path)
        conn.rename(tmp, path)
    except BaseException:
        _ignore(lambda: conn.unlink(tmp))
        raise


def _open_read(conn: _Connection, path: str, offset: int) -> _Handle:
    fh, st = _open_regular(conn, path, os.O_RDONLY)
    if offset < 0 or offset > st.size:
        _ignore(lambda: conn.close(fh, path))
        raise InvalidOffsetError(path, offset)
    return _Handle(conn, path, fh, st.ino)


def _read_at(conn: _Connection, handle: _Handle, offset: int, count: int) -> bytes:
    return conn.pread(handle.current(conn, os.O_RDONLY), offset, count, handle.path)


def _open_write(conn: _Connection, path: str, append: bool) -> tuple[_Handle, int]:
    if append:
        fh, st = _open_regular(conn, path, os.O_WRONLY)
        return _Handle(conn, path, fh, st.ino), st.size
    fh = _create(conn, path, os.O_WRONLY | os.O_TRUNC)
    return _Handle(conn, path, fh, conn.fstat(fh, path).ino), 0


def _write_at(conn: _Connection, handle: _Handle, offset: int, data: bytes) -> None:
    fh = handle.current(conn, os.O_WRONLY, expected_size=offset)
    handle.dirty = True
    conn.write_all(fh, offset, data, handle.path)


def _commit(conn: _Connection, handle: _Handle, size: int) -> None:
    fh = handle.current(conn, os.O_WRONLY, expected_size=size)
    # A write that failed halfway and was then retried by the caller may have left bytes past
    # the writer's size; they are not part of the object.
    if conn.fstat(fh, handle.path).size > size:
        conn.ftruncate(fh, size, handle.path)
    handle.dirty = True
    handle.release(conn, sync=True)


def _close_handle(conn: _Connection, handle: _Handle, sync: bool) -> None:
    handle.release(conn, sync=sync)


def _cancel(conn: _Connection, handle: _Handle | None, path: str) -> None:
    if handle is not None:
        _ignore(lambda: handle.release(conn, sync=False))
    try:
        conn.unlink(path)
    except _CallError as exc:
        if not _missing(exc):
            raise
    _prune(conn, parent(path))


def _stat(conn: _Connection, path: str) -> FileInfo:
    with _not_found_as(path):
        st = conn.stat(path)
    is_dir = stat_mod.S_ISDIR(st.mode)
    return FileInfo(path, 0 if is_dir else st.size, st.mtime + st.mtime_nsec / 1e9, is_dir)


def _list(conn: _Connection, path: str) -> list[FileInfo]:
    """Children of `path` with their attributes, sorted; temp files left out."""
    with _not_found_as(path):
        entries = conn.listdir(path)
    prefix = path + "/" if path else ""
    return sorted(
        (FileInfo(prefix + name, 0 if is_dir else size, mtime, is_dir)
         for name, is_dir, size, mtime in entries if not name.startswith(".tmp-")),
        key=lambda info: info.path,
    )


def _move(conn: _Connection, src: str, dst: str) -> None:
    with _not_found_as(src):
        if not stat_mod.S_ISREG(conn.stat(src).mode):
            raise PathNotFoundError(src)
    for attempt in range(_CREATE_ATTEMPTS):
        try:
            if attempt:
                # The rename failed: either the source went away or the destination's
                # directory is missing (or was just pruned by another replica).
                with _not_found_as(src):
                    conn.stat(src)
                _makedirs(conn, parent(dst))
            conn.rename(src, dst)
            break
        except _CallError as exc:
            if exc.errno not in _VANISHED_ERRNOS or attempt == _CREATE_ATTEMPTS - 1:
                raise
    if parent(src) != parent(dst):
        _prune(conn, parent(src))


def _remove_tree(conn: _Connection, path: str) -> None:
    for name, is_dir, _size, _mtime in conn.listdir(path):
        child = f"{path}/{name}"
        try:
            if is_dir:
                _remove_tree(conn, child)
            else:
                conn.unlink(child)
        except _CallError as exc:
            if exc.errno not in _VANISHED_ERRNOS:  # removed concurrently: fine
                raise
    conn.rmdir(path)


def _delete(conn: _Connection, path: str) -> None:
    try:
        if stat_mod.S_ISDIR(conn.stat(path).mode):
            _remove_tree(conn, path)
        else:
            conn.unlink(path)
    except _CallError as exc:
        if exc.errno in _VANISHED_ERRNOS | {errno.ENOTDIR}:
            raise PathNotFoundError(path) from None
        raise
    _prune(conn, parent(path))


# Workers ------------------------------------------------------------------------------------


class _Worker:
    """One thread owning one connection; calls run on it in submission order."""

    def __init__(self, driver: NfsDriver, index: int):
        self._driver = driver
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"nfs-{index}")
        self.pending = 0  # event loop side only
        self._conn: _Connection | None = None  # worker thread side only

    def _connection(self) -> _Connection:
        if self._conn is None:
            self._conn = _Connection(_libnfs(), self._driver.url, self._driver.timeout_ms)
        return self._conn

    def _discard(self) -> None:
        if self._conn is not None:
            self._conn.destroy()
            self._conn = None

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run fn(connection, *args) on this worker's thread; reconnect and retry once if the link broke."""
        for attempt in (1, 2):
            conn = self._connection()
            conn.quick = attempt == 1
            try:
                return fn(conn, *args)
            except _Disconnected as exc:
                self._discard()
                if attempt == 2 or not exc.retry:
                    raise NfsUnavailableError(f"NFS server {self._driver.server} unavailable: {exc}",
                                              errno.EIO) from None
            except _CallError as exc:
                raise _public_error(exc) from None
        raise AssertionError("unreachable")

    def close(self) -> None:
        """On the worker thread: free the context (an NFSv3 mount holds no server state to undo)."""
        self._discard()


# The driver ---------------------------------------------------------------------------------


class _NfsWriter(FileWriter):
    def __init__(self, driver: NfsDriver, worker: _Worker, handle: _Handle, size: int):
        self._driver = driver
        self._worker = worker
        self._handle: _Handle | None = handle
        self.path = handle.path
        self._size = size
        self._ended = False  # committed or cancelled: a late cancel() must not touch the object

    @property
    def size(self) -> int:
        return self._size

    def _require_open(self) -> _Handle:
        if self._handle is None:
            raise WriterClosedError(self.path)
        return self._handle

    async def write(self, data: bytes) -> int:
        handle = self._require_open()
        n = len(data)
        if n:
            await self._driver._run(_write_at, handle, self._size, bytes(data), worker=self._worker)
            self._size += n
        return n

    async def close(self) -> None:
        if self._handle is not None:
            handle, self._handle = self._handle, None
            # COMMIT before reporting the data as resumable: `size` is what the server keeps.
            await self._driver._run(_close_handle, handle, True, worker=self._worker)

    async def commit(self) -> None:
        handle = self._require_open()
        self._handle = None
        self._ended = True
        await self._driver._run(_commit, handle, self._size, worker=self._worker)

    async def cancel(self) -> None:
        if self._ended:
            return
        self._ended = True
        handle, self._handle = self._handle, None
        await self._driver._run(_cancel, handle, self.path, worker=self._worker)


@dataclasses.dataclass(frozen=True, kw_only=True)
class NfsParams:
    """storage.nfs: NFSv3 spoken by the driver itself, through libnfs (no mount needed)."""

    # nfs://server/export/path ; the export's real path, not an NFSv4 pseudo path.
    url: str
    # Worker threads for blocking libnfs calls (each owns one NFS connection).
    threads: int = 4
    # Seconds before an RPC counts as unanswered (libnfs counts whole seconds).
    timeout: float = 30.0

    def __post_init__(self) -> None:
        split = urlsplit(self.url)
        if split.scheme != "nfs" or not split.hostname or not split.path.strip("/"):
            raise ValueError(f"storage.nfs.url must look like nfs://server/export/path, got {self.url!r}")
        if dict(parse_qsl(split.query)).get("version", "3") != "3":
            raise ValueError("storage.nfs.url: only NFSv3 is supported (libnfs 4.0's NFSv4 writes of 4 KB or "
                             "more are broken)")
        if self.threads < 1:
            raise ValueError(f"storage.nfs.threads must be at least 1, got {self.threads}")
        if self.timeout <= 0:
            raise ValueError(f"storage.nfs.timeout must be positive, got {self.timeout}")


class NfsDriver(StorageDriver):
    name = "nfs"

    def __init__(self, params: NfsParams):
        self.url = params.url
        self.server = urlsplit(params.url).hostname
        self.timeout_ms = max(1, round(params.timeout)) * 1000  # libnfs counts whole seconds
        _libnfs()  # fail now, not at the first request, if the library is missing
        self._workers = [_Worker(self, i) for i in range(params.threads)]
        self._closed = False

    def _pick(self) -> _Worker:
        return min(self._workers, key=lambda w: w.pending)

    async def _run(self, fn: Callable[..., Any], *args: Any, worker: _Worker | None = None) -> Any:
        if self._closed:
            raise StorageError("nfs driver is closed")
        worker = worker or self._pick()
        worker.pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(worker.executor, worker.call, fn, *args)
        finally:
            worker.pending -= 1

    async def get_content(self, path: str) -> bytes:
        return await self._run(_get_content, path)

    async def put_content(self, path: str, data: bytes) -> None:
        await self._run(_put_content, path, bytes(data))

    async def reader(self, path: str, offset: int = 0, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        worker = self._pick()
        handle = await self._run(_open_read, path, offset, worker=worker)

        async def gen() -> AsyncIterator[bytes]:
            position = offset
            try:
                while True:
                    chunk = await self._run(_read_at, handle, position, chunk_size, worker=worker)
                    if not chunk:
                        return
                    position += len(chunk)
                    yield chunk
            finally:
                if not self._closed:
                    try:
                        await self._run(_close_handle, handle, False, worker=worker)
                    except (StorageError, RuntimeError):
                        pass  # the connection is gone, and the handle with it

        return gen()

    async def writer(self, path: str, append: bool = False, *, scratch: bool = False) -> FileWriter:
        worker = self._pick()
        handle, size = await self._run(_open_write, path, append, worker=worker)
        return _NfsWriter(self, worker, handle, size)

    async def stat(self, path: str) -> FileInfo:
        return await self._run(_stat, path)

    async def list(self, path: str) -> list[str]:
        return [info.path for info in await self._run(_list, path)]

    async def walk(self, path: str) -> AsyncIterator[FileInfo]:
        # One READDIRPLUS listing per directory gives sizes and times: no stat per file.
        try:
            children = await self._run(_list, path)
        except PathNotFoundError:
            return
        for info in children:
            if info.is_dir:
                async for sub in self.walk(info.path):
                    yield sub
            else:
                yield info

    async def move(self, src: str, dst: str) -> None:
        await self._run(_move, src, dst)

    async def delete(self, path: str) -> None:
        await self._run(_delete, path)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        for worker in self._workers:
            await loop.run_in_executor(worker.executor, worker.close)
            worker.executor.shutdown(wait=False)
