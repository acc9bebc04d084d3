"""The audit log, newest first: all of it for the platform admin, a tenant's rows for its admins."""

from __future__ import annotations

import json

from aiohttp import web

from auth import policy

from ...tenancy.service import AuditRecord
from .common import administration, ensure, page, page_params, positive_int_key, rfc3339, user


def _detail(detail_json: str | None) -> dict | None:
    if not detail_json:
        return None
    try:
        detail = json.loads(detail_json)
    except ValueError:
        return {"text": detail_json}
    return detail if isinstance(detail, dict) else {"value": detail}


def audit_json(entry: AuditRecord) -> dict:
    return {"id": entry.id, "at": rfc3339(entry.at), "actor": entry.actor, "action": entry.action,
            "target": entry.target, "tenant": entry.tenant, "detail": _detail(entry.detail_json)}


async def list_audit(request: web.Request) -> web.StreamResponse:
    principal = await user(request)
    tenant = request.query.get("tenant")
    ensure(policy.can_read_audit(principal, tenant), "only admins read the audit log (tenant admins: their tenant's)")
    limit, after = page_params(request)
    before = positive_int_key(after)
    scope = {tenant} if tenant is not None else policy.audit_tenants(principal)
    entries = await administration(request, principal).audit_entries(limit + 1, before, tenants=scope)
    more = len(entries) > limit
    entries = entries[:limit]
    return page(request, [audit_json(e) for e in entries], str(entries[-1].id) if entries else None, more, limit)
