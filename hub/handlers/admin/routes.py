"""The admin API's routes under /api/v1/: the document's own (openapi.ROUTE) and the table's
(table.API_ROUTES), registered by add_routes() in this order."""

from __future__ import annotations

from aiohttp import web

from ...keys import ROUTE
from .openapi import ROUTE as OPENAPI_ROUTE
from .table import API_ROUTES, PREFIX, Handler, Route

ROUTES: tuple[Route, ...] = (OPENAPI_ROUTE, *API_ROUTES)


def add_routes(app: web.Application) -> None:
    for route in ROUTES:
        app.router.add_route(route.method, route.full_path, _named(route))


def _named(route: Route) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        request[ROUTE] = f"admin.{route.name}"
        return await route.handler(request)

    handle.__name__ = route.name
    return handle
