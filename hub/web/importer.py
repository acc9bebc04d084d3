"""The import page of the web catalog, /apps/import: a Portainer template feed (v2/v3), uploaded as
a file or fetched from a URL on a host in `appstore.import_hosts`, previewed, then published into
a tenant. The same import as the admin API's (hub.handlers.admin.appimport): who may (a tenant's
admins), what each template becomes, and the audit row are appstore.service's and that module's.

The preview carries the feed it showed in the form (a hidden field), so what is published is
exactly what was previewed: a URL is fetched once, at the preview.
"""

from __future__ import annotations

import json

from aiohttp import web

from appstore.errors import AppStoreError
from appstore.feedfetch import MAX_FEED_BYTES, fetch_feed, parse_feed
from auth.policy import Principal, Role

from ..handlers.admin.appimport import run_import
from ..keys import CONFIG
from ..problems import ValidationFailed
from .pages import ENV, check_post, page, principal_of, read_form, require_sign_in, wrap


def admin_tenants(principal: Principal) -> list[str]:
    """The tenants the viewer may import into by membership (the platform admin: any, typed in)."""
    return sorted(t for t, role in principal.memberships.items() if role is Role.ADMIN)


def may_import(principal: Principal, open_registry: bool = False) -> bool:
    return open_registry or principal.is_platform_admin or bool(admin_tenants(principal))


def _form_page(request: web.Request, status: int = 200, **context) -> web.Response:
    principal = principal_of(request)
    tenants = admin_tenants(principal)
    defaults = {"tenant": tenants[0] if tenants else "", "url": "", "errors": [], "items": None, "feed_json": "",
                "source": "", "done": False}
    return page(request, "import.html", status, tenants=tenants, hosts=request.app[CONFIG].appstore.import_hosts,
                title="Import a Portainer feed", **{**defaults, **context})


async def import_form(request: web.Request) -> web.StreamResponse:
    redirect = require_sign_in(request)
    if redirect:
        return redirect
    return _form_page(request)


async def _feed_of(request: web.Request, form) -> tuple[object, str]:
    """The feed the form brings: the previewed JSON, an uploaded file, or a URL (in that order)."""
    carried = form.get("feed_json")
    if isinstance(carried, str) and carried.strip():
        return parse_feed(carried), str(form.get("source", ""))[:500] or "uploaded file"
    upload = form.get("feed_file")
    if upload is not None and not isinstance(upload, str) and getattr(upload, "filename", ""):
        data = upload.file.read(MAX_FEED_BYTES + 1)
        if len(data) > MAX_FEED_BYTES:
            raise ValidationFailed.field("feed_file", f"the file is larger than {MAX_FEED_BYTES} bytes")
        return parse_feed(data), f"uploaded file {upload.filename[:200]}"
    url = str(form.get("url", "")).strip()
    if url:
        return await fetch_feed(url, request.app[CONFIG].appstore.import_hosts), url
    raise ValidationFailed.field("feed_file", "choose a feed file or give its URL")


def _messages(problem: ValidationFailed) -> list[str]:
    if not problem.errors:
        return [problem.detail]
    words = {"#/url": "URL", "#/feed": "Feed", "#/feed_file": "Feed file", "#/tenant": "Tenant"}
    out = []
    for error in problem.errors:
        pointer = error.get("pointer", "")
        label = words.get(pointer) or pointer.removeprefix("#/").replace("/", " ").capitalize()
        out.append(f"{label}: {error.get('detail', '')}" if label else error.get("detail", ""))
    return out


async def import_post(request: web.Request) -> web.StreamResponse:
    form = await read_form(request)
    await check_post(request, form)
    principal = principal_of(request)
    tenant = str(form.get("tenant", "")).strip()
    url = str(form.get("url", "")).strip()
    publish = form.get("action") == "import"
    try:
        feed, source = await _feed_of(request, form)
    except AppStoreError as exc:
        lines = [f"{'URL' if k == 'url' else 'Feed'}: {v}" for k, v in exc.errors.items()]
        return _form_page(request, 422, tenant=tenant, url=url, errors=lines)
    except ValidationFailed as problem:
        return _form_page(request, 422, tenant=tenant, url=url, errors=_messages(problem))
    only = [v for v in form.getall("only", []) if isinstance(v, str)] if publish else None
    if publish and not only:
        publish = False  # nothing chosen: show the preview again, saying so
        errors = ["Choose at least one app to publish."]
    else:
        errors = []
    try:
        items = await run_import(request, principal, tenant, feed, source, only=only, dry_run=not publish)
    except ValidationFailed as problem:
        return _form_page(request, 422, tenant=tenant, url=url, errors=_messages(problem))
    return _form_page(request, 200, tenant=tenant, url=url, items=items, errors=errors, source=source,
                      feed_json=json.dumps(feed, ensure_ascii=False), done=publish)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/apps/import", wrap(import_form))
    app.router.add_post("/apps/import", wrap(import_post))



ENV.globals["may_import"] = may_import  # the navigation's Import link
