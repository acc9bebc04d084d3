"""create_app(config): the only wiring module. Builds the app without doing any I/O;
resources open and close in cleanup_ctx generators."""

from __future__ import annotations

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


async def _resources(app: web.Application) -> AsyncIterator[None]:
    config = app[keys.CONFIG]
    storage = storage_backends.create(config.storage.driver, **_storage_options(config))
    store = create_store(config.database_url, sqlite_synchronous=config.database.sqlite_synchronous)
    await store.open()
    try:
        applied = await store.migrate()
        if applied:
            log.info("applied metadata migrations %s", applied)
        app[keys.STORAGE] = storage
        app[keys.STORE] = store
        app[keys.REGISTRY] = Registry(
            store,
            storage,
            max_manifest_bytes=config.registry.max_manifest_bytes,
            max_blob_bytes=config.registry.max_blob_bytes,
        )
        yield
    finally:
        await store.close()
        await storage.aclose()


def create_app(config: Config) -> web.Application:
    # client_max_size bounds only bodies read whole by aiohttp itself; blob bodies stream.
    app = web.Application(middlewares=[request_context], client_max_size=config.registry.max_manifest_bytes)
    app[keys.CONFIG] = config
    app[keys.METRICS] = Metrics()
    app.cleanup_ctx.append(_resources)
    app.router.add_route("*", "/v2/{tail:.*}", v2.dispatch)
    app.router.add_route("*", "/v2", _redirect_v2)
    app.router.add_get("/healthz", health.healthz)
    app.router.add_get("/readyz", health.readyz)
    app.router.add_get("/metrics", health.metrics)
    return app


async def _redirect_v2(request: web.Request) -> web.StreamResponse:
    raise web.HTTPMovedPermanently("/v2/")
