"""Immutable tags in the store (hub/db/immutable_store.py): the rules with their audit rows, and
their enforcement inside the transactions that move, re-point or delete tags: a push moving an
immutable tag, a tag delete, a manifest delete that would take one, a repository delete and a
retention delete are refused and change nothing; the same content again is accepted; two first
pushes of one immutable tag with different content racing on two replicas leave exactly one."""

from __future__ import annotations

import asyncio

import pytest

from hub.db.immutable_store import TagImmutableError
from hub.retention.immutable import guard
from tests.db.test_store import manifest

RULES = {"rules": [{"repositories": "acme/**", "tags": {"semver": ">=1.0.0"}},
                   {"repositories": "acme/prod", "tags": {"glob": "release-*"}}]}


@pytest.fixture
def guarded(retention):
    retention.tag_guard = guard
    return retention


async def _push(store, repository: str, tags: list[str], salt: str = ""):
    m = manifest(salt=salt)
    assert await store.put_manifest(repository, m, tags) == []
    return m.digest


async def _tags(store, repository: str) -> dict[str, str]:
    tags, _ = await store.retention_inventory(repository.split("/")[0])
    return {t.tag: t.digest for t in tags if t.repository == repository}


async def test_rules_are_set_replaced_and_deleted_each_with_its_audit_row(guarded):
    assert await guarded.immutable_rules("acme") is None
    stored = await guarded.set_immutable_rules("acme", RULES, "alice")
    assert (stored.document, stored.updated_by) == (RULES, "alice")
    await guarded.set_immutable_rules("acme", {"rules": []}, "bob")
    assert (await guarded.immutable_rules("acme")).document == {"rules": []}
    assert await guarded.delete_immutable_rules("acme", "carol") is True
    assert await guarded.delete_immutable_rules("acme", "carol") is False
    rows = [e for e in await guarded.audit_entries(100, None) if e.action.startswith("immutable_tags.")]
    assert [(e.actor, e.action, e.tenant) for e in rows] == [
        ("carol", "immutable_tags.delete", "acme"), ("bob", "immutable_tags.set", "acme"),
        ("alice", "immutable_tags.set", "acme")]
    assert '"before": null' in rows[2].detail_json and '"semver"' in rows[1].detail_json


async def test_an_immutable_tag_refuses_a_move_but_takes_the_same_content_again(guarded):
    await guarded.set_immutable_rules("acme", RULES, "alice")
    first = await _push(guarded, "acme/app", ["1.2.0", "latest"], salt="a")
    assert await _push(guarded, "acme/app", ["1.2.0", "latest"], salt="a") == first  # idempotent
    with pytest.raises(TagImmutableError, match=r"tag 1\.2\.0 of acme/app is immutable \(rule 1: "):
        await _push(guarded, "acme/app", ["latest", "1.2.0"], salt="b")
    # Refused as a whole: `latest` did not move either, and the other manifest is not stored.
    assert await _tags(guarded, "acme/app") == {"1.2.0": first, "latest": first}
    other = manifest(salt="b").digest
    assert await guarded.get_manifest("acme/app", other, by_digest=True, with_content=False) is None
    second = await _push(guarded, "acme/app", ["latest", "0.9.0"], salt="b")  # mutable tags move freely
    assert await _tags(guarded, "acme/app") == {"1.2.0": first, "latest": second, "0.9.0": second}
    # Other repositories and tenants: their own rules, or none.
    await _push(guarded, "acme/prod", ["release-1"], salt="c")
    with pytest.raises(TagImmutableError, match="rule 2"):
        await _push(guarded, "acme/prod", ["release-1"], salt="d")
    await _push(guarded, "other/app", ["1.2.0"], salt="c")
    await _push(guarded, "other/app", ["1.2.0"], salt="d")


async def test_deletes_that_would_take_an_immutable_tag_are_refused(guarded):
    await guarded.set_immutable_rules("acme", RULES, "alice")
    frozen = await _push(guarded, "acme/app", ["1.0.0", "dev"], salt="a")
    loose = await _push(guarded, "acme/app", ["dev2"], salt="b")
    for attempt in (lambda: guarded.delete_tag("acme/app", "1.0.0"),
                    lambda: guarded.delete_tag_at("acme/app", "1.0.0", frozen, actor="retention"),
                    lambda: guarded.delete_tag_at("acme/app", "1.0.0", None, actor="x"),
                    lambda: guarded.delete_manifest("acme/app", frozen),
                    lambda: guarded.delete_manifest_at("acme/app", frozen, actor="x"),
                    lambda: guarded.delete_repository("acme/app")):
        with pytest.raises(TagImmutableError):
            await attempt()
    assert await _tags(guarded, "acme/app") == {"1.0.0": frozen, "dev": frozen, "dev2": loose}
    # What holds no immutable tag still goes; a tag that is not there is not refused but absent.
    assert await guarded.delete_tag("acme/app", "dev") is True
    assert await guarded.delete_tag_at("acme/app", "1.0.0", loose, actor="x") is False  # points elsewhere
    assert await guarded.delete_tag("acme/app", "2.0.0") is False
    assert await guarded.delete_manifest_at("acme/app", loose, actor="bob") is True
    row = [e for e in await guarded.audit_entries(10, None) if e.action == "manifest.delete"][0]
    assert (row.actor, row.target) == ("bob", f"acme/app@{loose}") and '"dev2"' in row.detail_json
    # Without the rules, all of it may go.
    assert await guarded.delete_immutable_rules("acme", "alice")
    assert await guarded.delete_repository("acme/app") is True


async def test_a_store_without_a_guard_refuses_nothing(retention):
    await retention.set_immutable_rules("acme", RULES, "alice")
    await _push(retention, "acme/app", ["1.0.0"], salt="a")
    await _push(retention, "acme/app", ["1.0.0"], salt="b")
    assert await retention.delete_tag("acme/app", "1.0.0") is True


async def test_stored_rules_that_no_longer_validate_hold_every_tag_of_the_tenant(guarded):
    await _push(guarded, "acme/app", ["anything"], salt="a")
    await guarded.set_immutable_rules("acme", {"rules": [{"tags": {"colour": "red"}}]}, "old-version")
    with pytest.raises(TagImmutableError, match="do not validate"):
        await _push(guarded, "acme/app", ["anything"], salt="b")
    with pytest.raises(TagImmutableError, match="do not validate"):
        await guarded.delete_tag("acme/app", "anything")
    await _push(guarded, "acme/app", ["new"], salt="b")  # creating a tag moves nothing


async def test_two_first_pushes_of_one_immutable_tag_racing_leave_exactly_one(writers):
    a, b = writers
    a.tag_guard = b.tag_guard = guard
    await a.set_immutable_rules("acme", RULES, "alice")
    for round_ in range(6):
        tag = f"1.0.{round_}"
        results = await asyncio.gather(_push(a, "acme/app", [tag], salt=f"a{round_}"),
                                       _push(b, "acme/app", [tag], salt=f"b{round_}"), return_exceptions=True)
        won = [r for r in results if isinstance(r, str)]
        lost = [r for r in results if isinstance(r, BaseException)]
        assert len(won) == 1 and len(lost) == 1 and isinstance(lost[0], TagImmutableError), results
        assert (await _tags(b, "acme/app"))[tag] == won[0]
