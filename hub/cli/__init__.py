"""`daohub serve | migrate | purge-uploads | transfer | tls | version`, and the commands of the modules
beside it: identity (user, tenant, robot, repo, keys), client (setup), proxy, gc, retention, promotion
(promote), app and appstore (app seed)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path

from .. import __version__
from ..config import ConfigError, load_config, parse_addr
from ..logs import setup_logging

log = logging.getLogger("daohub")


def _overrides(args: argparse.Namespace) -> dict:
    overrides: dict = {}
    if getattr(args, "addr", None):
        overrides.setdefault("server", {})["addr"] = args.addr
    if getattr(args, "data_dir", None):
        overrides["data_dir"] = args.data_dir
    return overrides


async def _serve(config, context=None, slot=None) -> None:
    """`context`: the server's SSLContext when server.tls is on (built before anything starts,
    so a bad certificate is a startup error). `slot`: this worker's WorkerSlot (hub/cli/workers.py)
    under server.workers above 1."""
    from aiohttp import web

    from ..app import create_app
    from ..keys import METRICS
    from ..middlewares import AccessLogSink, JsonAccessLogger
    from .seed import first_start

    app = create_app(config)
    if slot is not None:
        from ..keys import BACKGROUND_JOBS, WORKER, WORKER_METRICS

        app[WORKER] = slot.index
        app[BACKGROUND_JOBS] = slot.index == 0
        app[WORKER_METRICS] = [slot.metrics_socket(i) for i in range(slot.count)]
    # The first start of an empty registry publishes the seed app catalog (before the ready line).
    app.cleanup_ctx.append(first_start)
    access_logger = logging.getLogger("daohub.access")
    sink = AccessLogSink()
    runner = web.AppRunner(
        app,
        access_log_class=JsonAccessLogger.bind(sink),
        access_log=access_logger if config.log.access_log else None,
        shutdown_timeout=config.server.shutdown_timeout,
        handle_signals=False,
    )
    tls = config.server.tls
    if tls.health_addr:
        from ..tls import health_only_middleware

        app.middlewares.append(health_only_middleware())
    await runner.setup()
    host, port = config.host_port
    if slot is not None:
        port = slot.port  # the parent's reservation (port 0 resolved once for every worker)
    reuse_port = slot is not None
    shown_host = f"[{host}]" if ":" in host else host
    loop = asyncio.get_running_loop()
    watcher = None
    if context is not None:
        from ..tls import CertificateReloader, TLSSite

        reloader = CertificateReloader(context, tls)
        tls_site = TLSSite(runner, host, port, ssl_context=context, backlog=1024, reuse_address=True,
                           reuse_port=reuse_port, https_hint=f"https://{shown_host}:{port}/", context_source=lambda: reloader.context)
        reloader.swappable = tls_site.swaps_contexts
        site: web.BaseSite = tls_site
        loop.add_signal_handler(signal.SIGHUP, reloader.reload, "SIGHUP")
        watcher = asyncio.create_task(reloader.watch())
    else:
        site = web.TCPSite(runner, host, port, backlog=1024, reuse_address=True, reuse_port=reuse_port)
    await site.start()
    if tls.health_addr:
        health_host, health_port = parse_addr(tls.health_addr)
        await web.TCPSite(runner, health_host, health_port, reuse_address=True, reuse_port=reuse_port).start()
        log.info("plain-HTTP health checks (/healthz, /readyz) on http://%s:%d", health_host, health_port)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("daohub %s listening on %s://%s:%d (storage=%s, metadata=%s%s)", __version__,
             "https" if context is not None else "http", shown_host, port,
             config.storage.driver, config.database_url.split(":", 1)[0],
             f", worker {slot.index} of {slot.count}" if slot is not None else "")
    metrics_runner = None
    if slot is not None:
        metrics_runner = await _worker_metrics(app, slot)
        slot.ready()
    await stop.wait()
    if watcher is not None:
        watcher.cancel()
    log.info("shutting down: finishing in-flight requests (up to %.0fs)", config.server.shutdown_timeout)
    # Stop accepting first, then let running handlers finish *with their request bodies*:
    # aiohttp's own shutdown stops reading from connections at once, which would strand an
    # upload in the middle of its body until the timeout.
    for running_site in list(runner.sites):
        await running_site.stop()
    if not await app[METRICS].active.wait_idle(config.server.shutdown_timeout):
        log.warning("shutdown timeout: %d requests still running are cancelled", app[METRICS].active.count)
    # Responses already produced (file downloads) finish inside aiohttp's graceful cleanup,
    # which has its own shutdown_timeout.
    await runner.cleanup()
    if metrics_runner is not None:
        await metrics_runner.cleanup()
    sink.flush()
    log.info("stopped")


async def _worker_metrics(app, slot):
    """This worker's own metrics on its private socket, for the sibling a scrape reaches."""
    from aiohttp import web

    from ..keys import METRICS
    from ..metrics import CONTENT_TYPE

    async def own(request: web.Request) -> web.Response:
        return web.Response(body=app[METRICS].render(), headers={"Content-Type": CONTENT_TYPE})

    private = web.Application()
    private.router.add_get("/metrics", own)
    runner = web.AppRunner(private, access_log=None)
    await runner.setup()
    await web.UnixSite(runner, slot.metrics_socket(slot.index)).start()
    return runner


async def _migrate(config) -> list[int]:
    from ..db import create_store

    store = create_store(config.database_url, sqlite_synchronous=config.database.sqlite_synchronous,
                         pool_min_size=config.database.pool_min_size,
                         pool_max_size=config.database.pool_max_size)
    await store.open()
    try:
        return await store.migrate()
    finally:
        await store.close()


async def _purge_uploads(config, older_than: float | None, dry_run: bool) -> dict:
    from ..app import open_registry

    async with open_registry(config) as registry:
        ttl = config.registry.upload_ttl_seconds if older_than is None else older_than
        return await registry.purge_uploads(ttl, dry_run=dry_run)


def _read_env_file(path: str) -> dict[str, str]:
    """`KEY=VALUE` lines, blank lines and `#` comments skipped (the format of Kubernetes'
    secretGenerator env files and of systemd's EnvironmentFile without quoting)."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read env file {path}: {exc}") from None
    env = {}
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            # The line itself may hold a secret: say where, not what.
            raise ConfigError(f"{path}:{number}: expected KEY=VALUE")
        env[key.strip()] = value.strip()
    return env


def _transfer(config, args: argparse.Namespace) -> int:
    import asyncpg

    from storage_backends import StorageError

    from . import transfer

    if args.jobs < 1:
        print("daohub: --jobs must be at least 1", file=sys.stderr)
        return 2
    try:
        environ = _read_env_file(args.to_env_file) if args.to_env_file else {}
        target = load_config(args.to_config, environ=environ)
    except ConfigError as exc:
        print(f"daohub: configuration error (--to-config): {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(transfer.run(config, target, blobs=not args.skip_blobs, metadata=not args.skip_metadata,
                                 jobs=args.jobs))
    except (transfer.TransferError, StorageError, asyncpg.PostgresError, OSError) as exc:
        print(f"daohub: transfer failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


def _tune_malloc() -> None:
    """Keep glibc from returning blob buffers to the kernel as soon as they are freed.

    Blob bytes pass through buffers of 256 KiB to a few MiB (socket reads, joined upload
    buffers, spool and storage reads). Above glibc's mmap threshold each one is a fresh
    mmap: the kernel zeroes and faults in its pages, then unmaps them on free, for every
    buffer. Measured on a cold pull of 4 x 50 MB through the pull-through cache (A/B in one
    run): with the threshold at 256 KiB the server spent 0.74 s of system time and took
    0.93 s; with 32 MiB (glibc's maximum), 0.30 s and 0.61 s. Peak RSS for 20 concurrent
    100 MB uploads went from 110 to 113 MB (and the uploads from 176 to 245 MB/s): freed
    buffers are reused from two arenas instead of being mapped again. A MALLOC_* variable
    set in the environment wins over these defaults.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name:
        return
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return  # not glibc: nothing to tune
    for env, option, value in (("MALLOC_MMAP_THRESHOLD_", -3, 32 << 20), ("MALLOC_ARENA_MAX", -8, 2)):
        if env not in os.environ:
            mallopt(option, value)


def _run(coro, loop_name: str = "asyncio") -> None:
    if loop_name == "uvloop":
        import uvloop  # type: ignore[import-not-found]

        uvloop.run(coro)
    else:
        asyncio.run(coro)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="daohub", description="DaoHub container registry")
    parser.add_argument("--config", help="YAML config file (default: $DAOHUB_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the registry")
    serve.add_argument("--config", dest="sub_config", help="YAML config file")
    serve.add_argument("--addr", help="HOST:PORT to listen on (default 127.0.0.1:5000)")
    serve.add_argument("--data-dir", help="data directory (default ./data)")
    migrate = sub.add_parser("migrate", help="apply metadata schema migrations")
    migrate.add_argument("--config", dest="sub_config", help="YAML config file")
    migrate.add_argument("--data-dir", help="data directory (default ./data)")
    purge = sub.add_parser("purge-uploads", help="delete abandoned blob uploads")
    purge.add_argument("--config", dest="sub_config", help="YAML config file")
    purge.add_argument("--data-dir", help="data directory (default ./data)")
    purge.add_argument("--older-than", type=float, help="seconds idle (default registry.upload_ttl_seconds)")
    purge.add_argument("--dry-run", action="store_true", help="only report what would be deleted")
    transfer = sub.add_parser(
        "transfer", help="copy blobs and metadata to another stack (e.g. SQLite+filesystem to PostgreSQL+S3)")
    transfer.add_argument("--config", dest="sub_config", help="the current (source) YAML config file")
    transfer.add_argument("--data-dir", help="the current data directory (default ./data)")
    transfer.add_argument("--to-config", required=True, help="YAML config file of the target stack")
    transfer.add_argument("--to-env-file", help="KEY=VALUE lines of DAOHUB_* variables for the target config "
                          "(its secrets; the calling environment configures the source only)")
    transfer.add_argument("--skip-blobs", action="store_true", help="copy metadata only")
    transfer.add_argument("--skip-metadata", action="store_true", help="copy blobs only")
    transfer.add_argument("--jobs", type=int, default=4, help="blobs copied at once (default 4)")
    from . import app, appcatalog, appstore, client, gc, identity, promotion, proxy, retention

    identity.add_parsers(sub)
    client.add_parsers(sub)
    proxy.add_parsers(sub)
    gc.add_parsers(sub)
    retention.add_parsers(sub)
    promotion.add_parsers(sub)
    app_verbs = app.add_parsers(sub)
    appstore.add_parsers(app_verbs)
    appcatalog.add_parsers(app_verbs)
    tls = sub.add_parser("tls", help="TLS helpers").add_subparsers(dest="tls_command", required=True)
    self_signed = tls.add_parser("self-signed", help="write a private CA and a server certificate, "
                                 "for trying out HTTPS")
    self_signed.add_argument("--host", action="append", required=True, metavar="NAME",
                             help="DNS name or IP address clients use (repeat for each)")
    self_signed.add_argument("--out", default="./tls", help="directory to write into (default ./tls)")
    self_signed.add_argument("--days", type=int, default=365,
                             help="server certificate validity (default 365)")
    sub.add_parser("version", help="print the version")
    args = parser.parse_args(argv)

    if args.command == "version":
        print(__version__)
        return 0
    if args.command == "tls":
        from ..tls import self_signed as write_self_signed

        if args.days < 1:
            print("daohub: --days must be at least 1", file=sys.stderr)
            return 2
        print(write_self_signed(Path(args.out), args.host, args.days), end="")
        return 0
    if args.command == "app" and not app.needs_config(args):
        return app.run(args)
    if args.command == "client" and not client.needs_config(args):
        return client.run(args)
    try:
        config = load_config(getattr(args, "sub_config", None) or args.config, overrides=_overrides(args))
    except ConfigError as exc:
        print(f"daohub: configuration error: {exc}", file=sys.stderr)
        return 2
    setup_logging(config.log.level, config.log.format)
    if args.command != "serve":
        from ..db.base import MetadataStore

        MetadataStore.set_actor("cli")  # the actor of the events a command's changes write (as its audit rows)
    if args.command == "serve":
        _tune_malloc()
        context = None
        if config.server.tls.enabled:
            from ..tls import TlsError, server_context

            try:
                context = server_context(config.server.tls)
            except TlsError as exc:
                print(f"daohub: TLS error: {exc}", file=sys.stderr)
                return 2
        workers = config.server.worker_count()
        if workers == 1:
            _run(_serve(config, context), config.server.event_loop)
            return 0
        from .workers import Supervisor

        def serve_worker(slot) -> int:
            _run(_serve(config, context, slot), config.server.event_loop)
            return 0

        host, port = config.host_port
        return Supervisor(workers, host, port, serve_worker).run()
    elif args.command == "migrate":
        applied = asyncio.run(_migrate(config))
        print(f"applied migrations: {applied}" if applied else "schema is up to date")
    elif args.command in ("user", "tenant", "robot", "repo", "keys"):
        return asyncio.run(identity.run(config, args))
    elif args.command == "app":
        return app.run(args, config)
    elif args.command == "client":
        return client.run(args, config)
    elif args.command == "proxy":
        return asyncio.run(proxy.run(config, args))
    elif args.command == "gc":
        return asyncio.run(gc.run(config, args))
    elif args.command == "retention":
        return asyncio.run(retention.run(config, args))
    elif args.command in ("promote", "promotion"):
        return asyncio.run(promotion.run(config, args))
    elif args.command == "transfer":
        return _transfer(config, args)
    elif args.command == "purge-uploads":
        result = asyncio.run(_purge_uploads(config, args.older_than, args.dry_run))
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
