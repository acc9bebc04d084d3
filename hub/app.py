"""create_app(config): the only wiring module. Builds the app without doing any I/O;
resources open and close in cleanup_ctx generators."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web

import storage_backends

from . import keys
from .config import Config
from .db import create_store
from .handlers import health, v2
from .metrics import Metrics
from .middlewares import request_context
from .registry.service import Registry

log = logging.getLogger("daohub")


def _storage_options(config: Config) -> dict:
    if config.storage.driver == "filesystem":
        return {"root": str(config.storage_root)}
    return {}


@contextlib.asynccontextmanager
async def open_registry(config: Config, *, migrate: bool = True) -> AsyncIterator[Registry]:
    """Open storage and the metadata store and build the Registry on them (CLI and app)."""
    storage = storage_backends.create(config.storage.driver, **_storage_options(config))
    store = create_store(config.database_url, sqlite_synchronous=config.database.sqlite_synchronous)
    await store.open()
    try:
        if migrate:
            applied = await store.migrate()
            if applied:
                log.info("applied metadata migrations %s", applied)
        yield Registry(
            store,
            storage,
            max_manifest_bytes=config.registry.max_manifest_bytes,
            max_blob_bytes=config.registry.max_blob_bytes,
        )
    finally:
        await store.close()
        await storage.aclose()


async def _resources(app: web.Application) -> AsyncIterator[None]:
    async with open_registry(app[keys.CONFIG]) as registry:
        app[keys.STORAGE] = registry.storage
        app[keys.STORE] = registry.store
        app[keys.REGISTRY] = registry
        yield


async def _upload_purger(app: web.Application) -> AsyncIterator[None]:
    """Purge abandoned uploads periodically (every replica may run it; it is idempotent)."""
    cfg = app[keys.CONFIG].registry
    if cfg.upload_purge_interval_seconds <= 0:
        yield
        return

    async def loop() -> None:
        while True:
            await asyncio.sleep(cfg.upload_purge_interval_seconds)
            try:
                await app[keys.REGISTRY].purge_uploads(cfg.upload_ttl_seconds)
            except Exception:
                log.exception("upload purge failed")

    task = asyncio.create_task(loop(), name="upload-purger")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def create_app(config: Config) -> web.Application:
    # client_max_size bounds only bodies read whole by aiohttp itself; blob bodies stream.
    app = web.Application(middlewares=[request_context], client_max_size=config.registry.max_manifest_bytes)
    app[keys.CONFIG] = config
    app[keys.METRICS] = Metrics()
    app.cleanup_ctx.append(_resources)
    app.cleanup_ctx.append(_upload_purger)
    app.router.add_route("*", "/v2/{tail:.*}", v2.dispatch)
    app.router.add_route("*", "/v2", _redirect_v2)
    app.router.add_get("/healthz", health.healthz)
    app.router.add_get("/readyz", health.readyz)
    app.router.add_get("/metrics", health.metrics)
    return app


async def _redirect_v2(request: web.Request) -> web.StreamResponse:
    raise web.HTTPMovedPermanently("/v2/")
