"""create_app(config): the only wiring module. Builds the app without doing any I/O;
resources open and close in cleanup_ctx generators."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator

from aiohttp import web

import storage_backends
from appstore.catalog import CatalogIndexer

from . import keys
from .background import every
from .config import Config
from .db import create_store
from .handlers import health, token, v2
from .metrics import Metrics
from .middlewares import request_context
from .registry.service import Registry
from .relay import Relay

log = logging.getLogger("daohub")


@contextlib.asynccontextmanager
async def open_registry(config: Config, *, migrate: bool = True) -> AsyncIterator[Registry]:
    """Open storage and the metadata store and build the Registry on them (CLI and app)."""
    storage = storage_backends.create(config.storage.driver, config.storage_params())
    store = create_store(config.database_url, sqlite_synchronous=config.database.sqlite_synchronous,
                         pool_min_size=config.database.pool_min_size,
                         pool_max_size=config.database.pool_max_size)
    await store.open()
    try:
        if migrate:
            applied = await store.migrate()
            if applied:
                log.info("applied metadata migrations %s", applied)
        registry = Registry(
            store,
            storage,
            max_manifest_bytes=config.registry.max_manifest_bytes,
            max_blob_bytes=config.registry.max_blob_bytes,
            immutable_app_versions=config.appstore.immutable_versions,
        )
        # App artifacts enter the app store's catalog on every path a manifest is pushed by.
        registry.manifest_hooks.append(CatalogIndexer(registry))
        yield registry
    finally:
        await store.close()
        await storage.aclose()


async def _resources(app: web.Application) -> AsyncIterator[None]:
    async with open_registry(app[keys.CONFIG]) as registry:
        app[keys.STORAGE] = registry.storage
        app[keys.STORE] = registry.store
        app[keys.REGISTRY] = registry
        from .registry.promotion import Promotions

        app[keys.PROMOTIONS] = Promotions(registry)
        app[keys.RELAY] = relay = Relay()
        try:
            yield
        finally:
            relay.close()


def auth_service(config: Config, store):
    """The AuthService for this config (no I/O until load_keys)."""
    from auth.passwords import Argon2Params
    from auth.providers import Directory, build_providers
    from auth.service import AuthService, AuthSettings

    settings = AuthSettings(
        issuer=config.auth.issuer,
        service=config.auth.service,
        token_ttl=config.auth.token_ttl_seconds,
        refresh_ttl=config.auth.refresh_token_ttl_seconds,
        keep_previous_keys=config.auth.keep_previous_keys,
        login_failure_limit=config.auth.login_failure_limit,
        login_address_failure_limit=config.auth.login_address_failure_limit,
        login_failure_window=config.auth.login_failure_window_seconds,
        password_params=Argon2Params(time_cost=config.auth.password_time_cost,
                                     memory_cost=config.auth.password_memory_kib),
    )
    return AuthService(store, settings, Directory(build_providers(config.auth.providers)))


def cli_administration(config: Config, registry: Registry):
    """The Administration acting as "cli", over an open registry's store (the CLI's commands)."""
    from .tenancy.service import Administration

    return Administration(registry.store, auth_service(config, registry.store), "cli",
                          upstreams=config.proxy.upstreams)


async def _auth(app: web.Application) -> AsyncIterator[None]:
    """Token auth: load (or create) signing keys, and the first platform admin."""
    config = app[keys.CONFIG]
    if not config.auth.enabled:
        yield
        return
    service = auth_service(config, app[keys.STORE])
    await service.load_keys()
    await service.refresh_providers(force=True)  # those the admin API made
    generated = await service.ensure_admin(os.environ.get("DAOHUB_ADMIN_PASSWORD"))
    if generated:
        # Shown once, on the first start only; change it after logging in.
        log.warning("created platform admin 'admin' with password: %s", generated)
    app[keys.AUTH] = service
    from .tenancy.service import Administration

    store, upstreams = app[keys.STORE], config.proxy.upstreams
    app[keys.ADMINISTRATION] = lambda actor: Administration(store, service, actor, upstreams=upstreams)
    from auth.provider_admin import ProviderAdmin

    app[keys.PROVIDER_ADMIN] = lambda actor: ProviderAdmin(service, store, config.auth.providers, actor)
    try:
        yield
    finally:
        await service.directory.aclose()


def runs_jobs(app: web.Application) -> bool:
    """Whether this process runs the periodic background jobs: a single process does, and of
    server.workers, worker 0 only (docs/design/workers.md); each job keeps its own lock or lease
    across replicas."""
    return app.get(keys.BACKGROUND_JOBS, True)


async def _upload_purger(app: web.Application) -> AsyncIterator[None]:
    """Purge abandoned uploads periodically (every replica may run it; it is idempotent)."""
    cfg = app[keys.CONFIG].registry
    if cfg.upload_purge_interval_seconds <= 0 or not runs_jobs(app):
        yield
        return

    async def purge() -> None:
        await app[keys.REGISTRY].purge_uploads(cfg.upload_ttl_seconds)

    task = asyncio.create_task(every(cfg.upload_purge_interval_seconds, purge, log, "upload purge"),
                               name="upload-purger")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _proxy(app: web.Application) -> AsyncIterator[None]:
    """The pull-through cache (always: upstreams may be created through the admin API later);
    it tells the token service which names reach a cache namespace."""
    config = app[keys.CONFIG]
    from .metrics import ProxyMetrics
    from .proxy.service import Proxy

    proxy = Proxy(config.proxy_settings(), app[keys.REGISTRY], ProxyMetrics(app[keys.METRICS].registry))
    await proxy.open()
    app[keys.PROXY] = proxy
    auth = app.get(keys.AUTH)
    if auth is not None:
        auth.cache_access = proxy.router.access_for
    tasks = proxy.start_background(evict=runs_jobs(app))
    try:
        yield
    finally:
        await _stop(tasks)
        await proxy.close()


async def _stop(tasks: list[asyncio.Task]) -> None:
    """Cancel background tasks and wait until each has ended."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def collector_for(config: Config, registry: Registry, *, metrics=None, proxy=None):
    """The GC collector of `config` (serve's and `daohub gc run`'s); `proxy` names the cache
    namespaces, whose manifests are left to the cache's eviction."""
    from .registry.gc import Collector

    async def namespaces() -> list[str]:
        return list(proxy.router.upstreams) if proxy is not None else []

    cfg = config.gc
    return Collector(registry, grace_seconds=cfg.grace_seconds, batch_size=cfg.batch_size,
                     lease_seconds=cfg.lease_seconds, metrics=metrics, cache_namespaces=namespaces)


async def _gc(app: web.Application) -> AsyncIterator[None]:
    """Online garbage collection: a pass every gc.interval_seconds (see hub/registry/gc.py)."""
    config = app[keys.CONFIG]
    from .metrics import GcMetrics
    from .registry.gc import run_periodically

    collector = collector_for(config, app[keys.REGISTRY], metrics=GcMetrics(app[keys.METRICS].registry),
                              proxy=app.get(keys.PROXY))
    app[keys.GC] = collector  # the admin API's passes too
    if not config.gc.enabled or config.gc.interval_seconds <= 0 or not runs_jobs(app):
        yield
        return
    task = asyncio.create_task(run_periodically(collector, config.gc.interval_seconds), name="gc")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _retention(app: web.Application) -> AsyncIterator[None]:
    """Tag pull times (flushed every retention.pull_flush_seconds) and scheduled retention runs,
    one per retention.interval_seconds across replicas (hub/registry/retention.py)."""
    config, registry = app[keys.CONFIG], app[keys.REGISTRY]
    from .registry.pulls import TagPulls
    from .registry.retention import Retention, run_on_schedule

    cfg = config.retention
    pulls = TagPulls(registry.store, flush_seconds=cfg.pull_flush_seconds, flush_entries=cfg.pull_flush_entries,
                     events=config.events.pull_events)
    if cfg.record_pulls:
        app[keys.TAG_PULLS] = pulls  # the manifest handlers note pulls only when it is there
    app[keys.RETENTION] = retention = Retention(registry, lease_seconds=cfg.lease_seconds)
    tasks = [asyncio.create_task(pulls.run(), name="tag-pulls")]
    if cfg.enabled and cfg.interval_seconds > 0 and runs_jobs(app):
        tasks.append(asyncio.create_task(run_on_schedule(retention, cfg.interval_seconds), name="retention"))
    yield
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    try:
        await pulls.flush()  # a clean shutdown loses no pull
    except Exception:
        log.exception("writing the last tag pull times failed")


async def _events(app: web.Application) -> AsyncIterator[None]:
    """The outbox's prune (events.keep_seconds), webhook subscriptions for the admin API, and the
    delivery worker (webhooks.enabled; hub/events/delivery.py)."""
    config, store = app[keys.CONFIG], app[keys.STORE]
    from .events.delivery import Deliverer
    from .metrics import WebhookMetrics
    from .events.service import Webhooks

    resolver = app.get(keys.WEBHOOK_RESOLVER)  # tests: a resolver of their own
    app[keys.WEBHOOKS] = Webhooks(store, config.webhooks.allowed_networks, resolver)
    tasks = []
    deliverer = delivering = None
    if config.webhooks.enabled and runs_jobs(app):
        deliverer = Deliverer(store, config.webhooks, resolver=resolver,
                              metrics=WebhookMetrics(app[keys.METRICS].registry))
        await deliverer.open()
        app[keys.DELIVERER] = deliverer
        delivering = asyncio.create_task(deliverer.run(), name="webhook-delivery")
    if config.events.prune_interval_seconds > 0 and runs_jobs(app):
        async def prune() -> None:
            while await store.prune_events(time.time() - config.events.keep_seconds):
                pass

        tasks.append(asyncio.create_task(every(config.events.prune_interval_seconds, prune, log, "event prune",
                                               first=True), name="event-prune"))
    try:
        yield
    finally:
        await _stop(tasks)
        if deliverer is not None:
            await deliverer.stop(delivering)  # the deliveries in flight are finished and recorded
            await deliverer.close()


async def _audit_export(app: web.Application) -> AsyncIterator[None]:
    """The audit export's sink tasks (audit_export.sinks; hub/events/audit_export.py)."""
    config = app[keys.CONFIG]
    if not config.audit_export.sinks or not runs_jobs(app):
        yield
        return
    from .events.audit_export import Exporter

    exporter = Exporter(app[keys.STORE], config.audit_export, config.webhooks.allowed_networks,
                        resolver=app.get(keys.WEBHOOK_RESOLVER))
    exporter.start()
    try:
        yield
    finally:
        await exporter.stop()  # the batch in flight is sent and its cursor moved; the leases given up


def create_app(config: Config) -> web.Application:
    # client_max_size bounds only bodies read whole by aiohttp itself; blob bodies stream.
    app = web.Application(middlewares=[request_context], client_max_size=config.registry.max_manifest_bytes)
    app[keys.CONFIG] = config
    app[keys.METRICS] = Metrics()
    app.cleanup_ctx.append(_resources)
    app.cleanup_ctx.append(_auth)
    app.cleanup_ctx.append(_upload_purger)
    app.cleanup_ctx.append(_proxy)
    app.cleanup_ctx.append(_gc)
    app.cleanup_ctx.append(_retention)
    app.cleanup_ctx.append(_events)
    app.cleanup_ctx.append(_audit_export)
    app.router.add_route("*", "/v2/{tail:.*}", v2.dispatch)
    app.router.add_route("*", "/v2", _redirect_v2)
    if config.auth.enabled:
        app.router.add_get("/auth/token", token.get_token)
        app.router.add_post("/auth/token", token.post_token)
        app.router.add_get("/auth/jwks.json", token.jwks)
        from .handlers import admin

        admin.setup(app)
    from .handlers import appstore

    appstore.setup(app)
    from . import web as web_catalog

    web_catalog.setup(app)
    from .web.landing import client_setup_json, landing

    app.router.add_route("*", "/", landing)  # a page for browsers; JSON 404 for everyone else
    app.router.add_get("/client-setup", client_setup_json)  # what `daohub client setup` writes
    app.router.add_get("/healthz", health.healthz)
    app.router.add_get("/readyz", health.readyz)
    app.router.add_get("/metrics", health.metrics)
    return app


async def _redirect_v2(request: web.Request) -> web.StreamResponse:
    raise web.HTTPMovedPermanently("/v2/")
