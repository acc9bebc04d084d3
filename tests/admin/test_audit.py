"""The audit log: one row per change, newest first, per-tenant visibility, pages."""

from __future__ import annotations

import time

import pytest

from hub.handlers.admin.routes import ROUTES
from hub.keys import STORE

from .conftest import audit_rows, call, field_errors

# Every change the API can make, in an order that works, with the audit action it must write.
CHANGES = [
    ("create_tenant", "POST", "/api/v1/tenants", {"name": "acme"}, "tenant.create"),
    ("update_tenant", "PATCH", "/api/v1/tenants/acme", {"quota_bytes": 10}, "tenant.update"),
    ("create_user", "POST", "/api/v1/users", {"username": "zoe", "password": "zoe-password"}, "user.create"),
    ("update_user", "PATCH", "/api/v1/users/zoe", {"is_admin": True}, "user.update"),
    ("set_password", "PUT", "/api/v1/users/zoe/password", {"password": "another-password"}, "user.password"),
    ("put_member", "PUT", "/api/v1/tenants/acme/members/zoe", {"role": "admin"}, "tenant.member"),
    ("delete_member", "DELETE", "/api/v1/tenants/acme/members/zoe", None, "tenant.member"),
    ("create_robot", "POST", "/api/v1/tenants/acme/robots",
     {"name": "bot", "repositories": ["acme/*"], "actions": ["pull"]}, "robot.create"),
    ("revoke_robot", "POST", "/api/v1/tenants/acme/robots/bot/revoke", None, "robot.revoke"),
    ("delete_robot", "DELETE", "/api/v1/tenants/acme/robots/bot", None, "robot.delete"),
    # Promotions: each step is a row (a promotion no gate holds up is requested and completed at once).
    ("put_promotion_gates", "PUT", "/api/v1/tenants/team/promotion-gates",
     {"gates": [{"repositories": "team/prod", "approval": {"role": "admin", "allow_self_approval": True}}]},
     "promotion_gates.set"),
    ("create_promotion", "POST", "/api/v1/promotions", {"source": "team/app:v2", "target": "team/prod:v2"},
     "promotion.request"),
    ("approve_promotion", "POST", "/api/v1/promotions/{promotion}/approve", {}, ("promotion.approve",
                                                                                 "promotion.complete")),
    ("create_promotion", "POST", "/api/v1/promotions", {"source": "team/app:v2", "target": "team/prod:v3"},
     "promotion.request"),
    ("reject_promotion", "POST", "/api/v1/promotions/{promotion}/reject", {"reason": "no"}, "promotion.reject"),
    ("delete_promotion_gates", "DELETE", "/api/v1/tenants/team/promotion-gates", None, "promotion_gates.delete"),
    ("put_platform_promotion_gates", "PUT", "/api/v1/promotion-gates", {"gates": []}, "promotion_gates.set"),
    ("delete_platform_promotion_gates", "DELETE", "/api/v1/promotion-gates", None, "promotion_gates.delete"),
    ("create_promotion", "POST", "/api/v1/promotions", {"source": "team/app:v2", "target": "team/prod:v4"},
     ("promotion.request", "promotion.complete")),
    ("update_repository", "PATCH", "/api/v1/repositories/team/app", {"public": True}, "repo.visibility"),
    ("delete_tag", "DELETE", "/api/v1/repositories/team/app/tags/v1", None, "tag.delete"),
    ("delete_repository", "DELETE", "/api/v1/repositories/team/app", None, "repo.delete"),
    ("revoke_refresh_token", "DELETE", "/api/v1/users/zoe/refresh-tokens/zoe-token", None,
     "user.refresh_tokens.revoke"),
    ("revoke_refresh_tokens", "DELETE", "/api/v1/users/zoe/refresh-tokens", None, "user.refresh_tokens.revoke"),
    ("create_cli_secret", "POST", "/api/v1/users/root/cli-secrets", {"name": "laptop"}, "user.cli_secret.create"),
    ("delete_cli_secret", "DELETE", "/api/v1/users/root/cli-secrets/{secret}", None, "user.cli_secret.delete"),
    ("delete_user", "DELETE", "/api/v1/users/zoe", None, "user.delete"),
    ("delete_tenant", "DELETE", "/api/v1/tenants/acme", None, "tenant.delete"),
    ("create_identity_provider", "POST", "/api/v1/identity-providers",
     {"name": "sso", "type": "oidc", "oidc": {"issuer": "https://login.example.com", "client_id": "c"}},
     "identity_provider.create"),
    ("update_identity_provider", "PATCH", "/api/v1/identity-providers/sso", {"cache_seconds": 10},
     "identity_provider.update"),
    ("delete_identity_provider", "DELETE", "/api/v1/identity-providers/sso", None, "identity_provider.delete"),
    ("create_upstream", "POST", "/api/v1/upstreams", {"name": "quay.io", "url": "https://quay.io"},
     "upstream.create"),
    ("update_upstream", "PATCH", "/api/v1/upstreams/quay.io", {"ttl_days": 30}, "upstream.update"),
    ("delete_upstream", "DELETE", "/api/v1/upstreams/quay.io", None, "upstream.delete"),
    ("start_gc_run", "POST", "/api/v1/gc/runs", {"dry_run": True}, "gc.run"),
    ("put_retention_policy", "PUT", "/api/v1/tenants/team/retention-policy", {"rules": []}, "retention.policy.set"),
    ("delete_retention_policy", "DELETE", "/api/v1/tenants/team/retention-policy", None, "retention.policy.delete"),
    ("put_immutable_tags", "PUT", "/api/v1/tenants/team/immutable-tags", {"rules": []}, "immutable_tags.set"),
    ("delete_immutable_tags", "DELETE", "/api/v1/tenants/team/immutable-tags", None, "immutable_tags.delete"),
    ("create_tenant_webhook", "POST", "/api/v1/tenants/team/webhooks", {"url": "https://93.184.216.34/t"},
     "webhook.create"),
    ("create_platform_webhook", "POST", "/api/v1/webhooks", {"url": "https://93.184.216.34/p"}, "webhook.create"),
    ("update_webhook", "PATCH", "/api/v1/webhooks/{hook}", {"name": "renamed"}, "webhook.update"),
    ("rotate_webhook_secret", "POST", "/api/v1/webhooks/{hook}/secret", {"previous_valid_seconds": 60},
     "webhook.rotate_secret"),
    ("redeliver_webhook_delivery", "POST", "/api/v1/webhooks/{hook}/deliveries/{delivery}/redeliver", None,
     "webhook.redeliver"),
    ("delete_webhook", "DELETE", "/api/v1/webhooks/{hook}", None, "webhook.delete"),
    ("import_portainer_feed", "POST", "/api/v1/tenants/team/apps/import",
     {"feed": {"version": "2", "templates": [{"type": 1, "title": "Cache", "image": "redis:7"}]}}, "appstore.import"),
    # With no policy left, the run deletes nothing: its own row is the one.
    ("start_retention_run", "POST", "/api/v1/retention/runs", {"dry_run": False, "tenant": "team"}, "retention.run"),
]


async def test_every_change_writes_one_audit_row(api):
    ids: dict[str, int] = {}
    store = api.server.app[STORE]
    for name, method, path, body, action in CHANGES:
        if name == "revoke_refresh_token":  # one to revoke (set_password above revoked any earlier one)
            await store.add_refresh_token("zoe-token", "zoe", "test", "", time.time(), 2e9)
        if name == "redeliver_webhook_delivery":  # a dead delivery of the tenant's subscription
            await store.record_event("io.daohub.tag.pushed", repository="team/app", subject="team/app:x", data={})
            claim = next(c for c in await store.webhook_claim("test", lease_seconds=60, limit=100)
                         if c.subscription_id == ids["hook"])
            await store.webhook_finish(claim, "test", outcome="dead", status=500, latency_ms=1.0, error="HTTP 500")
            ids["delivery"] = claim.id
        before = len(await audit_rows(api))
        status, got, _ = await call(api, method, path.format(**ids), json=body)
        assert status < 300, (name, status, got)
        if name == "create_tenant_webhook":
            ids["hook"] = got["id"]
        if name == "create_cli_secret":
            assert got["secret"].startswith("dhcli_")
            ids["secret"] = got["id"]
        if name == "create_promotion":
            ids["promotion"] = got["id"]
        actions = action if isinstance(action, tuple) else (action,)  # some changes are several steps
        rows = await audit_rows(api)
        assert len(rows) == before + len(actions), name
        assert [(r.actor, r.action) for r in reversed(rows[:len(actions)])] == [("root", a) for a in actions], name
    # A directory lookup is a POST (the username travels in the body) that changes nothing.
    mutating = {r.name for r in ROUTES if r.method != "GET"} - {"lookup_identity_provider_user"}
    assert mutating == {c[0] for c in CHANGES}


async def test_refused_changes_write_nothing(api):
    before = len(await audit_rows(api))
    assert (await call(api, "POST", "/api/v1/tenants", "tenant_admin", json={"name": "x"}))[0] == 403
    assert (await call(api, "POST", "/api/v1/tenants", json={"name": "X"}))[0] == 422
    assert (await call(api, "DELETE", "/api/v1/tenants/team"))[0] == 409
    assert len(await audit_rows(api)) == before


async def test_newest_first_in_pages(api):
    for i in range(5):
        await call(api, "POST", "/api/v1/tenants", json={"name": f"t{i}"})
    ids, cursor = [], None
    while True:
        status, body, _ = await call(api, "GET", "/api/v1/audit?limit=2" + (f"&cursor={cursor}" if cursor else ""))
        assert status == 200
        ids += [e["id"] for e in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert ids == sorted(ids, reverse=True) and len(ids) == len(set(ids)) == len(await audit_rows(api))
    newest = (await call(api, "GET", "/api/v1/audit?limit=1"))[1]["items"][0]
    assert newest == {"id": newest["id"], "at": newest["at"], "actor": "root", "action": "tenant.create",
                      "target": "t4", "tenant": "t4",
                      "detail": {"display_name": "", "quota_bytes": None}}


async def test_tenant_admins_see_their_tenants_rows_only(api):
    await call(api, "PUT", "/api/v1/tenants/team/members/bob", "tenant_admin", json={"role": "guest"})
    await call(api, "PUT", "/api/v1/tenants/other/members/alice", "other_admin", json={"role": "guest"})
    await call(api, "POST", "/api/v1/users", json={"username": "zoe", "password": "zoe-password"})
    team = (await call(api, "GET", "/api/v1/audit", "tenant_admin"))[1]["items"]
    assert team and {e["tenant"] for e in team} == {"team"}
    assert [e["target"] for e in team if e["action"] == "tenant.member"] == ["team/bob"]
    other = (await call(api, "GET", "/api/v1/audit", "other_admin"))[1]["items"]
    assert [(e["action"], e["target"]) for e in other] == [("tenant.member", "other/alice")]
    everything = (await call(api, "GET", "/api/v1/audit?limit=500"))[1]["items"]
    assert {"user.create", "token.issue", "tenant.member"} <= {e["action"] for e in everything}
    only_other = (await call(api, "GET", "/api/v1/audit?tenant=other"))[1]["items"]
    assert only_other == other
    assert (await call(api, "GET", "/api/v1/audit?tenant=other", "tenant_admin"))[0] == 403
    assert (await call(api, "GET", "/api/v1/audit", "maintainer"))[0] == 403


@pytest.mark.parametrize("cursor", ["!!!", "bm90LWEtbnVtYmVy", "MA", ""])
async def test_bad_audit_cursor(api, cursor):
    status, problem, _ = await call(api, "GET", f"/api/v1/audit?cursor={cursor}")
    assert status == 422 and "cursor" in field_errors(problem)
