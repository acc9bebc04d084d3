"""Liveness, readiness and metrics endpoints."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from ..keys import METRICS, STORAGE, STORE, WORKER, WORKER_METRICS
from ..metrics import CONTENT_TYPE, merge_workers

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
    worker = request.app.get(WORKER)
    if worker is not None:  # server.workers: every worker's samples, labelled worker="N"
        sockets = request.app[WORKER_METRICS]
        texts = await asyncio.gather(*(_sibling_metrics(path) for i, path in enumerate(sockets) if i != worker))
        others = {i: text for i, text in zip((i for i in range(len(sockets)) if i != worker), texts, strict=True)
                  if text is not None}
        body = merge_workers({worker: body.decode(), **others})
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


async def _sibling_metrics(path: str) -> str | None:
    """A sibling worker's own metrics from its private socket; None while it is down (restarting)."""
    import aiohttp

    try:
        async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=path),
                                         timeout=aiohttp.ClientTimeout(total=5)) as session:
            async with session.get("http://worker/metrics") as response:
                response.raise_for_status()
                return await response.text()
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        log.warning("metrics of a sibling worker unavailable: %s", type(exc).__name__)
        return None
