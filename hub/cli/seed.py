"""The seed app catalog (appstore/seeds): published by `daohub app seed`, and by the first start of
an empty registry so its app store is not empty.

Each seed app goes to the repository `<tenant>/<app key>`, every version through the app store's
publish path, as the platform admin. Publishing again publishes nothing new: a version already
there with the same content is left as it is, and one with other content is reported and kept (a
published version is never replaced).

The first start is decided once per registry, in the store (`server_state`), under a store lock,
so replicas starting together publish once. The first `daohub serve` that finds no decision
decides: with `appstore.seed_on_first_start` off, or when the registry already has a tenant or a
repository, it records that and publishes nothing; otherwise it publishes the catalog into the
tenant `apps` as public repositories, then records that it did. A start that died while
publishing leaves "publishing", and the next start finishes the job. Once recorded, nothing is
published again on any later start, so seed apps an admin deleted stay deleted.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

log = logging.getLogger("daohub.appstore")

DEFAULT_TENANT = "apps"
STATE = "appstore.first_start_seed"
_LOCK = "appstore-first-start-seed"
_DECIDED = ("off", "not-empty", "published", "failed")
SEEDS = Path(__file__).resolve().parents[2] / "appstore" / "seeds"


def seed_folders(root: str | Path | None = None) -> list[Path]:
    base = Path(root) if root else SEEDS
    return sorted(p for p in base.iterdir() if p.is_dir() and (p / "app.yaml").is_file())


async def publish_seed_catalog(registry, config, tenant: str, *, public: bool, root: str | Path | None = None,
                               say: Callable[[str], None] = print, warn: Callable[[str], None] = print) -> int:
    """Publish every seed app into `tenant` (created if missing); the number of failures."""
    from appstore import model
    from appstore.errors import AppStoreError
    from hub.app import auth_service
    from hub.problems import Problem
    from hub.tenancy.service import Administration

    store = registry.store
    if await store.get_tenant(tenant) is None:
        # Through the admin path: an audit row, and no tenant named like a cache upstream.
        admin = Administration(store, auth_service(config, store), "cli", upstreams=config.proxy.upstreams)
        try:
            await admin.create_tenant(tenant, "App catalog")
        except Problem as exc:
            warn(f"tenant {tenant}: {exc.detail}")
            return 1
        say(f"created tenant {tenant}")
    failures = 0
    for folder in seed_folders(root):
        try:
            app = model.load_app_folder(folder)
        except AppStoreError as exc:
            warn(f"{folder.name}: {exc.summary()}")
            failures += 1
            continue
        repository = f"{tenant}/{app.key}"
        failures += await publish_app(registry, repository, app, say=say, warn=warn)
        if public:
            await store.set_repository_public(repository, True)
    return failures


async def publish_app(registry, repository: str, app, *, say: Callable[[str], None] = print,
                      warn: Callable[[str], None] = print) -> int:
    """Publish every version of a model App (a folder's) into `repository`, as the operator
    (platform admin); the number of failures. A version already there with the same content is
    left alone; with other content it is reported and kept (never replaced)."""
    from appstore import artifact, model
    from appstore.service import AppStore, Upload
    from auth.policy import Principal
    from hub.problems import Conflict, Problem

    operator = Principal.user("daohub-cli", is_platform_admin=True)
    apps = AppStore(registry)
    icon = None
    if app.icon_data is not None:
        icon = artifact.Icon(app.icon_data.name, app.icon_data.data, app.icon_data.media_type)
    failures = 0
    for version in app.versions:
        upload = Upload(tuple(version.compose_files.items()), model.dump_metadata(app, version), icon)
        try:
            await apps.publish(operator, repository, upload)
        except Conflict:
            say(f"{repository}:{version.version} exists with other content; kept")
            continue
        except Problem as exc:
            warn(f"{repository}:{version.version}: {exc.detail}")
            failures += 1
            continue
        say(f"published {repository}:{version.version}")
    return failures


async def seed_on_first_start(registry, config) -> str:
    """Publish the seed catalog if this is the registry's first start (see the module docstring);
    return the decision now recorded: off, not-empty, published or failed."""
    store = registry.store
    state = await store.server_state(STATE)
    if state in _DECIDED:
        return state  # the usual restart: one row read, no lock
    async with store.lock(_LOCK):
        state = await store.server_state(STATE)
        if state is None:
            if not config.appstore.seed_on_first_start:
                state = "off"
            elif await store.list_tenants(1, None) or await store.list_repositories(1, None):
                state = "not-empty"
            else:
                state = "publishing"
            await store.set_server_state(STATE, state)
        if state == "publishing":
            log.info("first start of an empty registry: publishing the seed app catalog into tenant %s "
                     "(appstore.seed_on_first_start)", DEFAULT_TENANT)
            failures = await publish_seed_catalog(registry, config, DEFAULT_TENANT, public=True, say=log.info,
                                                  warn=log.warning)
            state = "failed" if failures else "published"
            await store.set_server_state(STATE, state)
        return state


async def first_start(app) -> AsyncIterator[None]:
    """cleanup_ctx of `daohub serve` (not of create_app, so apps built in tests start empty)."""
    from ..keys import CONFIG, REGISTRY

    try:
        await seed_on_first_start(app[REGISTRY], app[CONFIG])
    except Exception:  # noqa: BLE001 - the registry serves without its seed apps; the next start retries
        log.exception("publishing the seed app catalog failed")
    yield
