"""`daohub app publish | list | import`, and `app render REPO:VERSION`: the app store of this
registry from the command line, as the operator on the host (platform admin, like `app seed`),
through the same use cases as the API (appstore.service).

Each change says what it did, one line per app version; `list --json` prints the API's app
summaries.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from pathlib import Path

_REFERENCE = re.compile(r"(?P<repository>[a-z0-9][^:@\s]*/[^:@\s]+)(?::(?P<version>[A-Za-z0-9_+.-]+))?")


def registry_reference(source: str) -> tuple[str, str | None] | None:
    """(repository, version or None) when `source` names a published app (`tenant/app:1.2.0`)
    rather than a local file or folder (a path that exists is always the path)."""
    found = _REFERENCE.fullmatch(source)
    if found is None or Path(source).exists():
        return None
    return found.group("repository"), found.group("version")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", dest="sub_config", help="YAML config file")
    parser.add_argument("--data-dir", help="data directory (default ./data)")


def add_parsers(verbs) -> None:
    publish = verbs.add_parser(
        "publish", help="publish an app folder's versions into this registry",
        description="Publish every version of an app folder (app.yaml, icon, <semver>/version.yaml and "
                    "compose.yaml: the seed layout) or app document. A version already published with the same "
                    "content is left alone; with other content it is kept and reported (never replaced).")
    publish.add_argument("source", help="the app folder, or an app document (.json or .yaml)")
    where = publish.add_mutually_exclusive_group(required=True)
    where.add_argument("--repository", help="publish into this repository (<tenant>/<path>)")
    where.add_argument("--tenant", help="publish into <tenant>/<app key>")
    publish.add_argument("--public", action="store_true", help="make the repository public (anonymous pull)")
    _common(publish)
    publish.set_defaults(app_handler=run_publish, needs_config=True)

    listing = verbs.add_parser("list", help="list the apps of this registry",
                               description="Every app (newest version first), or those of one tenant.")
    listing.add_argument("--tenant", default="", help="only this tenant's apps")
    listing.add_argument("--query", default="", help="words that must all appear in key, title, summary or name")
    listing.add_argument("--json", action="store_true", help="print the API's app summaries as a JSON array")
    _common(listing)
    listing.set_defaults(app_handler=run_list, needs_config=True)

    imports = verbs.add_parser(
        "import", help="import a Portainer app-template feed (v2/v3) into a tenant",
        description="Each template becomes <tenant>/<key>, version 1.0.0 (container templates; stack templates "
                    "are skipped). A URL is fetched only from a host listed in appstore.import_hosts. "
                    "--dry-run prints the preview and publishes nothing.")
    imports.add_argument("source", help="the feed: a JSON file, or an http(s) URL on an allowed host")
    imports.add_argument("--tenant", required=True, help="the tenant to import into")
    imports.add_argument("--only", action="append", metavar="KEY", help="import only this template key (repeatable)")
    imports.add_argument("--dry-run", action="store_true", help="preview only: publish nothing")
    imports.add_argument("--json", action="store_true", help="print the result items as JSON")
    _common(imports)
    imports.set_defaults(app_handler=run_import, needs_config=True)


def _say(message: str) -> None:
    print(message)


def _warn(message: str) -> None:
    print(f"daohub: {message}", file=sys.stderr)


# publish ---------------------------------------------------------------------------------------
def run_publish(args: argparse.Namespace, config) -> int:
    from appstore.errors import AppStoreError
    from appstore.model import load_app

    try:
        app = load_app(args.source)
    except AppStoreError as exc:
        for field, message in exc.errors.items():
            _warn(f"{args.source}: {field}: {message}" if field else f"{args.source}: {message}")
        return 2
    repository = args.repository or f"{args.tenant}/{app.key}"
    return asyncio.run(_publish(config, repository, app, args.public))


async def _publish(config, repository: str, app, public: bool) -> int:
    from hub.app import cli_administration, open_registry

    from .seed import publish_app

    async with open_registry(config) as registry:
        failures = await publish_app(registry, repository, app, say=_say, warn=_warn)
        if public and not failures:  # with its audit row, as `daohub repo` does
            await cli_administration(config, registry).set_repository_public(repository, True)
            _say(f"made {repository} public")
    return 1 if failures else 0


# list ------------------------------------------------------------------------------------------
def run_list(args: argparse.Namespace, config) -> int:
    from hub.problems import Problem

    try:
        apps = asyncio.run(_list(config, args.tenant, args.query))
    except Problem as exc:
        _warn(exc.detail)
        return 2
    from .listing import emit

    # --json: the API's summaries as they are; the table adds two columns for people.
    rows = apps if args.json else [
        {**a, "visibility": "public" if a["public"] else "private",
         "versions": a["latest_version"] + (f" (+{a['version_count'] - 1})" if a["version_count"] > 1 else "")}
        for a in apps]
    emit(rows, [("REPOSITORY", "repository"), ("VERSION", "versions"), ("VISIBILITY", "visibility"),
                ("TITLE", "title")], args.json, what="apps")
    return 0


async def _list(config, tenant: str, query: str) -> list[dict]:
    from appstore.service import MAX_PAGE, AppStore
    from auth.policy import Principal
    from hub.app import open_registry

    operator = Principal.user("daohub-cli", is_platform_admin=True)
    out: list[dict] = []
    async with open_registry(config) as registry:
        service, after = AppStore(registry), None
        while True:
            page, after = await service.list_apps(operator, query=query, tenant=tenant, limit=MAX_PAGE, after=after)
            out += page
            if after is None:
                return out


# render REPO:VERSION ---------------------------------------------------------------------------
def published_version(config, repository: str, version: str | None):
    """The model AppVersion of a published version (default: the latest), read from the store as
    the operator; hub.problems.NotFound when there is none."""
    return asyncio.run(_published_version(config, repository, version))


async def _published_version(config, repository: str, version: str | None):
    from appstore.catalog import version_tag
    from appstore.service import AppStore
    from auth.policy import Principal
    from hub.app import open_registry

    operator = Principal.user("daohub-cli", is_platform_admin=True)
    async with open_registry(config) as registry:
        indexed = await AppStore(registry).indexed_version(operator, repository,
                                                           version_tag(version) if version else None)
    return indexed.version


# import ----------------------------------------------------------------------------------------
def run_import(args: argparse.Namespace, config) -> int:
    from appstore.errors import AppStoreError
    from appstore.feedfetch import MAX_FEED_BYTES, fetch_feed, parse_feed
    from hub.problems import Problem

    try:
        if re.match(r"(?i)https?://", args.source):
            feed = asyncio.run(fetch_feed(args.source, config.appstore.import_hosts))
        else:
            path = Path(args.source)
            if path.stat().st_size > MAX_FEED_BYTES:
                _warn(f"{args.source}: larger than {MAX_FEED_BYTES} bytes")
                return 2
            feed = parse_feed(path.read_bytes())
    except OSError as exc:
        _warn(f"{args.source}: cannot read: {exc.strerror or exc}")
        return 2
    except AppStoreError as exc:
        for field, message in exc.errors.items():
            _warn(f"{args.source}: {message}" if field in ("url", "feed", "") else f"{args.source}: {field}: {message}")
        return 2
    try:
        items = asyncio.run(_import(config, args.tenant, feed, args.source, args.only, args.dry_run))
    except Problem as exc:
        for error in getattr(exc, "errors", None) or [{"detail": exc.detail}]:
            _warn(f"{error.get('pointer', '').removeprefix('#/')}: {error['detail']}" if error.get("pointer")
                  else error["detail"])
        return 2
    if args.json:
        print(json.dumps(items, indent=2, ensure_ascii=False))
    else:
        verbs = {"new": "would publish", "published": "published", "exists": "already there:",
                 "skipped": "skipped", "invalid": "not importable:", "failed": "not published:"}
        for item in items:
            name = item["repository"] + ":1.0.0" if item["repository"] else f"template {item['index'] + 1}"
            line = f"{verbs[item['status']]} {name}"
            if item["errors"]:
                line += " (" + "; ".join(item["errors"]) + ")"
            (print if item["status"] in ("new", "published", "exists") else _warn)(line)
    return 1 if any(i["status"] in ("invalid", "failed") for i in items) else 0


async def _import(config, tenant: str, feed, source: str, only: list[str] | None, dry_run: bool) -> list[dict]:
    from appstore.service import AppStore
    from auth.policy import Principal
    from hub.app import cli_administration, open_registry
    from hub.handlers.admin.appimport import audit_detail

    operator = Principal.user("daohub-cli", is_platform_admin=True)
    async with open_registry(config) as registry:
        items = await AppStore(registry).import_portainer(operator, tenant, feed, only=only, dry_run=dry_run)
        if not dry_run:  # the admin API's audit row
            await cli_administration(config, registry).audit("appstore.import", tenant, audit_detail(items, source),
                                                             tenant=tenant)
    return items
