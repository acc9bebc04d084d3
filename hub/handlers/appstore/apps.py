"""Handlers of /api/v1/appstore/: HTTP in and out; the rules live in appstore.service.

Credentials are optional and the admin API's: Basic or a Bearer token from /auth/token. Without
any, the caller is anonymous and sees public apps only; wrong credentials are a 401, never a
silent fall back to anonymous. With auth off (an open registry) every caller may do everything,
as on /v2/.
"""

from __future__ import annotations

import base64
import binascii
from urllib.parse import urlsplit

from aiohttp import web

from appstore import artifact, portainer
from appstore.service import AppStore, Upload
from auth.policy import Principal

from ...keys import AUTH, CONFIG, REGISTRY
from ...problems import ValidationFailed
from ..admin.common import caller, json_body, json_response, no_content, page, page_params
from . import schemas  # noqa: F401  (registers the request schemas json_body validates against)

# Icons are fetched by every catalog page; an hour of caching, revalidated by ETag.
ICON_MAX_AGE = 3600
_OPEN = Principal.user("open-registry", is_platform_admin=True)


async def principal(request: web.Request) -> Principal:
    if AUTH not in request.app:
        return _OPEN  # auth off: an open registry, as /v2/ is
    if not request.headers.get("Authorization", "").strip():
        return Principal.anonymous()
    return await caller(request)


def appstore(request: web.Request) -> AppStore:
    config = request.app[CONFIG]
    hosts = {request.host.lower(), config.server.addr.lower()}
    if config.server.public_url:
        hosts.add(urlsplit(config.server.public_url).netloc.lower())
    return AppStore(request.app[REGISTRY], own_hosts=frozenset(h for h in hosts if h))


def _name_version(request: web.Request) -> tuple[str, str]:
    return request.match_info["name"], request.match_info["version"]


async def list_apps(request: web.Request) -> web.StreamResponse:
    who = await principal(request)
    limit, after = page_params(request)
    items, last = await appstore(request).list_apps(
        who, query=request.query.get("q", ""), category=request.query.get("category", ""),
        tenant=request.query.get("tenant", ""), limit=limit, after=after)
    return page(request, items, last, last is not None, limit)


async def list_categories(request: web.Request) -> web.StreamResponse:
    return json_response({"items": await appstore(request).categories(await principal(request))})


async def get_app(request: web.Request) -> web.StreamResponse:
    return json_response(await appstore(request).app(await principal(request), request.match_info["name"]))


async def get_version(request: web.Request) -> web.StreamResponse:
    name, version = _name_version(request)
    return json_response(await appstore(request).version(await principal(request), name, version))


def icon_response(request: web.Request, data: bytes, media_type: str, digest: str, *,
                  shared: bool) -> web.Response:
    """An icon as an image and nothing else, for the API and the web catalog alike: its own type
    (checked against the file's bytes when it was published), nosniff, a sandboxing CSP, an
    ETag (304 when it matches) and `shared` caching only for what anyone may see."""
    etag = f'"{digest}"'
    headers = {
        "ETag": etag,
        "Cache-Control": f"{'public' if shared else 'private'}, max-age={ICON_MAX_AGE}",
        "X-Content-Type-Options": "nosniff",
        # Opened on its own, an icon is an image and nothing else: no script, no plugins, no forms.
        "Content-Security-Policy": "default-src 'none'; sandbox",
        "Content-Disposition": "inline; filename=icon" + artifact.ICON_MEDIA_TYPES[media_type],
        "Vary": "Authorization, Cookie",
    }
    if etag in [t.strip() for t in request.headers.get("If-None-Match", "").split(",")]:
        return web.Response(status=304, headers=headers)
    return web.Response(body=data, content_type=media_type, headers=headers)


async def _icon(request: web.Request, tag: str | None) -> web.StreamResponse:
    who = await principal(request)
    data, media_type, digest = await appstore(request).icon(who, request.match_info["name"], tag)
    # Only public apps may sit in shared caches; anonymous callers see nothing else.
    return icon_response(request, data, media_type, digest, shared=who.kind.value == "anonymous")


async def get_version_icon(request: web.Request) -> web.StreamResponse:
    return await _icon(request, request.match_info["version"])


async def get_app_icon(request: web.Request) -> web.StreamResponse:
    return await _icon(request, None)


async def render_version(request: web.Request) -> web.StreamResponse:
    who = await principal(request)
    name, version = _name_version(request)
    body = await json_body(request, "AppRender")
    return json_response(await appstore(request).render(who, name, version, body["values"]))


async def update_version(request: web.Request) -> web.StreamResponse:
    who = await principal(request)
    name, version = _name_version(request)
    body = await json_body(request, "AppVersionUpdate")
    return json_response(await appstore(request).set_deprecated(who, name, version, body["deprecated"]))


async def delete_version(request: web.Request) -> web.StreamResponse:
    name, version = _name_version(request)
    await appstore(request).delete_version(await principal(request), name, version)
    return no_content()


def _icon_upload(raw: dict | None) -> artifact.Icon | None:
    if raw is None:
        return None
    try:
        data = base64.b64decode(raw["data"], validate=True)
    except (binascii.Error, ValueError):
        raise ValidationFailed.field("icon/data", "must be base64") from None
    try:
        name = artifact.check_file_name(raw["name"], "icon/name")
        media_type = artifact.check_icon(data)
    except artifact.ArtifactInvalid as exc:
        raise ValidationFailed.field(exc.field or "icon", exc.message) from None
    return artifact.Icon(name, data, media_type)


async def publish_version(request: web.Request) -> web.StreamResponse:
    who = await principal(request)
    name = request.match_info["name"]
    body = await json_body(request, "AppPublish")
    upload = Upload(tuple((f["name"], f["content"]) for f in body["compose_files"]), body["metadata"],
                    _icon_upload(body.get("icon")))
    created = await appstore(request).publish(who, name, upload)
    return json_response(created, status=201,
                         headers={"Location": f"/api/v1/appstore/apps/{name}/versions/{created['tag']}"})


async def _portainer(request: web.Request, version: str) -> web.StreamResponse:
    who = await principal(request)
    public = request.query.get("public", "false")
    if public not in ("true", "false"):
        raise ValidationFailed.parameter("public", "must be true or false")
    found = await appstore(request).apps_for_export(who, tenant=request.query.get("tenant", ""),
                                                    public_only=public == "true")
    base = f"{request.scheme}://{request.host}"
    summaries = {id(app): summary for summary, app in found}

    def logo(app) -> str | None:
        icon = summaries[id(app)]["icon"]
        return base + icon if icon else None

    def repository(app, app_version) -> dict[str, str] | None:
        # Portainer clones this git repository (hub.handlers.appstore.git) to deploy the stack.
        summary = summaries[id(app)]
        if not app_version.compose_files:
            return None
        return {"url": f"{base}/api/v1/appstore/git/{summary['repository']}/{summary['latest_tag']}.git",
                "stackfile": next(iter(app_version.compose_files))}

    feed = portainer.export_feed([app for _, app in found], version=version, repository=repository, logo=logo)
    return json_response(feed)


async def portainer_v2(request: web.Request) -> web.StreamResponse:
    return await _portainer(request, "2")


async def portainer_v3(request: web.Request) -> web.StreamResponse:
    return await _portainer(request, "3")
