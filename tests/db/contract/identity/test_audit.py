"""identity.audit: append, page (newest first, by id)."""

from __future__ import annotations

import json


async def test_pages_are_newest_first_and_filtered_by_tenant(identity):
    rows = [("admin", "tenant.create", "t/a", "a"), ("admin", "user.create", "user/bob", None),
            ("alice", "robot.create", "t/b", "b"), ("admin", "tenant.create", "t/b0", "b0"),
            ("bob", "repository.delete", "t/a/x", "a")]
    for i, (actor, action, target, tenant) in enumerate(rows):
        await identity.audit.append(actor, action, target, json.dumps({"i": i}) if i % 2 else None, tenant=tenant)

    entries = await identity.audit.page(100, None)
    assert [(e.actor, e.action, e.target, e.tenant) for e in entries] == rows[::-1]
    assert [e.detail_json for e in entries] == [None, '{"i": 3}', None, '{"i": 1}', None]
    ids = [e.id for e in entries]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 5

    # before_id pages: limit 1 and N, at the oldest, in a gap, past the newest, None.
    walked, before = [], None
    while page := await identity.audit.page(2, before):
        assert len(page) <= 2
        walked.append([e.id for e in page])
        before = page[-1].id
    assert walked == [ids[0:2], ids[2:4], ids[4:]]
    assert [e.id for e in await identity.audit.page(1, None)] == ids[:1]
    assert await identity.audit.page(10, ids[-1]) == []
    assert [e.id for e in await identity.audit.page(10, ids[0] + 1000)] == ids
    assert [e.id for e in await identity.audit.page(1, ids[1])] == ids[2:3]

    # Only rows concerning the given tenants ("a" is not a prefix match for "b0" and friends).
    by = identity.audit.page
    assert [e.target for e in await by(100, None, tenants=["a"])] == ["t/a/x", "t/a"]
    assert [e.target for e in await by(100, None, tenants=["b", "ghost", "b"])] == ["t/b"]
    assert [e.target for e in await by(100, None, tenants=["b0", "a"])] == ["t/a/x", "t/b0", "t/a"]
    assert [e.target for e in await by(1, ids[0], tenants=["a", "b0"])] == ["t/b0"]
    assert await by(100, None, tenants=[]) == []
    assert await by(100, ids[-1], tenants=["a"]) == []


async def test_audit_log_newest_first_by_tenant(identity):  # from tests/db/test_store.py
    for i in range(5):
        await identity.audit.append("root", "x.change", f"target{i}", json.dumps({"i": i}),
                                    tenant="team" if i % 2 else None)
    rows = await identity.audit.page(10, None)
    assert [r.target for r in rows] == [f"target{i}" for i in (4, 3, 2, 1, 0)]
    assert rows[0].detail_json == json.dumps({"i": 4}) and rows[0].actor == "root"
    older = await identity.audit.page(2, rows[1].id)
    assert [r.target for r in older] == ["target2", "target1"]
    assert [r.target for r in await identity.audit.page(10, None, tenants=["team"])] == ["target3", "target1"]
    assert await identity.audit.page(10, None, tenants=[]) == []
