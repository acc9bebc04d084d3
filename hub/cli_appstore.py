"""`daohub app seed`: publish the seed catalog (appstore/seeds) through the app store's publish path.

Each seed app goes to the repository `<tenant>/<app key>`, every version tagged as the API's
publish does. It runs as the operator on the host (platform admin), like the identity commands.
Running it again publishes nothing new: a version already there with the same content is left as
it is, and one with other content is reported and kept (a published version is never replaced).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from pathlib import Path

DEFAULT_TENANT = "apps"


def add_parsers(verbs) -> None:
    """Add `seed` to the `app` group (hub.cli_app.add_parsers returns its subparsers)."""
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


def seed_folders(root: str | None = None) -> list[Path]:
    base = Path(root) if root else Path(__file__).resolve().parent.parent / "appstore" / "seeds"
    return sorted(p for p in base.iterdir() if p.is_dir() and (p / "app.yaml").is_file())


def run_seed(args: argparse.Namespace, config) -> int:
    from hub.registry.names import COMPONENT_PATTERN

    if not re.fullmatch(COMPONENT_PATTERN, args.tenant):
        print(f"daohub: --tenant: {args.tenant!r} is not a valid tenant name", file=sys.stderr)
        return 2
    return asyncio.run(_seed(config, args.tenant, args.public, args.seeds))


async def _seed(config, tenant: str, public: bool, root: str | None) -> int:
    from appstore import artifact, model
    from appstore.errors import AppStoreError
    from appstore.service import AppStore, Upload
    from auth.policy import Principal
    from hub.app import auth_service, open_registry
    from hub.problems import Conflict, Problem
    from hub.registry.admin import Administration

    operator = Principal.user("daohub-cli", is_platform_admin=True)
    failures = 0
    async with open_registry(config) as registry:
        store = registry.store
        if await store.get_tenant(tenant) is None:
            # Through the admin path: an audit row, and no tenant named like a cache upstream.
            admin = Administration(store, auth_service(config, store), "cli", upstreams=config.proxy.upstreams)
            try:
                await admin.create_tenant(tenant, "App catalog")
            except Problem as exc:
                print(f"daohub: --tenant: {exc.detail}", file=sys.stderr)
                return 1
            print(f"created tenant {tenant}")
        apps = AppStore(registry)
        for folder in seed_folders(root):
            try:
                app = model.load_app_folder(folder)
            except AppStoreError as exc:
                print(f"daohub: {folder.name}: {exc.summary()}", file=sys.stderr)
                failures += 1
                continue
            repository = f"{tenant}/{app.key}"
            icon = None
            if app.icon_data is not None:
                icon = artifact.Icon(app.icon_data.name, app.icon_data.data, app.icon_data.media_type)
            for version in app.versions:
                upload = Upload(tuple(version.compose_files.items()), model.dump_metadata(app, version), icon)
                try:
                    await apps.publish(operator, repository, upload)
                except Conflict:
                    print(f"{repository}:{version.version} exists with other content; kept")
                    continue
                except Problem as exc:
                    print(f"daohub: {repository}:{version.version}: {exc.detail}", file=sys.stderr)
                    failures += 1
                    continue
                print(f"published {repository}:{version.version}")
            if public:
                await store.set_repository_public(repository, True)
    return 1 if failures else 0
