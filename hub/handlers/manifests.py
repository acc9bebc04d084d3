"""Manifests by tag or digest: GET, HEAD, PUT (with ?tag=), DELETE."""

from __future__ import annotations

from aiohttp import web
from multidict import CIMultiDict

from ..keys import ACTOR, REGISTRY, TAG_PULLS
from ..registry.names import looks_like_digest
from .base import manifest_location, read_limited


def _headers(record) -> dict[str, str]:
    return {
        "Content-Type": record.media_type,
        "Docker-Content-Digest": record.digest,
        "ETag": f'"{record.digest}"',
    }


def _pulled(request: web.Request, name: str, reference: str, record) -> None:
    """Note the pull for retention's pull times (hub/registry/pulls.py: in memory, written later)."""
    pulls = request.app.get(TAG_PULLS)
    if pulls is not None:
        by_digest = looks_like_digest(reference)
        pulls.note(name, record.digest if by_digest else reference, by_digest)


async def get_manifest(request: web.Request, name: str, reference: str) -> web.StreamResponse:
    record = await request.app[REGISTRY].get_manifest(name, reference)
    _pulled(request, name, reference, record)
    return web.Response(body=record.content, headers=_headers(record))


async def head_manifest(request: web.Request, name: str, reference: str) -> web.StreamResponse:
    record = await request.app[REGISTRY].get_manifest(name, reference, with_content=False)
    _pulled(request, name, reference, record)
    headers = _headers(record)
    headers["Content-Length"] = str(record.size)
    return web.Response(headers=headers)


async def put_manifest(request: web.Request, name: str, reference: str) -> web.StreamResponse:
    registry = request.app[REGISTRY]
    # Read one byte past the limit so an oversized body is refused, not truncated.
    content = await read_limited(request, registry.max_manifest_bytes)
    tags = list(dict.fromkeys(request.query.getall("tag", [])))
    digest, subject = await registry.put_manifest(name, reference, content, request.headers.get("Content-Type"),
                                                  tags)
    headers = CIMultiDict({
        "Location": manifest_location(name, str(digest)),
        "Docker-Content-Digest": str(digest),
        "Content-Length": "0",
    })
    if subject:
        headers["OCI-Subject"] = subject
    # The push by digest set every tag= (or none, with an error): one OCI-Tag header each.
    for tag in tags:
        headers.add("OCI-Tag", tag)
    return web.Response(status=201, headers=headers)


async def delete_manifest(request: web.Request, name: str, reference: str) -> web.StreamResponse:
    await request.app[REGISTRY].delete_manifest(name, reference, actor=request.get(ACTOR, "anonymous"))
    return web.Response(status=202, headers={"Content-Length": "0"})
