"""Blob reads and deletes: GET (with a single range, sendfile for local files), HEAD, DELETE."""

from __future__ import annotations

import logging
import re

from aiohttp import web

from storage_backends import StorageError

from ..errors import RangeNotSatisfiable
from ..keys import METRICS, REGISTRY, RELAY, REQUEST_ID
from ..relay import ClientGone

log = logging.getLogger("daohub.blobs")

# Smaller bodies stream through the S3 client's pooled connections: for them a connection of
# their own and a worker thread cost more than the copies they save.
SPLICE_MIN_BYTES = 256 * 1024

# Reads of a local blob file sent over TLS (measured in _BlobFile._sendfile).
TLS_CHUNK_BYTES = 1024 * 1024

# One byte-range-spec of RFC 9110 §14.1.2 (`first-last`, `first-`, `-suffix`); offsets longer
# than int64's 19 digits are past the end of any blob.
_RANGE_SPEC = re.compile(r"(\d*)-(\d*)", re.ASCII)
_PAST_ANY_END = 1 << 63


def _blob_headers(blob) -> dict[str, str]:
    return {
        "Docker-Content-Digest": str(blob.digest),
        "Content-Type": "application/octet-stream",
        "Accept-Ranges": "bytes",
        "ETag": f'"{blob.digest}"',
        "Cache-Control": "max-age=31536000",
    }


def _offset(digits: str) -> int:
    return int(digits) if len(digits) <= 19 else _PAST_ANY_END


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The byte range to serve as (start, end inclusive); None serves the whole blob with 200.

    RFC 9110: a Range of another unit than `bytes` is ignored (§14.2), and so is one that is
    not a valid ranges-specifier (a server MAY ignore it). Several ranges are served as if no
    Range had been sent (a server MAY ignore Range; multipart/byteranges would cost a copy per
    part and no registry client asks for it), unless none of them is satisfiable: RangeNotSatisfiable
    (416) then, as for a single range that starts at or past the end, or a suffix of 0 bytes.
    """
    if not header:
        return None
    unit, sep, ranges = header.partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return None
    specs = [spec.strip(" \t") for spec in ranges.split(",")]
    specs = [spec for spec in specs if spec]  # a list may have empty elements (§5.6.1)
    satisfiable = []
    for spec in specs:
        m = _RANGE_SPEC.fullmatch(spec)
        if m is None or m.group(1) == m.group(2) == "":
            return None
        first, last = m.group(1), m.group(2)
        if first == "":
            suffix = _offset(last)
            if suffix > 0 and size > 0:
                satisfiable.append((max(size - suffix, 0), size - 1))
            continue
        start = _offset(first)
        end = _offset(last) if last else _PAST_ANY_END
        if end < start:
            return None  # not a valid range-spec: the whole header is ignored
        if start < size:
            satisfiable.append((start, min(end, size - 1)))
    if not specs:
        return None
    if not satisfiable:
        raise RangeNotSatisfiable(detail={"size": size}, headers={"Content-Range": f"bytes */{size}"})
    return satisfiable[0] if len(specs) == 1 else None


class _BlobFile(web.FileResponse):
    """A local blob file sent with sendfile(2), for the range `parse_range` chose.

    aiohttp's FileResponse reads the Range header itself and answers 416 to anything it does
    not parse (another unit, several ranges); it is given a copy of the request whose Range is
    the one chosen here, or none."""

    def __init__(self, path, byte_range: tuple[int, int] | None, **kwargs):
        super().__init__(path, **kwargs)
        self._byte_range = byte_range

    async def prepare(self, request: web.BaseRequest):
        headers = request.headers.copy()
        headers.popall("Range", None)
        if self._byte_range is not None:
            headers["Range"] = "bytes={}-{}".format(*self._byte_range)
        return await super().prepare(request.clone(headers=headers))

    async def _sendfile(self, request: web.BaseRequest, fobj, offset: int, count: int):
        """Over TLS there is no sendfile(2), and asyncio's emulation of it (loop.sendfile() on
        a TLS transport) took 7.5 CPU-seconds per GiB here; aiohttp's own read-and-write loop
        in TLS_CHUNK_BYTES reads takes 1.3-1.7 (1 GiB pulled with curl: 12 s before, 2-4 s after;
        64 KiB reads cost 2.7 CPU-seconds, 256 KiB 1.6)."""
        transport = request.transport
        if transport is None or transport.get_extra_info("sslcontext") is None:
            return await super()._sendfile(request, fobj, offset, count)
        self._chunk_size = TLS_CHUNK_BYTES
        writer = await web.StreamResponse.prepare(self, request)
        assert writer is not None
        return await self._sendfile_fallback(writer, fobj, offset, count)


async def head_blob(request: web.Request, name: str, digest: str) -> web.StreamResponse:
    blob = await request.app[REGISTRY].stat_blob(name, digest)
    headers = _blob_headers(blob)
    headers["Content-Length"] = str(blob.size)
    return web.Response(status=200, headers=headers)


async def get_blob(request: web.Request, name: str, digest: str) -> web.StreamResponse:
    registry = request.app[REGISTRY]
    blob = await registry.stat_blob(name, digest)
    headers = _blob_headers(blob)
    redirect = await registry.blob_redirect_url(blob)
    if redirect:
        return web.Response(status=307, headers={"Location": redirect, "Docker-Content-Digest": str(blob.digest)})
    byte_range = parse_range(request.headers.get("Range"), blob.size)
    local = registry.local_blob_path(blob)
    served = blob.size if byte_range is None else byte_range[1] - byte_range[0] + 1
    request.app[METRICS].bytes_served.inc(served)
    if local is not None:
        # aiohttp's FileResponse uses sendfile(2) and implements Range and If-Range itself.
        return _BlobFile(local, byte_range, headers=headers, chunk_size=1 << 20)
    start, end = byte_range if byte_range else (0, blob.size - 1)
    relay = request.app[RELAY]
    body = None
    if served >= SPLICE_MIN_BYTES and relay.usable(request):
        body = await registry.storage.socket_reader(blob.storage_path, start, served)
    chunks = None if body is not None else await registry.open_blob(blob, start)
    response = web.StreamResponse(status=206 if byte_range else 200, headers=headers)
    response.content_length = served
    if byte_range:
        response.headers["Content-Range"] = f"bytes {start}-{end}/{blob.size}"
    try:
        await response.prepare(request)
    except BaseException:
        if body is not None:
            body.close()
        raise
    if body is not None:
        request.app[METRICS].relays.labels("splice").inc()
        try:
            await relay.send(request, registry.storage, blob.storage_path, start, body)
        except (ClientGone, StorageError, OSError) as exc:
            # A client that left is its own business; storage that failed mid-body is ours.
            log.log(logging.INFO if isinstance(exc, ClientGone) else logging.WARNING,
                    "cutting %s %s short: %s request_id=%s", request.method, request.path, exc,
                    request.get(REQUEST_ID))
            # The status line is out: a connection cut short of Content-Length is the only
            # way left to tell the client the transfer failed.
            if request.transport is not None:
                request.transport.abort()
            return response
        await response.write_eof()
        return response
    assert chunks is not None
    request.app[METRICS].relays.labels("stream").inc()
    remaining = served
    async for chunk in chunks:
        if remaining <= 0:
            break
        chunk = chunk[:remaining]
        remaining -= len(chunk)
        await response.write(chunk)
    await response.write_eof()
    return response


async def delete_blob(request: web.Request, name: str, digest: str) -> web.StreamResponse:
    await request.app[REGISTRY].delete_blob(name, digest)
    return web.Response(status=202, headers={"Content-Length": "0"})
