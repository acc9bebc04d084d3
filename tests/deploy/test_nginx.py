"""deploy/nginx/daohub.conf, run by Debian's nginx in front of two small aiohttp backends and one
dead address: balancing, failover, forwarded headers, and bodies streamed in both directions
(nothing spooled to disk, chunked uploads passed through)."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import os
import re
import threading
import uuid
from collections import Counter

import pytest
from aiohttp import web

from tests.e2e.util import need_tool
from tests.helpers.nginx import CONF_TEMPLATE, NginxProcess, render
from tests.helpers.server import free_port

MIB = 1024 * 1024
# Larger than every buffer between client and backend (socket buffers, nginx's own), so a body
# that arrived whole before being passed on would have been spooled to a file.
BIG = 96 * MIB
SPOOL_WARNING = "buffered to a temporary file"


class Signals:
    """Named one-shot events shared by the test thread and the backends' event loop."""

    def __init__(self) -> None:
        self._events: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> threading.Event:
        with self._lock:
            return self._events.setdefault(name, threading.Event())


class Backends:
    """Two aiohttp servers on loopback, in one thread with its own event loop."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.signals = Signals()
        self.payloads: dict[str, bytes] = {}
        self.addresses: dict[str, str] = {}
        self._runners: dict[str, web.AppRunner] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="nginx-test-backends", daemon=True)

    def start(self) -> Backends:
        self._thread.start()
        for name in self.names:
            asyncio.run_coroutine_threadsafe(self._start(name), self._loop).result(30)
        return self

    def stop(self) -> None:
        for runner in self._runners.values():
            asyncio.run_coroutine_threadsafe(runner.cleanup(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)
        self._loop.close()

    async def _start(self, name: str) -> None:
        app = web.Application()
        app.router.add_get("/whoami", self._whoami(name))
        app.router.add_route("*", "/upload", self._upload(name))
        app.router.add_get("/download", self._download)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        self._runners[name] = runner
        self.addresses[name] = f"{host}:{port}"

    def _whoami(self, name: str):
        async def handler(request: web.Request) -> web.Response:
            return web.json_response({"backend": name, "headers": {k.lower(): v for k, v in request.headers.items()}})
        return handler

    def _upload(self, name: str):
        async def handler(request: web.Request) -> web.Response:
            token = request.query.get("token", "")
            digest = hashlib.sha256()
            size = 0
            async for chunk in request.content.iter_any():
                digest.update(chunk)
                size += len(chunk)
                if size >= MIB:
                    # The client holds the rest of its body back until this is set.
                    self.signals.get(f"{token}:backend-has-first-mib").set()
            return web.json_response({
                "backend": name, "size": size, "sha256": digest.hexdigest(),
                "transfer_encoding": request.headers.get("Transfer-Encoding"),
                "content_length": request.headers.get("Content-Length"),
            })
        return handler

    async def _download(self, request: web.Request) -> web.StreamResponse:
        token = request.query["token"]
        data = self.payloads[token]
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.content_length = len(data)
        await response.prepare(request)
        await response.write(data[:MIB])
        # The rest is sent only once the client holds the first MiB: a proxy that waited for the
        # whole response before passing it on would never get it.
        client_has_it = self.signals.get(f"{token}:client-has-first-mib")
        if not await asyncio.get_running_loop().run_in_executor(None, client_has_it.wait, 60):
            # Cut the response short, so the client sees a broken download and the test fails.
            request.transport.close()
            return response
        for offset in range(MIB, len(data), MIB):
            await response.write(data[offset:offset + MIB])
        await response.write_eof()
        return response


@pytest.fixture(scope="module")
def backends():
    servers = Backends(["a", "b"]).start()
    yield servers
    servers.stop()


@pytest.fixture(scope="module")
def lb(backends):
    need_tool("nginx")
    # A third address where nothing listens: passive health and retries must hide it.
    dead = f"127.0.0.1:{free_port()}"
    proxy = NginxProcess([backends.addresses["a"], backends.addresses["b"], dead])
    proxy.dead_backend = dead
    proxy.start()
    yield proxy
    proxy.stop()


def _connect(lb: NginxProcess) -> http.client.HTTPConnection:
    return http.client.HTTPConnection(lb.bind_host, lb.port, timeout=120)


def _json(response: http.client.HTTPResponse) -> dict:
    body = response.read()
    assert response.status == 200, (response.status, body[:500])
    return json.loads(body)


def test_render_fills_every_placeholder_and_keeps_passive_health_per_backend():
    text = render(["10.0.0.1:5000", "10.0.0.2:5000"], "127.0.0.1:8080")
    servers = re.findall(r"^[ \t]*server[ \t]+(\S+)[ \t]+(.*);$", text, re.MULTILINE)
    assert [address for address, _ in servers] == ["10.0.0.1:5000", "10.0.0.2:5000"]
    assert all("max_fails=" in params for _, params in servers)
    assert re.search(r"^\s*listen 127\.0\.0\.1:8080;$", text, re.MULTILINE)
    with pytest.raises(ValueError):
        render([], "8080")


def test_nginx_accepts_the_rendered_config(backends):
    need_tool("nginx")
    proxy = NginxProcess([backends.addresses["a"], backends.addresses["b"]])
    try:
        result = proxy.check_config()
    finally:
        proxy.stop()
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_requests_are_spread_over_the_live_backends_and_skip_the_dead_one(lb):
    conn = _connect(lb)
    seen = Counter()
    for _ in range(20):
        conn.request("GET", "/whoami")
        seen[_json(conn.getresponse())["backend"]] += 1
    conn.close()
    assert set(seen) == {"a", "b"}, seen
    assert min(seen.values()) >= 5, seen
    # The dead address was tried and given up on, never surfacing as an error to the client.
    assert f"upstream: \"http://{lb.dead_backend}/whoami\"" in lb.log_text()


def test_client_host_and_forwarded_headers_reach_the_backend(lb):
    conn = _connect(lb)
    conn.request("GET", "/whoami", headers={"X-Request-Id": "req-from-client-1"})
    headers = _json(conn.getresponse())["headers"]
    conn.request("GET", "/whoami")
    generated = _json(conn.getresponse())["headers"]["x-request-id"]
    conn.close()
    # Host with its port: the hub builds the token realm and upload URLs from it.
    assert headers["host"] == lb.host
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-request-id"] == "req-from-client-1"
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    # Keepalive to the replicas: nginx must not ask the backend to close.
    assert headers.get("connection", "").lower() != "close"


def test_a_forwarded_for_the_client_wrote_is_replaced(lb):
    conn = _connect(lb)
    conn.request("GET", "/whoami", headers={"X-Forwarded-For": "6.6.6.6"})
    headers = _json(conn.getresponse())["headers"]
    conn.close()
    # Only the address nginx saw: with nginx in server.trusted_proxies, the hub counts logins by it.
    assert headers["x-forwarded-for"] == "127.0.0.1"
    from hub.clientaddr import _networks, forwarded_client

    assert forwarded_client("127.0.0.1", [headers["x-forwarded-for"]], _networks(("127.0.0.0/8",))) == "127.0.0.1"


def test_metrics_are_not_served_through_the_balancer(lb):
    conn = _connect(lb)
    conn.request("GET", "/metrics")
    response = conn.getresponse()
    response.read()
    conn.close()
    assert response.status == 404


def _send_in_two_parts(conn: http.client.HTTPConnection, backends: Backends, token: str, body: bytes,
                       chunked: bool) -> None:
    """Send the first 4 MiB, wait until the backend holds 1 MiB of it, then send the rest."""
    def frame(part: bytes) -> bytes:
        return b"%x\r\n%s\r\n" % (len(part), part) if chunked else part

    head, tail = body[:4 * MIB], body[4 * MIB:]
    conn.send(frame(head))
    arrived = backends.signals.get(f"{token}:backend-has-first-mib").wait(60)
    assert arrived, "the backend saw nothing while the client held back the rest: nginx buffered the body"
    for offset in range(0, len(tail), 4 * MIB):
        conn.send(frame(tail[offset:offset + 4 * MIB]))
    if chunked:
        conn.send(b"0\r\n\r\n")


def test_large_upload_is_streamed_to_the_backend(lb, backends):
    token = uuid.uuid4().hex
    body = os.urandom(BIG)
    conn = _connect(lb)
    conn.putrequest("PUT", f"/upload?token={token}")
    conn.putheader("Content-Length", str(len(body)))
    conn.putheader("Content-Type", "application/octet-stream")
    conn.endheaders()
    _send_in_two_parts(conn, backends, token, body, chunked=False)
    result = _json(conn.getresponse())
    conn.close()
    assert (result["size"], result["sha256"]) == (len(body), hashlib.sha256(body).hexdigest())
    assert SPOOL_WARNING not in lb.log_text()


def test_chunked_put_passes_through_chunked(lb, backends):
    token = uuid.uuid4().hex
    body = os.urandom(BIG // 4 + 12345)
    conn = _connect(lb)
    conn.putrequest("PUT", f"/upload?token={token}")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.putheader("Content-Type", "application/octet-stream")
    conn.endheaders()
    _send_in_two_parts(conn, backends, token, body, chunked=True)
    result = _json(conn.getresponse())
    conn.close()
    assert (result["size"], result["sha256"]) == (len(body), hashlib.sha256(body).hexdigest())
    # Passed on chunked as it came, not spooled to learn a Content-Length.
    assert result["transfer_encoding"] == "chunked"
    assert result["content_length"] is None
    assert SPOOL_WARNING not in lb.log_text()


def test_large_download_is_streamed_to_the_client(lb, backends):
    token = uuid.uuid4().hex
    backends.payloads[token] = data = os.urandom(BIG)
    conn = _connect(lb)
    conn.request("GET", f"/download?token={token}")
    response = conn.getresponse()
    assert response.status == 200
    first = response.read(MIB)
    assert first == data[:MIB]
    backends.signals.get(f"{token}:client-has-first-mib").set()
    digest = hashlib.sha256(first)
    received = len(first)
    while chunk := response.read(4 * MIB):
        digest.update(chunk)
        received += len(chunk)
    conn.close()
    del backends.payloads[token]
    assert (received, digest.hexdigest()) == (len(data), hashlib.sha256(data).hexdigest())
    assert SPOOL_WARNING not in lb.log_text()


def test_the_streaming_checks_catch_a_buffering_proxy(backends):
    """The same upload through the config with request buffering on must fail the check above."""
    need_tool("nginx")
    template = CONF_TEMPLATE.read_text().replace("proxy_request_buffering off;", "proxy_request_buffering on;")
    with NginxProcess([backends.addresses["a"], backends.addresses["b"]], template=template) as proxy:
        token = uuid.uuid4().hex
        conn = _connect(proxy)
        conn.putrequest("PUT", f"/upload?token={token}")
        conn.putheader("Content-Length", str(8 * MIB))
        conn.endheaders()
        conn.send(os.urandom(4 * MIB))
        # Bounded: a buffering proxy holds the first bytes until the whole body is in.
        assert not backends.signals.get(f"{token}:backend-has-first-mib").wait(3)
        conn.send(os.urandom(4 * MIB))
        assert _json(conn.getresponse())["size"] == 8 * MIB
        conn.close()
        assert SPOOL_WARNING in proxy.log_text()
