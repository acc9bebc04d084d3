"""A reverse HTTP proxy for tests that misbehaves when told to.

`FaultProxy(upstream_url)` forwards every request to one upstream (an S3 server, a
registry...) unchanged: same method, raw path and query, headers and body; the Host header
is kept by default, so signed requests (SigV4 signs it) and virtual-hosted bucket names
still work. Rules added at any time make it misbehave for matching requests:

    proxy.fail(503, body=S3_SLOW_DOWN, times=2, when=match(method="PUT"))  # answer, not forwarded
    proxy.fail(500, times=1, when=is_complete, forward_first=True)         # upstream did it; answer lost
    proxy.stall(times=1)             # never answer (until the client gives up or the proxy stops)
    proxy.stall(seconds=2)           # answer late: wait, then forward
    proxy.cut(after_bytes=1000)      # forward, then drop the connection after 1000 body bytes
    proxy.drop()                     # close the connection without any answer (aiohttp clients
                                     # resend an idempotent request once by themselves)
    rule = proxy.hold(after_bytes=1000, then="cut")  # send 1000 body bytes, wait for rule.release(),
                                                     # then send the rest ("continue") or drop ("cut")

Rules are checked in the order they were added; the first matching rule that still has
uses left (`times`; None means forever) fires and uses one up. `clear()` removes them all.
Every request is recorded in `proxy.requests` (method, path, query, headers, body size,
what was done), for assertions such as "the client retried three times" or "this header
was sent". `match(...)` builds predicates on method, path regex, query parameter and
header presence; any callable taking a `Seen` works as `when`.

With `ssl_context` (see `self_signed_tls()`) it listens with TLS, so clients take their
https code paths (botocore signs and frames bodies differently over https).

The proxy runs its own event loop in a background thread, so it serves sync tests, async
tests (whatever their loop) and session-scoped fixtures alike; all methods are thread-safe
and synchronous. Use it as a context manager or call start()/stop(). Bodies are buffered
per request (test traffic is small); responses are streamed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import ipaddress
import re
import ssl
import tempfile
import threading
from collections.abc import Callable
from typing import Self

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

S3_SLOW_DOWN = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
                b"<Message>Please reduce your request rate.</Message><RequestId>faultproxy</RequestId></Error>")
S3_INTERNAL_ERROR = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InternalError</Code>'
                     b"<Message>We encountered an internal error. Please try again.</Message>"
                     b"<RequestId>faultproxy</RequestId></Error>")

_HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
               "transfer-encoding", "upgrade"}


@dataclasses.dataclass
class Seen:
    """One request as the proxy received it, and what it did with it."""

    method: str
    path: str
    query: dict[str, str]
    headers: CIMultiDict
    body_size: int
    action: str = "forward"
    status: int | None = None


Predicate = Callable[[Seen], bool]


def match(method: str | None = None, path: str | None = None, query: str | None = None,
          header: str | None = None) -> Predicate:
    """A predicate: method equal, `path` regex found in the path, query parameter and header present."""
    pattern = re.compile(path) if path else None

    def predicate(seen: Seen) -> bool:
        return ((method is None or seen.method == method.upper())
                and (pattern is None or pattern.search(seen.path) is not None)
                and (query is None or query in seen.query)
                and (header is None or header in seen.headers))

    return predicate


@dataclasses.dataclass
class Rule:
    action: str  # respond | stall | cut | drop
    when: Predicate | None = None
    times: int | None = 1
    status: int = 503
    body: bytes = b""
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    forward_first: bool = False
    seconds: float | None = None
    after_bytes: int = 0
    fired: int = 0
    then: str = "continue"  # hold: what follows release(), "continue" or "cut"
    reached: threading.Event = dataclasses.field(default_factory=threading.Event)  # hold: paused at after_bytes
    gate: threading.Event = dataclasses.field(default_factory=threading.Event)

    def release(self) -> None:
        """Let a held body go on (or be cut, as the rule says)."""
        self.gate.set()


class FaultProxy:
    def __init__(self, upstream: str, *, host: str = "127.0.0.1", port: int = 0, preserve_host: bool = True,
                 ssl_context: ssl.SSLContext | None = None):
        self.upstream = upstream.rstrip("/")
        self.ssl_context = ssl_context
        self.bind_host = host
        self.port = port
        self.preserve_host = preserve_host
        self.requests: list[Seen] = []
        self._rules: list[Rule] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    # -- addresses and life cycle -------------------------------------------------------------
    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{self.bind_host}:{self.port}"

    def start(self) -> Self:
        if self._thread is not None:
            raise RuntimeError("fault proxy already started")
        self._thread = threading.Thread(target=self._run, name="faultproxy", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise RuntimeError(f"fault proxy failed to start: {self._error!r}") from self._error
        return self

    def stop(self) -> None:
        if self._thread is None:
            return
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(30)
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- rules ---------------------------------------------------------------------------------
    def add(self, rule: Rule) -> Rule:
        with self._lock:
            self._rules.append(rule)
        return rule

    def fail(self, status: int = 503, body: bytes = b"", headers: dict[str, str] | None = None, *,
             times: int | None = 1, when: Predicate | None = None, forward_first: bool = False) -> Rule:
        """Answer with `status` instead of the upstream's answer (after forwarding, if `forward_first`)."""
        return self.add(Rule("respond", when, times, status, body, dict(headers or {}), forward_first))

    def stall(self, *, times: int | None = 1, when: Predicate | None = None, seconds: float | None = None) -> Rule:
        """Hold the request: forever (until the client disconnects or the proxy stops), or for
        `seconds` and then forward it."""
        return self.add(Rule("stall", when, times, seconds=seconds))

    def cut(self, after_bytes: int, *, times: int | None = 1, when: Predicate | None = None) -> Rule:
        """Forward, send the upstream's headers and `after_bytes` of its body, then drop the connection."""
        return self.add(Rule("cut", when, times, after_bytes=after_bytes))

    def hold(self, after_bytes: int, *, then: str = "continue", times: int | None = 1,
             when: Predicate | None = None) -> Rule:
        """Forward, send `after_bytes` of the body, set `rule.reached` and wait for `rule.release()`
        (or the proxy's stop); then send the rest (`then="continue"`) or drop the connection ("cut")."""
        if then not in ("continue", "cut"):
            raise ValueError("then must be 'continue' or 'cut'")
        return self.add(Rule("hold", when, times, after_bytes=after_bytes, then=then))

    def drop(self, *, times: int | None = 1, when: Predicate | None = None) -> Rule:
        """Close the connection without answering."""
        return self.add(Rule("drop", when, times))

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def count(self, when: Predicate | None = None) -> int:
        """How many requests (matching `when`) the proxy has received."""
        with self._lock:
            return sum(1 for seen in self.requests if when is None or when(seen))

    def _take(self, seen: Seen) -> Rule | None:
        with self._lock:
            self.requests.append(seen)
            for rule in self._rules:
                if (rule.times is None or rule.fired < rule.times) and (rule.when is None or rule.when(seen)):
                    rule.fired += 1
                    seen.action = rule.action
                    return rule
        return None

    # -- the server ----------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # noqa: BLE001 - reported to start()
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        app = web.Application(client_max_size=1 << 30)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
        await runner.setup()
        connector = aiohttp.TCPConnector(force_close=True)
        self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False,
                                              timeout=aiohttp.ClientTimeout(total=None, sock_read=300))
        try:
            site = web.TCPSite(runner, self.bind_host, self.port, ssl_context=self.ssl_context)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]
            self._ready.set()
            await self._stopping.wait()
        finally:
            await runner.cleanup()
            await self._session.close()

    def _upstream_headers(self, request: web.Request) -> CIMultiDict:
        headers = CIMultiDict((k, v) for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP)
        if not self.preserve_host:
            headers.popall("Host", None)
        headers.popall("Content-Length", None)  # set again from the body
        return headers

    async def _open_upstream(self, request: web.Request, body: bytes) -> aiohttp.ClientResponse:
        send_body = body or request.headers.get("Content-Length") is not None
        return await self._session.request(
            request.method, URL(self.upstream + request.raw_path, encoded=True),
            headers=self._upstream_headers(request), data=body if send_body else None,
            skip_auto_headers=("Accept", "Accept-Encoding", "User-Agent", "Content-Type"),
            allow_redirects=False)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        seen = Seen(request.method, request.path, dict(request.query), CIMultiDict(request.headers), len(body))
        rule = self._take(seen)
        if rule is None:
            return await self._relay(request, body, seen)
        if rule.action == "respond":
            if rule.forward_first:
                async with await self._open_upstream(request, body) as upstream:
                    await upstream.read()
            seen.status = rule.status
            return web.Response(status=rule.status, body=rule.body, headers=rule.headers)
        if rule.action == "stall":
            await self._hold(request, rule.seconds)
            if rule.seconds is None or request.transport is None or request.transport.is_closing():
                return self._abort(request)
            return await self._relay(request, body, seen)
        if rule.action == "cut":
            return await self._relay(request, body, seen, cut_after=rule.after_bytes)
        if rule.action == "hold":
            return await self._relay(request, body, seen, hold=rule)
        return self._abort(request)

    async def _hold(self, request: web.Request, seconds: float | None) -> None:
        loop = asyncio.get_running_loop()
        deadline = None if seconds is None else loop.time() + seconds
        while not self._stopping.is_set():
            if request.transport is None or request.transport.is_closing():
                return
            if deadline is not None and loop.time() >= deadline:
                return
            await asyncio.sleep(0.02)

    @staticmethod
    def _abort(request: web.Request) -> web.StreamResponse:
        if request.transport is not None:
            request.transport.abort()
        # Nothing reaches the client; aiohttp only needs a response object to finish with.
        return web.Response(status=499)

    async def _relay(self, request: web.Request, body: bytes, seen: Seen,
                     cut_after: int | None = None, hold: Rule | None = None) -> web.StreamResponse:
        async with await self._open_upstream(request, body) as upstream:
            seen.status = upstream.status
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for name, value in upstream.headers.items():
                if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                    response.headers.add(name, value)
            if upstream.content_length is not None:
                response.content_length = upstream.content_length
            await response.prepare(request)
            sent = 0
            async for chunk in upstream.content.iter_any():
                if hold is not None and sent + len(chunk) >= hold.after_bytes:
                    head, chunk = chunk[: hold.after_bytes - sent], chunk[hold.after_bytes - sent:]
                    await response.write(head)
                    sent += len(head)
                    hold.reached.set()
                    while not hold.gate.is_set() and not self._stopping.is_set():
                        await asyncio.sleep(0.02)
                    if hold.then == "cut":
                        if request.transport is not None:
                            request.transport.close()
                        return response
                    hold = None
                if cut_after is not None and sent + len(chunk) >= cut_after:
                    await response.write(chunk[: cut_after - sent])
                    if request.transport is not None:
                        request.transport.close()  # flushes what was written, then FIN: a short body
                    return response
                await response.write(chunk)
                sent += len(chunk)
            await response.write_eof()
            return response


def self_signed_tls(names: tuple[str, ...] = ("localhost", "127.0.0.1")) -> ssl.SSLContext:
    """A server TLS context with a fresh self-signed certificate for `names` (no CA: clients
    must skip verification, or see a verification failure)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    alt_names: list[x509.GeneralName] = []
    for name in names:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt_names.append(x509.DNSName(name))
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
            .sign(key, hashes.SHA256()))
    with tempfile.TemporaryDirectory() as directory:
        cert_file, key_file = f"{directory}/cert.pem", f"{directory}/key.pem"
        with open(cert_file, "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
        with open(key_file, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert_file, key_file)  # ssl reads PEM from files only
    return context
