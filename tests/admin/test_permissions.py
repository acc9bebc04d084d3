"""Every admin API call x every kind of caller, with the exact status expected.

Callers: nobody, the guest, developer, maintainer and admin of tenant "team", the admin of
tenant "other", the robot robot$team+ci, and the platform admin. Robots may only ask GET /me.
Where a call changes something, each caller gets its own target ({role} in the path or body),
so an allowed change cannot alter what the next caller sees.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest

from hub.keys import AUTH, PROXY, STORE
from hub.tenancy.service import Administration

from .conftest import ROLES, headers, push_image, token

SetUp = Callable[[object], Awaitable[None]]
RUN_IDS: dict[int, int] = {}  # id(client) -> the retention run its setup recorded
HOOK_IDS: dict[int, tuple[int, int]] = {}  # id(client) -> (team's webhook, its dead delivery) of its setup
PROMOTIONS: dict[int, tuple[int, str]] = {}  # id(client) -> (a pending promotion into team, its digest)


@dataclass(frozen=True)
class Case:
    id: str
    method: str
    path: str
    expected: tuple[int, ...]  # in ROLES order
    body: dict | None = None
    setup: SetUp | None = None


def per_role(make) -> SetUp:
    async def setup(client) -> None:
        for role in ROLES:
            await make(client, role)
    return setup


async def _robot(client, name: str) -> None:
    await Administration(client.server.app[STORE], client.server.app[AUTH], "test", upstreams=()).create_robot(
        "team", name, ["team/x/*"], ["pull"])


async def _user(client, name: str, *, tenant: str | None = None) -> None:
    app = client.server.app
    await app[STORE].create_user(name, await app[AUTH].hash_password("some-password"))
    if tenant:
        await app[STORE].set_membership(tenant, name, "guest")


async def _push(client, repo: str, tag: str) -> None:
    root = await token(client, f"repository:{repo}:pull,push", user="root", password="root-pw-123")
    await push_image(client, repo, root, tag=tag)


async def _refresh_token(client, username: str, jti: str) -> None:
    now = time.time()
    await client.server.app[STORE].add_refresh_token(jti, username, "test", "", now, now + 600)


async def _cli_secret(client, username: str, secret_id: str) -> None:
    await client.server.app[STORE].create_cli_secret(secret_id, username, "n", "sha256:00", time.time(), None, "test")


async def _provider(client, name: str) -> None:
    await client.server.app[STORE].create_identity_provider(
        name, "oidc", {"oidc": {"issuer": "https://login.example.com", "client_id": "c"}}, "", "test", {})


async def _tenant(client, name: str) -> None:
    await client.server.app[STORE].create_tenant(name)


async def _policy(client, tenant: str) -> None:
    await client.server.app[STORE].set_retention_policy(tenant, {"rules": []}, "test")


async def _immutable(client, tenant: str) -> None:
    await client.server.app[STORE].set_immutable_rules(tenant, {"rules": []}, "test")


async def _retention_run(client, tenant: str) -> None:
    store = client.server.app[STORE]
    run_id = await store.retention_claim_run(owner="test", lease_seconds=60, tenant=tenant, trigger="cli", actor="t")
    await store.retention_finish_run(run_id, "test", {}, [])
    RUN_IDS[id(client)] = run_id


async def _upstream(client, name: str) -> None:
    from hub.proxy.upstreams import UpstreamAdmin

    app = client.server.app
    await UpstreamAdmin(app[STORE], app[PROXY].router, "test").create({"name": name, "url": "http://127.0.0.1:9"})


async def _team_webhook(client) -> None:
    store = client.server.app[STORE]
    hook = await store.create_webhook(tenant="team", name="t", url="https://93.184.216.34/hook", event_types=[],
                                      repositories=[], secret="s" * 16, actor="test")
    await store.record_event("io.daohub.tag.pushed", repository="team/app", subject="team/app:x", data={})
    claim = next(c for c in await store.webhook_claim("test", lease_seconds=60, limit=100)
                 if c.subscription_id == hook.id)
    await store.webhook_finish(claim, "test", outcome="dead", status=500, latency_ms=1.0, error="HTTP 500")
    HOOK_IDS[id(client)] = (hook.id, claim.id)


async def _gates(client) -> None:
    await client.server.app[STORE].set_promotion_gates("team", {"gates": []}, "test")


async def _platform_gates(client) -> None:
    await client.server.app[STORE].set_promotion_gates("*", {"gates": []}, "test")


def _pending(role: str):
    """A promotion of team/app:v1 to team/prod:v1 by root, waiting for a `role` of team."""
    async def setup(client) -> None:
        from hub.db.promotion_store import PromotionRequest

        store = client.server.app[STORE]
        digest = (await store.get_manifest("team/app", "v1", by_digest=False, with_content=False)).digest
        record = await store.request_promotion(PromotionRequest("team/app", "v1", digest, "team/prod", "v1", "root",
                                                                (), role))
        PROMOTIONS[id(client)] = (record.id, digest)
    return setup


def rid(role: str) -> str:
    return role.replace("_", "-")


#             anon guest dev  maint t-adm o-adm robot p-adm
EVERYONE = (401, 200, 200, 200, 200, 200, 200, 200)
USERS = (401, 200, 200, 200, 200, 200, 403, 200)
TEAM_MEMBERS = (401, 200, 200, 200, 200, 403, 403, 200)
TEAM_MAINTAINERS = (401, 403, 403, 200, 200, 403, 403, 200)
TEAM_ADMINS = (401, 403, 403, 403, 200, 403, 403, 200)
PLATFORM = (401, 403, 403, 403, 403, 403, 403, 200)
SELF = (401, 403, 200, 403, 403, 403, 403, 200)  # alice (the developer) and the platform admin


def only(ok: int, base: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(ok if s == 200 else s for s in base)


CASES = [
    Case("openapi", "GET", "/api/v1/openapi.json", (200,) * 8),
    Case("me", "GET", "/api/v1/me", EVERYONE),
    Case("list_tenants", "GET", "/api/v1/tenants", USERS),
    Case("create_tenant", "POST", "/api/v1/tenants", only(201, PLATFORM), {"name": "new-{role}"}),
    Case("get_tenant", "GET", "/api/v1/tenants/team", TEAM_MEMBERS),
    Case("update_tenant", "PATCH", "/api/v1/tenants/team", PLATFORM, {"display_name": "by {role}"}),
    Case("delete_tenant", "DELETE", "/api/v1/tenants/empty", only(204, PLATFORM),
         setup=lambda c: _tenant(c, "empty")),
    Case("quota", "GET", "/api/v1/tenants/team/quota", TEAM_MEMBERS),
    Case("list_members", "GET", "/api/v1/tenants/team/members", TEAM_ADMINS),
    Case("put_member", "PUT", "/api/v1/tenants/team/members/newbie", TEAM_ADMINS, {"role": "developer"},
         setup=lambda c: _user(c, "newbie")),
    Case("delete_member", "DELETE", "/api/v1/tenants/team/members/m-{role}", only(204, TEAM_ADMINS),
         setup=per_role(lambda c, r: _user(c, f"m-{rid(r)}", tenant="team"))),
    Case("list_robots", "GET", "/api/v1/tenants/team/robots", TEAM_ADMINS),
    Case("create_robot", "POST", "/api/v1/tenants/team/robots", only(201, TEAM_ADMINS),
         {"name": "r-{role}", "repositories": ["team/ci/**"], "actions": ["pull"]}),
    Case("get_robot", "GET", "/api/v1/tenants/team/robots/ci", TEAM_ADMINS),
    Case("revoke_robot", "POST", "/api/v1/tenants/team/robots/rv/revoke", TEAM_ADMINS,
         setup=lambda c: _robot(c, "rv")),
    Case("delete_robot", "DELETE", "/api/v1/tenants/team/robots/d-{role}", only(204, TEAM_ADMINS),
         setup=per_role(lambda c, r: _robot(c, f"d-{rid(r)}"))),
    Case("list_repositories", "GET", "/api/v1/tenants/team/repositories", USERS),
    Case("list_tags", "GET", "/api/v1/repositories/team/app/tags", TEAM_MEMBERS),
    Case("list_tags_public", "GET", "/api/v1/repositories/team/pub/tags", USERS),
    Case("delete_tag", "DELETE", "/api/v1/repositories/team/app/tags/t-{role}", only(204, TEAM_MAINTAINERS),
         setup=per_role(lambda c, r: _push(c, "team/app", f"t-{rid(r)}"))),
    Case("update_repository", "PATCH", "/api/v1/repositories/team/app", TEAM_MAINTAINERS, {"public": False}),
    Case("delete_repository", "DELETE", "/api/v1/repositories/team/d-{role}", only(204, TEAM_MAINTAINERS),
         setup=per_role(lambda c, r: _push(c, f"team/d-{rid(r)}", "v1"))),
    Case("list_users", "GET", "/api/v1/users", PLATFORM),
    Case("create_user", "POST", "/api/v1/users", only(201, PLATFORM),
         {"username": "u-{role}", "password": "password-{role}"}),
    Case("get_user", "GET", "/api/v1/users/alice", SELF),
    Case("update_user", "PATCH", "/api/v1/users/zed", PLATFORM, {"disabled": False},
         setup=lambda c: _user(c, "zed")),
    Case("delete_user", "DELETE", "/api/v1/users/z-{role}", only(204, PLATFORM),
         setup=per_role(lambda c, r: _user(c, f"z-{rid(r)}"))),
    Case("set_password", "PUT", "/api/v1/users/zed/password", only(204, PLATFORM), {"password": "a-new-password"},
         setup=lambda c: _user(c, "zed")),
    Case("list_refresh_tokens", "GET", "/api/v1/users/alice/refresh-tokens", SELF),
    Case("revoke_refresh_token", "DELETE", "/api/v1/users/alice/refresh-tokens/t-{role}", only(204, SELF),
         setup=per_role(lambda c, r: _refresh_token(c, "alice", f"t-{rid(r)}"))),
    Case("revoke_refresh_tokens", "DELETE", "/api/v1/users/alice/refresh-tokens", only(204, SELF)),
    Case("list_cli_secrets", "GET", "/api/v1/users/alice/cli-secrets", SELF),
    # Only for yourself: not even the platform admin makes a secret that signs in as someone else.
    Case("create_cli_secret", "POST", "/api/v1/users/alice/cli-secrets", (401, 403, 201, 403, 403, 403, 403, 403),
         {"name": "by {role}"}),
    Case("delete_cli_secret", "DELETE", "/api/v1/users/alice/cli-secrets/c-{role}", only(204, SELF),
         setup=per_role(lambda c, r: _cli_secret(c, "alice", f"c-{rid(r)}"))),
    Case("list_identity_providers", "GET", "/api/v1/identity-providers", PLATFORM),
    # Outbound URLs DaoHub dials: only the platform admin configures them.
    Case("create_identity_provider", "POST", "/api/v1/identity-providers", only(201, PLATFORM),
         {"name": "p-{role}", "type": "oidc", "oidc": {"issuer": "https://{role}.example", "client_id": "c"}}),
    Case("update_identity_provider", "PATCH", "/api/v1/identity-providers/sso", PLATFORM, {"cache_seconds": 5},
         setup=lambda c: _provider(c, "sso")),
    Case("delete_identity_provider", "DELETE", "/api/v1/identity-providers/d-{role}", only(204, PLATFORM),
         setup=per_role(lambda c, r: _provider(c, f"d-{rid(r)}"))),
    # No provider is configured here (tests/registry/test_ldap_sign_in.py has one): 404 once allowed.
    Case("get_identity_provider", "GET", "/api/v1/identity-providers/corp", only(404, PLATFORM)),
    Case("lookup_identity_provider_user", "POST", "/api/v1/identity-providers/corp/lookup", only(404, PLATFORM),
         {"username": "alice"}),
    Case("list_upstreams", "GET", "/api/v1/upstreams", PLATFORM),
    Case("create_upstream", "POST", "/api/v1/upstreams", only(201, PLATFORM),
         {"name": "up-{role}", "url": "https://up-{role}.example"}),
    Case("get_upstream", "GET", "/api/v1/upstreams/mirror", PLATFORM, setup=lambda c: _upstream(c, "mirror")),
    Case("update_upstream", "PATCH", "/api/v1/upstreams/mirror", PLATFORM, {"ttl_days": 3},
         setup=lambda c: _upstream(c, "mirror")),
    Case("delete_upstream", "DELETE", "/api/v1/upstreams/u-{role}", only(204, PLATFORM),
         setup=per_role(lambda c, r: _upstream(c, f"u-{rid(r)}"))),
    Case("start_gc_run", "POST", "/api/v1/gc/runs", only(201, PLATFORM), {"dry_run": False}),
    Case("start_gc_run_of_team", "POST", "/api/v1/gc/runs", (401, 403, 403, 403, 201, 403, 403, 201),
         {"dry_run": True, "tenant": "team"}),
    Case("list_gc_runs", "GET", "/api/v1/gc/runs", PLATFORM),
    Case("list_gc_runs_of_team", "GET", "/api/v1/gc/runs?tenant=team", (401, 403, 403, 403, 200, 403, 403, 200)),
    Case("get_retention_policy", "GET", "/api/v1/tenants/team/retention-policy", TEAM_ADMINS,
         setup=lambda c: _policy(c, "team")),
    Case("put_retention_policy", "PUT", "/api/v1/tenants/team/retention-policy", TEAM_ADMINS,
         {"rules": [{"tags": {"glob": "{role}-*"}, "keep": {"latest_pushed": 1}}]}),
    # The tenant admin deletes it: the platform admin, allowed too, finds it gone.
    Case("delete_retention_policy", "DELETE", "/api/v1/tenants/team/retention-policy",
         (401, 403, 403, 403, 204, 403, 403, 404), setup=lambda c: _policy(c, "team")),
    Case("get_immutable_tags", "GET", "/api/v1/tenants/team/immutable-tags", TEAM_ADMINS,
         setup=lambda c: _immutable(c, "team")),
    Case("put_immutable_tags", "PUT", "/api/v1/tenants/team/immutable-tags", TEAM_ADMINS,
         {"rules": [{"repositories": "team/**", "tags": {"glob": "{role}-*"}}]}),
    Case("delete_immutable_tags", "DELETE", "/api/v1/tenants/team/immutable-tags",
         (401, 403, 403, 403, 204, 403, 403, 404), setup=lambda c: _immutable(c, "team")),
    Case("start_retention_run", "POST", "/api/v1/retention/runs", only(201, PLATFORM), {"dry_run": True}),
    Case("start_retention_run_of_team", "POST", "/api/v1/retention/runs", (401, 403, 403, 403, 201, 403, 403, 201),
         {"dry_run": False, "tenant": "team"}),
    Case("list_retention_runs", "GET", "/api/v1/retention/runs", PLATFORM),
    Case("list_retention_runs_of_team", "GET", "/api/v1/retention/runs?tenant=team", TEAM_ADMINS),
    # Who may not read a run learns nothing of it (404, as for a run that does not exist).
    Case("get_retention_run", "GET", "/api/v1/retention/runs/{run}", (401, 404, 404, 404, 200, 404, 403, 200),
         setup=lambda c: _retention_run(c, "team")),
    Case("list_tenant_webhooks", "GET", "/api/v1/tenants/team/webhooks", TEAM_ADMINS),
    Case("create_tenant_webhook", "POST", "/api/v1/tenants/team/webhooks", only(201, TEAM_ADMINS),
         {"url": "https://93.184.216.34/{role}"}),
    Case("list_platform_webhooks", "GET", "/api/v1/webhooks", PLATFORM),
    Case("create_platform_webhook", "POST", "/api/v1/webhooks", only(201, PLATFORM),
         {"url": "https://93.184.216.34/{role}", "event_types": ["tag.*"]}),
    # Who may not manage a subscription learns nothing of it (404, as for one that does not exist).
    Case("get_webhook", "GET", "/api/v1/webhooks/{hook}", (401, 404, 404, 404, 200, 404, 403, 200),
         setup=_team_webhook),
    Case("update_webhook", "PATCH", "/api/v1/webhooks/{hook}", (401, 404, 404, 404, 200, 404, 403, 200),
         {"name": "by {role}"}, setup=_team_webhook),
    Case("delete_webhook", "DELETE", "/api/v1/webhooks/{hook}", (401, 404, 404, 404, 204, 404, 403, 404),
         setup=_team_webhook),
    Case("rotate_webhook_secret", "POST", "/api/v1/webhooks/{hook}/secret", (401, 404, 404, 404, 200, 404, 403, 200),
         {"previous_valid_seconds": 60}, setup=_team_webhook),
    Case("list_webhook_deliveries", "GET", "/api/v1/webhooks/{hook}/deliveries",
         (401, 404, 404, 404, 200, 404, 403, 200), setup=_team_webhook),
    # The tenant admin queues it again: for the platform admin, allowed too, it is queued already.
    Case("redeliver_webhook_delivery", "POST", "/api/v1/webhooks/{hook}/deliveries/{delivery}/redeliver",
         (401, 404, 404, 404, 204, 404, 403, 409), setup=_team_webhook),
    Case("get_platform_promotion_gates", "GET", "/api/v1/promotion-gates", PLATFORM, setup=_platform_gates),
    Case("put_platform_promotion_gates", "PUT", "/api/v1/promotion-gates", PLATFORM, {"gates": []}),
    Case("delete_platform_promotion_gates", "DELETE", "/api/v1/promotion-gates", only(204, PLATFORM),
         setup=_platform_gates),
    Case("get_promotion_gates", "GET", "/api/v1/tenants/team/promotion-gates", TEAM_ADMINS, setup=_gates),
    Case("put_promotion_gates", "PUT", "/api/v1/tenants/team/promotion-gates", TEAM_ADMINS,
         {"gates": [{"repositories": "team/{role}", "approval": {"role": "admin"}}]}),
    Case("delete_promotion_gates", "DELETE", "/api/v1/tenants/team/promotion-gates",
         (401, 403, 403, 403, 204, 403, 403, 404), setup=_gates),
    # Pull on team/app and push on the target: a guest may not push (403); bob may not even pull (404).
    Case("create_promotion", "POST", "/api/v1/promotions", (401, 403, 201, 201, 201, 404, 403, 201),
         {"source": "team/app:v1", "target": "team/p-{role}:v1"}),
    Case("list_promotions", "GET", "/api/v1/promotions", USERS),
    Case("get_promotion", "GET", "/api/v1/promotions/{promotion}", (401, 200, 200, 200, 200, 404, 403, 200),
         setup=_pending("maintainer")),
    # The maintainer approves it: for those allowed after, it is completed already (409).
    Case("approve_promotion", "POST", "/api/v1/promotions/{promotion}/approve",
         (401, 403, 403, 200, 409, 404, 403, 409), {}, setup=_pending("maintainer")),
    Case("reject_promotion", "POST", "/api/v1/promotions/{promotion}/reject", (401, 403, 403, 403, 200, 404, 403, 409),
         {}, setup=_pending("admin")),
    Case("get_artifact", "GET", "/api/v1/artifacts/{digest}", (401, 200, 200, 200, 200, 404, 403, 200),
         setup=_pending("admin")),
    # An outsider learns nothing of the tenant (404); its members who are not admins are told (403).
    Case("import_portainer_feed", "POST", "/api/v1/tenants/team/apps/import", (401, 403, 403, 403, 200, 404, 403, 200),
         {"feed": {"version": "2", "templates": [{"type": 1, "title": "Cache {role}", "image": "redis:7"}]},
          "dry_run": True}),
    Case("audit", "GET", "/api/v1/audit", (401, 403, 403, 403, 200, 200, 403, 200)),
    Case("audit_of_team", "GET", "/api/v1/audit?tenant=team", (401, 403, 403, 403, 200, 403, 403, 200)),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_permission_matrix(api, case: Case):
    if case.setup is not None:
        await case.setup(api)
    got = {}
    for role in ROLES:
        hook, delivery = HOOK_IDS.get(id(api), (0, 0))
        path = case.path.replace("{role}", rid(role)).replace("{run}", str(RUN_IDS.get(id(api), 0)))
        path = path.replace("{hook}", str(hook)).replace("{delivery}", str(delivery))
        promotion, digest = PROMOTIONS.get(id(api), (0, ""))
        path = path.replace("{promotion}", str(promotion)).replace("{digest}", digest)
        body = json.loads(json.dumps(case.body).replace("{role}", rid(role))) if case.body is not None else None
        r = await api.request(case.method, path, json=body, headers=headers(role))
        got[role] = r.status
        if r.status >= 400:
            assert r.headers["Content-Type"].startswith("application/problem+json"), (role, await r.text())
            problem = await r.json(content_type=None)
            assert problem["status"] == r.status and problem["type"].startswith("urn:daohub:problem:")
        if r.status == 401:
            assert r.headers["WWW-Authenticate"] == 'Basic realm="daohub"'
    assert got == dict(zip(ROLES, case.expected, strict=True))


def test_every_route_is_in_the_matrix():
    from hub.handlers.admin.routes import ROUTES

    covered = {c.id.removesuffix("_public").removesuffix("_of_team") for c in CASES}
    names = {r.name.replace("get_openapi_document", "openapi").replace("get_me", "me")
             .replace("get_quota", "quota").replace("list_audit", "audit").replace("set_password", "set_password")
             for r in ROUTES}
    assert names <= covered, names - covered
