"""events: the outbox row of every change, written in the change's transaction (and not when it
rolls back), webhook subscriptions with their filters and audit rows, and deliveries that one
worker claims at a time, retried, dead-lettered, redelivered and pruned."""

from __future__ import annotations

import asyncio
import json

import pytest

from hub.db.base import MetadataStore, QuotaExceededError
from hub.db.event_store import matches
from tests.db.test_store import manifest

BLOB = "sha256:" + "b" * 64


async def _events(store, after: int = 0) -> list[tuple[str, str, dict]]:
    return [(e.type.removeprefix("io.daohub."), e.cloudevent().get("subject"), e.cloudevent()["data"])
            for e in await store.events_after(after)]


async def _last_seq(store) -> int:
    found = await store.events_after(0, 100_000)
    return found[-1].seq if found else 0


async def _push(store, repository, tags, salt="", blobs=()):
    m = manifest(salt=salt, blobs=blobs)
    assert await store.put_manifest(repository, m, tags) == []
    return m.digest


async def _webhook(store, tenant=None, types=(), repos=(), name="hook", enabled=True):
    return await store.create_webhook(tenant=tenant, name=name, url="http://receiver.example/hook",
                                      event_types=list(types), repositories=list(repos), secret="s3cret",
                                      actor="alice", enabled=enabled)


async def test_pushes_tag_moves_and_deletes_write_cloudevents_with_the_actor(events):
    with MetadataStore.acting_as("alice"):
        one = await _push(events, "acme/app", ["1.0", "latest"], salt="1")
        await _push(events, "acme/app", ["1.0", "latest"], salt="1")  # the same again: nothing changed
        two = await _push(events, "acme/app", ["latest"], salt="2")
    with MetadataStore.acting_as("bob"):
        assert await events.delete_tag("acme/app", "1.0")
        assert await events.delete_manifest("acme/app", two)
    got = await _events(events)
    assert [(t, s) for t, s, _ in got] == [
        ("manifest.pushed", f"acme/app@{one}"), ("tag.pushed", "acme/app:1.0"), ("tag.pushed", "acme/app:latest"),
        ("manifest.pushed", f"acme/app@{two}"), ("tag.moved", "acme/app:latest"),
        ("tag.deleted", "acme/app:1.0"), ("tag.deleted", "acme/app:latest"), ("manifest.deleted", f"acme/app@{two}")]
    assert got[4][2] == {"repository": "acme/app", "tag": "latest", "digest": two, "previous_digest": one,
                         "actor": "alice"}
    assert got[5][2] == {"repository": "acme/app", "tag": "1.0", "digest": one, "reason": "deleted", "actor": "bob"}
    assert got[0][2]["tags"] == ["1.0", "latest"] and got[0][2]["size"] > 0
    first = (await events.events_after(0, 1))[0]
    event = first.cloudevent()
    assert {k: event[k] for k in ("specversion", "source", "type", "datacontenttype")} == {
        "specversion": "1.0", "source": "/daohub/acme/app", "type": "io.daohub.manifest.pushed",
        "datacontenttype": "application/json"}
    assert event["id"] == first.id and event["time"].endswith("Z") and first.tenant == "acme"
    assert len({e.id for e in await events.events_after(0)}) == len(got)


async def test_a_change_that_is_refused_writes_no_event(events):
    missing = manifest(blobs=[BLOB])
    assert await events.put_manifest("acme/app", missing, ["x"]) == [BLOB]
    assert not await events.delete_tag("acme/app", "x")
    assert not await events.delete_manifest("acme/app", missing.digest)
    await events.create_tenant("tiny", "Tiny", 10)
    with pytest.raises(QuotaExceededError):
        await events.put_manifest("tiny/app", manifest(salt="big" * 10), ["1"])
    # The pull-through cache's fills (no reference checks) are not changes anyone made.
    assert await events.put_manifest("docker.io/library/x", manifest(salt="c"), ["1"], verify_references=False) == []
    assert await _events(events) == []


async def test_a_mount_writes_blob_mounted_once_and_a_plain_link_nothing(events):
    await events.link_blob("acme/src", BLOB, 5)
    await events.link_blob("acme/dst", BLOB, 5, mounted_from="acme/src")
    await events.link_blob("acme/dst", BLOB, 5, mounted_from="acme/src")  # linked already
    assert await _events(events) == [("blob.mounted", f"acme/dst@{BLOB}", {
        "repository": "acme/dst", "digest": BLOB, "size": 5, "from": "acme/src", "actor": "anonymous"})]


async def test_retention_and_gc_deletes_write_events_with_their_actor(events):
    one = await _push(events, "acme/app", ["old"], salt="1")
    two = await _push(events, "acme/app", [], salt="2")
    start = await _last_seq(events)
    assert await events.delete_tag_at("acme/app", "old", one, actor="retention")
    assert await events.delete_untagged_manifest("acme/app", two, actor="retention")
    reviews = await events.gc_claim("manifest", 2 ** 40)
    verdicts = [await events.gc_verdict(r, 2 ** 40) for r in reviews]
    assert [v.action for v in verdicts] == ["deleted"]
    got = await _events(events, start)
    assert [(t, s, d["actor"], d["reason"]) for t, s, d in got] == [
        ("tag.deleted", "acme/app:old", "retention", "retention"),
        ("manifest.deleted", f"acme/app@{two}", "retention", "retention"),
        ("manifest.deleted", f"acme/app@{one}", "gc", "untagged and unreferenced")]



async def test_gc_deleting_a_blob_is_a_blob_deleted_event_of_gc(events):
    m = manifest(salt="only", blobs=[BLOB])
    await events.link_blob("acme/app", BLOB, 7)
    assert await events.put_manifest("acme/app", m, []) == []
    assert await events.delete_manifest("acme/app", m.digest)
    start = await _last_seq(events)
    for kind in ("link", "blob"):
        for review in await events.gc_claim(kind, 2 ** 40):
            await events.gc_verdict(review, 2 ** 40)
    got = [(t, s, d) for t, s, d in await _events(events, start)]
    assert got == [("blob.deleted", BLOB, {"digest": BLOB, "size": 7, "reason": "no manifest references it",
                                           "actor": "gc"})]
    assert (await events.events_after(start))[0].cloudevent()["source"] == "/daohub"


@pytest.mark.parametrize(("types", "repos", "event_type", "repository", "expected"), [
    ((), (), "io.daohub.tag.moved", "a/b", True),
    (("io.daohub.tag.*",), (), "io.daohub.tag.moved", "a/b", True),
    (("tag.*",), (), "io.daohub.tag.moved", "a/b", True),
    (("manifest.*",), (), "io.daohub.tag.moved", "a/b", False),
    ((), ("a/*",), "io.daohub.tag.moved", "a/b/c", True),
    ((), ("a/b",), "io.daohub.tag.moved", "a/bc", False),
    ((), ("a/*",), "io.daohub.tag.moved", None, False),
])
def test_subscription_filters(types, repos, event_type, repository, expected):
    assert matches(event_type, repository, types, repos) is expected


async def test_deliveries_are_queued_for_matching_subscriptions_only(events):
    platform = await _webhook(events)
    acme = await _webhook(events, "acme", types=["tag.*"], repos=["acme/app*"])
    await _webhook(events, "other")
    await _webhook(events, "acme", enabled=False)
    await _push(events, "acme/app", ["1"], salt="1")
    await _push(events, "acme/lib", ["1"], salt="2")
    claimed = await events.webhook_claim("w1", lease_seconds=60, limit=100)
    got = sorted((c.subscription_id, c.event_type) for c in claimed)
    assert got == sorted([(platform.id, "io.daohub.manifest.pushed"), (platform.id, "io.daohub.tag.pushed"),
                          (platform.id, "io.daohub.manifest.pushed"), (platform.id, "io.daohub.tag.pushed"),
                          (acme.id, "io.daohub.tag.pushed")])
    body = json.loads(claimed[0].body)
    assert body["id"] == claimed[0].event_id and claimed[0].secrets == ("s3cret",)
    assert [c.attempt for c in claimed] == [1] * 5


async def test_subscriptions_are_audited_and_secrets_rotate_with_an_overlap(events):
    hook = await _webhook(events, "acme")
    assert hook.secret == "s3cret" and "s3cret" not in repr(hook)
    changed = await events.update_webhook(hook.id, {"enabled": False, "repositories": ["acme/x"]}, "bob")
    assert (changed.enabled, changed.repositories) == (False, ("acme/x",))
    await events.update_webhook(hook.id, {"enabled": True, "repositories": []}, "bob")
    rotated = await events.rotate_webhook_secret(hook.id, "new", 2 ** 40, "bob")
    assert (rotated.secret, rotated.previous_secret) == ("new", "s3cret")
    await _push(events, "acme/app", [], salt="1")
    (claim,) = await events.webhook_claim("w", lease_seconds=60)
    assert claim.secrets == ("new", "s3cret")
    await events.rotate_webhook_secret(hook.id, "newer", 1.0, "bob")  # the previous one expired at once
    await _push(events, "acme/app", [], salt="2")
    (claim,) = await events.webhook_claim("w", lease_seconds=60)
    assert claim.secrets == ("newer",)
    assert [h.id for h in await events.webhooks("acme")] == [hook.id] and await events.webhooks(None) == []
    assert await events.delete_webhook(hook.id, "bob") and not await events.delete_webhook(hook.id, "bob")
    assert await events.webhook(hook.id) is None
    rows = [(e.action, e.actor, e.tenant) for e in await events.audit_entries(100, None)]
    assert rows == [("webhook.delete", "bob", "acme"), ("webhook.rotate_secret", "bob", "acme"),
                    ("webhook.rotate_secret", "bob", "acme"), ("webhook.update", "bob", "acme"),
                    ("webhook.update", "bob", "acme"), ("webhook.create", "alice", "acme")]


async def test_a_claim_is_one_workers_until_its_lease_runs_out(events):
    hook = await _webhook(events)
    await _push(events, "acme/app", [], salt="1")
    (mine,) = await events.webhook_claim("w1", lease_seconds=3600)
    assert await events.webhook_claim("w2", lease_seconds=3600) == []
    # A worker killed with its claim: lease 0 runs out at once, and another worker takes it over.
    await _push(events, "acme/app", [], salt="2")
    (dying,) = await events.webhook_claim("dead", lease_seconds=0)
    (taken,) = await events.webhook_claim("w2", lease_seconds=3600)
    assert (taken.id, taken.attempt) == (dying.id, 2)
    assert not await events.webhook_finish(dying, "dead", outcome="delivered", status=200, latency_ms=1, error=None)
    assert await events.webhook_finish(taken, "w2", outcome="delivered", status=204, latency_ms=2.5, error=None)
    assert await events.webhook_finish(mine, "w1", outcome="retry", status=500, latency_ms=3, error="HTTP 500",
                                       next_attempt_at=2 ** 40)
    assert await events.webhook_claim("w1", lease_seconds=60) == []  # not due yet
    log = await events.webhook_deliveries(hook.id)
    assert [(d.id, d.state, d.attempts, d.last_status) for d in log] == [
        (taken.id, "delivered", 2, 204), (mine.id, "pending", 1, 500)]
    assert [(a.attempt, a.owner, a.status) for a in log[0].log] == [(1, "dead", 200), (2, "w2", 204)]
    assert await events.webhook_backlog() == {"pending": 1, "delivered": 1, "dead": 0}


async def test_dead_letters_can_be_redelivered_with_a_new_budget(events):
    hook = await _webhook(events)
    await _push(events, "acme/app", [], salt="1")
    (claim,) = await events.webhook_claim("w", lease_seconds=60)
    await events.webhook_finish(claim, "w", outcome="dead", status=None, latency_ms=None, error="timed out")
    (dead,) = await events.webhook_deliveries(hook.id, state="dead")
    assert (dead.last_error, dead.finished_at is not None) == ("timed out", True)
    assert await events.webhook_redeliver(hook.id + 1, dead.id, "bob") is None
    assert await events.webhook_redeliver(hook.id, dead.id, "bob") == "dead"
    assert await events.webhook_redeliver(hook.id, dead.id, "bob") == "pending"  # queued already: left alone
    (again,) = await events.webhook_claim("w", lease_seconds=60)
    assert (again.id, again.attempt, again.tries) == (dead.id, 2, 1)
    assert [(e.action, json.loads(e.detail_json)) for e in await events.audit_entries(1, None)] == [
        ("webhook.redeliver", {"delivery": dead.id, "state": "dead"})]


async def test_old_events_are_pruned_once_no_delivery_waits_on_them(events):
    await _push(events, "acme/app", [], salt="0")  # before any subscription: nothing waits on it
    hook = await _webhook(events)
    await _push(events, "acme/app", [], salt="1")
    assert await events.prune_events(before=0) == 0
    assert await events.prune_events(before=2 ** 40) == 1
    (kept,) = await events.events_after(0)
    (claim,) = await events.webhook_claim("w", lease_seconds=60)
    assert await events.prune_events(before=2 ** 40) == 0  # its delivery is under way
    await events.webhook_finish(claim, "w", outcome="delivered", status=200, latency_ms=1, error=None)
    assert [d.event_id for d in await events.webhook_deliveries(hook.id)] == [kept.id]
    assert await events.prune_events(before=2 ** 40) == 1
    assert await events.events_after(0) == [] and await events.webhook_deliveries(hook.id) == []


async def test_pull_batches_become_aggregated_pull_events(events):
    await events.record_pull_events([("acme/app", "latest", False, 3, 10.0, 11.5),
                                     ("acme/app", BLOB, True, 1, 12.0, 12.0)])
    got = await _events(events)
    assert got == [
        ("pull", "acme/app:latest", {"repository": "acme/app", "tag": "latest", "count": 3,
                                     "first_at": "1970-01-01T00:00:10.000Z", "last_at": "1970-01-01T00:00:11.500Z",
                                     "actor": "daohub"}),
        ("pull", f"acme/app@{BLOB}", {"repository": "acme/app", "digest": BLOB, "count": 1,
                                      "first_at": "1970-01-01T00:00:12.000Z", "last_at": "1970-01-01T00:00:12.000Z",
                                      "actor": "daohub"})]


async def test_replicas_claiming_together_never_take_one_delivery_twice(writers):
    a, b = writers
    await _webhook(a)
    for i in range(60):
        await _push(a, "acme/app", [], salt=str(i))

    async def drain(store, owner):
        got = []
        while batch := await store.webhook_claim(owner, lease_seconds=3600, limit=7):
            got += [c.id for c in batch]
            await asyncio.sleep(0)
        return got

    one, two = await asyncio.gather(drain(a, "a"), drain(b, "b"))
    assert len(one) + len(two) == 60 and len(set(one) | set(two)) == 60


async def test_member_and_robot_changes_write_tenant_events(events):
    from hub.db.identity import RobotRecord

    await events.create_tenant("acme")
    await events.create_user("carol", "hash")
    with MetadataStore.acting_as("ada"):
        assert await events.set_membership("acme", "carol", "developer")
        assert await events.set_membership("acme", "carol", "developer")  # unchanged: no event
        assert await events.set_membership("acme", "carol", "maintainer")
        assert await events.set_membership("acme", "carol", None)
        assert await events.create_robot(RobotRecord("acme", "ci", "hash", ("acme/ci/*",), ("pull",), None, False,
                                                     1.0))
        assert not await events.create_robot(RobotRecord("acme", "ci", "hash", (), ("pull",), None, False, 1.0))
        assert await events.revoke_robot("acme", "ci")
        assert await events.delete_robot("acme", "ci")
        assert not await events.delete_robot("acme", "ci")
    got = await _events(events)
    assert got == [
        ("member.set", "carol", {"tenant": "acme", "user": "carol", "role": "developer", "previous_role": None,
                                 "actor": "ada"}),
        ("member.set", "carol", {"tenant": "acme", "user": "carol", "role": "maintainer",
                                 "previous_role": "developer", "actor": "ada"}),
        ("member.removed", "carol", {"tenant": "acme", "user": "carol", "previous_role": "maintainer",
                                     "actor": "ada"}),
        ("robot.created", "robot$acme+ci", {"tenant": "acme", "robot": "robot$acme+ci", "repositories": ["acme/ci/*"],
                                            "actions": ["pull"], "expires_at": None, "actor": "ada"}),
        ("robot.revoked", "robot$acme+ci", {"tenant": "acme", "robot": "robot$acme+ci", "actor": "ada"}),
        ("robot.deleted", "robot$acme+ci", {"tenant": "acme", "robot": "robot$acme+ci", "actor": "ada"})]
    (first,) = await events.events_after(0, 1)
    assert (first.tenant, first.repository, first.cloudevent()["source"]) == ("acme", None, "/daohub/tenants/acme")
    # A tenant's subscription with a repository filter does not get them; one without does.
    await _webhook(events, "acme", repos=["acme/*"])
    everything = await _webhook(events, "acme", types=["robot.*"])
    await events.set_membership("acme", "carol", "guest")
    with MetadataStore.acting_as("ada"):
        await events.create_robot(RobotRecord("acme", "b", "hash", (), ("pull",), None, False, 1.0))
    claims = await events.webhook_claim("w", lease_seconds=60)
    assert [(c.subscription_id, c.event_type) for c in claims] == [(everything.id, "io.daohub.robot.created")]


async def test_a_repository_delete_is_one_event_and_a_tenant_delete_takes_its_subscriptions(events):
    await events.create_tenant("acme")
    await _push(events, "acme/app", ["1", "2"], salt="1")
    await _push(events, "acme/app", [], salt="2")
    start = await _last_seq(events)
    with MetadataStore.acting_as("mary"):
        assert await events.delete_repository("acme/app")
        assert not await events.delete_repository("acme/app")
    assert await _events(events, start) == [("repository.deleted", "acme/app", {
        "repository": "acme/app", "manifest_count": 2, "tag_count": 2, "actor": "mary"})]
    hook = await _webhook(events, "acme")
    platform = await _webhook(events)
    assert await events.delete_tenant("acme")
    assert await events.webhook(hook.id) is None and await events.webhook(platform.id) is not None


async def test_a_pull_batch_reaches_the_subscriptions_of_each_events_tenant(events):
    platform = await _webhook(events, types=["pull"])
    acme = await _webhook(events, "acme")
    await _webhook(events, "other")
    await events.record_pull_events([("acme/app", "1", False, 1, 1.0, 1.0), ("zed/app", "1", False, 1, 1.0, 1.0)])
    got = sorted((c.subscription_id, json.loads(c.body)["subject"])
                 for c in await events.webhook_claim("w", lease_seconds=60, limit=100))
    assert got == sorted([(platform.id, "acme/app:1"), (platform.id, "zed/app:1"), (acme.id, "acme/app:1")])


async def test_changes_refused_for_an_immutable_tag_write_no_event_and_its_first_push_is_one(events):
    from hub.db.immutable_store import TagImmutableError
    from hub.retention.immutable import guard

    events.tag_guard = guard
    await events.set_immutable_rules("acme", {"rules": [{"repositories": "acme/**", "tags": {"glob": "v*"}}]},
                                     "alice")
    first = await _push(events, "acme/app", ["v1"], salt="1")  # created as immutable (create_frozen_tags)
    start = await _last_seq(events)
    with pytest.raises(TagImmutableError):
        await events.put_manifest("acme/app", manifest(salt="2"), ["v1"])  # a move: refused
    with pytest.raises(TagImmutableError):
        await events.delete_tag("acme/app", "v1")
    with pytest.raises(TagImmutableError):
        await events.delete_manifest("acme/app", first)
    assert await _events(events, start) == []
    assert [(t, s) for t, s, _ in await _events(events)] == [("manifest.pushed", f"acme/app@{first}"),
                                                              ("tag.pushed", "acme/app:v1")]


async def test_crossing_80_percent_of_a_quota_is_one_warning_per_crossing(events):
    first = manifest(salt="q1")
    size = len(first.content)
    await events.create_tenant("q", "Q", int(size * 2.2))  # 2 manifests: 91 %; 1: 45 %
    assert await events.put_manifest("q/app", first, ["1"]) == []
    assert [t for t, _, _ in await _events(events)] == ["manifest.pushed", "tag.pushed"]
    after = await _last_seq(events)
    second = manifest(salt="q2")
    assert len(second.content) == size
    assert await events.put_manifest("q/app", second, ["2"]) == []
    got = [(t, s, d) for t, s, d in await _events(events, after) if t == "quota.warning"]
    assert [(t, s) for t, s, _ in got] == [("quota.warning", "q")]
    assert got[0][2]["used_bytes"] == 2 * size and got[0][2]["limit_bytes"] == int(size * 2.2)
    after = await _last_seq(events)
    with pytest.raises(QuotaExceededError):  # refused: rolled back, no event of the store's
        await events.put_manifest("q/app", manifest(salt="q3"), ["3"])
    assert await _events(events, after) == []
    assert await events.delete_manifest("q/app", second.digest)  # below the line again...
    after = await _last_seq(events)
    assert await events.put_manifest("q/app", manifest(salt="q4"), ["4"]) == []  # ...and over it: again
    assert [t for t, _, _ in await _events(events, after)].count("quota.warning") == 1
    event = next(e for e in await events.events_after(after) if e.type.endswith("quota.warning")).cloudevent()
    assert event["source"] == "/daohub/tenants/q"


async def test_app_versions_published_and_deprecated_are_events_of_their_transaction(events):
    from hub.db.base import AppIndexEntry

    entry = AppIndexEntry("voting", "Voting", "Vote", ("demo",), "1.0.0", "{}", None, None)
    one = await _push(events, "acme/voting", ["1.0.0"], salt="a1")
    after = await _last_seq(events)
    with MetadataStore.acting_as("ada"):
        assert await events.index_app_version("acme/voting", "1.0.0", one, entry)
        assert await events.index_app_version("acme/voting", "1.0.0", one, entry)  # the same again: no event
        assert not await events.index_app_version("acme/voting", "1.0.0", "sha256:" + "0" * 64, entry)  # not the tag's
        assert await events.set_app_version_deprecated("acme/voting", "1.0.0", True)
        assert await events.set_app_version_deprecated("acme/voting", "1.0.0", True)  # no change: no event
        assert not await events.set_app_version_deprecated("acme/voting", "9.9.9", True)
        assert await events.set_app_version_deprecated("acme/voting", "1.0.0", False)
    got = await _events(events, after)
    assert got == [
        ("app.version.published", "acme/voting:1.0.0", {"repository": "acme/voting", "tag": "1.0.0",
                                                         "version": "1.0.0", "app": "voting", "digest": one,
                                                         "actor": "ada"}),
        ("app.version.deprecated", "acme/voting:1.0.0", {"repository": "acme/voting", "tag": "1.0.0",
                                                          "version": "1.0.0", "app": "voting", "deprecated": True,
                                                          "actor": "ada"}),
        ("app.version.deprecated", "acme/voting:1.0.0", {"repository": "acme/voting", "tag": "1.0.0",
                                                          "version": "1.0.0", "app": "voting", "deprecated": False,
                                                          "actor": "ada"})]
    assert (await events.get_app_version("acme/voting", "1.0.0")).deprecated is False
