"""Blob reads and deletes: GET (with single ranges, sendfile for local files), HEAD, DELETE."""

from __future__ import annotations

import logging
import re

from aiohttp import web

from storage_backends import StorageError

from ..errors import OciError
from ..keys import METRICS, REGISTRY, RELAY, REQUEST_ID
from ..relay import ClientGone

log = logging.getLogger("daohub.blobs")

# Smaller bodies stream through the S3 client's pooled connections: for them a connection of
# their own and a worker thread cost more than the copies they save.
SPLICE_MIN_BYTES = 256 * 1024

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _blob_headers(blob) -> dict[str, str]:
    return {
        "Docker-Content-Digest": str(blob.digest),
        "Content-Type": "application/octet-stream",
        "Accept-Ranges": "bytes",
        "ETag": f'"{blob.digest}"',
        "Cache-Control": "max-age=31536000",
    }


class RangeInvalid(OciError):
    code, status, default_message = "BLOB_UNKNOWN", 416, "requested range not satisfiable"


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """A single byte range as (start, end inclusive); None means the whole blob.

    Malformed or multi-range headers are ignored (RFC 9110 allows serving 200);
    a syntactically valid but unsatisfiable range raises 416.
    """
    if not header:
        return None
    m = _RANGE.match(header.strip())
    if not m:
        return None
    first, last = m.group(1), m.group(2)
    if first == "" and last == "":
        return None
    if first == "":
        suffix = int(last)
        if suffix == 0:
            raise RangeInvalid(headers={"Content-Range": f"bytes */{size}"})
        return max(size - suffix, 0), size - 1
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None  # syntactically invalid: ignore the header
    if start >= size:
        raise RangeInvalid(headers={"Content-Range": f"bytes */{size}"})
    return start, min(end, size - 1)


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
        return web.FileResponse(local, headers=headers, chunk_size=1 << 20)
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
