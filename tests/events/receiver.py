"""A webhook receiver of the tests' own: a real aiohttp server on 127.0.0.1 that records every
delivery and answers as told (ok, fail with 500, hang past the sender's timeout, redirect), and
can be stopped and started again on the same port (a receiver that is down)."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import json
import time

from aiohttp import web


def verify(secret: str, headers, body: bytes, tolerance: int = 300) -> bool:
    """The verification recipe of docs/events.md, as a receiver writes it (no DaoHub code)."""
    timestamp = headers["DaoHub-Timestamp"]
    if abs(time.time() - int(timestamp)) > tolerance:
        return False
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    signatures = [p.strip()[3:] for p in headers["DaoHub-Signature"].split(",") if p.strip().startswith("v1=")]
    return any(hmac.compare_digest(expected, s) for s in signatures)


@dataclasses.dataclass
class Received:
    headers: dict
    body: bytes
    answered: int

    @property
    def event(self) -> dict:
        return json.loads(self.body)


class Receiver:
    def __init__(self):
        self.mode = "ok"  # ok | fail | hang | redirect
        self.received: list[Received] = []
        self.port = 0
        self._runner: web.AppRunner | None = None
        self.arrived = asyncio.Condition()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        status = {"ok": 204, "fail": 500, "hang": 0, "redirect": 307}[self.mode]
        self.received.append(Received(dict(request.headers), body, status))
        async with self.arrived:
            self.arrived.notify_all()
        if self.mode == "hang":
            await asyncio.sleep(30)  # the sender gives up first, and its disconnect cancels this
        if status == 307:
            return web.Response(status=307, headers={"Location": "http://127.0.0.1:1/elsewhere"})
        if status == 500:
            return web.Response(status=500, text="receiver broke " + "x" * 100_000)
        return web.Response(status=status)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def accepted(self) -> list[Received]:
        return [r for r in self.received if 200 <= r.answered < 300]

    async def wait_for(self, predicate, timeout: float = 60.0) -> None:
        """Until `predicate()` holds (a bound on a hang, not a timed assertion)."""
        async with asyncio.timeout(timeout):
            async with self.arrived:
                await self.arrived.wait_for(predicate)
