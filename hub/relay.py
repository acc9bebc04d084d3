"""Zero-copy relay: blob bytes go from the storage server's socket to the client's with
splice(2), through a pipe, without entering the process.

Used for blob GETs that are relayed, not redirected, when storage can give the object as a
plain-HTTP response on a socket of its own (StorageDriver.socket_reader: S3 or OSS on an
http:// endpoint) and the client's connection is plain TCP. The other way, through the S3
client, every byte is copied out of the kernel, through aiohttp's buffers and back in: on
this project's 2-core bench that made the registry the busiest process of a 1 GiB pull.

How it fits with aiohttp: the handler prepares the response (the headers go out), waits
until the transport has written them, stops the transport reading, and hands a duplicate of
the client socket's descriptor to a worker thread, which moves the body (first the bytes that
arrived with the storage response's head, then the socket's) and returns. The handler then
resumes the transport and finishes the response as aiohttp's own sendfile path does. The
duplicate keeps the socket alive for the thread even if the transport closes meanwhile.

Failures: a storage connection that breaks or stalls is reopened at the byte it reached,
with If-Match on the ETag (the driver retries by its policy); once the status line is out,
anything that cannot be resumed cuts the client's connection short of the Content-Length,
which is how an HTTP client learns that a transfer failed. A client that goes away ends
the thread at its next write.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import select
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web

from storage_backends import StorageDriver, StorageError
from storage_backends.plainhttp import HttpBody

log = logging.getLogger("daohub.relay")

AVAILABLE = hasattr(os, "splice") and hasattr(fcntl, "F_SETPIPE_SZ")
PIPE_SIZE = 1 << 20
# How often a waiting thread looks at its stop flag, in milliseconds.
POLL_MS = 250
# Breaks of the storage connection in a row, with no byte moved between them, before giving up.
MAX_IDLE_BREAKS = 3
_MOVE = (os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK) if AVAILABLE else 0
_CLIENT_GONE = (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.ESHUTDOWN, errno.EBADF)


class ClientGone(Exception):
    """The client's connection closed while its body was being sent."""


class SourceBroke(Exception):
    """The storage connection ended, failed or stalled before its body was complete."""


class Relay:
    """Worker threads that move relayed blob bodies with splice(2); one thread per transfer."""

    def __init__(self, max_transfers: int = 64, stall_seconds: float = 60.0):
        self.max_transfers = max_transfers
        self.stall_seconds = stall_seconds
        self.active = 0
        self.transfers = 0  # transfers started, for the metrics and the tests
        self._pool: ThreadPoolExecutor | None = None

    def usable(self, request: web.BaseRequest) -> bool:
        """Whether this request's body can be spliced: Linux, a plain TCP client, a free thread."""
        if not AVAILABLE or self.active >= self.max_transfers:
            return False
        transport = request.transport
        if transport is None or transport.is_closing() or transport.get_extra_info("sslcontext") is not None:
            return False
        sock = transport.get_extra_info("socket")  # uvloop's stand-in has an int `type`
        return sock is not None and sock.type == socket.SOCK_STREAM

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    async def send(self, request: web.BaseRequest, storage: StorageDriver, path: str, offset: int,
                   body: HttpBody) -> None:
        """Send `body` (bytes [offset, offset + body.length) of the object at `path`) to the
        client of `request`, whose response head has been prepared.

        Raises ClientGone when the client went away and StorageError when storage could not
        give the rest; either way the connection must then be cut (the head is out)."""
        loop = asyncio.get_running_loop()
        transport = request.transport
        if transport is None:
            body.close()
            raise ClientGone("connection lost before the body")
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.max_transfers, thread_name_prefix="relay")
        self.active += 1
        self.transfers += 1
        client = -1
        pipe: tuple[int, int] | None = None
        stop = threading.Event()
        try:
            await _written(transport)
            client = os.dup(transport.get_extra_info("socket").fileno())
            pipe = _pipe()
            transport.pause_reading()
            position, end, etag = offset, offset + body.length, body.headers.get("etag")
            idle_breaks = 0
            while True:
                job = loop.run_in_executor(self._pool, _move, body.fileno(), client, pipe, body.head,
                                           body.length - len(body.head), stop, self.stall_seconds)
                try:
                    moved, broke = await asyncio.shield(job)
                except asyncio.CancelledError:
                    stop.set()
                    with contextlib.suppress(BaseException):
                        await job  # the thread must let go of the descriptors before they close
                    raise
                finally:
                    body.close()
                position += moved
                if broke is None:
                    return
                idle_breaks = 0 if moved else idle_breaks + 1
                if idle_breaks >= MAX_IDLE_BREAKS:
                    raise StorageError(f"storage connection for {path} broke {idle_breaks} times at byte "
                                       f"{position} with nothing read: {broke}")
                log.info("storage connection for %s broke at byte %d (%s); resuming", path, position, broke)
                resumed = await storage.socket_reader(path, position, end - position, etag or "*")
                if resumed is None:
                    raise StorageError(f"storage could not resume {path} at byte {position}")
                body = resumed
        finally:
            body.close()
            if pipe is not None:
                os.close(pipe[0])
                os.close(pipe[1])
            if client >= 0:
                os.close(client)
            self.active -= 1
            if not transport.is_closing():
                transport.resume_reading()


async def _written(transport: asyncio.Transport) -> None:
    """Wait until the transport has handed everything written to it to the kernel."""
    while transport.get_write_buffer_size():
        if transport.is_closing():
            raise ClientGone("connection closed before the body")
        await asyncio.sleep(0.001)


def _pipe() -> tuple[int, int]:
    read, write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    with contextlib.suppress(OSError):  # over the user's pipe quota: the default 64 KiB works too
        fcntl.fcntl(write, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    return read, write


def _move(source: int, client: int, pipe: tuple[int, int], head: bytes, want: int, stop: threading.Event,
          stall_seconds: float) -> tuple[int, BaseException | None]:
    """Worker thread: write `head` to the client, then splice `want` bytes from `source` to it.

    Returns (bytes the client was given, None) when done, or (bytes given, why) when the source
    broke or stalled: whatever it had delivered has been passed on. Raises ClientGone."""
    given = _write_all(client, head, stop)
    pipe_read, pipe_write = pipe
    capacity = fcntl.fcntl(pipe_write, fcntl.F_GETPIPE_SZ)
    received = in_pipe = 0
    broke: BaseException | None = None
    poller = select.poll()
    last_input = time.monotonic()
    while in_pipe or (received < want and broke is None):
        if stop.is_set():
            raise ClientGone("the request was cancelled")
        progressed = False
        if received < want and broke is None and in_pipe < capacity:
            try:
                n = os.splice(source, pipe_write, min(capacity - in_pipe, want - received), flags=_MOVE)
                if n == 0:
                    broke = SourceBroke(f"closed after {received} of {want} bytes")
                received += n
                in_pipe += n
                progressed = n > 0
                if n:
                    last_input = time.monotonic()
            except BlockingIOError:
                pass
            except OSError as exc:
                broke = exc
        if in_pipe:
            try:
                n = os.splice(pipe_read, client, in_pipe, flags=_MOVE)
                in_pipe -= n
                given += n
                progressed = progressed or n > 0
            except BlockingIOError:
                pass
            except OSError as exc:
                if exc.errno in _CLIENT_GONE:
                    raise ClientGone(str(exc)) from None
                raise
        if progressed:
            continue
        reading = received < want and broke is None and in_pipe < capacity
        if reading and not in_pipe and time.monotonic() - last_input > stall_seconds:
            broke = SourceBroke(f"no byte for {stall_seconds:.0f} s after {received} of {want}")
            continue
        _wait(poller, source if reading else -1, client if in_pipe else -1)
    return given, broke


def _write_all(client: int, data: bytes, stop: threading.Event) -> int:
    view = memoryview(data)
    poller = select.poll()
    while view:
        try:
            view = view[os.write(client, view):]
        except BlockingIOError:
            if stop.is_set():
                raise ClientGone("the request was cancelled") from None
            _wait(poller, -1, client)
        except OSError as exc:
            if exc.errno in _CLIENT_GONE:
                raise ClientGone(str(exc)) from None
            raise
    return len(data)


def _wait(poller: select.poll, readable: int, writable: int) -> None:
    if readable >= 0:
        poller.register(readable, select.POLLIN)
    if writable >= 0:
        poller.register(writable, select.POLLOUT)
    try:
        poller.poll(POLL_MS)
    finally:
        if readable >= 0:
            poller.unregister(readable)
        if writable >= 0:
            poller.unregister(writable)
