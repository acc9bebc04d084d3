"""GET /v2/_catalog with n/last pagination."""

from __future__ import annotations

from aiohttp import web

from ..keys import REGISTRY
from .base import next_link, page_params


async def list_catalog(request: web.Request) -> web.StreamResponse:
    n, last = page_params(request)
    names = await request.app[REGISTRY].list_repositories(n, last)
    visible = request.get("can_read")
    if visible is not None:
        names = [r for r in names if visible(r)]
    response = web.json_response({"repositories": names})
    link = next_link("/v2/_catalog", n, names)
    if link:
        response.headers["Link"] = link
    return response
