"""Users (platform admin), self-service password changes, and GET /me."""

from __future__ import annotations

from aiohttp import web

from auth import policy
from auth.providers import provider_of
from auth.service import AuthenticationFailed, CliSecret, LoginThrottled

from ...clientaddr import client_address
from ...keys import AUTH
from ...problems import Conflict, Forbidden, NotFound, TooManyRequests, ValidationFailed
from ...tenancy.service import RefreshTokenRecord, UserRecord
from .common import (
    administration,
    caller,
    collect,
    ensure,
    json_body,
    json_response,
    no_content,
    page,
    page_params,
    rfc3339,
    user,
)


def user_json(record: UserRecord) -> dict:
    return {"username": record.username, "is_admin": record.is_admin, "disabled": record.disabled,
            "created_at": rfc3339(record.created_at), "password_changed_at": rfc3339(record.password_changed_at),
            "provider": provider_of(record.password_hash) or "local"}


def cli_secret_json(secret: CliSecret) -> dict:
    body = {"id": secret.id, "name": secret.name, "created_at": rfc3339(secret.created_at),
            "expires_at": rfc3339(secret.expires_at), "last_used_at": rfc3339(secret.last_used_at)}
    if secret.secret is not None:
        body["secret"] = secret.secret
    return body


def refresh_token_json(record: RefreshTokenRecord) -> dict:
    """A refresh token as the API shows it: its id (the jti) and where it came from, never the token."""
    return {"id": record.jti, "client_id": record.client_id, "user_agent": record.user_agent,
            "issued_at": rfc3339(record.issued_at), "expires_at": rfc3339(record.expires_at),
            "last_used_at": rfc3339(record.last_used_at)}


async def get_me(request: web.Request) -> web.StreamResponse:
    """Who the credentials belong to; the one admin API call a robot may make."""
    principal = await caller(request)
    robot = principal.robot
    return json_response({
        "kind": principal.kind.value, "name": principal.name, "is_admin": principal.is_platform_admin,
        "memberships": [{"tenant": t, "role": r.value} for t, r in sorted(principal.memberships.items())],
        "robot": None if robot is None else {
            "tenant": robot.tenant, "repositories": list(robot.repositories), "actions": sorted(robot.actions),
            "expires_at": rfc3339(robot.expires_at.timestamp()) if robot.expires_at else None},
    })


async def list_users(request: web.Request) -> web.StreamResponse:
    principal = await user(request)
    ensure(policy.can_manage_platform(principal), "only the platform admin lists users")
    limit, after = page_params(request)
    users, more = await collect(administration(request, principal).list_users, lambda u: u.username, limit, after)
    return page(request, [user_json(u) for u in users], users[-1].username if users else None, more, limit)


async def create_user(request: web.Request) -> web.StreamResponse:
    principal = await user(request)
    ensure(policy.can_manage_platform(principal), "only the platform admin creates users")
    body = await json_body(request, "UserCreate")
    created = await administration(request, principal).create_user(body["username"], body["password"],
                                                                   is_admin=body.get("is_admin", False))
    return json_response(user_json(created), 201, {"Location": f"/api/v1/users/{created.username}"})


async def get_user(request: web.Request) -> web.StreamResponse:
    principal = await user(request)
    username = request.match_info["username"]
    ensure(policy.can_view_user(principal, username), "you may only read your own account")
    return json_response(user_json(await administration(request, principal).account(username)))


async def update_user(request: web.Request) -> web.StreamResponse:
    principal = await user(request)
    ensure(policy.can_manage_platform(principal), "only the platform admin changes accounts")
    body = await json_body(request, "UserUpdate")
    record = await administration(request, principal).update_user(request.match_info["username"], body)
    return json_response(user_json(record))


async def delete_user(request: web.Request) -> web.StreamResponse:
    principal = await user(request)
    ensure(policy.can_manage_platform(principal), "only the platform admin deletes accounts")
    await administration(request, principal).delete_user(request.match_info["username"])
    return no_content()


async def set_password(request: web.Request) -> web.StreamResponse:
    principal = await user(request)
    username = request.match_info["username"]
    ensure(policy.can_set_password(principal, username), "you may only change your own password")
    body = await json_body(request, "PasswordChange")
    if policy.needs_current_password(principal, username):
        current = body.get("current_password")
        if current is None:
            raise ValidationFailed.field("current_password", "is required to change your own password")
        try:
            await request.app[AUTH].authenticate(username, current, client_address(request))
        except LoginThrottled as exc:
            raise TooManyRequests(str(exc), headers={"Retry-After": str(exc.retry_after)}) from None
        except AuthenticationFailed:
            raise Forbidden("the current password is not correct") from None
    await administration(request, principal).set_password(username, body["password"])
    return no_content()


async def _token_owner(request: web.Request):
    principal = await user(request)
    username = request.match_info["username"]
    ensure(policy.can_manage_refresh_tokens(principal, username), "you may only manage your own refresh tokens")
    return principal, username


async def list_refresh_tokens(request: web.Request) -> web.StreamResponse:
    principal, username = await _token_owner(request)
    admin = administration(request, principal)
    await admin.account(username)
    limit, after = page_params(request)
    tokens, more = await collect(lambda n, a: admin.refresh_tokens(username, n, a), lambda t: t.jti, limit, after)
    return page(request, [refresh_token_json(t) for t in tokens], tokens[-1].jti if tokens else None, more, limit)


async def revoke_refresh_token(request: web.Request) -> web.StreamResponse:
    principal, username = await _token_owner(request)
    await administration(request, principal).revoke_refresh_tokens(username, request.match_info["token_id"])
    return no_content()


async def revoke_refresh_tokens(request: web.Request) -> web.StreamResponse:
    principal, username = await _token_owner(request)
    await administration(request, principal).revoke_refresh_tokens(username)
    return no_content()


# Personal CLI secrets (docs/sign-in.md) ----------------------------------------------------------------
async def _secret_owner(request: web.Request):
    principal = await user(request)
    username = request.match_info["username"]
    ensure(policy.can_manage_refresh_tokens(principal, username), "you may only manage your own CLI secrets")
    await administration(request, principal).account(username)  # 404 for no such user
    return principal, username


async def list_cli_secrets(request: web.Request) -> web.StreamResponse:
    _, username = await _secret_owner(request)
    limit, after = page_params(request)
    items = [s for s in await request.app[AUTH].cli_secrets(username) if after is None or s.id > after]
    shown = items[:limit]
    return page(request, [cli_secret_json(s) for s in shown], shown[-1].id if shown else None, len(items) > limit,
                limit)


async def create_cli_secret(request: web.Request) -> web.StreamResponse:
    principal, username = await _secret_owner(request)
    # Only for yourself: a secret someone else made would let them sign in as you.
    ensure(principal.name == username, "you may only create CLI secrets for yourself")
    body = await json_body(request, "CliSecretCreate")
    days = body.get("expires_in_days")
    made = await request.app[AUTH].create_cli_secret(username, body["name"], principal.name,
                                                     days * 86400.0 if days else None)
    if made is None:
        raise Conflict("you have as many CLI secrets as allowed: delete one first")
    return json_response(cli_secret_json(made), 201,
                         {"Location": f"/api/v1/users/{username}/cli-secrets/{made.id}", "Cache-Control": "no-store"})


async def delete_cli_secret(request: web.Request) -> web.StreamResponse:
    principal, username = await _secret_owner(request)
    if not await request.app[AUTH].delete_cli_secret(username, request.match_info["secret_id"], principal.name):
        raise NotFound("no such CLI secret")
    return no_content()
