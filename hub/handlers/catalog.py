"""GET /v2/_catalog with n/last pagination."""

from __future__ import annotations

from aiohttp import web

from ..keys import REGISTRY, VISIBLE_REPOSITORIES
from .base import next_link, page_params


async def list_catalog(request: web.Request) -> web.StreamResponse:
    n, last = page_params(request)
    page = request.get(VISIBLE_REPOSITORIES)  # with auth on: the caller's page (hub/authz.py)
    names = await page(n, last) if page is not None else await request.app[REGISTRY].list_repositories(n, last)
    response = web.json_response({"repositories": names})
    # Every name on the page is one the caller may see, and so is the one the next link names.
    link = next_link("/v2/_catalog", n, names)
    if link:
        response.headers["Link"] = link
    return response
