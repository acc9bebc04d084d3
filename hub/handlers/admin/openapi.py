"""GET /api/v1/openapi.json: the OpenAPI 3.0 document, generated from the route tables and schemas.

The tables (table.API_ROUTES and the app store's) are imported here and this route (ROUTE) is
added to the admin API's by routes.py, which this module does not import: no import cycle."""

from __future__ import annotations

import functools
from typing import Any

from aiohttp import web

from ...problems import MEDIA_TYPE as PROBLEM
from ..appstore.routes import ROUTES as APPSTORE_ROUTES  # also registers the app store's schemas
from .schemas import REQUESTS, RESOURCES, page_schema, ref
from .table import API_ROUTES, Route

_ERRORS = {
    400: "The body is not JSON.",
    401: "No credentials, or wrong ones. Send Basic credentials or a Bearer token from /auth/token.",
    403: "Authenticated, but not allowed (robot accounts may only call GET /me).",
    404: "No such resource.",
    409: "The change conflicts with the current state.",
    413: "The request body is larger than the server accepts (registry.max_manifest_bytes).",
    422: "The request breaks the schema; `errors` lists each bad field (`pointer`) or parameter.",
    429: "Too many failed logins; retry after Retry-After seconds.",
}
_PARAMETERS = {  # name: (description, example)
    "tenant": ("Tenant name.", "team"),
    "username": ("User name.", "alice"),
    "name": ("Robot name.", "ci"),
    "repository": ("Repository name, slashes included.", "team/app"),
    "tag": ("Tag name.", "v1"),
    "upstream": ("Upstream name.", "docker.io"),
    "provider": ("Identity provider name (auth.providers).", "corp"),
    "secret_id": ("A CLI secret's id, as the list of them shows it.", "3f9a0c1d2b4e5f60"),
    "token_id": ("A refresh token's id (its jti), as the list of them shows it.", "W3pCg0m1vyrSx7Qn1Hk0dQ"),
    "app": ("The app's repository name, slashes included.", "team/apps/wordpress"),
    "version": ("The version's tag: the version with '+' replaced by '_'.", "1.0.0"),
    "run_id": ("A retention run's id.", "42"),
    "webhook_id": ("A webhook subscription's id.", "7"),
    "promotion_id": ("A promotion's id.", "12"),
    "digest": ("A manifest digest.", "sha256:" + "0" * 64),
    "delivery_id": ("A delivery's id, as the delivery log shows it.", "1234"),
}
# The app store's git endpoints (hub.handlers.appstore.git) speak git's smart HTTP protocol, not
# JSON: route name -> (request media type or None, success media type, its description, more errors).
_GIT = {
    "info_refs": (None, "application/x-git-upload-pack-advertisement", "The refs and capabilities (pkt-lines).",
                  [401, 403]),
    "upload_pack": ("application/x-git-upload-pack-request", "application/x-git-upload-pack-result",
                    "NAK (or ACK) and the packfile (pkt-lines; side-band-64k if asked).", [400, 401, 413, 422]),
}
_PAGE = [
    {"name": "limit", "in": "query", "required": False, "description": "Items per page (default 50).",
     "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}},
    {"name": "cursor", "in": "query", "required": False,
     "description": "Opaque: the `next_cursor` of the previous page.", "schema": {"type": "string"}},
]


def _error_statuses(route) -> list[int]:
    statuses = []
    if route.request:
        statuses += [400, 413]
    if not route.public:
        statuses += [401, 429] + ([] if route.robots else [403])
    if route.path_parameters or route.missing:
        statuses.append(404)
    if route.conflicts:
        statuses.append(409)
    if route.path.startswith("/appstore/git/"):
        statuses += _GIT[route.name][3]
    if route.request or route.paginated or route.query:
        statuses.append(422)
    return sorted(set(statuses))


def _operation(route) -> dict[str, Any]:
    op: dict[str, Any] = {"operationId": route.name, "summary": route.summary, "tags": [route.tag]}
    if route.description:
        op["description"] = route.description
    if route.public:
        op["security"] = []
    params = []
    for p in route.path_parameters:
        description, example = _PARAMETERS["repository" if route.path.startswith("/repositories/") and p == "name"
                                           else "app" if route.path.startswith("/appstore/") and p == "name"
                                           else p]
        params.append({"name": p, "in": "path", "required": True, "description": description,
                       "schema": {"type": "string", "minLength": 1}, "example": example})
    params += [{"name": n, "in": "query", "required": False, "description": d, "schema": {"type": "string"}}
               for n, d in route.query]
    if route.paginated:
        params += _PAGE
    if params:
        op["parameters"] = params
    if route.request:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": ref(route.request)}}}
    git = _GIT[route.name] if route.path.startswith("/appstore/git/") else None
    if git and git[0]:
        # The server reads the body whatever its Content-Type; git sends its own media type.
        op["requestBody"] = {"required": True, "content": {
            media: {"schema": {"type": "string", "format": "binary"}} for media in (git[0], "application/octet-stream")}}
    if git:
        success = {"description": git[2], "content": {git[1]: {"schema": {"type": "string", "format": "binary"}}}}
    elif route.name == "get_openapi_document":
        success: dict[str, Any] = {"description": "The document.",
                                   "content": {"application/json": {"schema": {"type": "object"}}}}
    elif route.response:
        schema = page_schema(route.response) if route.paginated else ref(route.response)
        success = {"description": "A page; a `Link: <...>; rel=\"next\"` header points to the next one."
                   if route.paginated else "OK.", "content": {"application/json": {"schema": schema}}}
        if route.paginated:
            success["headers"] = {"Link": {"description": "The next page, if any.", "schema": {"type": "string"}}}
    else:
        success = {"description": "Done."}
    op["responses"] = {str(route.status): success}
    for status in route.also:  # other successes, with the same body (a promotion: 201 done, 202 pending)
        op["responses"][str(status)] = success
    for status in _error_statuses(route):
        op["responses"][str(status)] = {"$ref": f"#/components/responses/E{status}"}
    return op


def build_document(routes) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.openapi_path, {})[route.method.lower()] = _operation(route)
    responses: dict[str, Any] = {}
    for status, description in _ERRORS.items():
        response: dict[str, Any] = {"description": description,
                                    "content": {PROBLEM: {"schema": ref("Problem")}}}
        if status == 401:
            response["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}
        if status == 429:
            response["headers"] = {"Retry-After": {"schema": {"type": "string"}}}
        responses[f"E{status}"] = response
    return {
        "openapi": "3.0.3",
        "info": {"title": "DaoHub admin API", "version": "1.0.0",
                 "description": "Tenants, users, members, robot accounts, repositories, tags, quotas, "
                                "pull-through cache upstreams, webhooks, identity providers and the audit log. "
                                "Webhook deliveries POST the schema `CloudEvent` (docs/events.md: headers and "
                                "signature verification). Errors are RFC 9457 problem details "
                                "(application/problem+json). Lists are paginated with ?limit= and ?cursor=."},
        "servers": [{"url": "/"}],
        "security": [{"basic": []}, {"bearer": []}],
        "tags": [{"name": t} for t in dict.fromkeys(r.tag for r in routes)],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "basic": {"type": "http", "scheme": "basic"},
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                           "description": "An access token from /auth/token (any scope)."},
            },
            "schemas": {**REQUESTS, **RESOURCES},
            "responses": responses,
        },
    }


@functools.cache
def document() -> dict[str, Any]:
    return build_document((ROUTE, *API_ROUTES, *APPSTORE_ROUTES))


async def get_openapi_document(request: web.Request) -> web.StreamResponse:
    return web.json_response(document())


ROUTE = Route("GET", "/openapi.json", get_openapi_document, "This document (OpenAPI 3.0)", "meta", public=True)
