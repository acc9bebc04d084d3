"""Importing a Portainer app-template feed (v2 or v3) into a tenant through the admin API: the feed
in the body, or a URL on a host an admin listed in `appstore.import_hosts` (appstore.feedfetch).
`dry_run` answers the preview and changes nothing; otherwise each new template is published as
`<tenant>/<key>` version 1.0.0 and one audit row, `appstore.import`, lists what was published.
The rules (who may import, what each template becomes) are appstore.service's."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from appstore.errors import AppStoreError
from appstore.feedfetch import fetch_feed
from appstore.service import field_problem

from ...keys import CONFIG
from ...problems import ValidationFailed
from ..appstore.apps import appstore
from .common import administration, json_body, json_response, user


async def load_feed(request: web.Request, body: dict[str, Any]) -> tuple[Any, str]:
    """(the feed document, where it came from) of an import request: `feed` or `url`, not both."""
    if ("feed" in body) == ("url" in body):
        raise ValidationFailed.field("feed", "give the feed itself (feed) or where to fetch it (url), one of them")
    if "feed" in body:
        return body["feed"], "request body"
    try:
        return await fetch_feed(body["url"], request.app[CONFIG].appstore.import_hosts), body["url"]
    except AppStoreError as exc:
        raise field_problem(exc.errors, "", "the feed could not be fetched") from None


async def run_import(request: web.Request, principal, tenant: str, feed: Any, source: str, *,
                     only: list[str] | None, dry_run: bool) -> list[dict[str, Any]]:
    """The import (or its preview) and, when something was published, its audit row."""
    items = await appstore(request).import_portainer(principal, tenant, feed, only=only, dry_run=dry_run)
    if not dry_run:
        await administration(request, principal).audit("appstore.import", tenant, audit_detail(items, source),
                                                       tenant=tenant)
    return items


def audit_detail(items: list[dict[str, Any]], source: str) -> dict[str, Any]:
    """The `appstore.import` audit row's detail (the CLI's `app import` writes the same)."""
    return {"source": source[:500], "published": [i["repository"] for i in items if i["status"] == "published"],
            "templates": len(items)}


async def import_portainer_feed(request: web.Request) -> web.StreamResponse:
    principal = await user(request)
    tenant = request.match_info["tenant"]
    body = await json_body(request, "PortainerImport")
    feed, source = await load_feed(request, body)
    items = await run_import(request, principal, tenant, feed, source, only=body.get("only"),
                             dry_run=body.get("dry_run", False))
    return json_response({"tenant": tenant, "dry_run": body.get("dry_run", False), "items": items})
