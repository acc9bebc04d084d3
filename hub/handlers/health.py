"""Liveness, readiness and metrics endpoints."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from ..keys import METRICS, STORAGE, STORE, WORKER
from ..metrics import CONTENT_TYPE

log = logging.getLogger("daohub.health")


async def healthz(request: web.Request) -> web.StreamResponse:
    worker = request.app.get(WORKER)
    # Which of server.workers answered (a connection stays with one worker).
    return web.json_response({"status": "ok"} if worker is None else {"status": "ok", "worker": worker})


async def readyz(request: web.Request) -> web.StreamResponse:
    checks: dict[str, str] = {}
    try:
        await asyncio.wait_for(request.app[STORE].ping(), 5)
        checks["metadata"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        checks["metadata"] = f"error: {type(exc).__name__}"
    try:
        await asyncio.wait_for(request.app[STORAGE].stat(""), 5)
        checks["storage"] = "ok"
    except Exception as exc:  # noqa: BLE001
        checks["storage"] = f"error: {type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values())
    if not ready:
        log.warning("not ready: %s", checks)
    return web.json_response({"status": "ok" if ready else "unavailable", "checks": checks},
                             status=200 if ready else 503)


async def metrics(request: web.Request) -> web.StreamResponse:
    body = request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})
