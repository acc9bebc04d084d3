"""The app store API's route table: registered by setup() and described in the OpenAPI document
(hub.handlers.admin.openapi), like the admin API's.

Repository names hold slashes, so routes that end after the name come last: aiohttp tries routes
in the order they were added.
"""

from __future__ import annotations

import functools

from aiohttp import web

from ...keys import ROUTE
from ..admin.table import Route
from . import apps, git

R = Route
_FEED_QUERY = (("tenant", "Only this tenant's apps (those you may see: anonymous callers get its public ones)."),
               ("public", "`true`: only public apps, whoever asks (the feed to hand to a Portainer outside)."))
ROUTES: tuple[Route, ...] = (
    R("GET", "/appstore/apps", apps.list_apps, "List and search the apps you may see (anonymous: public apps)",
      "appstore", response="AppSummary", paginated=True, public=True,
      query=(("q", "Words that must all appear in the key, title, summary or repository name."),
             ("category", "Only apps in this category."), ("tenant", "Only this tenant's apps.")),
      description="An app is a repository holding app artifacts; you see it exactly when you may pull the "
                  "repository. Private apps of other tenants are never listed."),
    R("GET", "/appstore/categories", apps.list_categories, "Categories of the apps you may see", "appstore",
      response="AppCategories", public=True),
    R("GET", "/appstore/portainer/v2.json", apps.portainer_v2, "Portainer app templates (v2) of the apps you "
      "may see", "appstore", response="PortainerTemplates", public=True, query=_FEED_QUERY,
      description="Usable as Portainer's App Templates URL. Anonymous callers get the public apps."),
    R("GET", "/appstore/portainer/v3.json", apps.portainer_v3, "Portainer app templates (v3) of the apps you "
      "may see", "appstore", response="PortainerTemplates", public=True, query=_FEED_QUERY),
    R("GET", "/appstore/git/{name:.+}/{version}.git/info/refs", git.info_refs,
      "A version as a read-only git repository: the ref advertisement (smart HTTP, protocol v0)", "appstore",
      public=True, query=(("service", "`git-upload-pack` (git-receive-pack: 403, the repository is read-only)."),),
      description="One branch, `main`, with one commit: the compose file(s) as published and a README. The "
                  "commit depends only on the version, so its id is the same on every clone and replica. "
                  "Portainer's compose-stack templates point here. Private apps need Basic credentials of a "
                  "user or robot who may pull them, sent unasked (outsiders get 404)."),
    R("POST", "/appstore/git/{name:.+}/{version}.git/git-upload-pack", git.upload_pack,
      "A version as a read-only git repository: the packfile (smart HTTP, protocol v0)", "appstore",
      public=True, description="The body is git's upload-pack request (want/have/done pkt-lines, at most 16 KiB); "
                               "the answer NAK and a packfile of undeltified objects, side-band-64k if asked."),
    R("GET", "/appstore/apps/{name:.+}/versions/{version}/icon", apps.get_version_icon,
      "The icon of an app version (an image)", "appstore", public=True),
    R("POST", "/appstore/apps/{name:.+}/versions/{version}/render", apps.render_version,
      "Render a version with parameter values: the compose file and an image check", "appstore",
      request="AppRender", response="AppRendered", public=True,
      description="Bad values answer 422 with one error per field (`#/values/<parameter>`). Each image the "
                  "compose file uses is checked: whether it names this DaoHub, and, if you may pull its "
                  "repository, whether it exists."),
    R("GET", "/appstore/apps/{name:.+}/versions/{version}", apps.get_version,
      "An app version: its parameters and compose template", "appstore", response="AppVersion", public=True),
    R("PATCH", "/appstore/apps/{name:.+}/versions/{version}", apps.update_version,
      "Deprecate or undeprecate a version (maintainer, tenant admin)", "appstore", request="AppVersionUpdate",
      response="AppVersion"),
    R("DELETE", "/appstore/apps/{name:.+}/versions/{version}", apps.delete_version,
      "Delete a version: its manifest and every tag on it; blobs are left to GC (needs delete)", "appstore", 204),
    R("POST", "/appstore/apps/{name:.+}/versions", apps.publish_version,
      "Publish a version: DaoHub builds the OCI artifact and pushes it as you (needs push)", "appstore", 201,
      request="AppPublish", response="AppVersion", conflicts=True,
      description="The artifact has the shape of `docker compose publish` (artifactType "
                  "application/vnd.docker.compose.project) plus a DaoHub metadata layer and the icon; it is "
                  "tagged with the version ('+' becomes '_'). An existing version is not replaced (409)."),
    R("GET", "/appstore/apps/{name:.+}/icon", apps.get_app_icon, "The icon of an app's latest version",
      "appstore", public=True),
    R("GET", "/appstore/apps/{name:.+}", apps.get_app, "An app and its versions, newest first", "appstore",
      response="App", public=True),
)


def add_routes(app: web.Application) -> None:
    for route in ROUTES:
        app.router.add_route(route.method, route.full_path, functools.partial(_dispatch, route))


async def _dispatch(route: Route, request: web.Request) -> web.StreamResponse:
    request[ROUTE] = f"appstore.{route.name}"  # the metrics label
    return await route.handler(request)
