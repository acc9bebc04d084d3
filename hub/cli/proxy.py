"""`daohub proxy evict | usage`: the pull-through cache's bounds from the command line."""

from __future__ import annotations

import json
import time


def add_parsers(sub) -> None:
    proxy = sub.add_parser("proxy", help="pull-through cache maintenance").add_subparsers(dest="verb", required=True)
    evict = proxy.add_parser("evict", help="evict cached images over their upstream's size cap or TTL now "
                                           "(waits for a run in progress elsewhere); prints a JSON report")
    evict.add_argument("--dry-run", action="store_true", help="only report what would be evicted")
    usage = proxy.add_parser("usage", help="print each upstream's cache size and bounds as JSON")
    for parser in (evict, usage):
        parser.add_argument("--config", dest="sub_config", help="YAML config file")
        parser.add_argument("--data-dir", help="data directory (default ./data)")


async def routed_upstreams(config, store) -> list:
    """The upstreams serve would route to: the config file's and the stored ones."""
    from ..proxy.routing import Router, Upstream
    from ..proxy.upstreams import upstream_from_record

    async def stored():
        return [upstream_from_record(r) for r in await store.list_upstreams()]

    router = Router([Upstream.from_config(u) for u in config.proxy.upstreams], config.proxy.default_mirror,
                    _never, stored=stored, version=store.upstreams_version, refresh_seconds=0)
    await router.refresh(force=True)
    return sorted(router.upstreams.values(), key=lambda u: u.name)


async def _never(name: str) -> bool:
    return False


async def run(config, args) -> int:
    from ..app import open_registry
    from ..proxy.eviction import evict

    async with open_registry(config) as registry:
        upstreams = await routed_upstreams(config, registry.store)
        if args.verb == "usage":
            print(json.dumps([{"upstream": u.name, "source": u.source, "size_bytes": await registry.store.cache_size(
                u.name), "max_size_bytes": u.max_size_bytes or None, "ttl_days": u.ttl_days or None}
                for u in upstreams]))
            return 0
        report = await evict(registry, upstreams, time.time(), wait=True, dry_run=args.dry_run)
        print(json.dumps(report.as_dict()))
        return 0
