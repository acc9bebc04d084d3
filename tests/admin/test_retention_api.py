"""The retention policy of a tenant (GET/PUT/DELETE, 422 naming each bad field, audited) and runs
through the admin API: a dry run lists what would go and changes nothing, a run deletes exactly that
and enters the history with every verdict (who may call which is in test_permissions)."""

from __future__ import annotations

from hub.keys import STORE

from .conftest import audit_rows, call, field_errors

POLICY = "/api/v1/tenants/team/retention-policy"


async def test_a_policy_is_validated_field_by_field_stored_in_normal_form_and_audited(bare):
    status, problem, r = await call(bare, "PUT", POLICY, "tenant_admin", json={
        "rules": [{"tags": {"regex": "(a"}, "keep": {"latest_pushed": 0}},
                  {"tags": {"semver": ">=1"}, "keep": {"always": True}, "colour": "red"}],
        "overrides": [{"repositories": "team/x", "rules": "nope"}]})
    assert status == 422 and r.headers["Content-Type"].startswith("application/problem+json")
    errors = field_errors(problem)
    assert set(errors) == {"#/rules/0/tags/regex", "#/rules/0/keep/latest_pushed", "#/rules/1/colour",
                           "#/overrides/0/rules"}, errors
    assert (await call(bare, "GET", POLICY, "tenant_admin"))[0] == 404
    assert await audit_rows(bare, "retention.policy.set") == []

    doc = {"rules": [{"tags": {"glob": "sha-*"}, "keep": {"latest_pushed": 5}}], "untagged_days": 3}
    status, stored, _ = await call(bare, "PUT", POLICY, "tenant_admin", json=doc)
    assert status == 200, stored
    assert stored["updated_by"] == "ada" and stored["tenant"] == "team"
    assert stored["policy"] == {"untagged_days": 3, "rules": [{"repositories": "**", "tags": {"glob": "sha-*"},
                                                               "artifacts": ["app", "artifact", "image"],
                                                               "keep": {"latest_pushed": 5}}]}
    status, got, _ = await call(bare, "GET", POLICY, "platform_admin")
    assert status == 200 and got == stored
    rows = await audit_rows(bare, "retention.policy.set")
    assert [(r.actor, r.target, r.tenant) for r in rows] == [("ada", "team", "team")]
    assert (await call(bare, "DELETE", POLICY, "tenant_admin"))[0] == 204
    assert (await call(bare, "GET", POLICY, "tenant_admin"))[0] == 404
    assert (await call(bare, "DELETE", POLICY, "tenant_admin"))[0] == 404
    assert [r.actor for r in await audit_rows(bare, "retention.policy.delete")] == ["ada"]
    assert (await call(bare, "PUT", "/api/v1/tenants/nope/retention-policy", json=doc))[0] == 404
    assert (await call(bare, "PUT", POLICY, json=[1]))[0] == 422


async def test_a_dry_run_then_a_run_delete_what_no_rule_keeps(api):
    store = api.server.app[STORE]
    # team/app has v1 and v2, team/pub v1: keep the newest tag of each repository.
    v1 = await store.get_manifest("team/app", "v1", by_digest=False, with_content=False)
    await store.set_tag_times("team/app", "v1", pushed_at=1000.0)
    assert (await call(api, "PUT", POLICY, json={"rules": [{"tags": {"glob": "**"},
                                                            "keep": {"latest_pushed": 1}}]}))[0] == 200
    status, dry, _ = await call(api, "POST", "/api/v1/retention/runs", "tenant_admin",
                                json={"dry_run": True, "tenant": "team"})
    assert status == 201, dry
    assert dry["id"] is None and dry["dry_run"]
    planned = [(v["repository"], v["tag"]) for v in dry["verdicts"] if v["action"] == "delete"]
    assert planned == [("team/app", "v1")]
    assert [v["outcome"] for v in dry["verdicts"] if v["action"] == "delete"] == ["would delete"]
    assert await store.get_manifest("team/app", "v1", by_digest=False) is not None

    status, done, _ = await call(api, "POST", "/api/v1/retention/runs", "tenant_admin",
                                 json={"dry_run": False, "tenant": "team"})
    assert status == 201, done
    assert [(v["repository"], v["tag"], v["outcome"]) for v in done["verdicts"] if v["action"] == "delete"] == [
        ("team/app", "v1", "deleted")]
    assert done["counts"]["deleted"] == 1 and done["counts"]["kept"] == 2
    assert await store.get_manifest("team/app", "v1", by_digest=False) is None
    assert await store.get_manifest("team/app", "v2", by_digest=False) is not None
    assert await store.get_manifest("other/secret", "v1", by_digest=False) is not None
    deletes = await audit_rows(api, "tag.delete")
    assert [(r.actor, r.target) for r in deletes] == [("retention", "team/app:v1")]

    status, history, _ = await call(api, "GET", "/api/v1/retention/runs?tenant=team", "tenant_admin")
    assert status == 200 and [r["id"] for r in history["items"]] == [done["id"]]
    assert history["items"][0]["verdicts"] is None and history["items"][0]["actor"] == "ada"
    status, one, _ = await call(api, "GET", f"/api/v1/retention/runs/{done['id']}", "tenant_admin")
    assert status == 200
    v1_verdict = [v for v in one["verdicts"] if v["tag"] == "v1"][0]
    assert v1_verdict["digest"] == v1.digest and v1_verdict["outcome"] == "deleted"
    assert v1_verdict["reason"] == "no rule keeps it" and v1_verdict["pushed_at"] == "1970-01-01T00:16:40Z"
    assert (await call(api, "GET", "/api/v1/retention/runs/999999", "tenant_admin"))[0] == 404
    assert (await call(api, "GET", "/api/v1/retention/runs/x", "tenant_admin"))[0] == 404


IMMUTABLE = "/api/v1/tenants/team/immutable-tags"


async def test_immutable_tag_rules_are_validated_stored_audited_and_hold_against_admin_deletes(api):
    status, problem, _ = await call(api, "PUT", IMMUTABLE, "tenant_admin", json={
        "rules": [{"repositories": "team/[", "tags": {"semver": "not a range"}}, {"tags": {}}], "x": 1})
    assert status == 422, problem
    assert set(field_errors(problem)) >= {"#/rules/0/tags/semver", "#/rules/1/tags", "#/x"}, problem
    assert (await call(api, "GET", IMMUTABLE, "tenant_admin"))[0] == 404
    assert await audit_rows(api, "immutable_tags.set") == []

    status, stored, _ = await call(api, "PUT", IMMUTABLE, "tenant_admin",
                                   json={"rules": [{"repositories": "team/app", "tags": {"glob": "v1"}}]})
    assert status == 200, stored
    assert stored["rules"] == [{"repositories": "team/app", "tags": {"glob": "v1"}}]
    assert stored["updated_by"] == "ada"
    assert (await call(api, "GET", IMMUTABLE, "platform_admin"))[1] == stored
    # The tag and its repository cannot go through the admin API (409, naming the rule); v2 can.
    status, problem, _ = await call(api, "DELETE", "/api/v1/repositories/team/app/tags/v1")
    assert status == 409 and "tag v1 of team/app is immutable (rule 1" in problem["detail"], problem
    status, problem, _ = await call(api, "DELETE", "/api/v1/repositories/team/app")
    assert status == 409 and "immutable" in problem["detail"], problem
    assert (await call(api, "DELETE", "/api/v1/repositories/team/app/tags/v2"))[0] == 204
    store = api.server.app[STORE]
    assert await store.get_manifest("team/app", "v1", by_digest=False, with_content=False) is not None
    assert [r.action for r in await audit_rows(api) if r.target.startswith("team/app")][:1] == ["tag.delete"]

    assert (await call(api, "DELETE", IMMUTABLE, "tenant_admin"))[0] == 204
    assert (await call(api, "DELETE", IMMUTABLE, "tenant_admin"))[0] == 404
    assert (await call(api, "DELETE", "/api/v1/repositories/team/app/tags/v1"))[0] == 204
    actions = [r.action for r in await audit_rows(api) if r.action.startswith("immutable_tags.")]
    assert actions == ["immutable_tags.delete", "immutable_tags.set"]
