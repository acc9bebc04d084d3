"""GET /v2/_catalog with n/last pagination."""

from __future__ import annotations

from aiohttp import web

from ..keys import REGISTRY, VISIBLE_REPOSITORIES
from .base import next_link, page_params


async def list_catalog(request: web.Request) -> web.StreamResponse:
    n, last = page_params(request)
    page = await request.app[REGISTRY].list_repositories(n, last)
    visible = request.get(VISIBLE_REPOSITORIES)
    names = await visible(page) if visible is not None else page
    response = web.json_response({"repositories": names})
    # Pages are cut before filtering, so the next link follows the unfiltered page.
    link = next_link("/v2/_catalog", n, page)
    if link:
        response.headers["Link"] = link
    return response
