"""The Docker token endpoint (GET with Basic credentials, OAuth2 POST) and the JWKS."""

from __future__ import annotations

import base64

from aiohttp import web

from auth.providers import ProviderUnavailable
from auth.service import AuthenticationFailed, LoginThrottled
from auth.scopes import REPOSITORY
from auth.tokens import InvalidToken

from ..clientaddr import client_address
from ..errors import InvalidParameters, TooManyRequests, Unauthorized, Unavailable
from ..keys import AUTH, CONFIG, ROUTE
from ..tenancy.service import is_repository_name

# Bounds of one token request: every scope is looked up and written to the audit row, so a
# request may not name more than a client could use; the form and query string are small.
MAX_SCOPES = 64
MAX_REQUEST_BYTES = 64 * 1024


def basic_credentials(request: web.Request) -> tuple[str, str] | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except ValueError:  # binascii.Error, UnicodeDecodeError, or text that is not ASCII
        raise Unauthorized("malformed Basic credentials") from None
    user, sep, password = decoded.partition(":")
    if not sep or not user:
        raise Unauthorized("malformed Basic credentials")
    return user, password


def _scopes(values: list[str]) -> list[str]:
    """The requested scopes; 400 for more than MAX_SCOPES, or a repository name that is not canonical."""
    parts = [part for value in values for part in value.split(" ") if part]
    if len(parts) > MAX_SCOPES:
        raise _oauth_error("invalid_scope", f"{len(parts)} scopes requested; at most {MAX_SCOPES} per request")
    for part in parts:
        rtype, _, rest = part.partition(":")
        name = rest.rpartition(":")[0]
        if rtype == REPOSITORY and name and not is_repository_name(name):
            raise _oauth_error("invalid_scope", f"not a valid repository name in scope {part[:300]!r}: names are "
                                                "lowercase components separated by '/', without '.' or '..' "
                                                "segments")
    return parts


def _check_size(request: web.Request) -> None:
    if len(request.query_string) > MAX_REQUEST_BYTES:
        raise _oauth_error("invalid_request", f"the query string is over {MAX_REQUEST_BYTES} bytes")
    if request.content_length is not None and request.content_length > MAX_REQUEST_BYTES:
        raise _oauth_error("invalid_request", f"the request body is over {MAX_REQUEST_BYTES} bytes")


async def _form(request: web.Request):
    """The POSTed form, read up to MAX_REQUEST_BYTES (a chunked body has no Content-Length to check first)."""
    try:
        return await request.clone(client_max_size=MAX_REQUEST_BYTES).post()
    except web.HTTPRequestEntityTooLarge:
        raise _oauth_error("invalid_request", f"the request body is over {MAX_REQUEST_BYTES} bytes") from None
    except ValueError:  # aiohttp's UnicodeDecodeError for a body that is not UTF-8
        raise _oauth_error("invalid_request", "the form could not be read: it is not UTF-8") from None


def _check_service(request: web.Request, service: str | None) -> None:
    expected = request.app[CONFIG].auth.service
    if service and service != expected:
        raise InvalidParameters(f"unknown service {service[:100]!r}; this token service is {expected!r}")


async def _login(request: web.Request, account: str, secret: str):
    try:
        return await request.app[AUTH].authenticate(account, secret, client_address(request))
    except LoginThrottled as exc:
        raise TooManyRequests(str(exc), headers={"Retry-After": str(exc.retry_after)}) from None
    except AuthenticationFailed as exc:
        raise Unauthorized(str(exc), headers={"WWW-Authenticate": 'Basic realm="daohub"'}) from None
    except ProviderUnavailable as exc:
        # Not "wrong password": the directory that knows this account could not be asked.
        raise Unavailable(f"{exc}; sign-in with this account is not possible right now, try again later",
                          headers={"Retry-After": "30"}) from None


def _token_response(issued, refresh: str | None) -> web.Response:
    body = {"token": issued.token, "access_token": issued.token, "expires_in": issued.expires_in,
            "issued_at": issued.issued_at}
    if refresh:
        body["refresh_token"] = refresh
    response = web.json_response(body)
    response.headers["Cache-Control"] = "no-store"
    return response


async def get_token(request: web.Request) -> web.StreamResponse:
    """GET /auth/token?service=&scope=...&offline_token=true&client_id=, Basic credentials optional."""
    request[ROUTE] = "get_token"
    auth = request.app[AUTH]
    _check_size(request)
    _check_service(request, request.query.get("service"))
    scopes = _scopes(request.query.getall("scope", []))
    credentials = basic_credentials(request)
    if credentials is None:
        from auth.policy import Principal

        principal = Principal.anonymous()
    else:
        principal = await _login(request, *credentials)
    offline = request.query.get("offline_token", "").lower() == "true"
    issued, refresh = await auth.issue(principal, scopes, offline=offline,
                                       client_id=request.query.get("client_id", ""), user_agent=_user_agent(request))
    return _token_response(issued, refresh)


async def post_token(request: web.Request) -> web.StreamResponse:
    """POST /auth/token, OAuth2 form: grant_type=password|refresh_token, client_id required."""
    request[ROUTE] = "post_token"
    auth = request.app[AUTH]
    _check_size(request)
    form = await _form(request)
    _check_service(request, form.get("service"))
    client_id = form.get("client_id")
    if not client_id:
        raise _oauth_error("invalid_request", "client_id is required")
    grant_type = form.get("grant_type")
    scopes = _scopes([form.get("scope", "")])
    if grant_type == "password":
        username, password = form.get("username"), form.get("password")
        if not username or password is None:
            raise _oauth_error("invalid_request", "username and password are required")
        principal = await _login(request, username, password)
        offline = form.get("access_type") == "offline"
    elif grant_type == "refresh_token":
        try:
            principal = await auth.redeem_refresh_token(form.get("refresh_token", ""), client_id)
        except InvalidToken:
            raise Unauthorized("invalid refresh token") from None
        offline = False
    else:
        raise _oauth_error("unsupported_grant_type", "grant_type must be password or refresh_token")
    issued, refresh = await auth.issue(principal, scopes, offline=offline, client_id=client_id,
                                       user_agent=_user_agent(request))
    if grant_type == "refresh_token":
        refresh = form.get("refresh_token")
    return _token_response(issued, refresh)


def _user_agent(request: web.Request) -> str:
    return request.headers.get("User-Agent", "")


def _oauth_error(code: str, message: str) -> InvalidParameters:
    return InvalidParameters(message, detail={"error": code})


async def jwks(request: web.Request) -> web.StreamResponse:
    request[ROUTE] = "jwks"
    auth = request.app[AUTH]
    await auth.refresh_keys_if_stale()
    return web.json_response(auth.verifier_keyring().public_jwks())
