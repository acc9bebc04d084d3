"""`daohub gc run`: a garbage-collection pass now, from the command line (hub/registry/gc.py)."""

from __future__ import annotations

import json


def add_parsers(sub) -> None:
    gc = sub.add_parser("gc", help="garbage collection").add_subparsers(dest="verb", required=True)
    run = gc.add_parser("run", help="collect what the review queue holds past the grace period now "
                                    "(on SQLite, waits for a pass in progress elsewhere)")
    run.add_argument("--config", dest="sub_config", help="YAML config file")
    run.add_argument("--data-dir", help="data directory (default ./data)")
    run.add_argument("--dry-run", action="store_true",
                     help="only report what would be deleted; change nothing")
    run.add_argument("--tenant", help="review only this tenant's repositories")
    run.add_argument("--sweep", action="store_true",
                     help="also delete stored blobs no metadata names, older than the grace period")
    run.add_argument("--grace-seconds", type=float,
                     help="the grace period of this run (default gc.grace_seconds)")
    run.add_argument("--json", action="store_true", help="print the whole report as JSON")


def _summary(report) -> str:
    c = report.counts
    verb = "would delete" if report.dry_run else "deleted"
    mode = "dry run" if report.dry_run else "gc run"
    scope = f" of tenant {report.tenant}" if report.tenant else ""
    lines = [f"{mode}{scope} (grace {report.grace_seconds:g}s): {c['manifests_reviewed']} manifests and "
             f"{c['blobs_reviewed']} "
             f"blobs reviewed; {verb} {c['manifests_deleted']} manifests, {c['links_deleted']} links, "
             f"{c['blobs_deleted']} blobs and {c['orphans_deleted']} orphans ({c['bytes_freed']} bytes) "
             f"in {report.duration_seconds:.2f}s"]
    for entry in report.manifests:
        lines.append(f"  manifest {entry['repository']}@{entry['digest']} {entry['size']}")
    for entry in report.blobs:
        lines.append(f"  blob {entry['digest']} {entry['size']}")
    for entry in report.orphans:
        lines.append(f"  orphan {entry['digest']} {entry['size']}")
    for tenant, freed in sorted(report.tenant_bytes_freed.items()):
        lines.append(f"  tenant {tenant}: {freed} bytes")
    lines += [f"  error: {e}" for e in report.errors]
    return "\n".join(lines)


async def run(config, args) -> int:
    from ..app import collector_for, open_registry
    from .progress import Meter
    from .proxy import routed_upstreams

    if args.grace_seconds is not None and args.grace_seconds < 0:
        print("daohub: --grace-seconds must not be negative")
        return 2
    async with open_registry(config) as registry:
        collector = collector_for(config, registry)
        namespaces = [u.name for u in await routed_upstreams(config, registry.store)]

        async def cache_namespaces() -> list[str]:
            return namespaces

        collector.cache_namespaces = cache_namespaces
        with Meter("gc dry run" if args.dry_run else "gc", unit="items", items="reviews", freed=True) as meter:
            report = await collector.run(dry_run=args.dry_run, tenant=args.tenant, sweep=args.sweep,
                                         grace_seconds=args.grace_seconds, progress=meter)
    print(json.dumps(report.as_dict()) if args.json else _summary(report))
    return 1 if report.errors else 0
