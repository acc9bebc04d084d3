"""The pull-through cache reads an upstream's JSON (tag lists, error bodies, tokens) with its
nesting bounded: a hostile or broken upstream's deep document is an unreadable answer, never a
RecursionError escaping as a 500."""

from __future__ import annotations

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from auth.policy import CacheAccess
from hub.config import Secret
from hub.metrics import ProxyMetrics
from hub.proxy.client import UpstreamClient, UpstreamFailed, UpstreamNotFound
from hub.proxy.routing import Upstream

DEEP = b"[" * 50_000 + b"]" * 50_000


def _json(body: bytes, status: int = 200, **headers: str) -> web.Response:
    return web.Response(status=status, body=body, content_type="application/json", headers=headers)


@pytest.fixture
async def upstream(aiohttp_server):
    """`make(token_auth)`: an upstream whose every JSON answer nests 50,000 levels deep, and a
    client for it."""
    clients = []

    async def make(token_auth: bool = False) -> UpstreamClient:
        async def version(request: web.Request) -> web.Response:
            if token_auth and "Authorization" not in request.headers:
                realm = str(request.url.with_path("/token").with_query(None))
                return _json(b"{}", 401, **{"WWW-Authenticate": f'Bearer realm="{realm}",service="deep"'})
            return _json(b"{}")

        async def tags(request: web.Request) -> web.Response:
            if request.match_info["name"] == "gone":
                return _json(b'{"errors": [{"code": "NAME_UNKNOWN", "detail": ' + DEEP + b"}]}", 404)
            return _json(b'{"name": "x", "tags": ' + DEEP + b"}")

        async def token(request: web.Request) -> web.Response:
            return _json(b'{"token": ' + DEEP + b"}")

        app = web.Application()
        app.router.add_get("/v2/", version)
        app.router.add_get("/v2/{name}/tags/list", tags)
        app.router.add_get("/token", token)
        server = await aiohttp_server(app)
        client = UpstreamClient(Upstream("deep", str(server.make_url("")).rstrip("/"), (), "", Secret(""), 60,
                                         CacheAccess("deep", frozenset(), True)),
                                ProxyMetrics(CollectorRegistry()), connect_timeout=5, read_timeout=5)
        client.start()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


async def test_deeply_nested_upstream_answers_are_unreadable_not_errors(upstream):
    client = await upstream()
    with pytest.raises(UpstreamFailed, match="unreadable tag list"):
        await client.list_tags("app", 10, None, 1 << 20)
    with pytest.raises(UpstreamNotFound) as caught:
        await client.list_tags("gone", 10, None, 1 << 20)
    assert caught.value.code is None  # the error body was not readable; the status says enough
    client = await upstream(token_auth=True)
    with pytest.raises(UpstreamFailed, match="unreadable token response"):
        await client.list_tags("app", 10, None, 1 << 20)
