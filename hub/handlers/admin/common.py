"""What every admin handler needs: who is asking, the permission gate, JSON bodies, pages."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from aiohttp import web

from auth import policy
from auth.policy import Principal
from auth.service import AuthenticationFailed, LoginThrottled
from auth.tokens import InvalidToken

from ... import safejson
from ...clientaddr import client_address
from ...actor import set_actor
from ...errors import Unauthorized
from ...keys import ADMINISTRATION, AUTH
from ...problems import AuthenticationRequired, Forbidden, MalformedRequest, TooManyRequests, ValidationFailed
from ...tenancy.service import Administration
from ..token import basic_credentials
from .schemas import validate

T = TypeVar("T")

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
_PRINCIPAL = web.RequestKey("admin_principal", Principal)


def now() -> datetime:
    return datetime.now(UTC)


def rfc3339(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# Who is asking ----------------------------------------------------------------------------------
async def caller(request: web.Request) -> Principal:
    """The authenticated principal (a user or a robot): Bearer token or Basic credentials, else 401."""
    cached = request.get(_PRINCIPAL)
    if cached is not None:
        return cached
    auth = request.app[AUTH]
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        try:
            verified = await auth.verify(value.strip())
        except InvalidToken:
            raise AuthenticationRequired("invalid or expired token") from None
        principal = await auth.principal_for_subject(verified.subject)
    else:
        try:
            credentials = basic_credentials(request)
        except Unauthorized:
            raise AuthenticationRequired("malformed Basic credentials") from None
        if credentials is None:
            raise AuthenticationRequired()
        try:
            principal = await auth.authenticate(*credentials, client_address(request))
        except LoginThrottled as exc:
            raise TooManyRequests(str(exc), headers={"Retry-After": str(exc.retry_after)}) from None
        except AuthenticationFailed as exc:
            raise AuthenticationRequired(str(exc)) from None
    if not principal.is_authenticated(now()):
        raise AuthenticationRequired("account unknown, disabled, revoked or expired")
    request[_PRINCIPAL] = principal
    set_actor(principal.name)  # the actor of the events this request writes
    return principal


async def user(request: web.Request) -> Principal:
    """The caller, who must be allowed to use the admin API at all (robots are not)."""
    principal = await caller(request)
    ensure(policy.can_use_admin_api(principal, now()), "robot accounts cannot use the admin API")
    return principal


def ensure(allowed: bool, detail: str = "you are not allowed to do this") -> None:
    """Turn a policy answer into 403."""
    if not allowed:
        raise Forbidden(detail)


def administration(request: web.Request, principal: Principal) -> Administration:
    """What the admin API changes and reads goes through: the Administration acting for `principal`."""
    return request.app[ADMINISTRATION](principal.name)


# Bodies -----------------------------------------------------------------------------------------
def _no_constants(token: str) -> Any:
    raise ValueError(f"{token} is not JSON")


async def json_body(request: web.Request, schema: str) -> dict[str, Any]:
    """The request body parsed as JSON and checked against the named schema (422 with field errors)."""
    raw = await request.read()
    if not raw.strip():
        raise MalformedRequest("a JSON request body is required")
    try:
        body = safejson.loads(raw, parse_constant=_no_constants, unpaired_surrogates=False)
    except (safejson.JsonTooDeep, safejson.UnpairedSurrogate) as exc:
        raise MalformedRequest(f"the request body is not valid JSON: {exc}") from None
    except ValueError:
        raise MalformedRequest("the request body is not valid JSON") from None
    validate(body, schema)
    return body


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(body, status=status, headers=headers)


def no_content() -> web.Response:
    return web.Response(status=204)


# Pages ------------------------------------------------------------------------------------------
def _encode_cursor(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> str:
    bad = ValidationFailed.parameter("cursor", "not a cursor returned by this API")
    if len(cursor) > 1024:
        raise bad
    try:
        key = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise bad from None
    if not key:
        raise bad
    return key


def page_params(request: web.Request) -> tuple[int, str | None]:
    """(limit, key after which the page starts) from ?limit= and ?cursor=."""
    raw = request.query.get("limit")
    if raw is None:
        limit = DEFAULT_LIMIT
    elif raw.isascii() and raw.isdigit() and 1 <= int(raw) <= MAX_LIMIT:
        limit = int(raw)
    else:
        raise ValidationFailed.parameter("limit", f"must be an integer from 1 to {MAX_LIMIT}")
    cursor = request.query.get("cursor")
    return limit, _decode_cursor(cursor) if cursor is not None else None


async def collect(fetch: Callable[[int, str | None], Awaitable[Sequence[T]]], key: Callable[[T], str],
                  limit: int, after: str | None, keep: Callable[[T], bool] = lambda _: True) -> tuple[list[T], bool]:
    """Up to `limit` kept items after `after`, reading the store in batches; and whether more follow."""
    kept: list[T] = []
    batch = limit + 1
    while True:
        rows = await fetch(batch, after)
        for row in rows:
            if keep(row):
                kept.append(row)
                if len(kept) > limit:
                    return kept[:limit], True
        if len(rows) < batch:
            return kept, False
        after = key(rows[-1])
        batch = min(max(batch * 2, 64), MAX_LIMIT + 1)


def page(request: web.Request, items: list[dict[str, Any]], last_key: str | None, more: bool,
         limit: int) -> web.Response:
    """`{"items": [...], "next_cursor": ...}` with a `Link: <...>; rel="next"` header when more follow."""
    cursor = _encode_cursor(last_key) if more and last_key is not None else None
    response = json_response({"items": items, "next_cursor": cursor})
    if cursor is not None:
        url = request.rel_url.update_query(limit=str(limit), cursor=cursor)
        response.headers["Link"] = f'<{url}>; rel="next"'
    return response


def positive_int_key(key: str | None, parameter: str = "cursor") -> int | None:
    """A numeric page key (audit ids)."""
    if key is None:
        return None
    if not key.isascii() or not key.isdigit() or not 0 < int(key) < 2 ** 63:
        raise ValidationFailed.parameter(parameter, "not a cursor returned by this API")
    return int(key)
