"""Tenants: list, create, read, change (platform admin), delete when empty; and their quota."""

from __future__ import annotations

from aiohttp import web

from auth import policy

from ...tenancy.service import TenantRecord
from .common import (
    administration,
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


def tenant_json(tenant: TenantRecord) -> dict:
    return {"name": tenant.name, "display_name": tenant.display_name, "quota_bytes": tenant.quota_bytes,
            "created_at": rfc3339(tenant.created_at)}


async def list_tenants(request: web.Request) -> web.StreamResponse:
    principal = await user(request)
    limit, after = page_params(request)
    visible = policy.visible_tenants(principal)
    admin = administration(request, principal)
    tenants, more = await collect(lambda n, a: admin.list_tenants(n, a, only=visible), lambda t: t.name, limit, after)
    return page(request, [tenant_json(t) for t in tenants], tenants[-1].name if tenants else None, more, limit)


async def create_tenant(request: web.Request) -> web.StreamResponse:
    principal = await user(request)
    ensure(policy.can_manage_platform(principal), "only the platform admin creates tenants")
    body = await json_body(request, "TenantCreate")
    tenant = await administration(request, principal).create_tenant(
        body["name"], body.get("display_name", ""), body.get("quota_bytes"))
    return json_response(tenant_json(tenant), 201, {"Location": f"/api/v1/tenants/{tenant.name}"})


async def get_tenant(request: web.Request) -> web.StreamResponse:
    principal = await user(request)
    name = request.match_info["tenant"]
    ensure(policy.can_view_tenant(principal, name), "you are not a member of this tenant")
    return json_response(tenant_json(await administration(request, principal).tenant(name)))


async def update_tenant(request: web.Request) -> web.StreamResponse:
    principal = await user(request)
    ensure(policy.can_manage_platform(principal), "only the platform admin changes tenant settings")
    body = await json_body(request, "TenantUpdate")
    tenant = await administration(request, principal).update_tenant(request.match_info["tenant"], body)
    return json_response(tenant_json(tenant))


async def delete_tenant(request: web.Request) -> web.StreamResponse:
    principal = await user(request)
    ensure(policy.can_manage_platform(principal), "only the platform admin deletes tenants")
    await administration(request, principal).delete_tenant(request.match_info["tenant"])
    return no_content()


async def get_quota(request: web.Request) -> web.StreamResponse:
    principal = await user(request)
    name = request.match_info["tenant"]
    ensure(policy.can_view_tenant(principal, name), "you are not a member of this tenant")
    admin = administration(request, principal)
    tenant = await admin.tenant(name)
    used = await admin.tenant_usage(name)
    return json_response({"tenant": name, "limit_bytes": tenant.quota_bytes, "used_bytes": used})
