"""A webhook receiver of the tests' own: a real aiohttp server on 127.0.0.1 that records every
delivery and answers as told (ok, fail with 500, hang past the sender's timeout, redirect), and
can be stopped and started again on the same port (a receiver that is down)."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import json
import threading
import time
from collections import Counter
from pathlib import Path

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
    at: float = dataclasses.field(default_factory=time.time)  # when it arrived

    @property
    def event(self) -> dict:
        return json.loads(self.body)


class Receiver:
    def __init__(self):
        self.mode = "ok"  # ok | fail | hang | redirect
        self.fail_first = 0  # with mode ok: answer 500 to the first this many attempts of each event
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
        key = request.headers.get("Idempotency-Key")
        if status == 204 and sum(1 for r in self.received if r.headers.get("Idempotency-Key") == key) < self.fail_first:
            status = 500
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


class ThreadedReceiver:
    """A Receiver on an event loop of its own thread, for tests that are not async (the e2e ones
    drive serve processes and skopeo synchronously)."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="receiver", daemon=True)
        self.thread.start()
        self.receiver = self._call(self._make())

    async def _make(self) -> Receiver:
        return Receiver()

    def _call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def start(self) -> None:
        self._call(self.receiver.start())

    def stop(self) -> None:
        self._call(self.receiver.stop())

    def close(self) -> None:
        self.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    @property
    def url(self) -> str:
        return self.receiver.url

    def set(self, mode: str = "ok", fail_first: int = 0) -> None:
        self.receiver.mode, self.receiver.fail_first = mode, fail_first

    def received(self) -> list[Received]:
        return list(self.receiver.received)

    def accepted(self) -> list[Received]:
        return [r for r in self.received() if 200 <= r.answered < 300]

    def accepted_counts(self) -> Counter:
        return Counter(r.headers["Idempotency-Key"] for r in self.accepted())

    def wait_for(self, predicate, timeout: float = 60.0) -> None:
        """Until `predicate(self)` holds; AssertionError after `timeout` (a bound on a hang)."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() > deadline:
                raise AssertionError(f"the receiver did not get what was expected in {timeout} s: "
                                     f"{[(r.event.get('type'), r.answered) for r in self.received()]}")
            time.sleep(0.05)


async def _serve_forever(log_path: str, port_path: str) -> None:
    """A receiver as a process of its own (bench/webhooks_bench.py: not on the clients' CPU): one
    JSON line per accepted delivery in `log_path` (event id, type, time, data, arrival time)."""
    receiver = Receiver()
    with open(log_path, "a", buffering=1) as out:
        handle = receiver._handle

        async def logged(request):
            response = await handle(request)
            got = receiver.received[-1]
            if 200 <= got.answered < 300:
                event = got.event
                out.write(json.dumps({"id": event["id"], "type": event["type"], "time": event["time"],
                                      "data": event["data"], "at": got.at}) + "\n")
            receiver.received.clear()
            return response

        receiver._handle = logged
        await receiver.start()
        Path(port_path).write_text(str(receiver.port))
        await asyncio.Event().wait()


if __name__ == "__main__":
    import sys

    asyncio.run(_serve_forever(sys.argv[1], sys.argv[2]))
