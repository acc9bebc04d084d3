"""`/`: for a browser (text/html in Accept), a page saying what this registry is and how to log in,
push, pull and use it as a mirror, with its own address filled in, and links to the app store and
the API document. Every other client gets the JSON 404 it got before (registry clients probe `/`).

The address comes from `server.public_url`, else from the request's Host. Host is whatever the
client sent, so it is used for display only, autoescaped, and only if it looks like a host[:port];
otherwise the page shows a placeholder. Nothing is linked or redirected to it.
"""

from __future__ import annotations

import re

from aiohttp import web

from ..keys import AUTH, CONFIG, PROXY, ROUTE
from .address import PLACEHOLDER, address
from .pages import ENV, SECURITY_HEADERS

_LOOPBACK = re.compile(r"(?:127(?:\.[0-9]{1,3}){3}|localhost|\[::1\])(?::[0-9]+)?")
# The registry a mirror stands in for, as containerd's hosts.toml names its own server.
_UPSTREAM_SERVERS = {"docker.io": "https://registry-1.docker.io"}


def wants_html(request: web.Request) -> bool:
    return "text/html" in request.headers.get("Accept", "").lower()


async def _mirrored(request: web.Request) -> tuple[list[str], str]:
    """Names of the upstreams anyone may pull through, and the default mirror's name (or "")."""
    proxy = request.app.get(PROXY)
    if proxy is None:
        return [], ""
    router = proxy.router
    await router.refresh()
    open_registry = AUTH not in request.app
    names = sorted(name for name, up in router.upstreams.items() if open_registry or up.access.anonymous)
    default = router.default.name if router.default is not None and router.default.name in names else ""
    return names, default


async def landing(request: web.Request) -> web.StreamResponse:
    request[ROUTE] = "web.landing"
    if request.method not in ("GET", "HEAD") or not wants_html(request):
        raise web.HTTPNotFound()  # the same JSON 404 as any unknown path
    scheme, host = address(request)
    upstreams, default = await _mirrored(request)
    mirror = default or (upstreams[0] if upstreams else "docker.io")
    html = ENV.get_template("landing.html").render(
        host=host, scheme=scheme, plain_http=scheme == "http", loopback=bool(_LOOPBACK.fullmatch(host)),
        auth_enabled=AUTH in request.app, upstreams=upstreams, default=default, mirror=mirror,
        mirror_server=_UPSTREAM_SERVERS.get(mirror, f"https://{mirror}"), title="DaoHub registry")
    response = web.Response(text=html, content_type="text/html", charset="utf-8")
    response.headers.update(SECURITY_HEADERS)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Vary"] = "Accept"
    return response
