"""Garbage collection through the admin API: start a pass now, read the run history.

The platform admin may run or dry-run a pass over everything or one tenant; a tenant's admins
may dry-run their own tenant (and read its runs). A pass runs within the request (a large
backlog is better left to serve's own passes, every gc.interval_seconds)."""

from __future__ import annotations

from aiohttp import web

from auth import policy
from auth.policy import Manage

from ...keys import GC
from ...registry.gc import GcReport
from ...tenancy.service import GcRunRecord
from .common import (
    administration,
    ensure,
    json_body,
    json_response,
    page,
    page_params,
    positive_int_key,
    rfc3339,
    user,
)


def _is_tenant_admin(principal, tenant: str | None) -> bool:
    return tenant is not None and policy.can_manage_tenant(principal, tenant, Manage.SETTINGS)


def run_json(run: GcRunRecord) -> dict:
    return {"id": run.id, "started_at": rfc3339(run.started_at), "finished_at": rfc3339(run.finished_at),
            "dry_run": run.dry_run, "tenant": run.tenant, "sweep": run.sweep, "grace_seconds": run.grace_seconds,
            "counts": run.counts, "tenant_bytes_freed": run.tenant_bytes_freed, "errors": run.errors,
            "deleted": None}


def report_json(report: GcReport) -> dict:
    return {"id": report.run_id, "started_at": rfc3339(report.started_at),
            "finished_at": rfc3339(report.started_at + report.duration_seconds), "dry_run": report.dry_run,
            "tenant": report.tenant, "sweep": report.sweep, "grace_seconds": report.grace_seconds,
            "counts": report.counts, "tenant_bytes_freed": report.tenant_bytes_freed, "errors": report.errors,
            "deleted": {"manifests": report.manifests, "links": report.links, "blobs": report.blobs,
                        "orphans": report.orphans}}


async def start_gc_run(request: web.Request) -> web.StreamResponse:
    principal = await user(request)
    body = await json_body(request, "GcRunRequest")
    dry_run, tenant = body.get("dry_run", False), body.get("tenant")
    ensure(policy.can_manage_platform(principal) or (dry_run and _is_tenant_admin(principal, tenant)),
           "only the platform admin runs GC (tenant admins may dry-run their tenant)")
    report = await request.app[GC].run(dry_run=dry_run, tenant=tenant)
    await administration(request, principal).audit("gc.run", tenant or "*", tenant=tenant)
    return json_response(report_json(report), status=201)


async def list_gc_runs(request: web.Request) -> web.StreamResponse:
    principal = await user(request)
    tenant = request.query.get("tenant")
    ensure(policy.can_manage_platform(principal) or _is_tenant_admin(principal, tenant),
           "only the platform admin reads the GC history (tenant admins: their tenant's)")
    limit, after = page_params(request)
    runs = await administration(request, principal).gc_runs(limit + 1, tenant, before=positive_int_key(after))
    more = len(runs) > limit
    runs = runs[:limit]
    return page(request, [run_json(r) for r in runs], str(runs[-1].id) if runs else None, more, limit)
