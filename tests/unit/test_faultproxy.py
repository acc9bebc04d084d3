"""The test helper FaultProxy itself, against a small aiohttp upstream (S3 use is in tests/storage)."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp import web

from tests.helpers.faultproxy import FaultProxy, match, self_signed_tls


@pytest.fixture
async def upstream(aiohttp_server):
    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        return web.json_response({
            "method": request.method, "path_qs": request.raw_path, "host": request.headers.get("Host"),
            "x": request.headers.get("X-Test"), "body": body.decode(), "length": request.headers.get("Content-Length"),
        }, headers={"X-Upstream": "yes"})

    async def big(request: web.Request) -> web.Response:
        return web.Response(body=b"z" * 100_000)

    app = web.Application()
    app.router.add_get("/big", big)
    app.router.add_route("*", "/{tail:.*}", echo)
    return await aiohttp_server(app)


async def get_json(session, method, url, **kwargs):
    async with session.request(method, url, **kwargs) as response:
        return response.status, response.headers, await response.json()


async def test_forwards_requests_unchanged(upstream):
    with FaultProxy(str(upstream.make_url(""))) as proxy:
        async with aiohttp.ClientSession() as session:
            status, headers, echoed = await get_json(
                session, "PUT", proxy.url + "/a%2Fb/c?x=1&y", data=b"payload", headers={"X-Test": "kept"})
    assert status == 200 and headers["X-Upstream"] == "yes"
    assert echoed == {"method": "PUT", "path_qs": "/a%2Fb/c?x=1&y", "host": f"127.0.0.1:{proxy.port}",
                      "x": "kept", "body": "payload", "length": "7"}
    (seen,) = proxy.requests
    assert (seen.method, seen.path, seen.query, seen.body_size, seen.status) == ("PUT", "/a/b/c", {"x": "1", "y": ""},
                                                                                 7, 200)


async def test_host_rewritten_when_not_preserved(upstream):
    with FaultProxy(str(upstream.make_url("")), preserve_host=False) as proxy:
        async with aiohttp.ClientSession() as session:
            _, _, echoed = await get_json(session, "GET", proxy.url + "/x")
    assert echoed["host"] == f"{upstream.host}:{upstream.port}"


async def test_rules_fire_in_order_a_limited_number_of_times(upstream):
    with FaultProxy(str(upstream.make_url(""))) as proxy:
        proxy.fail(429, b"slow down", {"Retry-After": "1"}, times=2, when=match(method="GET", path="^/limited"))
        proxy.fail(500, times=1, when=match(query="boom"))
        async with aiohttp.ClientSession() as session:
            statuses = []
            for url in ["/limited", "/limited?boom", "/limited?boom", "/other?boom", "/other?boom"]:
                async with session.get(proxy.url + url) as response:
                    statuses.append(response.status)
                    if response.status == 429:
                        assert response.headers["Retry-After"] == "1" and await response.read() == b"slow down"
    assert statuses == [429, 429, 500, 200, 200]
    assert proxy.count(match(path="^/other")) == 2
    assert [seen.action for seen in proxy.requests] == ["respond", "respond", "respond", "forward", "forward"]


async def test_forward_first_reaches_the_upstream_but_the_answer_is_replaced(upstream):
    with FaultProxy(str(upstream.make_url(""))) as proxy:
        proxy.fail(502, forward_first=True)
        async with aiohttp.ClientSession() as session, session.post(proxy.url + "/x", data=b"1") as response:
            assert response.status == 502
    assert proxy.requests[0].status == 502


async def test_late_answer_cut_body_and_dropped_connection(upstream):
    with FaultProxy(str(upstream.make_url(""))) as proxy:
        proxy.stall(seconds=0.2, when=match(path="/late"))
        proxy.cut(after_bytes=1000, when=match(path="/big"))
        proxy.drop(when=match(path="/dropped"))
        async with aiohttp.ClientSession() as session:
            status, _, _ = await get_json(session, "GET", proxy.url + "/late")
            assert status == 200
            async with session.get(proxy.url + "/big") as response:
                assert response.status == 200 and response.content_length == 100_000
                with pytest.raises(aiohttp.ClientPayloadError):
                    await response.read()
            with pytest.raises(aiohttp.ServerDisconnectedError):
                # POST: aiohttp retries an idempotent request once after a disconnect by itself
                await session.post(proxy.url + "/dropped")
            async with session.get(proxy.url + "/big") as response:  # rules were used up
                assert len(await response.read()) == 100_000


async def test_stall_without_end_holds_until_the_client_gives_up(upstream):
    with FaultProxy(str(upstream.make_url(""))) as proxy:
        proxy.stall()
        timeout = aiohttp.ClientTimeout(sock_read=0.3)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            with pytest.raises(TimeoutError):
                await session.get(proxy.url + "/x")
            status, _, _ = await get_json(session, "GET", proxy.url + "/x")
            assert status == 200


async def test_tls_listener(upstream):
    with FaultProxy(str(upstream.make_url("")), ssl_context=self_signed_tls()) as proxy:
        assert proxy.url.startswith("https://")
        async with aiohttp.ClientSession() as session:
            status, _, _ = await get_json(session, "GET", proxy.url + "/x", ssl=False)
            assert status == 200
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await session.get(proxy.url + "/x")
