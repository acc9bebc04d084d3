"""The tenant admin API under /api/v1/ (JSON, problem+json errors, OpenAPI 3)."""

from __future__ import annotations

from aiohttp import web


def setup(app: web.Application) -> None:
    """Register the admin API routes on `app` (called by create_app when auth is enabled)."""
    from .routes import add_routes

    add_routes(app)
