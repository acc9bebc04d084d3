"""`daohub app seed`: publish the seed catalog (appstore/seeds) through the app store's publish path
(hub.cli.seed), as the operator on the host (platform admin), like the identity commands."""

from __future__ import annotations

import argparse
import asyncio
import re
import sys

from .seed import DEFAULT_TENANT


def add_parsers(verbs) -> None:
    """Add `seed` to the `app` group (hub.cli.app.add_parsers returns its subparsers)."""
    seed = verbs.add_parser("seed", help="publish the seed app catalog into a tenant",
                            description="Publish the apps shipped in appstore/seeds (voting app, WordPress, "
                                        "Redis, PostgreSQL, nginx, Gitea) as OCI artifacts in <tenant>/<app>.")
    seed.add_argument("--tenant", default=DEFAULT_TENANT, help=f"tenant to publish into (default {DEFAULT_TENANT}; "
                                                              "created if missing)")
    seed.add_argument("--public", action="store_true", help="make the seed repositories public (anonymous pull)")
    seed.add_argument("--seeds", help="a folder of seed apps instead of the shipped ones")
    seed.add_argument("--config", dest="sub_config", help="YAML config file")
    seed.add_argument("--data-dir", help="data directory (default ./data)")
    seed.set_defaults(app_handler=run_seed, needs_config=True)


def run_seed(args: argparse.Namespace, config) -> int:
    from hub.registry.names import COMPONENT_PATTERN

    if not re.fullmatch(COMPONENT_PATTERN, args.tenant):
        print(f"daohub: --tenant: {args.tenant!r} is not a valid tenant name", file=sys.stderr)
        return 2
    return asyncio.run(_seed(config, args.tenant, args.public, args.seeds))


async def _seed(config, tenant: str, public: bool, root: str | None) -> int:
    from hub.app import open_registry

    from .seed import publish_seed_catalog

    def warn(message: str) -> None:
        print(f"daohub: {message}", file=sys.stderr)

    async with open_registry(config) as registry:
        failures = await publish_seed_catalog(registry, config, tenant, public=public, root=root, warn=warn)
    return 1 if failures else 0
