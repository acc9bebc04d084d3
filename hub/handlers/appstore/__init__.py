"""The app store's JSON API under /api/v1/appstore/ (problem+json errors, in the OpenAPI document)."""

from __future__ import annotations

from aiohttp import web


def setup(app: web.Application) -> None:
    """Register the app store routes on `app` (served with auth on or off)."""
    from .routes import add_routes

    add_routes(app)
