"""GET /v2/<name>/tags/list with n/last pagination and a Link header."""

from __future__ import annotations

from aiohttp import web

from ..keys import REGISTRY
from .base import next_link, page_params


async def list_tags(request: web.Request, name: str) -> web.StreamResponse:
    n, last = page_params(request)
    tags = await request.app[REGISTRY].list_tags(name, n, last)
    response = web.json_response({"name": name, "tags": tags})
    link = next_link(f"/v2/{name}/tags/list", n, tags)
    if link:
        response.headers["Link"] = link
    return response
