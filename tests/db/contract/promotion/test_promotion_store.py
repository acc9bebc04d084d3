"""Promotions in the store (hub/db/promotion_store.py), on SQLite and PostgreSQL: gate documents with
their audit rows; a promotion requested, approved and completed, or rejected, each step an event and
an audit row in the step's transaction; the copy writing blob links, manifests and the tag (and the
events a push would) and no blob row; the target's quota and immutable tags refusing it with nothing
written; a source that lost a blob meanwhile; a decision made twice; two replicas approving one
promotion at once, one winning; the traceability reads."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import pytest

from hub.db.base import QuotaExceededError
from hub.db.immutable_store import TagImmutableError
from hub.db.promotion_store import CopyPlan, PromotionNotPending, PromotionRequest, PromotionSourceGone
from hub.retention.immutable import guard
from tests.db.test_store import digest, manifest

LAYER, CONFIG = digest("layer"), digest("config")


async def _image(store, repository: str = "dev/app", tag: str = "1.2", salt: str = ""):
    """An image in `repository` (two blobs, a manifest, a tag, a referrer); its plan for a promotion."""
    for d, size in ((LAYER, 1000), (CONFIG, 10)):
        await store.link_blob(repository, d, size)
    root = manifest(blobs=(CONFIG, LAYER), salt=salt)
    assert await store.put_manifest(repository, root, [tag]) == []
    sig = manifest(subject=root.digest, artifact_type="application/vnd.example.sig", salt="sig" + salt)
    assert await store.put_manifest(repository, sig, []) == []
    return CopyPlan(root.digest, (root, sig), ((CONFIG, 10), (LAYER, 1000)))


def _request(plan: CopyPlan, target: str = "prod/app", tag: str = "1.2", **kw) -> PromotionRequest:
    return PromotionRequest("dev/app", "1.2", plan.root, target, tag, kw.pop("by", "alice"),
                            ({"gate": "annotation", "requirement": "org.opencontainers.image.revision",
                              "passed": True},), **kw)


async def _events(store, since: int = 0) -> list[tuple[str, str]]:
    return [(e.type.removeprefix("io.daohub."), e.actor) for e in await store.events_after(since)]


async def _last_seq(store) -> int:
    events = await store.events_after(0, 100_000)
    return events[-1].seq if events else 0


async def _audit(store) -> list[tuple[str, str, str]]:
    rows = await store.audit_entries(1000, None)
    return [(r.actor, r.action, r.target) for r in reversed(rows) if r.action.startswith("promotion")]


async def test_gates_are_set_replaced_and_deleted_each_with_its_audit_row(promotions):
    document = {"gates": [{"repositories": "prod/**", "annotations": ["org.opencontainers.image.revision"]}]}
    assert await promotions.promotion_gates("prod") is None
    stored = await promotions.set_promotion_gates("prod", document, "ada")
    assert (stored.document, stored.updated_by) == (document, "ada")
    await promotions.set_promotion_gates("prod", {"gates": []}, "bob")
    assert (await promotions.promotion_gates("prod")).document == {"gates": []}
    assert await promotions.delete_promotion_gates("prod", "carol") is True
    assert await promotions.delete_promotion_gates("prod", "carol") is False
    assert await _audit(promotions) == [("ada", "promotion_gates.set", "prod"), ("bob", "promotion_gates.set", "prod"),
                                        ("carol", "promotion_gates.delete", "prod")]


async def test_a_promotion_without_approval_copies_links_and_manifests_in_one_step(promotions):
    plan = await _image(promotions)
    before = await _last_seq(promotions)
    blobs_before = await promotions.get_global_blob_size(LAYER)
    record = await promotions.complete_promotion(plan, request=_request(plan))
    assert (record.state, record.source, record.target) == ("completed", f"dev/app@{plan.root}", "prod/app:1.2")
    assert record.copied == {"manifests": 2, "manifests_new": 2, "blobs": 2, "bytes": 1010}
    assert record.completed_at is not None and record.decided_by is None
    got = await promotions.get_manifest("prod/app", "1.2", by_digest=False)
    assert got.digest == plan.root and got.content == plan.manifests[0].content
    assert await promotions.get_blob_size("prod/app", LAYER) == 1000 == blobs_before
    assert [r.digest for r in await promotions.list_referrers("prod/app", plan.root)] == [plan.manifests[1].digest]
    events = await promotions.events_after(before)
    assert [e.type.removeprefix("io.daohub.") for e in events] == [
        "promotion.requested", "manifest.pushed", "tag.pushed", "manifest.pushed", "promotion.completed"]
    completed = events[-1].cloudevent()
    assert completed["subject"] == f"promotion:{record.id}" and completed["source"] == "/daohub/prod/app"
    data = completed["data"]
    assert (data["source"], data["target"], data["digest"], data["actor"]) == (
        f"dev/app@{plan.root}", "prod/app:1.2", plan.root, "alice")
    assert data["gates"][0]["requirement"] == "org.opencontainers.image.revision"
    assert await _audit(promotions) == [("alice", "promotion.request", "prod/app:1.2"),
                                        ("alice", "promotion.complete", "prod/app:1.2")]
    detail = json.loads((await promotions.audit_entries(1, None))[0].detail_json)
    assert detail["digest"] == plan.root and detail["gates"][0]["passed"] is True


async def test_pending_then_approved_or_rejected(promotions):
    plan = await _image(promotions)
    pending = await promotions.request_promotion(_request(plan, approval_role="maintainer"))
    assert (pending.state, pending.approval_role, pending.self_approval) == ("pending", "maintainer", False)
    assert await promotions.get_manifest("prod/app", "1.2", by_digest=False) is None
    done = await promotions.complete_promotion(plan, promotion_id=pending.id, approver="mary", reason="tested")
    assert (done.state, done.decided_by, done.reason) == ("completed", "mary", "tested")
    assert (await promotions.get_manifest("prod/app", "1.2", by_digest=False)).digest == plan.root
    with pytest.raises(PromotionNotPending):
        await promotions.complete_promotion(plan, promotion_id=pending.id, approver="mary")
    with pytest.raises(PromotionNotPending):
        await promotions.reject_promotion(pending.id, "mary", None)
    other = await promotions.request_promotion(_request(plan, tag="1.3", approval_role="maintainer"))
    rejected = await promotions.reject_promotion(other.id, "mary", "not yet")
    assert (rejected.state, rejected.decided_by, rejected.reason) == ("rejected", "mary", "not yet")
    assert await promotions.get_manifest("prod/app", "1.3", by_digest=False) is None
    assert [a for _, a, _ in await _audit(promotions)] == [
        "promotion.request", "promotion.approve", "promotion.complete", "promotion.request", "promotion.reject"]
    assert [r.id for r in await promotions.promotions()] == [other.id, pending.id]
    assert [r.id for r in await promotions.promotions(state="pending")] == []
    assert [r.id for r in await promotions.promotions(tenants=frozenset({"dev"}), limit=1)] == [other.id]
    assert await promotions.promotions(tenants=frozenset({"nobody"})) == []
    assert [r.id for r in await promotions.promotions(digest=plan.root, before=other.id)] == [pending.id]


async def test_the_targets_quota_refuses_the_copy_and_nothing_is_written(promotions):
    plan = await _image(promotions)
    await promotions.create_tenant("prod", quota_bytes=500)
    before = await _last_seq(promotions)
    with pytest.raises(QuotaExceededError) as refused:
        await promotions.complete_promotion(plan, request=_request(plan))
    assert refused.value.tenant == "prod" and refused.value.limit == 500
    assert await promotions.get_blob_size("prod/app", LAYER) is None
    assert await promotions.promotions() == [] and await promotions.events_after(before) == []


async def test_an_immutable_target_tag_refuses_the_copy(promotions):
    promotions.tag_guard = guard
    try:
        await _image(promotions, "prod/app", "1.2", salt="old")
        await promotions.set_immutable_rules("prod", {"rules": [{"repositories": "prod/**", "tags": {"glob": "*"}}]},
                                             "ada")
        plan = await _image(promotions)
        with pytest.raises(TagImmutableError):
            await promotions.complete_promotion(plan, request=_request(plan))
        assert await promotions.promotions() == []
        assert (await promotions.get_manifest("prod/app", "1.2", by_digest=False)).digest != plan.root
    finally:
        promotions.tag_guard = None


async def test_a_source_that_lost_a_blob_refuses_the_copy(promotions):
    plan = await _image(promotions)
    pending = await promotions.request_promotion(_request(plan, approval_role="maintainer"))
    await promotions.unlink_blob("dev/app", LAYER)
    with pytest.raises(PromotionSourceGone) as gone:
        await promotions.complete_promotion(plan, promotion_id=pending.id, approver="mary")
    assert gone.value.missing == [LAYER]
    assert (await promotions.promotion(pending.id)).state == "pending"
    assert await promotions.get_manifest("prod/app", plan.root, by_digest=True) is None


async def test_two_replicas_approving_at_once_complete_it_once(writers):
    a, b = writers
    plan = await _image(a)
    pending = await a.request_promotion(_request(plan, approval_role="maintainer"))
    results = await asyncio.gather(a.complete_promotion(plan, promotion_id=pending.id, approver="mary"),
                                   b.complete_promotion(plan, promotion_id=pending.id, approver="ada"),
                                   return_exceptions=True)
    done = [r for r in results if not isinstance(r, BaseException)]
    assert len(done) == 1 and [type(r) for r in results if isinstance(r, BaseException)] == [PromotionNotPending]
    assert [a for _, a, _ in await _audit(a)].count("promotion.complete") == 1


async def test_holdings_name_every_repository_and_tag_of_a_digest(promotions):
    plan = await _image(promotions)
    await promotions.complete_promotion(plan, request=_request(plan))
    await promotions.put_manifest("prod/app", plan.manifests[0], ["stable"])
    held = await promotions.artifact_holdings(plan.root)
    assert [(h.repository, h.tags) for h in held] == [("dev/app", ("1.2",)), ("prod/app", ("1.2", "stable"))]
    assert await promotions.artifact_holdings(digest("nothing")) == []


async def test_a_refused_request_is_an_audit_row_and_nothing_else(promotions):
    plan = await _image(promotions)
    before = await _last_seq(promotions)
    failed = dataclasses.replace(_request(plan), gates=({"gate": 1, "requirement": "annotation x", "passed": False},))
    await promotions.refuse_promotion(failed)
    assert await _audit(promotions) == [("alice", "promotion.refuse", "prod/app:1.2")]
    detail = json.loads((await promotions.audit_entries(1, None))[0].detail_json)
    assert (detail["state"], detail["gates"][0]["passed"], detail["digest"]) == ("refused", False, plan.root)
    assert await promotions.promotions() == [] and await promotions.events_after(before) == []


async def _references(store, repository: str) -> set[tuple[str, str, str]]:
    rows = await store._gc_tx(lambda tx: tx.fetch(
        "SELECT x.manifest_digest, x.child_digest, x.child_kind FROM manifest_references x JOIN repositories r "
        "ON r.id = x.repository_id WHERE r.name = $1", repository), rollback=True)
    return {tuple(r) for r in rows}


async def test_the_copy_records_the_references_gc_follows(promotions):
    plan = await _image(promotions)
    child = manifest(blobs=(LAYER,), salt="child")
    assert await promotions.put_manifest("dev/app", child, []) == []
    index = manifest(children=(plan.root, child.digest), salt="index")
    assert await promotions.put_manifest("dev/app", index, ["multi"]) == []
    whole = CopyPlan(index.digest, (plan.manifests[0], child, index, plan.manifests[1]), plan.blobs)
    await promotions.complete_promotion(whole, request=dataclasses.replace(_request(whole), source_reference="multi"))
    assert await _references(promotions, "prod/app") == await _references(promotions, "dev/app")
    assert await promotions.linked_blob_sizes("prod/app", [LAYER, CONFIG, digest("none")]) == {LAYER: 1000, CONFIG: 10}


async def test_concurrent_promotions_sharing_blobs_take_their_locks_in_order_and_both_complete(writers):
    """Registry.promote holds every blob's lock (advisory locks on PostgreSQL, across the two stores)
    around the copy; in digest order, so promotions of images sharing blobs wait, never deadlock."""
    from hub.registry.service import Registry

    a, b = writers
    plan = await _image(a)
    other = manifest(blobs=(LAYER, CONFIG), salt="other")  # the same blobs, listed the other way round
    assert await a.put_manifest("dev/app", other, ["other"]) == []
    plans = [plan, CopyPlan(other.digest, (other,), plan.blobs)]
    registries = [Registry(a, None), Registry(b, None)]
    requests = [_request(plans[0], target="prod/one"), dataclasses.replace(_request(plans[1], target="prod/two"),
                                                                          source_reference="other")]
    for _ in range(5):
        done = await asyncio.gather(*(r.promote(p, q.target_repository, request=q)
                                      for r, p, q in zip(registries, plans, requests, strict=True)))
        assert [d.state for d in done] == ["completed", "completed"]
    assert (await a.get_manifest("prod/two", "1.2", by_digest=False)).digest == other.digest
