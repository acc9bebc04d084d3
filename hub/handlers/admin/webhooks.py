"""Webhook subscriptions through the admin API (docs/events.md).

A tenant's subscriptions (`/tenants/{tenant}/webhooks`) get that tenant's events; its admins and
the platform admin manage them. Platform-wide ones (`/webhooks`) get every tenant's events; only
the platform admin manages them. One subscription (`/webhooks/{id}`) is managed by whoever may
manage its list; anyone else learns nothing of it (404)."""

from __future__ import annotations

from aiohttp import web

from auth import policy
from auth.policy import Manage

from ...events.cloudevents import rfc3339 as precise_time
from ...keys import WEBHOOKS
from ...problems import NotFound, ValidationFailed
from .common import ensure, json_body, json_response, no_content, page, page_params, positive_int_key, rfc3339, user


def _may_manage(principal, tenant: str | None) -> bool:
    return policy.can_manage_platform(principal) or (
        tenant is not None and policy.can_manage_tenant(principal, tenant, Manage.SETTINGS))


def webhook_json(record, secret: str | None = None) -> dict:
    out = {"id": record.id, "tenant": record.tenant, "name": record.name, "url": record.url,
           "event_types": list(record.event_types), "repositories": list(record.repositories),
           "enabled": record.enabled, "created_at": rfc3339(record.created_at), "created_by": record.created_by,
           "updated_at": rfc3339(record.updated_at),
           "previous_secret_valid_until": rfc3339(record.previous_secret_until)
           if record.previous_secret is not None else None}
    if secret is not None:
        out["secret"] = secret
    return out


def delivery_json(d) -> dict:
    return {"id": d.id, "event_id": d.event_id, "event_type": d.event_type, "repository": d.repository,
            "state": d.state, "attempts": d.attempts, "created_at": precise_time(d.created_at),
            "next_attempt_at": precise_time(d.next_attempt_at) if d.state == "pending" else None,
            "finished_at": precise_time(d.finished_at) if d.finished_at is not None else None,
            "last_status": d.last_status, "last_error": d.last_error, "last_latency_ms": d.last_latency_ms,
            "log": [{"attempt": a.attempt, "at": precise_time(a.at), "worker": a.owner, "status": a.status,
                     "latency_ms": a.latency_ms, "error": a.error} for a in d.log]}


def _id(request: web.Request, key: str) -> int:
    raw = request.match_info[key]
    if raw.isascii() and raw.isdigit() and 0 < int(raw) < 2 ** 62:
        return int(raw)
    raise NotFound(f"no such {key.removesuffix('_id')} {raw[:40]!r}")


async def _owned(request: web.Request, principal):
    """The subscription of the path, if the caller may manage it (else 404)."""
    webhook_id = _id(request, "webhook_id")
    record = await request.app[WEBHOOKS].find(webhook_id)
    if record is None or not _may_manage(principal, record.tenant):
        raise NotFound(f"no webhook {webhook_id}")
    return record


async def _list(request: web.Request, tenant: str | None) -> web.StreamResponse:
    limit, after = page_params(request)
    found = await request.app[WEBHOOKS].list(tenant, limit + 1, positive_int_key(after) or 0)
    more = len(found) > limit
    found = found[:limit]
    return page(request, [webhook_json(r) for r in found], str(found[-1].id) if found else None, more, limit)


async def _create(request: web.Request, principal, tenant: str | None) -> web.StreamResponse:
    body = await json_body(request, "WebhookCreate")
    record, secret = await request.app[WEBHOOKS].create(principal.name, tenant, body)
    return json_response(webhook_json(record, secret), status=201)


async def list_tenant_webhooks(request: web.Request) -> web.StreamResponse:
    principal = await user(request)
    tenant = request.match_info["tenant"]
    ensure(_may_manage(principal, tenant), "only the tenant's admins and the platform admin manage its webhooks")
    return await _list(request, tenant)


async def create_tenant_webhook(request: web.Request) -> web.StreamResponse:
    principal = await user(request)
    tenant = request.match_info["tenant"]
    ensure(_may_manage(principal, tenant), "only the tenant's admins and the platform admin manage its webhooks")
    return await _create(request, principal, tenant)


async def list_platform_webhooks(request: web.Request) -> web.StreamResponse:
    principal = await user(request)
    ensure(policy.can_manage_platform(principal), "only the platform admin manages platform-wide webhooks")
    return await _list(request, None)


async def create_platform_webhook(request: web.Request) -> web.StreamResponse:
    principal = await user(request)
    ensure(policy.can_manage_platform(principal), "only the platform admin manages platform-wide webhooks")
    return await _create(request, principal, None)


async def get_webhook(request: web.Request) -> web.StreamResponse:
    return json_response(webhook_json(await _owned(request, await user(request))))


async def update_webhook(request: web.Request) -> web.StreamResponse:
    principal = await user(request)
    record = await _owned(request, principal)
    body = await json_body(request, "WebhookUpdate")
    return json_response(webhook_json(await request.app[WEBHOOKS].update(principal.name, record.id, body)))


async def delete_webhook(request: web.Request) -> web.StreamResponse:
    principal = await user(request)
    record = await _owned(request, principal)
    await request.app[WEBHOOKS].delete(principal.name, record.id)
    return no_content()


async def rotate_webhook_secret(request: web.Request) -> web.StreamResponse:
    principal = await user(request)
    record = await _owned(request, principal)
    body = await json_body(request, "WebhookSecretRotation")
    rotated, secret = await request.app[WEBHOOKS].rotate_secret(principal.name, record.id, body)
    return json_response(webhook_json(rotated, secret))


async def list_webhook_deliveries(request: web.Request) -> web.StreamResponse:
    principal = await user(request)
    record = await _owned(request, principal)
    limit, after = page_params(request)
    state = request.query.get("state")
    if state is not None and state not in ("pending", "delivered", "dead"):
        raise ValidationFailed.parameter("state", "must be pending, delivered or dead")
    found = await request.app[WEBHOOKS].deliveries(record.id, limit + 1, positive_int_key(after), state)
    more = len(found) > limit
    found = found[:limit]
    return page(request, [delivery_json(d) for d in found], str(found[-1].id) if found else None, more, limit)


async def redeliver_webhook_delivery(request: web.Request) -> web.StreamResponse:
    principal = await user(request)
    record = await _owned(request, principal)
    await request.app[WEBHOOKS].redeliver(principal.name, record.id, _id(request, "delivery_id"))
    return no_content()
