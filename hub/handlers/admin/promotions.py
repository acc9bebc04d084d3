"""Promotions, their gates and traceability through the admin API (docs/promotion.md).

Who may do what (the domain, hub/registry/promotion.py, gets the answers as callables):
- request a promotion: pull on the source (else 404, as a source that does not exist) and push on
  the target (else 403);
- read a promotion, list them: members of its source's or its target's tenant, the platform admin
  (anyone else: 404);
- approve or reject: a user whose role in the target's tenant is at least the gate's approval role,
  or the platform admin; not the requester, unless the gates allow self-approval (the requester may
  always withdraw, that is reject, their own);
- the gates of a tenant: its admins and the platform admin;
- trace a digest: what the caller may pull of it.
"""

from __future__ import annotations

from aiohttp import web

from auth import policy
from auth.policy import Manage, tenant_of
from auth.scopes import PULL, PUSH

from ...keys import AUTH, PROMOTIONS
from ...problems import NotFound, ValidationFailed
from ...registry.promotion import ROLE_ORDER
from .common import (
    administration,
    collect,
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


def promotion_json(record) -> dict:
    return {"id": record.id, "state": record.state, "source": record.source,
            "source_reference": record.source_reference,
            "digest": record.digest, "target": record.target, "requested_by": record.requested_by,
            "requested_at": rfc3339(record.requested_at), "gates": list(record.gates),
            "approval_role": record.approval_role, "self_approval": record.self_approval,
            "decided_by": record.decided_by, "decided_at": rfc3339(record.decided_at), "reason": record.reason,
            "completed_at": rfc3339(record.completed_at), "copied": record.copied}


def gates_json(stored) -> dict:
    return {"tenant": stored.tenant, "gates": stored.document["gates"], "updated_at": rfc3339(stored.updated_at),
            "updated_by": stored.updated_by}


def _may_manage(principal, tenant: str) -> bool:
    return policy.can_manage_platform(principal) or policy.can_manage_tenant(principal, tenant, Manage.SETTINGS)


def _tenants(principal) -> frozenset[str] | None:
    """The tenants whose promotions (as source or target) the caller sees; None: all."""
    return None if policy.can_manage_platform(principal) else frozenset(principal.memberships)


def _sees(principal):
    tenants = _tenants(principal)
    return lambda record: tenants is None or bool(
        {tenant_of(record.source_repository), tenant_of(record.target_repository)} & tenants)


def caller_checks(request: web.Request, principal):
    """(can_pull, can_push, has_role) of the caller: pull and push exactly as a registry token for the
    caller would grant them (roles, public repositories, pull-through cache namespaces)."""
    auth = request.app[AUTH]

    async def actions(name: str) -> frozenset[str]:
        granted = await auth.grant(principal, [f"repository:{name}:pull,push"])
        return frozenset().union(*(s.actions for s in granted if s.name == name))

    async def can_pull(name: str) -> bool:
        return PULL in await actions(name)

    async def can_push(name: str) -> bool:
        return PUSH in await actions(name)

    def has_role(tenant: str, role: str) -> bool:
        held = principal.memberships.get(tenant)
        return policy.can_manage_platform(principal) or (
            held is not None and ROLE_ORDER.index(str(held)) >= ROLE_ORDER.index(role))

    return can_pull, can_push, has_role


async def _decision_body(request: web.Request) -> dict:
    """A decision's body: optional (`{}` or `{"reason": ...}`)."""
    if not (await request.read()).strip():
        return {}
    return await json_body(request, "PromotionDecision")


# Gates --------------------------------------------------------------------------------------------
async def get_promotion_gates(request: web.Request) -> web.StreamResponse:
    principal = await user(request)
    tenant = request.match_info["tenant"]
    ensure(_may_manage(principal, tenant), "only the tenant's admins and the platform admin read its promotion gates")
    await administration(request, principal).tenant(tenant)
    return json_response(gates_json(await request.app[PROMOTIONS].gates(tenant)))


async def put_promotion_gates(request: web.Request) -> web.StreamResponse:
    principal = await user(request)
    tenant = request.match_info["tenant"]
    ensure(_may_manage(principal, tenant), "only the tenant's admins and the platform admin set its promotion gates")
    body = await json_body(request, "PromotionGatesDocument")
    await administration(request, principal).tenant(tenant)
    return json_response(gates_json(await request.app[PROMOTIONS].set_gates(tenant, body, principal.name)))


async def delete_promotion_gates(request: web.Request) -> web.StreamResponse:
    principal = await user(request)
    tenant = request.match_info["tenant"]
    ensure(_may_manage(principal, tenant),
           "only the tenant's admins and the platform admin delete its promotion gates")
    await administration(request, principal).tenant(tenant)
    await request.app[PROMOTIONS].delete_gates(tenant, principal.name)
    return no_content()


async def get_platform_promotion_gates(request: web.Request) -> web.StreamResponse:
    principal = await user(request)
    ensure(policy.can_manage_platform(principal), "only the platform admin reads the platform's promotion gates")
    return json_response(gates_json(await request.app[PROMOTIONS].gates(None)))


async def put_platform_promotion_gates(request: web.Request) -> web.StreamResponse:
    principal = await user(request)
    ensure(policy.can_manage_platform(principal), "only the platform admin sets the platform's promotion gates")
    body = await json_body(request, "PromotionGatesDocument")
    return json_response(gates_json(await request.app[PROMOTIONS].set_gates(None, body, principal.name)))


async def delete_platform_promotion_gates(request: web.Request) -> web.StreamResponse:
    principal = await user(request)
    ensure(policy.can_manage_platform(principal), "only the platform admin deletes the platform's promotion gates")
    await request.app[PROMOTIONS].delete_gates(None, principal.name)
    return no_content()


# Promotions ---------------------------------------------------------------------------------------
async def create_promotion(request: web.Request) -> web.StreamResponse:
    principal = await user(request)
    body = await json_body(request, "PromotionCreate")
    can_pull, can_push, _ = caller_checks(request, principal)
    record = await request.app[PROMOTIONS].request(principal.name, body["source"], body["target"],
                                                   can_pull=can_pull, can_push=can_push)
    return json_response(promotion_json(record), status=202 if record.state == "pending" else 201,
                         headers={"Location": f"/api/v1/promotions/{record.id}"})


async def list_promotions(request: web.Request) -> web.StreamResponse:
    principal = await user(request)
    limit, after = page_params(request)
    state = request.query.get("state")
    if state is not None and state not in ("pending", "completed", "rejected"):
        raise ValidationFailed.parameter("state", "must be pending, completed or rejected")
    digest = request.query.get("digest")
    if digest is not None and (len(digest) > 200 or ":" not in digest):
        raise ValidationFailed.parameter("digest", "must be a digest (sha256:...)")
    promotions, tenants = request.app[PROMOTIONS], _tenants(principal)
    found, more = await collect(
        lambda n, a: promotions.list(tenants=tenants, state=state, digest=digest, limit=n,
                                     before=positive_int_key(a)),
        lambda r: str(r.id), limit, after)
    return page(request, [promotion_json(r) for r in found], str(found[-1].id) if found else None, more, limit)


async def _promotion(request: web.Request, principal):
    raw = request.match_info["promotion_id"]
    if not (raw.isascii() and raw.isdigit() and 0 < int(raw) < 2 ** 62):
        raise NotFound(f"no promotion {raw[:40]!r}")
    return await request.app[PROMOTIONS].find(int(raw), _sees(principal))


async def get_promotion(request: web.Request) -> web.StreamResponse:
    principal = await user(request)
    return json_response(promotion_json(await _promotion(request, principal)))


async def _decide(request: web.Request, verb: str) -> web.StreamResponse:
    principal = await user(request)
    record = await _promotion(request, principal)
    body = await _decision_body(request)
    _, _, has_role = caller_checks(request, principal)
    decide = getattr(request.app[PROMOTIONS], verb)  # approve or reject
    return json_response(promotion_json(await decide(principal.name, record, has_role, body.get("reason"))))


async def approve_promotion(request: web.Request) -> web.StreamResponse:
    return await _decide(request, "approve")


async def reject_promotion(request: web.Request) -> web.StreamResponse:
    return await _decide(request, "reject")


# Traceability -------------------------------------------------------------------------------------
async def get_artifact(request: web.Request) -> web.StreamResponse:
    principal = await user(request)
    can_pull, _, _ = caller_checks(request, principal)
    found = await request.app[PROMOTIONS].trace(request.match_info["digest"], can_pull, _sees(principal))
    found["promotions"] = [promotion_json(p) for p in found["promotions"]]
    return json_response(found)
