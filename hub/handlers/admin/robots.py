"""Robot accounts of a tenant (tenant admin or platform admin). The secret is shown once, at creation."""

from __future__ import annotations

import time

from aiohttp import web

from auth import policy
from auth.policy import Manage
from auth.service import robot_account

from ...tenancy.service import RobotRecord
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


def robot_json(robot: RobotRecord) -> dict:
    """A robot as the API shows it: never its secret hash."""
    return {"account": robot_account(robot.tenant, robot.name), "tenant": robot.tenant, "name": robot.name,
            "repositories": list(robot.repositories), "actions": list(robot.actions),
            "expires_at": rfc3339(robot.expires_at), "revoked": robot.revoked,
            "active": not robot.revoked and (robot.expires_at is None or robot.expires_at > time.time()),
            "created_at": rfc3339(robot.created_at)}


async def _tenant_admin(request: web.Request):
    principal = await user(request)
    tenant = request.match_info["tenant"]
    ensure(policy.can_manage_tenant(principal, tenant, Manage.ROBOTS), "only an admin of the tenant manages robots")
    return principal, tenant


async def list_robots(request: web.Request) -> web.StreamResponse:
    principal, tenant = await _tenant_admin(request)
    limit, after = page_params(request)
    admin = administration(request, principal)
    await admin.tenant(tenant)
    robots, more = await collect(lambda n, a: admin.list_robots(tenant, n, a), lambda r: r.name, limit, after)
    return page(request, [robot_json(r) for r in robots], robots[-1].name if robots else None, more, limit)


async def create_robot(request: web.Request) -> web.StreamResponse:
    principal, tenant = await _tenant_admin(request)
    body = await json_body(request, "RobotCreate")
    robot, secret = await administration(request, principal).create_robot(
        tenant, body["name"], body["repositories"], body["actions"], body.get("expires_in_days"))
    return json_response({**robot_json(robot), "secret": secret}, 201,
                         {"Location": f"/api/v1/tenants/{tenant}/robots/{robot.name}", "Cache-Control": "no-store"})


async def get_robot(request: web.Request) -> web.StreamResponse:
    principal, tenant = await _tenant_admin(request)
    robot = await administration(request, principal).robot(tenant, request.match_info["name"])
    return json_response(robot_json(robot))


async def revoke_robot(request: web.Request) -> web.StreamResponse:
    principal, tenant = await _tenant_admin(request)
    robot = await administration(request, principal).revoke_robot(tenant, request.match_info["name"])
    return json_response(robot_json(robot))


async def delete_robot(request: web.Request) -> web.StreamResponse:
    principal, tenant = await _tenant_admin(request)
    await administration(request, principal).delete_robot(tenant, request.match_info["name"])
    return no_content()
