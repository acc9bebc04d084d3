"""`/`: for a browser (text/html in Accept), a page saying what this registry is and how to log in,
push, pull and use it as a mirror, with its own address filled in, and links to the app store and
the API document. Every other client gets the JSON 404 it got before (registry clients probe `/`).

The address comes from `server.public_url`, else from the request's Host. Host is whatever the
client sent, so it is used for display only, autoescaped, and only if it looks like a host[:port];
otherwise the page shows a placeholder. Nothing is linked or redirected to it.
"""

from __future__ import annotations

from aiohttp import web

from ..keys import AUTH, PROXY, ROUTE
from ..proxy import clientsetup
from ..proxy.clientsetup import Mirror, Setup
from .address import PLACEHOLDER, address
from .pages import ENV, SECURITY_HEADERS


def wants_html(request: web.Request) -> bool:
    return "text/html" in request.headers.get("Accept", "").lower()


async def client_setup(request: web.Request) -> Setup:
    """This registry's address and the upstreams anyone may pull through (daemons pull through a
    mirror without credentials), the default mirror first."""
    scheme, host = address(request)
    proxy = request.app.get(PROXY)
    if proxy is None:
        return Setup(scheme, host)
    router = proxy.router
    await router.refresh()
    open_registry = AUTH not in request.app
    default = router.default.name if router.default is not None else ""
    mirrors = sorted((Mirror.of(name, up.aliases, default=name == default)
                      for name, up in router.upstreams.items() if open_registry or up.access.anonymous),
                     key=lambda m: (not m.default, m.name))
    return Setup(scheme, host, tuple(mirrors))


async def client_setup_json(request: web.Request) -> web.StreamResponse:
    """GET /client-setup: what `daohub client setup --server URL` builds its files from (anonymous:
    the landing page shows the same)."""
    request[ROUTE] = "web.client_setup"
    setup = await client_setup(request)
    response = web.json_response(setup.as_dict())
    response.headers["Cache-Control"] = "no-store"
    return response


async def landing(request: web.Request) -> web.StreamResponse:
    request[ROUTE] = "web.landing"
    if request.method not in ("GET", "HEAD") or not wants_html(request):
        raise web.HTTPNotFound()  # the same JSON 404 as any unknown path
    setup = await client_setup(request)
    # With nothing mirrored yet, the snippets show what Docker Hub as the default mirror would need.
    shown = setup if setup.mirrors else Setup(setup.scheme, setup.host, (Mirror.of("docker.io", default=True),))
    html = ENV.get_template("landing.html").render(
        host=setup.host, scheme=setup.scheme, plain_http=setup.plain_http, loopback=setup.loopback,
        auth_enabled=AUTH in request.app, setup=setup, shown=shown,
        daemon_json=clientsetup.daemon_json_text(shown) if shown.default else "",
        containerd=clientsetup.containerd_files(shown), registries_conf=clientsetup.registries_conf(shown),
        title="DaoHub registry")
    response = web.Response(text=html, content_type="text/html", charset="utf-8")
    response.headers.update(SECURITY_HEADERS)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Vary"] = "Accept"
    return response
