"""POST and GET /api/v1/gc/runs: a dry run lists what would go and changes nothing, a run
collects it and enters the history (who may call which is in test_permissions)."""

from __future__ import annotations

from hub.keys import GC, STORE

from .conftest import call


async def test_dry_run_then_run_then_history(api):
    app = api.server.app
    app[GC].grace_seconds = 0
    store = app[STORE]
    v1 = await store.get_manifest("team/app", "v1", by_digest=False, with_content=False)
    assert (await call(api, "DELETE", "/api/v1/repositories/team/app/tags/v1"))[0] == 204

    status, dry, _ = await call(api, "POST", "/api/v1/gc/runs", "tenant_admin", json={"dry_run": True,
                                                                                        "tenant": "team"})
    assert status == 201, dry
    assert dry["id"] is None and dry["dry_run"] and dry["tenant"] == "team"
    assert [m["digest"] for m in dry["deleted"]["manifests"]] == [v1.digest]
    assert dry["counts"]["manifests_deleted"] == 1 and dry["tenant_bytes_freed"]["team"] > 0
    assert await store.get_manifest("team/app", v1.digest, by_digest=True) is not None

    before = await store.tenant_usage("team")
    status, done, _ = await call(api, "POST", "/api/v1/gc/runs", json={"dry_run": False})
    assert status == 201, done
    assert [m["digest"] for m in done["deleted"]["manifests"]] == [v1.digest]
    assert done["tenant_bytes_freed"] == {"team": before - await store.tenant_usage("team")}
    assert done["counts"] == dry["counts"] and done["tenant_bytes_freed"] == dry["tenant_bytes_freed"]
    assert await store.get_manifest("team/app", v1.digest, by_digest=True) is None
    assert await store.get_manifest("team/app", "v2", by_digest=False) is not None

    status, history, _ = await call(api, "GET", "/api/v1/gc/runs")
    assert status == 200
    assert [r["id"] for r in history["items"]] == [done["id"]]
    assert history["items"][0]["counts"] == done["counts"] and history["items"][0]["deleted"] is None
    status, team_history, _ = await call(api, "GET", "/api/v1/gc/runs?tenant=team", "tenant_admin")
    assert status == 200 and team_history["items"] == []  # that run was over every tenant


async def test_tenant_admins_may_not_run_for_real_or_elsewhere(api):
    for body in ({"dry_run": False, "tenant": "team"}, {"dry_run": True, "tenant": "other"}, {"dry_run": True}):
        assert (await call(api, "POST", "/api/v1/gc/runs", "tenant_admin", json=body))[0] == 403, body
    assert (await call(api, "POST", "/api/v1/gc/runs", json={"dry_run": "yes"}))[0] == 422
