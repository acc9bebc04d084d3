"""Helpers shared by the OCI handlers: bodies, ranges, pagination, locations."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from urllib.parse import quote, urlencode

from aiohttp import web

from ..errors import BodyIdleTimeout, InvalidParameters, OciError, PayloadTooLarge, RangeNotSatisfiable
from ..keys import CONFIG, METRICS

# Offsets of at most 19 digits (int64): longer ones are malformed, not a ValueError from int().
_CONTENT_RANGE = re.compile(r"^(?:bytes[ =])?(\d{1,19})-(\d{1,19})(?:/(?:\d{1,19}|\*))?$")


async def body_chunks(request: web.Request) -> AsyncIterator[bytes]:
    """The request body as it arrives, counted in the metrics.

    A body that stalls for `server.body_idle_timeout` seconds ends the request with 408, so
    a hung client cannot hold an upload forever; what arrived is kept.
    """
    counter = request.app[METRICS].bytes_received
    idle = request.app[CONFIG].server.body_idle_timeout
    content = request.content
    while True:
        try:
            chunk = await asyncio.wait_for(content.readany(), idle)
        except TimeoutError:
            raise BodyIdleTimeout(f"no request body bytes for {idle:g}s; resume from the upload's Range",
                                  detail={"idle_timeout": idle}) from None
        if not chunk:
            return
        counter.inc(len(chunk))
        yield chunk


def has_body(request: web.Request) -> bool:
    if request.headers.get("Transfer-Encoding", "").lower() == "chunked":
        return True
    return (request.content_length or 0) > 0


async def read_limited(request: web.Request, limit: int) -> bytes:
    """Read a whole (small) body, refusing more than `limit` bytes."""
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge("request body too large", detail={"limit": limit})
    parts = []
    total = 0
    async for chunk in request.content.iter_any():
        total += len(chunk)
        if total > limit:
            raise PayloadTooLarge("request body too large", detail={"limit": limit})
        parts.append(chunk)
    return b"".join(parts)


def content_range(request: web.Request) -> tuple[int, int] | None:
    value = request.headers.get("Content-Range")
    if value is None:
        return None
    m = _CONTENT_RANGE.match(value.strip())
    if not m:
        raise RangeNotSatisfiable("malformed Content-Range", detail={"content_range": value[:100]})
    start, end = int(m.group(1)), int(m.group(2))
    if end < start:
        raise RangeNotSatisfiable("Content-Range end before start", detail={"content_range": value[:100]})
    return start, end


def content_length(request: web.Request) -> int | None:
    return request.content_length


def upload_range(size: int) -> str:
    """The Range header for an upload of `size` bytes (distribution's convention for 0)."""
    return f"0-{max(size - 1, 0)}"


def upload_location(name: str, upload_id: str) -> str:
    return f"/v2/{name}/blobs/uploads/{upload_id}"


def blob_location(name: str, digest: str) -> str:
    return f"/v2/{name}/blobs/{digest}"


def manifest_location(name: str, digest: str) -> str:
    return f"/v2/{name}/manifests/{digest}"


def page_params(request: web.Request) -> tuple[int, str | None]:
    cfg = request.app[CONFIG].registry
    raw_n = request.query.get("n")
    if raw_n is None or raw_n == "":
        n = cfg.default_page_size
    else:
        if not (raw_n.isascii() and raw_n.isdigit()):  # str.isdigit alone takes "²", which int() does not
            raise _bad_page(raw_n)
        # More digits than int64 has is more than any page (and int() refuses 4,300 digits).
        n = cfg.max_page_size if len(raw_n) > 19 else min(int(raw_n), cfg.max_page_size)
    last = request.query.get("last") or None
    return n, last


def _bad_page(raw: str) -> OciError:
    # distribution's PAGINATION_NUMBER_INVALID is not in the spec's list; its UNSUPPORTED is
    # "the operation was unsupported due to a missing implementation or invalid set of
    # parameters", and a 400 says the parameter is the client's to fix.
    return InvalidParameters("n must be a non-negative integer", detail={"n": raw[:50]})


def next_link(path: str, n: int, items: list[str]) -> str | None:
    if n == 0 or len(items) < n:
        return None
    query = urlencode({"n": n, "last": items[-1]})
    return f'<{quote(path)}?{query}>; rel="next"'
