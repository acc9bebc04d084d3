"""retention: policies with their audit rows, tag pull times (the greater time wins, by tag or by
digest, from any replica), the inventory a run reads, conditional deletes, and run records with a
scheduled slot that one replica claims."""

from __future__ import annotations

import asyncio

from hub.db.retention_store import StoredVerdict
from tests.db.test_store import manifest


async def _push(store, repository: str, tags: list[str], salt: str = "", subject=None, artifact_type=None):
    m = manifest(salt=salt, subject=subject, artifact_type=artifact_type)
    assert await store.put_manifest(repository, m, tags) == []
    return m.digest


async def _audit(store, action: str) -> list:
    return [e for e in await store.audit_entries(100, None) if e.action == action]


async def test_a_policy_is_absent_then_set_replaced_and_deleted_each_with_its_audit_row(retention):
    assert await retention.retention_policy("acme") is None
    doc = {"rules": [{"tags": {"glob": "**"}, "keep": {"latest_pushed": 3}}]}
    stored = await retention.set_retention_policy("acme", doc, "alice")
    assert (stored.document, stored.updated_by) == (doc, "alice")
    await retention.set_retention_policy("other", {"rules": []}, "bob")
    doc2 = {"rules": [], "untagged_days": 7}
    await retention.set_retention_policy("acme", doc2, "carol")
    got = await retention.retention_policy("acme")
    assert (got.document, got.updated_by) == (doc2, "carol")
    assert [p.tenant for p in await retention.retention_policies()] == ["acme", "other"]
    assert [p.tenant for p in await retention.retention_policies("other")] == ["other"]
    assert await retention.delete_retention_policy("acme", "carol") is True
    assert await retention.delete_retention_policy("acme", "carol") is False
    assert await retention.retention_policy("acme") is None
    sets = await _audit(retention, "retention.policy.set")
    assert [(e.actor, e.target, e.tenant) for e in sets] == [("carol", "acme", "acme"), ("bob", "other", "other"),
                                                            ("alice", "acme", "acme")]
    assert len(await _audit(retention, "retention.policy.delete")) == 1


async def test_pull_times_keep_the_greater_time_by_tag_and_by_digest(retention):
    d1 = await _push(retention, "acme/app", ["a", "b"], salt="1")
    await _push(retention, "acme/app", ["c"], salt="2")
    await retention.record_tag_pulls([("acme/app", "a", False, 100.0), ("acme/app", "a", False, 50.0)])
    await retention.record_tag_pulls([("acme/app", "a", False, 70.0), ("acme/app", "c", False, 10.0),
                                      ("acme/app", "gone", False, 999.0), ("acme/none", "a", False, 999.0)])
    await retention.record_tag_pulls([("acme/app", d1, True, 80.0)])  # a and b point at d1
    tags, _ = await retention.retention_inventory("acme")
    assert {t.tag: t.pulled_at for t in tags} == {"a": 100.0, "b": 80.0, "c": 10.0}
    await retention.record_tag_pulls([("acme/app", d1, True, 200.0)])
    tags, _ = await retention.retention_inventory("acme")
    assert {t.tag: t.pulled_at for t in tags} == {"a": 200.0, "b": 200.0, "c": 10.0}


async def test_pull_times_from_two_writers_at_once_end_at_the_greatest(writers):
    a, b = writers
    await _push(a, "acme/app", [f"t{i}" for i in range(20)])
    batches = [[("acme/app", f"t{i}", False, float(k * 100 + i)) for i in range(20)] for k in range(10)]
    await asyncio.gather(*((a if k % 2 else b).record_tag_pulls(batch) for k, batch in enumerate(batches)))
    tags, _ = await b.retention_inventory("acme")
    assert {t.tag: t.pulled_at for t in tags} == {f"t{i}": float(900 + i) for i in range(20)}


async def test_a_deleted_tag_loses_its_pull_time(retention):
    await _push(retention, "acme/app", ["a"], salt="1")
    await retention.record_tag_pulls([("acme/app", "a", False, 100.0)])
    assert await retention.delete_tag_at("acme/app", "a", None, actor="x") is True
    await _push(retention, "acme/app", ["a"], salt="1")
    tags, _ = await retention.retention_inventory("acme")
    assert [(t.tag, t.pulled_at) for t in tags] == [("a", None)]


async def test_the_inventory_holds_the_tenants_tags_and_untagged_manifests_only(retention):
    img = await _push(retention, "acme/app", ["v1"], salt="img")
    sig = await _push(retention, "acme/app", [], salt="sig", subject=img, artifact_type="application/x-sig")
    old = await _push(retention, "acme/app", ["tmp"], salt="old")
    assert await retention.delete_tag_at("acme/app", "tmp", old, actor="x")
    await _push(retention, "acme0/app", ["v1"], salt="neighbour")  # not acme's: the name only starts alike
    await _push(retention, "acmex/app", ["v1"], salt="neighbour")
    await retention.set_tag_times("acme/app", "v1", pushed_at=1234.0, pulled_at=1300.0)
    tags, untagged = await retention.retention_inventory("acme")
    assert [(t.repository, t.tag, t.digest, t.pushed_at, t.pulled_at, t.subject) for t in tags] == [
        ("acme/app", "v1", img, 1234.0, 1300.0, None)]
    assert sorted((m.digest, m.subject, m.artifact_type, m.referenced) for m in untagged) == sorted(
        [(sig, img, "application/x-sig", False), (old, None, None, False)])


async def test_a_tag_is_deleted_only_while_it_points_at_the_digest_seen(retention):
    d1 = await _push(retention, "acme/app", ["latest"], salt="1")
    d2 = await _push(retention, "acme/app", ["latest"], salt="2")  # moved
    assert await retention.delete_tag_at("acme/app", "latest", d1, actor="retention",
                                         detail={"run": 1}) is False
    assert [e.target for e in await _audit(retention, "tag.delete")] == []
    assert await retention.delete_tag_at("acme/app", "latest", d2, actor="retention", detail={"run": 1}) is True
    entries = await _audit(retention, "tag.delete")
    assert [(e.actor, e.target, e.tenant) for e in entries] == [("retention", "acme/app:latest", "acme")]
    assert await retention.delete_tag_at("acme/none", "latest", None, actor="x") is False


async def test_an_untagged_manifest_is_deleted_only_while_still_untagged(retention):
    d1 = await _push(retention, "acme/app", [], salt="1")
    d2 = await _push(retention, "acme/app", [], salt="2")
    await retention.put_manifest("acme/app", manifest(salt="2"), ["now-tagged"])
    assert await retention.delete_untagged_manifest("acme/app", d2, actor="r") is False
    assert await retention.delete_untagged_manifest("acme/app", d1, actor="r") is True
    assert await retention.delete_untagged_manifest("acme/app", d1, actor="r") is False
    _, untagged = await retention.retention_inventory("acme")
    assert untagged == []
    assert [e.target for e in await _audit(retention, "manifest.delete")] == [f"acme/app@{d1}"]


def _verdict(i: int) -> StoredVerdict:
    return StoredVerdict("acme/app", f"t{i}" if i % 3 else None, f"sha256:{i:064x}", "image",
                         "delete", "deleted", ("rules[0]",) if i % 2 else (), f"reason {i}", 1000.0 + i,
                         None if i % 2 else 2000.0 + i)


async def test_a_run_records_its_verdicts_counts_and_errors(retention):
    run_id = await retention.retention_claim_run(owner="me", lease_seconds=60, tenant="acme", trigger="cli",
                                                 actor="cli")
    verdicts = [_verdict(i) for i in range(2500)]
    await retention.retention_add_verdicts(run_id, 0, verdicts[:1200])
    await retention.retention_add_verdicts(run_id, 1200, verdicts[1200:])
    await retention.retention_finish_run(run_id, "me", {"deleted": 2500}, ["one error"])
    run, stored = await retention.retention_run(run_id)
    assert (run.tenant, run.trigger, run.counts, run.errors) == ("acme", "cli", {"deleted": 2500}, ["one error"])
    assert run.finished_at is not None
    assert stored == verdicts
    assert [r.id for r in await retention.retention_runs(10)] == [run_id]
    assert await retention.retention_runs(10, "other") == []
    assert await retention.retention_run(run_id + 1) is None


async def test_a_scheduled_slot_goes_to_one_claimer_and_again_only_after_a_lapsed_lease(writers):
    a, b = writers
    claims = await asyncio.gather(*((a if i % 2 else b).retention_claim_run(
        owner=f"replica{i}", lease_seconds=60, tenant=None, trigger="schedule", actor="schedule", slot=7)
        for i in range(6)))
    won = [c for c in claims if c is not None]
    assert len(won) == 1
    # A run left unfinished with a lapsed lease (its replica was killed) is taken over, once.
    lapsed = await a.retention_claim_run(owner="x", lease_seconds=-1, tenant=None, trigger="schedule",
                                         actor="schedule", slot=8)
    await a.retention_add_verdicts(lapsed, 0, [_verdict(1)])
    again = await asyncio.gather(*((a if i % 2 else b).retention_claim_run(
        owner=f"r{i}", lease_seconds=60, tenant=None, trigger="schedule", actor="schedule", slot=8)
        for i in range(4)))
    assert [c for c in again if c is not None] == [lapsed]
    _, verdicts = await a.retention_run(lapsed)
    assert verdicts == []  # the run starts over
    assert await a.retention_renew(lapsed, "x", 60) is False  # the old owner may not go on
    # A finished slot is never claimed again.
    owner = [f"r{i}" for i, c in enumerate(again) if c is not None][0]
    await b.retention_finish_run(lapsed, owner, {}, [])
    assert await a.retention_claim_run(owner="y", lease_seconds=-1, tenant=None, trigger="schedule",
                                       actor="schedule", slot=8) is None
