"""The web catalog at /apps/ and the console at /console/ (hub.web.console): server-rendered pages (jinja2, autoescaped) over appstore.service.

Pages: browse and search, an app with its parameters form and rendered compose file, sign in
and out, and a tenant's publish and manage pages. Sessions are signed cookies, each signed-in
one backed by a revocable row in the store (hub.web.session); every form POST carries a CSRF
token and passes an Origin/Referer check; every response carries a Content-Security-Policy that
allows only this package's own script and style files.
"""

from __future__ import annotations

from aiohttp import web


def setup(app: web.Application) -> None:
    from . import console, importer
    from .pages import add_routes

    importer.add_routes(app)  # before the catalog's catch-all 404 under /apps/
    add_routes(app)
    console.add_routes(app)
