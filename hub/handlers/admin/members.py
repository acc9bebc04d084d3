"""Members of a tenant and their roles (tenant admin or platform admin)."""

from __future__ import annotations

from aiohttp import web

from auth import policy
from auth.policy import Manage

from .common import (
    administration,
    collect,
    ensure,
    json_body,
    json_response,
    no_content,
    page,
    page_params,
    user,
)


async def _tenant_admin(request: web.Request):
    principal = await user(request)
    tenant = request.match_info["tenant"]
    ensure(policy.can_manage_tenant(principal, tenant, Manage.MEMBERS), "only an admin of the tenant manages members")
    return principal, tenant


async def list_members(request: web.Request) -> web.StreamResponse:
    principal, tenant = await _tenant_admin(request)
    limit, after = page_params(request)
    admin = administration(request, principal)
    await admin.tenant(tenant)
    members, more = await collect(lambda n, a: admin.tenant_members(tenant, n, a), lambda m: m.username, limit, after)
    return page(request, [{"username": m.username, "role": m.role} for m in members],
                members[-1].username if members else None, more, limit)


async def put_member(request: web.Request) -> web.StreamResponse:
    principal, tenant = await _tenant_admin(request)
    body = await json_body(request, "MemberUpdate")
    username = request.match_info["username"]
    await administration(request, principal).set_member(tenant, username, body["role"])
    return json_response({"username": username, "role": body["role"]})


async def delete_member(request: web.Request) -> web.StreamResponse:
    principal, tenant = await _tenant_admin(request)
    await administration(request, principal).set_member(tenant, request.match_info["username"], None)
    return no_content()
