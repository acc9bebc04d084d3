"""Upstreams of the pull-through cache (platform admin): those of the config file, read-only,
and those created here, stored in the metadata store and seen by every replica.

Passwords are write-only: accepted on create and change, never returned (`password_set` says
whether there is one), never logged; audit rows say only that it changed."""

from __future__ import annotations

from aiohttp import web

from auth import policy

from ...keys import PROXY, STORE
from ...problems import NotFound
from ...proxy.eviction import purge
from ...proxy.routing import API, Upstream
from ...proxy.upstreams import UpstreamAdmin
from .common import ensure, json_body, json_response, no_content, page, page_params, rfc3339, user

_ONLY_ADMIN = "only the platform admin manages upstreams"


def upstream_json(up: Upstream, default_mirror: bool, created_at: float | None = None,
                  updated_at: float | None = None) -> dict:
    return {"name": up.name, "url": up.url, "aliases": list(up.aliases), "username": up.username,
            "password_set": bool(up.password), "manifest_revalidate_seconds": up.revalidate_seconds,
            "tenants": sorted(up.access.tenants), "anonymous_pull": up.access.anonymous,
            "max_size_bytes": up.max_size_bytes or None, "ttl_days": up.ttl_days or None,
            "source": up.source, "read_only": up.source != API, "default_mirror": default_mirror,
            "created_at": rfc3339(created_at), "updated_at": rfc3339(updated_at)}


def _stored_upstreams(request: web.Request):
    """Where the API's upstreams are stored (docs/design/metadata-split.md §4.3: the proxy's
    `upstream_admin(actor)` and `upstream_record(name)` take this over with the cache store)."""
    return request.app[STORE]


async def _admin(request: web.Request) -> UpstreamAdmin:
    principal = await user(request)
    ensure(policy.can_manage_platform(principal), _ONLY_ADMIN)
    return UpstreamAdmin(_stored_upstreams(request), request.app[PROXY].router, principal.name)


async def _json(request: web.Request, name: str) -> dict:
    router = request.app[PROXY].router
    up = router.upstreams.get(name)
    if up is None:
        raise NotFound(f"no upstream {name!r}")
    record = await _stored_upstreams(request).get_upstream(name) if up.source == API else None
    return upstream_json(up, router.default is up, record.created_at if record else None,
                         record.updated_at if record else None)


async def list_upstreams(request: web.Request) -> web.StreamResponse:
    admin = await _admin(request)
    limit, after = page_params(request)
    await admin.router.refresh(force=True)
    names = sorted(n for n in admin.router.upstreams if after is None or n > after)
    items = [await _json(request, n) for n in names[:limit]]
    more = len(names) > limit
    return page(request, items, items[-1]["name"] if items else None, more, limit)


async def create_upstream(request: web.Request) -> web.StreamResponse:
    admin = await _admin(request)
    body = await json_body(request, "UpstreamCreate")
    record = await admin.create(body)
    await admin.router.refresh(force=True)
    return json_response(await _json(request, record.name), 201, {"Location": f"/api/v1/upstreams/{record.name}"})


async def get_upstream(request: web.Request) -> web.StreamResponse:
    admin = await _admin(request)
    await admin.router.refresh(force=True)
    return json_response(await _json(request, request.match_info["upstream"]))


async def update_upstream(request: web.Request) -> web.StreamResponse:
    admin = await _admin(request)
    name = request.match_info["upstream"]
    body = await json_body(request, "UpstreamUpdate")
    await admin.update(name, body)
    await admin.router.refresh(force=True)
    return json_response(await _json(request, name))


async def delete_upstream(request: web.Request) -> web.StreamResponse:
    admin = await _admin(request)
    name = request.match_info["upstream"]
    await admin.delete(name)
    await admin.router.refresh(force=True)
    # Its cached images go with it: with no upstream to route to, they would be orphans.
    proxy = request.app[PROXY]
    await purge(proxy.registry, name, metrics=proxy.metrics, grace=proxy.blob_grace)
    return no_content()
