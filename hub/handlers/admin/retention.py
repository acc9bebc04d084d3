"""Retention through the admin API: a tenant's policy (read, replace, delete), its immutable-tag
rules (the same), and runs (start now, read the history and one run's verdicts). docs/retention.md describes the policy document.

A tenant's admins and the platform admin manage its policy and may run retention over it; only the
platform admin runs it over every tenant at once. A run goes within the request (serve's own
scheduled runs, every retention.interval_seconds, are for the routine work)."""

from __future__ import annotations

from aiohttp import web

from auth import policy
from auth.policy import Manage

from ...keys import RETENTION
from ...problems import NotFound, ValidationFailed
from .common import (
    administration,
    ensure,
    json_body,
    json_response,
    no_content,
    page,
    page_params,
    positive_int_key,
    rfc3339,
    user,
)

_MAX_BODY_VERDICTS = 100_000


def _may_manage(principal, tenant: str | None) -> bool:
    return policy.can_manage_platform(principal) or (
        tenant is not None and policy.can_manage_tenant(principal, tenant, Manage.SETTINGS))


def policy_json(stored) -> dict:
    return {"tenant": stored.tenant, "policy": stored.document, "updated_at": rfc3339(stored.updated_at),
            "updated_by": stored.updated_by}


async def get_retention_policy(request: web.Request) -> web.StreamResponse:
    principal = await user(request)
    tenant = request.match_info["tenant"]
    ensure(_may_manage(principal, tenant), "only the tenant's admins and the platform admin read its policy")
    return json_response(policy_json(await administration(request, principal).retention_policy(tenant)))


async def put_retention_policy(request: web.Request) -> web.StreamResponse:
    principal = await user(request)
    tenant = request.match_info["tenant"]
    ensure(_may_manage(principal, tenant), "only the tenant's admins and the platform admin set its policy")
    body = await json_body(request, "RetentionPolicyDocument")
    stored = await administration(request, principal).set_retention_policy(tenant, body)
    return json_response(policy_json(stored))


async def delete_retention_policy(request: web.Request) -> web.StreamResponse:
    principal = await user(request)
    tenant = request.match_info["tenant"]
    ensure(_may_manage(principal, tenant), "only the tenant's admins and the platform admin delete its policy")
    await administration(request, principal).delete_retention_policy(tenant)
    return no_content()


def immutable_json(stored) -> dict:
    return {"tenant": stored.tenant, "rules": stored.document["rules"], "updated_at": rfc3339(stored.updated_at),
            "updated_by": stored.updated_by}


async def get_immutable_tags(request: web.Request) -> web.StreamResponse:
    principal = await user(request)
    tenant = request.match_info["tenant"]
    ensure(_may_manage(principal, tenant),
           "only the tenant's admins and the platform admin read its immutable-tag rules")
    return json_response(immutable_json(await administration(request, principal).immutable_tag_rules(tenant)))


async def put_immutable_tags(request: web.Request) -> web.StreamResponse:
    principal = await user(request)
    tenant = request.match_info["tenant"]
    ensure(_may_manage(principal, tenant),
           "only the tenant's admins and the platform admin set its immutable-tag rules")
    body = await json_body(request, "ImmutableTagRulesDocument")
    stored = await administration(request, principal).set_immutable_tag_rules(tenant, body)
    return json_response(immutable_json(stored))


async def delete_immutable_tags(request: web.Request) -> web.StreamResponse:
    principal = await user(request)
    tenant = request.match_info["tenant"]
    ensure(_may_manage(principal, tenant),
           "only the tenant's admins and the platform admin remove its immutable-tag rules")
    await administration(request, principal).delete_immutable_tag_rules(tenant)
    return no_content()


def run_json(run, verdicts=None) -> dict:
    return {"id": run.id, "started_at": rfc3339(run.started_at), "finished_at": rfc3339(run.finished_at),
            "dry_run": False, "tenant": run.tenant, "trigger": run.trigger, "actor": run.actor, "counts": run.counts,
            "errors": run.errors,
            "verdicts": None if verdicts is None else [verdict_json(v) for v in verdicts]}


def verdict_json(v) -> dict:
    out = {"repository": v.repository, "tag": v.tag, "digest": v.digest, "artifact_type": v.artifact_type,
           "action": v.action, "outcome": v.outcome, "rules": list(v.rules), "reason": v.reason,
           "pushed_at": rfc3339(v.pushed_at), "pulled_at": rfc3339(v.pulled_at)}
    if hasattr(v, "age_seconds"):
        out["age_seconds"] = round(v.age_seconds, 3)
    return out


def report_json(report) -> dict:
    return {"id": report.run_id, "started_at": rfc3339(report.started_at),
            "finished_at": rfc3339(report.started_at + report.duration_seconds), "dry_run": report.dry_run,
            "tenant": report.tenant, "trigger": report.trigger, "actor": None, "counts": report.counts,
            "errors": report.errors, "verdicts": [verdict_json(v) for v in report.verdicts[:_MAX_BODY_VERDICTS]]}


async def start_retention_run(request: web.Request) -> web.StreamResponse:
    principal = await user(request)
    body = await json_body(request, "RetentionRunRequest")
    dry_run, tenant = body.get("dry_run", False), body.get("tenant")
    ensure(_may_manage(principal, tenant),
           "only the platform admin runs retention over every tenant (tenant admins: their tenant)")
    if tenant is not None:
        try:
            await administration(request, principal).tenant(tenant)
        except NotFound:
            raise ValidationFailed.field("tenant", "no such tenant") from None
    report = await request.app[RETENTION].run(dry_run=dry_run, tenant=tenant, trigger="api", actor=principal.name)
    if not dry_run:
        await administration(request, principal).audit("retention.run", tenant or "*", {"run": report.run_id},
                                                       tenant=tenant)
    body = report_json(report)
    body["actor"] = principal.name
    return json_response(body, status=201)


async def list_retention_runs(request: web.Request) -> web.StreamResponse:
    principal = await user(request)
    tenant = request.query.get("tenant")
    ensure(_may_manage(principal, tenant),
           "only the platform admin reads every retention run (tenant admins: their tenant's)")
    limit, after = page_params(request)
    runs = await request.app[RETENTION].runs(limit + 1, tenant, before=positive_int_key(after))
    more = len(runs) > limit
    runs = runs[:limit]
    return page(request, [run_json(r) for r in runs], str(runs[-1].id) if runs else None, more, limit)


async def get_retention_run(request: web.Request) -> web.StreamResponse:
    principal = await user(request)
    raw = request.match_info["run_id"]
    run_id = int(raw) if raw.isascii() and raw.isdigit() and 0 < int(raw) < 2 ** 62 else None
    found = None if run_id is None else await request.app[RETENTION].run_record(run_id)
    # Who may not see it learns nothing of it either.
    if found is None or not _may_manage(principal, found[0].tenant):
        raise NotFound(f"no retention run {raw[:40]!r}")
    return json_response(run_json(*found))
