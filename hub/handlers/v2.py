"""Entry point of every /v2/ request: route, validate the name, dispatch."""

from __future__ import annotations

from urllib.parse import unquote

from aiohttp import web

from ..authz import authorize
from ..errors import EndpointUnknown, NameInvalid, Unsupported
from ..keys import ACTION, PROXY, ROUTE
from ..registry.names import validate_name
from ..routes import resolve
from . import proxy as proxy_handlers


async def api_version_check(request: web.Request) -> web.StreamResponse:
    return web.json_response({})


def _has_dot_segments(raw_path: str) -> bool:
    """True if the path as sent (before any normalisation) has '.' or '..' segments."""
    path = raw_path.split("?", 1)[0]
    for _ in range(3):  # also catch double-encoded dots
        decoded = unquote(path)
        if decoded == path:
            break
        path = decoded
    return any(seg in (".", "..") for seg in path.split("/"))


async def dispatch(request: web.Request) -> web.StreamResponse:
    if _has_dot_segments(request.raw_path):
        request[ROUTE] = "unmatched"
        raise NameInvalid("path must not contain '.' or '..' segments")
    tail = request.match_info["tail"]
    if tail == "":
        request[ROUTE] = "api_version_check"
        await authorize(request, None, None)
        return await api_version_check(request)
    route, params, other_method = resolve(request.method, tail)
    if route is None:
        request[ROUTE] = "unmatched"
        if other_method:
            raise Unsupported(f"{request.method} is not supported here")
        if "/" not in tail:
            raise NameInvalid(f"not an API path: /v2/{tail[:200]}")
        raise EndpointUnknown("no such endpoint", detail={"path": f"/v2/{tail[:200]}"})
    request[ROUTE] = route.name
    request[ACTION] = route.action
    if "name" in params:
        validate_name(params["name"])
        proxy = request.app.get(PROXY)
        if proxy is not None:
            target = await proxy.router.route(params["name"], request.query.get("ns"))
            if target is not None:
                return await proxy_handlers.dispatch(request, route, params, target)
    await authorize(request, route.action, params.get("name"))
    return await route.handler(request, **params)
