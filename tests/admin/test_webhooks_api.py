"""The webhook admin API over both stores: subscriptions of a tenant and of the platform, the
secret shown once, filters checked, forbidden destinations refused at creation (422), secret
rotation, the delivery log and redelivery, each change audited. (Who may call what: the
permission matrix, tests/admin/test_permissions.py.)"""

from __future__ import annotations

from hub.keys import STORE
from .conftest import audit_rows, call, field_errors

PUBLIC = "https://93.184.216.34/hook"


async def test_a_tenant_admin_subscribes_reads_changes_rotates_and_deletes(bare):
    status, made, _ = await call(bare, "POST", "/api/v1/tenants/team/webhooks", "tenant_admin",
                                 json={"url": PUBLIC, "name": "ci", "event_types": ["tag.*"],
                                       "repositories": ["team/app*"]})
    assert status == 201 and made["secret"].startswith("whsec_") and made["tenant"] == "team"
    hook = made["id"]
    status, got, _ = await call(bare, "GET", f"/api/v1/webhooks/{hook}", "tenant_admin")
    assert status == 200 and "secret" not in got and got["event_types"] == ["tag.*"]
    status, listed, _ = await call(bare, "GET", "/api/v1/tenants/team/webhooks", "tenant_admin")
    assert [h["id"] for h in listed["items"]] == [hook]
    status, changed, _ = await call(bare, "PATCH", f"/api/v1/webhooks/{hook}", "tenant_admin",
                                    json={"enabled": False, "repositories": []})
    assert status == 200 and (changed["enabled"], changed["repositories"]) == (False, [])
    status, rotated, _ = await call(bare, "POST", f"/api/v1/webhooks/{hook}/secret", "tenant_admin",
                                    json={"previous_valid_seconds": 600})
    assert status == 200 and rotated["secret"] != made["secret"] and rotated["previous_secret_valid_until"]
    stored = await bare.server.app[STORE].webhook(hook)
    assert (stored.secret, stored.previous_secret) == (rotated["secret"], made["secret"])
    assert (await call(bare, "DELETE", f"/api/v1/webhooks/{hook}", "tenant_admin"))[0] == 204
    assert (await call(bare, "GET", f"/api/v1/webhooks/{hook}", "tenant_admin"))[0] == 404
    actions = [r.action for r in await audit_rows(bare) if r.action.startswith("webhook.")]
    assert actions == ["webhook.delete", "webhook.rotate_secret", "webhook.update", "webhook.create"]
    assert all(r.actor == "ada" and r.tenant == "team" for r in await audit_rows(bare) if r.action.startswith("web"))


async def test_platform_wide_subscriptions_are_the_platform_admins(bare):
    status, made, _ = await call(bare, "POST", "/api/v1/webhooks", json={"url": PUBLIC, "secret": "s" * 20})
    assert status == 201 and made["tenant"] is None and made["secret"] == "s" * 20
    status, listed, _ = await call(bare, "GET", "/api/v1/webhooks")
    assert [h["id"] for h in listed["items"]] == [made["id"]]
    # A tenant's list does not hold it, and the tenant's admin cannot see it.
    assert (await call(bare, "GET", "/api/v1/tenants/team/webhooks"))[1]["items"] == []
    assert (await call(bare, "GET", f"/api/v1/webhooks/{made['id']}", "tenant_admin"))[0] == 404


async def test_bad_urls_filters_and_forbidden_destinations_are_refused_at_creation(bare):
    for url, detail in [("http://127.0.0.1:9/x", "not an allowed destination"),
                        ("http://169.254.169.254/latest", "not an allowed destination"),
                        ("http://[::1]/", "not an allowed destination"),
                        ("ftp://93.184.216.34/", "http or https"),
                        ("http://u:p@93.184.216.34/", "credentials"),
                        ("http://localhost:9/", "not an allowed destination")]:
        status, problem, _ = await call(bare, "POST", "/api/v1/tenants/team/webhooks", "tenant_admin",
                                        json={"url": url})
        assert status == 422, (url, problem)
        assert detail in field_errors(problem)["#/url"], (url, problem)
    status, problem, _ = await call(bare, "POST", "/api/v1/webhooks", json={"url": PUBLIC,
                                                                            "event_types": ["tag.*", "nonsense.*"]})
    assert status == 422 and "matches no event type" in field_errors(problem)["#/event_types/1"]
    status, problem, _ = await call(bare, "POST", "/api/v1/webhooks", json={"url": PUBLIC, "secret": "short"})
    assert status == 422 and "#/secret" in field_errors(problem)
    hook = (await call(bare, "POST", "/api/v1/webhooks", json={"url": PUBLIC}))[1]["id"]
    status, problem, _ = await call(bare, "PATCH", f"/api/v1/webhooks/{hook}", json={"url": "http://10.0.0.1/"})
    assert status == 422 and "not an allowed destination" in field_errors(problem)["#/url"]
    assert [r.action for r in await audit_rows(bare) if r.action.startswith("webhook.")] == ["webhook.create"]


async def test_the_delivery_log_pages_and_a_dead_delivery_is_redelivered(bare):
    store = bare.server.app[STORE]
    hook = (await call(bare, "POST", "/api/v1/tenants/team/webhooks", "tenant_admin", json={"url": PUBLIC}))[1]["id"]
    for i in range(3):
        await store.record_event("io.daohub.tag.pushed", repository="team/app", subject=f"team/app:{i}", data={})
    claims = await store.webhook_claim("w", lease_seconds=60, limit=10)
    for c in claims:
        await store.webhook_finish(c, "w", outcome="dead", status=503, latency_ms=12.5, error="HTTP 503")
    status, page, r = await call(bare, "GET", f"/api/v1/webhooks/{hook}/deliveries?limit=2", "tenant_admin")
    assert status == 200 and len(page["items"]) == 2 and page["next_cursor"] and "Link" in r.headers
    first = page["items"][0]
    assert (first["state"], first["attempts"], first["last_status"], first["last_error"]) == ("dead", 1, 503,
                                                                                              "HTTP 503")
    assert first["log"] == [{"attempt": 1, "at": first["log"][0]["at"], "worker": "w", "status": 503,
                             "latency_ms": 12.5, "error": "HTTP 503"}]
    status, rest, _ = await call(bare, "GET", f"/api/v1/webhooks/{hook}/deliveries?limit=2&cursor="
                                 f"{page['next_cursor']}", "tenant_admin")
    assert len(rest["items"]) == 1 and rest["next_cursor"] is None
    path = f"/api/v1/webhooks/{hook}/deliveries/{first['id']}/redeliver"
    assert (await call(bare, "POST", path, "tenant_admin"))[0] == 204
    assert (await call(bare, "POST", path, "tenant_admin"))[0] == 409
    assert (await call(bare, "POST", f"/api/v1/webhooks/{hook}/deliveries/999999/redeliver", "tenant_admin"))[0] \
        == 404
    status, pending, _ = await call(bare, "GET", f"/api/v1/webhooks/{hook}/deliveries?state=pending", "tenant_admin")
    assert [d["id"] for d in pending["items"]] == [first["id"]] and pending["items"][0]["next_attempt_at"]
    assert (await call(bare, "GET", f"/api/v1/webhooks/{hook}/deliveries?state=bogus", "tenant_admin"))[0] == 422
    (row,) = await audit_rows(bare, "webhook.redeliver")
    assert row.actor == "ada"


async def test_a_tenant_has_at_most_25_subscriptions(bare):
    for i in range(25):
        status, _, _ = await call(bare, "POST", "/api/v1/tenants/team/webhooks", "tenant_admin",
                                  json={"url": f"{PUBLIC}/{i}"})
        assert status == 201
    status, problem, _ = await call(bare, "POST", "/api/v1/tenants/team/webhooks", "tenant_admin",
                                    json={"url": PUBLIC})
    assert status == 409 and "25 webhook subscriptions" in problem["detail"]
    # Another tenant's and the platform's count on their own.
    assert (await call(bare, "POST", "/api/v1/webhooks", json={"url": PUBLIC}))[0] == 201
