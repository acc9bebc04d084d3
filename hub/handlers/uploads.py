"""Blob uploads: monolithic, POST+PUT, streamed and chunked PATCH, status, cancel, mount."""

from __future__ import annotations

from aiohttp import web

from ..keys import CAN_READ, METRICS, REGISTRY
from ..registry.names import validate_name
from .base import (
    blob_location,
    body_chunks,
    content_length,
    content_range,
    has_body,
    upload_location,
    upload_range,
)


def _can_read(request: web.Request):
    checker = request.get(CAN_READ)
    return checker if checker is not None else (lambda _name: True)


def _created(name: str, digest: str) -> web.Response:
    return web.Response(status=201, headers={
        "Location": blob_location(name, digest),
        "Docker-Content-Digest": digest,
        "Content-Length": "0",
    })


def _upload_accepted(name: str, upload_id: str, size: int, status: int = 202) -> web.Response:
    return web.Response(status=status, headers={
        "Location": upload_location(name, upload_id),
        "Range": upload_range(size),
        "Docker-Upload-UUID": upload_id,
        "Content-Length": "0",
    })


async def start_blob_upload(request: web.Request, name: str) -> web.StreamResponse:
    registry = request.app[REGISTRY]
    query = request.query
    if "mount" in query:
        source = query.get("from") or None
        if source is not None:
            validate_name(source)
        if await registry.mount_blob(name, query["mount"], source, _can_read(request)):
            request.app[METRICS].uploads_completed.labels("mount").inc()
            return _created(name, query["mount"])
        # Not mountable: the spec says to fall back to a regular upload session.
    elif "digest" in query:
        digest = await registry.monolithic_upload(name, query["digest"], body_chunks(request),
                                                  content_length=content_length(request))
        request.app[METRICS].uploads_completed.labels("monolithic").inc()
        return _created(name, str(digest))
    upload_id = await registry.start_upload(name)
    return _upload_accepted(name, upload_id, 0)


async def get_blob_upload(request: web.Request, name: str, uuid: str) -> web.StreamResponse:
    size = await request.app[REGISTRY].upload_status(name, uuid)
    return _upload_accepted(name, uuid, size, status=204)


async def patch_blob_data(request: web.Request, name: str, uuid: str) -> web.StreamResponse:
    size = await request.app[REGISTRY].append_upload(
        name, uuid, body_chunks(request), content_range(request), content_length(request)
    )
    return _upload_accepted(name, uuid, size)


async def put_blob_upload_complete(request: web.Request, name: str, uuid: str) -> web.StreamResponse:
    chunks = body_chunks(request) if has_body(request) else None
    digest = await request.app[REGISTRY].complete_upload(
        name, uuid, request.query.get("digest"), chunks,
        content_range(request) if chunks is not None else None,
        content_length(request) if chunks is not None else None,
    )
    request.app[METRICS].uploads_completed.labels("session").inc()
    return _created(name, str(digest))


async def cancel_blob_upload(request: web.Request, name: str, uuid: str) -> web.StreamResponse:
    await request.app[REGISTRY].cancel_upload(name, uuid)
    return web.Response(status=204, headers={"Content-Length": "0"})
