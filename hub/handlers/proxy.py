"""/v2/ requests that reach a pull-through cache repository (hub/proxy/routing.py decides).

Only pulls: manifests, blobs, tags and referrers. Push and delete get 405 UNSUPPORTED
before any authorization, so the client is told why. Content already cached is served by
the ordinary handlers, from the cache repository.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from ..authz import authorize
from ..errors import BlobUnknown, OciError, Unsupported
from ..keys import METRICS, PROXY, REQUEST_ID, UPSTREAM
from ..proxy.flight import BlobFlight, FlightFailed
from ..proxy.routing import NS, Target
from . import blobs, manifests, referrers, tags
from .base import next_link, page_params

log = logging.getLogger("daohub.proxy")


async def dispatch(request: web.Request, route, params: dict[str, str], target: Target) -> web.StreamResponse:
    name = params.pop("name")
    request[UPSTREAM] = target.upstream.name
    handler = _HANDLERS.get(route.name)
    if route.action != "pull" or handler is None:
        raise Unsupported(f"{name} is in the pull-through cache of upstream {target.upstream.name!r}: "
                          f"{route.method} is not supported there",
                          detail={"name": name, "upstream": target.upstream.name})
    # A token for the name as the client sent it is good when that name alone (no ns=, which
    # the token endpoint never sees) leads to the same cache repository.
    also = None
    if name != target.cache:
        plain = target if target.via != NS else await _plain_route(request, name)
        if plain is not None and plain.cache == target.cache:
            also = name
    await authorize(request, "pull", target.cache, also=also)
    return await handler(request, target, name, **params)


async def _plain_route(request: web.Request, name: str) -> Target | None:
    try:
        return await request.app[PROXY].router.route(name)
    except OciError:
        return None


async def get_manifest(request: web.Request, target: Target, name: str, reference: str) -> web.StreamResponse:
    proxy = request.app[PROXY]
    record = await proxy.manifest(target, reference)
    proxy.note_pull(target.cache, record.digest)  # memory only: written in batches
    return await manifests.get_manifest(request, target.cache, reference)


async def head_manifest(request: web.Request, target: Target, name: str, reference: str) -> web.StreamResponse:
    proxy = request.app[PROXY]
    record = await proxy.manifest(target, reference)
    proxy.note_pull(target.cache, record.digest)
    return await manifests.head_manifest(request, target.cache, reference)


async def get_blob(request: web.Request, target: Target, name: str, digest: str) -> web.StreamResponse:
    flight = await request.app[PROXY].blob(target, digest)
    if flight is None:
        return await blobs.get_blob(request, target.cache, digest)
    try:
        return await _stream(request, flight)
    finally:
        flight.detach()


async def head_blob(request: web.Request, target: Target, name: str, digest: str) -> web.StreamResponse:
    try:
        return await blobs.head_blob(request, target.cache, digest)
    except BlobUnknown:
        pass
    size = await request.app[PROXY].head_blob(target, digest)
    headers = {"Docker-Content-Digest": digest, "Content-Type": "application/octet-stream"}
    if size is not None:
        headers["Content-Length"] = str(size)
    return web.Response(status=200, headers=headers)


async def list_tags(request: web.Request, target: Target, name: str) -> web.StreamResponse:
    n, last = page_params(request)
    found = await request.app[PROXY].list_tags(target, n, last)
    if found is None:  # the upstream is unavailable: what the cache holds
        return await tags.list_tags(request, target.cache)
    response = web.json_response({"name": name, "tags": found})
    link = next_link(f"/v2/{name}/tags/list", n, found)
    if link:
        response.headers["Link"] = link
    return response


async def list_referrers(request: web.Request, target: Target, name: str, subject: str) -> web.StreamResponse:
    return await referrers.list_referrers(request, target.cache, subject)


async def _stream(request: web.Request, flight: BlobFlight) -> web.StreamResponse:
    """Serve a blob from a running fetch's spool, as its bytes arrive."""
    size = flight.size
    byte_range = blobs.parse_range(request.headers.get("Range"), size) if size else None
    headers = {"Docker-Content-Digest": flight.digest, "Content-Type": "application/octet-stream",
               "ETag": f'"{flight.digest}"'}
    response = web.StreamResponse(status=206 if byte_range else 200, headers=headers)
    if size is not None:
        start, end = byte_range if byte_range else (0, size - 1)
        stop: int | None = end + 1
        response.content_length = max(stop - start, 0)
        response.headers["Accept-Ranges"] = "bytes"
        if byte_range:
            response.headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    else:
        # No length from the upstream: chunked, so a failure (no final chunk) still shows.
        start, stop = 0, None
        response.enable_chunked_encoding()
    await response.prepare(request)
    served = request.app[METRICS].bytes_served
    try:
        if stop is None or not await _sendfile(request, flight, start, stop, served):
            async for chunk in flight.chunks(start, stop):
                await response.write(chunk)
                served.inc(len(chunk))
    except FlightFailed as exc:
        log.warning("cutting %s %s: the upstream fetch of %s failed: %s request_id=%s", request.method,
                    request.path, flight.digest, exc, request.get(REQUEST_ID))
        # The status line is sent; cutting the connection short of Content-Length (or without
        # the last chunk) is the only way left to tell the client the transfer failed.
        if request.transport is not None:
            request.transport.abort()
        return response
    await response.write_eof()
    return response


async def _sendfile(request: web.Request, flight: BlobFlight, start: int, stop: int, served) -> bool:
    """Send bytes [start, stop) of a running fetch's file with sendfile(2) as they become
    readable: the kernel copies them from the page cache, the event loop does not touch them.
    False, having sent nothing, where the event loop has no sendfile (uvloop)."""
    loop = asyncio.get_running_loop()
    file = flight.file()
    sent = False
    async for offset, length in flight.spans(start, stop):
        transport = request.transport
        if transport is None:
            raise ConnectionResetError("the client went away")
        try:
            await loop.sendfile(transport, file, offset, length, fallback=True)
        except NotImplementedError:
            if sent:
                raise
            return False
        sent = True
        served.inc(length)
    return True


_HANDLERS = {
    "get_manifest": get_manifest,
    "head_manifest": head_manifest,
    "get_blob": get_blob,
    "head_blob": head_blob,
    "list_tags": list_tags,
    "list_referrers": list_referrers,
}
