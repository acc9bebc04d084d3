"""The metadata store contract, the same over SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time

import pytest

from hub.db import NewManifest
from hub.db import schema as migrations
from hub.db.base import QuotaExceededError
from hub.db.identity import RobotRecord, TenantNotEmptyError

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def digest(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode()
    return "sha256:" + hashlib.sha256(data).hexdigest()


def manifest(blobs=(), children=(), subject=None, artifact_type=None, salt="") -> NewManifest:
    content = json.dumps({"blobs": list(blobs), "children": list(children), "subject": subject,
                          "salt": salt}).encode()
    annotations = json.dumps({"salt": salt}) if salt else None
    return NewManifest(digest(content), OCI_MANIFEST, content, subject, artifact_type, annotations,
                       tuple(blobs), tuple(children))


async def test_migrations_are_applied_once(store):
    latest = len(migrations.load(store.dialect))
    assert await store.schema_version() == latest
    assert await store.migrate() == []
    assert await store.schema_version() == latest


async def test_manifest_needs_its_blobs_and_children_in_the_repository(store):
    layer = digest("layer")
    m = manifest([layer, layer])
    assert await store.put_manifest("team/app", m, ["v1"]) == [layer, layer]
    assert await store.get_manifest("team/app", "v1", by_digest=False) is None
    assert await store.list_repositories(10, None) == []  # the repository row has no manifest

    await store.link_blob("team/app", layer, 5)
    assert await store.put_manifest("team/app", m, ["v1", "latest", "v1"]) == []
    got = await store.get_manifest("team/app", "v1", by_digest=False)
    assert (got.digest, got.media_type, got.size, got.content) == (m.digest, OCI_MANIFEST, len(m.content), m.content)
    head = await store.get_manifest("team/app", m.digest, by_digest=True, with_content=False)
    assert head.content is None and head.size == len(m.content)

    index = manifest(children=[m.digest, digest("nope")], salt="index")
    assert await store.put_manifest("team/app", index, []) == [digest("nope")]
    assert await store.put_manifest("team/other", manifest(children=[m.digest]), []) == [m.digest]


async def test_tags_sort_bytewise_page_and_move(store):
    await store.link_blob("team/app", digest("l"), 1)
    first, second = manifest([digest("l")], salt="1"), manifest([digest("l")], salt="2")
    names = ["b", "a", "Z", "A", "v1.10", "v1.9", "_x", "a-b", "a.b"]
    assert await store.put_manifest("team/app", first, names) == []
    assert await store.list_tags("team/app", 100, None) == sorted(names)  # Python sorts code points = bytes here
    assert await store.list_tags("team/app", 3, None) == ["A", "Z", "_x"]
    assert await store.list_tags("team/app", 3, "_x") == ["a", "a-b", "a.b"]
    assert await store.list_tags("team/none", 10, None) is None

    assert await store.put_manifest("team/app", second, ["a"]) == []
    assert (await store.get_manifest("team/app", "a", by_digest=False)).digest == second.digest
    records = {t.name: t.digest for t in await store.list_tag_records("team/app", 100, None)}
    assert records["a"] == second.digest and records["b"] == first.digest
    assert await store.delete_tag("team/app", "b") and not await store.delete_tag("team/app", "b")
    assert await store.delete_manifest("team/app", first.digest)
    assert await store.list_tags("team/app", 100, None) == ["a"]  # tags of the deleted manifest went with it
    assert not await store.delete_manifest("team/app", first.digest)
    assert not await store.delete_tag("nobody/here", "a")


async def test_catalog_lists_repositories_with_manifests_in_byte_order(store):
    names = ["team/b", "team/a", "team-x/c", "team.y/d", "Team/e", "team/a/deep"]
    for name in names:
        await store.link_blob(name, digest("l"), 1)
        assert await store.put_manifest(name, manifest([digest("l")]), []) == []
    await store.create_upload("3b9c1f4e-4a53-4a47-9cb1-2d6f9a4e9c11", "team/only-an-upload")
    assert await store.list_repositories(100, None) == sorted(names)
    assert await store.list_repositories(2, "team-x/c") == ["team.y/d", "team/a"]
    assert await store.repository_exists("team/only-an-upload")


async def test_referrers_by_subject_and_artifact_type(store):
    await store.link_blob("team/app", digest("l"), 1)
    subject = manifest([digest("l")])
    await store.put_manifest("team/app", subject, ["v1"])
    sig = manifest([digest("l")], subject=subject.digest, artifact_type="application/sig", salt="sig")
    sbom = manifest([digest("l")], subject=subject.digest, artifact_type="application/sbom", salt="sbom")
    for m in (sig, sbom):
        assert await store.put_manifest("team/app", m, []) == []
    found = await store.list_referrers("team/app", subject.digest)
    assert {r.digest for r in found} == {sig.digest, sbom.digest}
    only = await store.list_referrers("team/app", subject.digest, "application/sbom")
    assert [(r.digest, r.artifact_type, r.annotations_json, r.size) for r in only] == [
        (sbom.digest, "application/sbom", json.dumps({"salt": "sbom"}), len(sbom.content))]
    assert await store.list_referrers("team/other", subject.digest) == []


async def test_blob_links_are_per_repository(store):
    d = digest("blob")
    assert await store.get_global_blob_size(d) is None
    await store.link_blob("team/a", d, 4)
    await store.link_blob("team/a", d, 4)  # idempotent
    await store.link_blob("other/b", d, 4)
    assert await store.get_blob_size("team/a", d) == 4
    assert await store.get_blob_size("team/c", d) is None
    assert await store.repositories_linking(d) == ["other/b", "team/a"]
    assert await store.unlink_blob("team/a", d) and not await store.unlink_blob("team/a", d)
    assert not await store.unlink_blob("no/repo", d)
    assert await store.get_global_blob_size(d) == 4
    await store.unlink_blob("other/b", d)
    assert await store.get_global_blob_size(d) is None  # the bytes may go to GC now


async def test_quota_counts_distinct_blobs_of_the_tenant_only(store):
    assert await store.create_tenant("team", "Team", 100)
    await store.link_blob("team/a", digest("x"), 60)
    await store.link_blob("team/b", digest("x"), 60)  # the same blob counts once
    await store.link_blob("team-b/a", digest("y"), 1000)  # other tenants sort right next to "team/"
    await store.link_blob("team.c/a", digest("z"), 1000)
    await store.link_blob("teamd/a", digest("w"), 1000)
    assert await store.tenant_usage("team") == 60
    await store.check_quota("team/c", digest("x"), 60)  # already counted
    with pytest.raises(QuotaExceededError) as exc:
        await store.check_quota("team/c", digest("v"), 41)
    assert (exc.value.tenant, exc.value.used, exc.value.limit, exc.value.needed) == ("team", 60, 100, 41)
    with pytest.raises(QuotaExceededError):
        await store.link_blob("team/c", digest("v"), 41)
    assert await store.get_blob_size("team/c", digest("v")) is None
    await store.link_blob("team/c", digest("v"), 40)
    assert await store.tenant_usage("team") == 100
    await store.link_blob("free/a", digest("big"), 10**12)  # no tenant row: no quota
    assert await store.update_tenant("team", {"quota_bytes": None})
    await store.link_blob("team/c", digest("u"), 10**9)


async def test_upload_rows(store):
    uid = "0f8fad5b-d9cb-469f-a165-70867728950e"
    await store.create_upload(uid, "team/app")
    record = await store.get_upload(uid)
    assert (record.id, record.repository, record.size) == (uid, "team/app", 0)
    assert await store.set_upload_size(uid, 0, 10)
    assert not await store.set_upload_size(uid, 0, 20)  # compare-and-set lost
    assert await store.set_upload_size(uid, None, 30)
    assert (await store.get_upload(uid)).size == 30
    assert await store.uploads_exist([uid, "7c9e6679-7425-40de-944b-e07fc1f90ae7"]) == {uid}
    assert await store.uploads_exist([]) == set()
    assert await store.expired_uploads(time.time() + 10) == [uid]
    assert await store.expired_uploads(time.time() - 3600) == []

    await store.create_tenant("team", quota_bytes=20)
    with pytest.raises(QuotaExceededError):
        await store.complete_upload(uid, "team/app", digest("data"), 30)
    assert await store.get_upload(uid) is not None  # nothing changed
    assert await store.get_blob_size("team/app", digest("data")) is None
    await store.complete_upload(uid, "team/app", digest("data"), 20)
    assert await store.get_upload(uid) is None
    assert await store.get_blob_size("team/app", digest("data")) == 20
    assert not await store.delete_upload(uid)


async def test_users_tenants_memberships(store):
    assert await store.create_user("alice", "h1") and not await store.create_user("alice", "h2")
    assert await store.create_user("root", "h", is_admin=True)
    assert await store.count_users() == 2
    user = await store.get_user("alice")
    assert (user.password_hash, user.is_admin, user.disabled) == ("h1", False, False)
    assert await store.set_password("alice", "h3") and (await store.get_user("alice")).password_hash == "h3"
    updated = await store.update_user("alice", {"disabled": True})
    assert updated.disabled is True and updated.is_admin is False
    assert await store.update_user("ghost", {"disabled": True}) is None
    with pytest.raises(ValueError):
        await store.update_user("alice", {"password_hash": "x"})
    assert [u.username for u in await store.list_users(1, None)] == ["alice"]
    assert [u.username for u in await store.list_users(10, "alice")] == ["root"]

    assert await store.create_tenant("team", "The Team", 5) and not await store.create_tenant("team")
    await store.create_tenant("other")
    t = await store.get_tenant("team")
    assert (t.name, t.display_name, t.quota_bytes) == ("team", "The Team", 5)
    assert (await store.update_tenant("team", {"display_name": "T", "quota_bytes": 7})).quota_bytes == 7
    assert await store.update_tenant("team", {}) == await store.get_tenant("team")
    assert [x.name for x in await store.list_tenants(10, None)] == ["other", "team"]
    assert [x.name for x in await store.list_tenants(10, None, only=["team", "ghost"])] == ["team"]
    assert await store.list_tenants(10, None, only=[]) == []

    assert await store.set_membership("team", "alice", "developer")
    assert await store.set_membership("team", "alice", "admin")
    assert await store.set_membership("other", "alice", "guest")
    assert not await store.set_membership("ghost", "alice", "guest")
    assert await store.memberships("alice") == {"team": "admin", "other": "guest"}
    assert [(m.username, m.role) for m in await store.tenant_members("team", 10, None)] == [("alice", "admin")]
    assert await store.set_membership("other", "alice", None)
    assert await store.delete_user("alice") and not await store.delete_user("alice")
    assert await store.tenant_members("team", 10, None) == []


async def test_tenant_deletion_refuses_a_tenant_with_repositories(store):
    await store.create_tenant("team")
    await store.create_user("alice", "h")
    await store.set_membership("team", "alice", "guest")
    await store.create_robot(RobotRecord("team", "ci", "s", ("team/*",), ("pull",), None, False, time.time()))
    await store.create_upload("0f8fad5b-d9cb-469f-a165-70867728950e", "team/app")
    with pytest.raises(TenantNotEmptyError):
        await store.delete_tenant("team")
    assert await store.get_tenant("team") is not None
    assert await store.delete_repository("team/app") and not await store.delete_repository("team/app")
    assert await store.get_upload("0f8fad5b-d9cb-469f-a165-70867728950e") is None
    await store.link_blob("team-b/x", digest("x"), 1)  # another tenant's repository
    assert await store.delete_tenant("team")
    assert not await store.delete_tenant("team")
    assert await store.memberships("alice") == {}
    assert await store.get_robot("team", "ci") is None


async def test_robots(store):
    await store.create_tenant("team")
    robot = RobotRecord("team", "ci", "hash", ("team/ci/*", "team/x"), ("pull", "push"), time.time() + 60, False,
                        time.time())
    assert await store.create_robot(robot) and not await store.create_robot(robot)
    assert not await store.create_robot(RobotRecord("ghost", "ci", "h", (), (), None, False, 0.0))
    assert await store.get_robot("team", "ci") == robot
    await store.create_robot(RobotRecord("team", "build", "h", (), ("pull",), None, False, time.time()))
    assert [r.name for r in await store.list_robots("team", 10, None)] == ["build", "ci"]
    assert [r.name for r in await store.list_robots("team", 10, "build")] == ["ci"]
    assert await store.revoke_robot("team", "ci") and (await store.get_robot("team", "ci")).revoked
    assert not await store.revoke_robot("other", "ci")
    assert await store.delete_robot("team", "ci") and await store.get_robot("team", "ci") is None


async def test_repository_visibility_and_summaries(store):
    await store.link_blob("team/app", digest("a"), 10)
    await store.link_blob("team/app", digest("b"), 5)
    await store.put_manifest("team/app", manifest([digest("a"), digest("b")]), ["v1", "v2"])
    assert await store.set_repository_public("team/new", True)  # creates the row
    assert await store.public_repositories(["team/new", "team/app", "ghost/x"]) == {"team/new"}
    assert await store.public_repositories([]) == set()
    assert await store.set_repository_public("team/new", False)
    assert await store.public_repositories(["team/new"]) == set()
    summaries = await store.repository_summaries("team", 10, None)
    assert [(s.name, s.public, s.size_bytes, s.tag_count, s.manifest_count) for s in summaries] == [
        ("team/app", False, 15, 2, 1), ("team/new", False, 0, 0, 0)]
    assert [s.name for s in await store.repository_summaries("team", 10, "team/app")] == ["team/new"]
    assert (await store.repository_summary("team/app")).size_bytes == 15
    assert await store.repository_summary("ghost/x") is None
    assert await store.list_tag_records("ghost/x", 10, None) is None


async def test_signing_keys_tokens_and_login_throttling(store):
    await store.add_signing_key("k1", "pem1")
    await store.add_signing_key("k2", "pem2")
    await store.add_signing_key("k3", "pem3", retire_older_than_rank=2)
    assert [k.kid for k in await store.signing_keys()] == ["k3", "k2"]
    with pytest.raises(Exception):  # noqa: B017 - a kid is unique (each driver has its own error type)
        await store.add_signing_key("k3", "again")

    # The limiter reserves an attempt against every key at once, or none when one is full.
    limits = [("user:a|ip:1", 3), ("ip:1", 5)]
    assert [await store.reserve_login_attempt(limits, 300) for _ in range(3)] == [None] * 3
    retry = await store.reserve_login_attempt(limits, 300)
    assert retry is not None and 0 < retry <= 300
    assert await store.reserve_login_attempt([("user:b|ip:1", 3), ("ip:1", 5)], 300) is None
    assert await store.reserve_login_attempt([("user:c|ip:1", 3), ("ip:1", 5)], 300) is None
    # ip:1 is at 5 now: refused, and user:d's count was not taken.
    assert await store.reserve_login_attempt([("user:d|ip:1", 3), ("ip:1", 5)], 300) is not None
    await store.release_login_attempt("user:a|ip:1", ["ip:1"])  # a success: a's failures forgotten
    assert await store.reserve_login_attempt([("user:d|ip:1", 1), ("ip:1", 5)], 300) is None
    assert await store.reserve_login_attempt([("user:d|ip:1", 1)], 300) is not None
    assert await store.reserve_login_attempt(limits, 300) is not None  # ip:1 is full again
    assert await store.reserve_login_attempt(limits, 0) is None  # the window is over: a new one starts


async def test_refresh_tokens_and_web_sessions(store):
    now = time.time()
    await store.create_user("alice", "hash")
    for jti in ("t1", "t2", "t3"):
        await store.add_refresh_token(jti, "alice", "docker", "agent/1", now, now + 600)
    await store.add_refresh_token("old", "alice", "docker", "", now - 700, now - 100)
    await store.add_refresh_token("r1", "robot$team+ci", "ci", "", now, now + 600)
    assert [t.jti for t in await store.list_refresh_tokens("alice", 10, None)] == ["t1", "t2", "t3"]
    assert [t.jti for t in await store.list_refresh_tokens("alice", 1, "t1")] == ["t2"]
    used = await store.use_refresh_token("t1", "alice")
    assert used is not None and used.last_used_at >= now and used.user_agent == "agent/1"
    assert await store.use_refresh_token("t1", "bob") is None  # another subject's jti
    assert await store.use_refresh_token("old", "alice") is None  # expired
    assert await store.revoke_refresh_tokens("alice", "t1") == 1
    assert await store.revoke_refresh_tokens("alice", "t1") == 0
    assert await store.use_refresh_token("t1", "alice") is None
    assert await store.revoke_refresh_tokens("alice") == 2
    assert await store.list_refresh_tokens("alice", 10, None) == []
    assert await store.use_refresh_token("r1", "robot$team+ci") is not None

    await store.add_web_session("h1", "alice", now + 600)
    await store.add_web_session("h2", "alice", now + 600)
    assert await store.web_session_live("h1", "alice") and not await store.web_session_live("h1", "bob")
    await store.end_web_session("h1")
    assert not await store.web_session_live("h1", "alice") and await store.web_session_live("h2", "alice")


@pytest.mark.parametrize("event", ["password", "disable", "delete"])
async def test_password_change_disable_and_delete_end_a_users_credentials(store, event):
    now = time.time()
    for user in ("alice", "bob"):
        await store.create_user(user, "hash")
        await store.add_refresh_token(f"{user}-t", user, "docker", "", now, now + 600)
        await store.add_web_session(f"{user}-s", user, now + 600)
    if event == "password":
        assert await store.set_password("alice", "new-hash")
    elif event == "disable":
        await store.update_user("alice", {"disabled": True})
    else:
        assert await store.delete_user("alice")
    assert await store.use_refresh_token("alice-t", "alice") is None
    assert not await store.web_session_live("alice-s", "alice")
    assert await store.use_refresh_token("bob-t", "bob") is not None and await store.web_session_live("bob-s", "bob")
    await store.update_user("bob", {"disabled": False})  # not disabling: nothing ends
    assert await store.web_session_live("bob-s", "bob")


async def test_audit_log_newest_first_by_tenant(store):
    for i in range(5):
        await store.audit("root", "x.change", f"target{i}", json.dumps({"i": i}), tenant="team" if i % 2 else None)
    rows = await store.audit_entries(10, None)
    assert [r.target for r in rows] == [f"target{i}" for i in (4, 3, 2, 1, 0)]
    assert rows[0].detail_json == json.dumps({"i": 4}) and rows[0].actor == "root"
    older = await store.audit_entries(2, rows[1].id)
    assert [r.target for r in older] == ["target2", "target1"]
    assert [r.target for r in await store.audit_entries(10, None, tenants=["team"])] == ["target3", "target1"]
    assert await store.audit_entries(10, None, tenants=[]) == []


async def test_lock_excludes_and_can_be_probed(store):
    order = []

    async def holder(name: str) -> None:
        async with store.lock("upload:x") as held:
            assert held
            order.append(f"{name} in")
            await asyncio.sleep(0.05)
            order.append(f"{name} out")

    async with store.lock("upload:x") as held:
        assert held
        waiters = [asyncio.create_task(holder(n)) for n in ("a", "b")]
        async with store.lock("upload:x", wait=False) as probe:
            assert probe is False
        async with store.lock("upload:y", wait=False) as other:
            assert other is True  # other keys are free
        await asyncio.sleep(0.05)
        assert order == []
    await asyncio.gather(*waiters)
    assert order in (["a in", "a out", "b in", "b out"], ["b in", "b out", "a in", "a out"])
    async with store.lock("upload:x", wait=False) as free:
        assert free is True
