"""Authorization of /v2/ requests against the bearer token: challenges, scopes, filters.

The decision itself (who may do what) was made by auth.policy when the token was issued;
here a request is only checked against the token's `access` claim, which needs no database
round trip. Only the catalog, which lists many repositories, looks repositories up, and so does a
mount whose token lacks pull on the source (to know whether asking for it would help).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from aiohttp import web

from auth.policy import RepositoryInfo, can_read, catalog_scope, tenant_of
from auth.scopes import CATALOG, REGISTRY, REPOSITORY
from auth.tokens import InvalidToken

from .actor import set_actor
from .errors import InsufficientScope, NameInvalid, Unauthorized
from .keys import ACTOR, AUTH, CAN_READ, CONFIG, ROUTE, VISIBLE_REPOSITORIES
from .keys import REGISTRY as REGISTRY_KEY
from .registry.names import validate_name

log = logging.getLogger("daohub.authz")

# The actions a client should ask for when it is challenged on a route of each kind.
_CHALLENGE_ACTIONS = {"pull": "pull", "push": "pull,push", "delete": "delete"}


def realm(request: web.Request) -> str:
    """auth.realm, else server.public_url's token endpoint, else the request's own scheme (https
    when `serve` speaks TLS) and Host."""
    config = request.app[CONFIG]
    if config.auth.realm:
        return config.auth.realm
    if config.server.public_url:
        return config.server.public_url.rstrip("/") + "/auth/token"
    return f"{request.scheme}://{request.host}/auth/token"


def challenge(request: web.Request, scope: str | None, error: str | None = None) -> str:
    parts = [f'realm="{realm(request)}"', f'service="{request.app[CONFIG].auth.service}"']
    if scope:
        parts.append(f'scope="{scope}"')
    if error:
        parts.append(f'error="{error}"')
    return "Bearer " + ",".join(parts)


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


async def authorize(request: web.Request, action: str | None, name: str | None, *,
                    also: str | None = None) -> None:
    """Raise Unauthorized/Denied unless the request's token allows `action` on `name`.

    `action` None is the API version check (any valid token, anonymous ones included).
    `also` is another name whose grant suffices (the name a pull-through cache request was
    sent under, when a token for it is decided by the same rules); challenges name `name`.
    """
    auth = request.app.get(AUTH)
    if auth is None:
        return
    if action == "catalog":
        resource_type, resource, needed, scope = REGISTRY, CATALOG, "*", "registry:catalog:*"
    elif action is None:
        resource_type = resource = needed = scope = None
    else:
        resource_type, resource, needed = REPOSITORY, name, action
        scope = f"repository:{name}:{_CHALLENGE_ACTIONS[action]}"
    mount_from = _mount_source(request, name) if action == "push" else None
    if mount_from is not None:
        # As distribution does: every scope the request needs, space-separated, so that a client
        # that follows the challenge asks for pull on the source too and the mount can happen.
        scope += f" repository:{mount_from}:pull"
    token = _bearer(request)
    if token is None:
        raise Unauthorized(headers={"WWW-Authenticate": challenge(request, scope)})
    try:
        verified = await auth.verify(token)
    except InvalidToken:
        raise Unauthorized("invalid or expired token",
                           headers={"WWW-Authenticate": challenge(request, scope, "invalid_token")}) from None
    if resource_type is not None and not verified.allows(resource_type, resource, needed) and not (
            also is not None and verified.allows(resource_type, also, needed)):
        raise _insufficient_scope(request, scope,
                                  f"requested access to the resource is denied: {needed} on {resource}")
    if mount_from is not None and not verified.allows(REPOSITORY, mount_from, "pull") \
            and await _may_pull(auth, verified.subject, mount_from):
        # The token lacks a pull on the source its holder may have (it followed a challenge
        # that named only the target): ask for it. A caller who may not pull the source gets
        # what the spec gives a mount that cannot happen, an upload session (202), and no
        # challenge it could never satisfy.
        raise _insufficient_scope(request, scope, f"a mount from {mount_from} needs pull on it")
    set_actor(verified.subject or None)  # the actor of the events this request writes
    request[CAN_READ] = lambda repository: verified.allows(REPOSITORY, repository, "pull")
    if verified.subject:
        request[ACTOR] = verified.subject
    if action == "catalog":
        request[VISIBLE_REPOSITORIES] = _catalog_filter(request, verified.subject)


def _insufficient_scope(request: web.Request, scope: str | None, message: str) -> InsufficientScope:
    challenged = challenge(request, scope, "insufficient_scope")
    return InsufficientScope(message, headers={"WWW-Authenticate": challenged})


def _mount_source(request: web.Request, name: str | None) -> str | None:
    """The `from` of a cross-repository mount (`POST .../blobs/uploads/?mount=&from=`) when it is
    a valid repository name other than `name` (anything else never goes into a header)."""
    if request.get(ROUTE) != "start_blob_upload" or "mount" not in request.query:
        return None
    source = request.query.get("from") or ""
    if not source or source == name:
        return None
    try:
        return validate_name(source)
    except NameInvalid:
        return None


async def _may_pull(auth, subject: str, repository: str) -> bool:
    """Whether a token for `subject` that asked for pull on `repository` would get it."""
    principal = await auth.principal_for_subject(subject)
    return bool(await auth.grant(principal, [f"repository:{repository}:pull"]))


def _catalog_filter(request: web.Request, subject: str):
    """The catalog page of the token's subject: the store fills it with names the subject may see
    (auth.policy.catalog_scope), so `n` and the Link's `last` only ever count and name those."""
    async def page(n: int, last: str | None) -> list[str]:
        registry = request.app[REGISTRY_KEY]
        principal = await request.app[AUTH].principal_for_subject(subject)
        now = datetime.now(UTC)
        names = await registry.list_repositories(n, last, catalog_scope(principal, now))
        public = await registry.public_repositories(names) if names else set()
        visible = [n for n in names if can_read(principal, RepositoryInfo(n, tenant_of(n), n in public), now)]
        if len(visible) != len(names):
            # The query and the policy disagree (a bug): the page is cut short and has no Link,
            # rather than name a repository the caller may not see.
            log.warning("catalog: %d names of the store's page for %r were not readable", len(names) - len(visible),
                        subject)
        return visible

    return page
