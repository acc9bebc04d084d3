"""Retention runs and pull times over the HTTP app (SQLite and PostgreSQL), pushes and pulls through /v2.

- Pushes during a run (issue 16, must-show 5): a tag pushed again after the run read it (moved to
  another digest) is not deleted, and neither the pushes nor the run fail; the run records it as
  "moved". Shown twice: once at a chosen moment (between the run's read and its deletes), once with
  pushes racing a run.
- Pull times counted on two replicas sharing PostgreSQL (must-show 4): two apps over one database
  each note pulls of their own; "pulled within" keeps the tags pulled on either, and the stored time
  is the later of the two.
- A scheduled slot runs once across two replicas.
"""

from __future__ import annotations

import asyncio
import json
import os
import time

import pytest

from hub.app import create_app
from hub.config import load_config
from hub.keys import RETENTION, STORE, TAG_PULLS
from tests.registry.conftest import DATABASE_SETUP, METADATA_STORES, sha256

DAY = 86400.0
OCI = "application/vnd.oci.image.manifest.v1+json"


def _config(tmp_path, database: dict):
    return load_config(environ={}, overrides={
        "data_dir": str(tmp_path), "log": {"access_log": False}, "database": database,
        "auth": {"enabled": False}, "retention": {"interval_seconds": 0, "pull_flush_seconds": 3600},
    })


@pytest.fixture(params=METADATA_STORES)
async def hub(request, aiohttp_client, tmp_path):
    return await aiohttp_client(create_app(_config(tmp_path, DATABASE_SETUP[request.param](request, tmp_path))))


async def push(client, repo: str, tag: str) -> str:
    """A new image (a random config) pushed as repo:tag; its digest."""
    config = json.dumps({"n": os.urandom(8).hex()}).encode()
    r = await client.post(f"/v2/{repo}/blobs/uploads/?digest={sha256(config)}", data=config)
    assert r.status == 201, await r.text()
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI, "layers": [],
                       "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                  "digest": sha256(config), "size": len(config)}}).encode()
    r = await client.put(f"/v2/{repo}/manifests/{tag}", data=body, headers={"Content-Type": OCI})
    assert r.status == 201, await r.text()
    return r.headers["Docker-Content-Digest"]


async def tags(client, repo: str) -> dict[str, str]:
    """tag -> digest."""
    r = await client.get(f"/v2/{repo}/tags/list?n=1000")
    assert r.status == 200
    out = {}
    for tag in (await r.json())["tags"]:
        h = await client.head(f"/v2/{repo}/manifests/{tag}")
        out[tag] = h.headers["Docker-Content-Digest"]
    return out


async def _ci_tenant(client, n: int = 20) -> dict[str, str]:
    """Tenant team with ci-00..ci-{n-1} pushed a day apart (ci-00 the oldest) and a policy keeping
    the newest 2: every other tag is to be deleted."""
    store = client.server.app[STORE]
    await store.create_tenant("team")
    pushed = {}
    now = time.time()
    for i in range(n):
        tag = f"ci-{i:02d}"
        pushed[tag] = await push(client, "team/app", tag)
        await store.set_tag_times("team/app", tag, pushed_at=now - (n - i) * DAY)
    await store.set_retention_policy("team", {"rules": [{"tags": {"glob": "**"}, "keep": {"latest_pushed": 2}}]},
                                     "test")
    return pushed


async def test_a_tag_pushed_again_after_the_run_read_it_is_not_deleted(hub):
    app = hub.server.app
    pushed = await _ci_tenant(hub)
    store, retention = app[STORE], app[RETENTION]
    moved = {}
    read = store.retention_inventory

    async def read_then_push(tenant):
        found = await read(tenant)
        for tag in ("ci-00", "ci-05"):  # pushed again with new content after the read: they stay
            moved[tag] = await push(hub, "team/app", tag)
        return found

    store.retention_inventory = read_then_push
    try:
        report = await retention.run(tenant="team", trigger="cli", actor="test")
    finally:
        del store.retention_inventory
    assert report.errors == []
    outcome = {v.tag: v.outcome for v in report.verdicts}
    assert {t for t, o in outcome.items() if o == "moved"} == {"ci-00", "ci-05"}
    assert {t for t, o in outcome.items() if o == "deleted"} == set(pushed) - {"ci-00", "ci-05", "ci-18", "ci-19"}
    assert report.counts["moved"] == 2 and report.counts["deleted"] == 16
    assert await tags(hub, "team/app") == {"ci-00": moved["ci-00"], "ci-05": moved["ci-05"],
                                           "ci-18": pushed["ci-18"], "ci-19": pushed["ci-19"]}
    _, stored = await store.retention_run(report.run_id)
    assert {v.tag: v.outcome for v in stored} == outcome


async def test_pushes_racing_a_run_neither_fail_nor_lose_a_tag(hub):
    app = hub.server.app
    await _ci_tenant(hub, n=30)
    last: dict[str, str] = {}

    async def pusher(k: int) -> None:
        for round_ in range(3):
            tag = f"ci-{(k * 7 + round_ * 3) % 30:02d}"
            last[tag] = await push(hub, "team/app", tag)  # each re-push is a move to new content
            await asyncio.sleep(0)

    report, *_ = await asyncio.gather(app[RETENTION].run(tenant="team", trigger="cli", actor="test"),
                                      *(pusher(k) for k in range(4)))
    assert report.errors == []
    after = await tags(hub, "team/app")
    deleted = {v.tag for v in report.verdicts if v.outcome == "deleted"}
    for tag, digest in last.items():
        # The run deletes a tag only while it points at what the run read: the last push of a tag
        # either came after the run's read (the tag stays, at that push) or was what the run read
        # and deleted.
        if tag in after:
            assert after[tag] == digest
        else:
            assert tag in deleted and [v.digest for v in report.verdicts if v.tag == tag] == [digest]
    # Tags only: a pusher that moved a tag before the run read the tenant left an untagged manifest,
    # whose verdict (tag None, kept) is no tag of `after`.
    assert set(after) >= {t for t, o in ((v.tag, v.outcome) for v in report.verdicts)
                          if o in ("moved", "kept") and t is not None}


async def test_pull_times_come_from_get_and_head_by_tag_and_by_digest(hub):
    app = hub.server.app
    await app[STORE].create_tenant("team")
    a = await push(hub, "team/app", "a")
    await push(hub, "team/app", "b")
    await push(hub, "team/app", "c")
    assert (await hub.get("/v2/team/app/manifests/b")).status == 200
    assert (await hub.head(f"/v2/team/app/manifests/{a}")).status == 200
    assert (await hub.get("/v2/team/app/manifests/missing")).status == 404
    before = await app[STORE].retention_inventory("team")
    assert all(t.pulled_at is None for t in before[0])  # noted, not written: off the hot path
    assert await app[TAG_PULLS].flush() == 2
    pulled = {t.tag: t.pulled_at for t in (await app[STORE].retention_inventory("team"))[0]}
    assert pulled["a"] is not None and pulled["b"] is not None and pulled["c"] is None


@pytest.fixture
async def replicas(request, aiohttp_client, tmp_path):
    """Two apps (replicas) over one PostgreSQL database, storage shared on one filesystem."""
    database = DATABASE_SETUP["postgres"](request, tmp_path)
    return (await aiohttp_client(create_app(_config(tmp_path, database))),
            await aiohttp_client(create_app(_config(tmp_path, database))))


async def test_pull_times_are_counted_on_two_replicas_sharing_postgresql(replicas):
    one, two = replicas
    store = one.server.app[STORE]
    await store.create_tenant("team")
    now = time.time()
    for i in range(6):
        await push(one, "team/app", f"t{i}")
        await store.set_tag_times("team/app", f"t{i}", pushed_at=now - 30 * DAY)
    await store.set_retention_policy("team", {"rules": [{"tags": {"glob": "**"},
                                                         "keep": {"pulled_within_days": 7}}]}, "test")
    for client, pulled in ((one, ("t0", "t1", "t4")), (two, ("t2", "t3", "t4"))):
        for tag in pulled:
            assert (await client.get(f"/v2/team/app/manifests/{tag}")).status == 200
    await two.server.app[TAG_PULLS].flush()  # replica two's t4 pull is the later one
    await one.server.app[TAG_PULLS].flush()
    inventory = {t.tag: t.pulled_at for t in (await store.retention_inventory("team"))[0]}
    assert inventory["t5"] is None and all(inventory[f"t{i}"] is not None for i in range(5))
    report = await two.server.app[RETENTION].run(dry_run=True, tenant="team")
    assert {v.tag for v in report.verdicts if v.outcome == "would delete"} == {"t5"}
    assert {v.tag for v in report.verdicts if v.action == "keep"} == {"t0", "t1", "t2", "t3", "t4"}


async def test_a_scheduled_slot_runs_once_across_two_replicas(replicas):
    one, two = replicas
    await _ci_tenant(one, n=6)
    reports = await asyncio.gather(*(c.server.app[RETENTION].run(trigger="schedule", actor="schedule", slot=42)
                                     for c in (one, two, one, two)))
    ran = [r for r in reports if r.ran]
    assert len(ran) == 1 and ran[0].counts["deleted"] == 4
    runs = await one.server.app[STORE].retention_runs(10)
    assert [r.trigger for r in runs] == ["schedule"]


async def push_referrer(client, repo: str, subject: str, artifact_type: str) -> str:
    """An untagged artifact manifest (one layer) whose subject is `subject`, pushed by digest; its digest."""
    layer = os.urandom(32)
    r = await client.post(f"/v2/{repo}/blobs/uploads/?digest={sha256(layer)}", data=layer)
    assert r.status == 201, await r.text()
    empty = b"{}"
    r = await client.post(f"/v2/{repo}/blobs/uploads/?digest={sha256(empty)}", data=empty)
    assert r.status == 201, await r.text()
    h = await client.head(f"/v2/{repo}/manifests/{subject}")
    assert h.status == 200
    body = json.dumps({
        "schemaVersion": 2, "mediaType": OCI, "artifactType": artifact_type,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha256(empty), "size": 2},
        "layers": [{"mediaType": "application/octet-stream", "digest": sha256(layer), "size": len(layer)}],
        "subject": {"mediaType": h.headers["Content-Type"], "digest": subject,
                    "size": int(h.headers["Content-Length"])}}).encode()
    digest = sha256(body)
    r = await client.put(f"/v2/{repo}/manifests/{digest}", data=body, headers={"Content-Type": OCI})
    assert r.status == 201, await r.text()
    return digest


async def test_signatures_and_sboms_of_a_deleted_image_go_with_it(hub):
    """Must-show 2: a run that deletes an image's last tag deletes the untagged referrers of that
    image (a signature, an SBOM, and an attestation of the SBOM: a chain), which no rule keeps, while
    the kept image keeps its own signature; nothing else in the repository goes."""
    store = hub.server.app[STORE]
    await store.create_tenant("team")
    now = time.time()
    old = await push(hub, "team/app", "old")
    await store.set_tag_times("team/app", "old", pushed_at=now - 3 * DAY)
    new = await push(hub, "team/app", "new")
    old_signature = await push_referrer(hub, "team/app", old, "application/vnd.dev.cosign.artifact.sig.v1+json")
    old_sbom = await push_referrer(hub, "team/app", old, "application/spdx+json")
    old_attestation = await push_referrer(hub, "team/app", old_sbom, "application/vnd.in-toto+json")
    new_signature = await push_referrer(hub, "team/app", new, "application/vnd.dev.cosign.artifact.sig.v1+json")
    r = await hub.get(f"/v2/team/app/referrers/{old}")
    assert {m["digest"] for m in (await r.json())["manifests"]} == {old_signature, old_sbom}
    # "always" on every tag would keep them if it selected referrers; it does not name them.
    await store.set_retention_policy("team", {"rules": [
        {"tags": {"glob": "**"}, "keep": {"latest_pushed": 1}},
        {"tags": {"glob": "new"}, "keep": {"always": True}}]}, "test")

    dry = await hub.server.app[RETENTION].run(tenant="team", trigger="cli", actor="test", dry_run=True)
    planned = {(v.tag, v.digest) for v in dry.verdicts if v.outcome == "would delete"}
    assert planned == {("old", old), (None, old_signature), (None, old_sbom), (None, old_attestation)}
    for digest in (old_signature, old_sbom, old_attestation):  # the dry run changed nothing
        assert (await hub.head(f"/v2/team/app/manifests/{digest}")).status == 200

    report = await hub.server.app[RETENTION].run(tenant="team", trigger="cli", actor="test")
    assert report.errors == []
    assert {(v.tag, v.digest) for v in report.verdicts if v.outcome == "deleted"} == planned
    for digest in (old_signature, old_sbom, old_attestation):
        assert (await hub.head(f"/v2/team/app/manifests/{digest}")).status == 404
    assert await tags(hub, "team/app") == {"new": new}
    assert (await hub.head(f"/v2/team/app/manifests/{new_signature}")).status == 200
    r = await hub.get(f"/v2/team/app/referrers/{new}")
    assert [m["digest"] for m in (await r.json())["manifests"]] == [new_signature]
    r = await hub.get(f"/v2/team/app/referrers/{old}")
    assert r.status == 200 and (await r.json())["manifests"] == []
