"""Retention over a real `daohub serve` (SQLite and PostgreSQL), images pushed and pulled with skopeo
(issue 16, must-show 1).

A tenant holds 30 CI tags (sha-00..sha-29), 5 releases (v1.2.0 .. v1.3.1) and 3 release candidates,
each a different image sharing the busybox layer. Some are pulled with `skopeo inspect` (real
manifest GETs by tag, recorded by serve's pull-time buffer). Push and pull times are then aged
through the store (tags.updated_at, tag_pulls.pulled_at: a test cannot wait days; no `--now`
override exists). The issue's policy, "keep the newest 2 patches of each minor, anything pulled in
7 days, the newest 5 sha-*", must delete exactly the expected tags: the dry run lists exactly them
and deletes nothing; the run deletes exactly them through the delete path (audited); then
`daohub gc run --grace-seconds 0` frees exactly their own blobs and manifests, and the tenant's
usage drops by exactly their unique bytes.

And serve's scheduled run, exactly once across replicas, surviving the SIGKILL of the replica
running it (PostgreSQL)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time

import pytest

from hub.db import create_store
from tests.helpers.images import find_busybox, runnable_image
from tests.helpers.server import DaoHubProcess

from .util import Api, describe, run, skopeo_push_built

pytestmark = pytest.mark.e2e

DAY = 86400.0
SHA = [f"sha-{i:02d}" for i in range(30)]
RELEASES = ["v1.2.0", "v1.2.1", "v1.2.2", "v1.3.0", "v1.3.1"]
RCS = ["v1.3.2-rc.1", "v1.4.0-rc.1", "v1.4.0-rc.2"]
POLICY = {"rules": [
    {"tags": {"semver": ">=0.0.0"}, "keep": {"semver_line": {"per": "minor", "count": 2}}},
    {"tags": {"glob": "**"}, "keep": {"pulled_within_days": 7}},
    {"tags": {"glob": "sha-*"}, "keep": {"latest_pushed": 5}},
]}
PULLED_NOW = ["sha-03", "sha-10", "v1.4.0-rc.1"]  # through serve, with skopeo
# sha-25..29 are the newest 5; v1.2.1, v1.2.2, v1.3.0, v1.3.1 the newest 2 of 1.2 and 1.3; v1.2.0 was
# last pulled 10 days ago (set through the store): too long.
EXPECTED_DELETED = {t for t in SHA[:25] if t not in PULLED_NOW} | {"v1.2.0", "v1.3.2-rc.1", "v1.4.0-rc.2"}


@pytest.fixture(params=["sqlite", "postgres"])
def server(request, tmp_path):
    env = {"DAOHUB_GC_INTERVAL_SECONDS": "3600", "DAOHUB_RETENTION_INTERVAL_SECONDS": "0"}
    if request.param == "postgres":
        env["DAOHUB_DATABASE_URL"] = request.getfixturevalue("postgres_url")
    proc = DaoHubProcess(tmp_path / "data", env=env)
    proc.start()
    yield proc
    assert proc.stop() == 0, proc.log_text()[-4000:]


def _metadata(server: DaoHubProcess, work):
    async def go():
        url = server.extra_env.get("DAOHUB_DATABASE_URL") or f"sqlite:///{server.data_dir / 'daohub.db'}"
        store = create_store(url, pool_min_size=1, pool_max_size=1)
        await store.open()
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(go())


def _skopeo_push(server: DaoHubProcess, image, tag: str, tmp_path, env) -> None:
    """The image as a `dir:` layout, copied to the registry with skopeo."""
    skopeo_push_built(image, f"{server.host}/team/app:{tag}", tmp_path, env)


def _tags(api: Api) -> set[str]:
    r = api.get("/v2/team/app/tags/list?n=1000")
    assert r.status_code == 200, describe(r)
    return set(r.json()["tags"])


def _retention(server: DaoHubProcess, *args: str) -> dict:
    return json.loads(server.cli("retention", "run", "--tenant", "team", "--json", *args))


def test_the_issues_ci_and_release_policy_deletes_exactly_the_expected_tags(server, containers_env, tmp_path):
    busybox = find_busybox()
    assert busybox, "busybox is needed to build the test images"
    api = Api(server.url)
    server.cli("tenant", "create", "team", "--quota-bytes", str(1 << 30))
    images = {}
    for tag in SHA + RELEASES + RCS:
        images[tag] = runnable_image(busybox, payload_size=4096)
        _skopeo_push(server, images[tag], tag, tmp_path, containers_env)
    for tag in PULLED_NOW:
        run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{server.host}/team/app:{tag}"],
            env=containers_env)
    # The pulls reach the store within retention.pull_flush_seconds (1 s); wait for them.
    deadline = time.monotonic() + 60
    while True:
        tags, _ = _metadata(server, lambda store: store.retention_inventory("team"))
        pulled = {t.tag for t in tags if t.pulled_at is not None}
        if pulled >= set(PULLED_NOW) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert pulled == set(PULLED_NOW)  # pushes are not pulls

    now = time.time()

    async def age(store):
        for i, tag in enumerate(SHA):  # one an hour, sha-29 the newest
            assert await store.set_tag_times("team/app", tag, pushed_at=now - 20 * DAY + i * 3600)
        for i, tag in enumerate(RELEASES + RCS):
            assert await store.set_tag_times("team/app", tag, pushed_at=now - 60 * DAY + i * DAY)
        assert await store.set_tag_times("team/app", "v1.2.0", pulled_at=now - 10 * DAY)

    _metadata(server, age)
    server.cli("retention", "policy", "set", "--tenant", "team", "--file", "-", stdin=json.dumps(POLICY))
    everything = set(images)
    assert _tags(api) == everything

    dry = _retention(server, "--dry-run")
    assert dry["run_id"] is None and dry["errors"] == []
    listed = {v["tag"] for v in dry["verdicts"] if v["outcome"] == "would delete"}
    assert listed == EXPECTED_DELETED
    assert {v["tag"] for v in dry["verdicts"] if v["action"] == "delete"} == EXPECTED_DELETED
    assert _tags(api) == everything  # the dry run changed nothing
    why = {v["tag"]: v for v in dry["verdicts"]}
    assert why["v1.2.2"]["rules"] == ["rules[0]"] and why["sha-10"]["rules"] == ["rules[1]"]
    assert why["sha-29"]["rules"] == ["rules[2]"] and why["sha-00"]["reason"] == "no rule keeps it"
    assert why["v1.2.0"]["pulled_at"] is not None and why["v1.2.0"]["age_seconds"] > 59 * DAY

    usage_before = _metadata(server, lambda store: store.tenant_usage("team"))
    done = _retention(server)
    assert done["errors"] == [] and done["run_id"] is not None
    assert {v["tag"] for v in done["verdicts"] if v["outcome"] == "deleted"} == EXPECTED_DELETED
    assert done["counts"]["deleted"] == len(EXPECTED_DELETED) and done["counts"]["moved"] == 0
    assert _tags(api) == everything - EXPECTED_DELETED
    audit = _metadata(server, lambda store: store.audit_entries(1000, None))
    assert {e.target for e in audit if e.action == "tag.delete" and e.actor == "retention"} == {
        f"team/app:{t}" for t in EXPECTED_DELETED}

    # GC frees their own blobs (config, payload layer) and manifests; the shared busybox layer stays.
    shared = set.intersection(*(set(i.blobs) for i in images.values()))
    own = {d: len(b) for t in EXPECTED_DELETED for d, b in images[t].blobs.items() if d not in shared}
    own_bytes = sum(own.values()) + sum(len(images[t].manifest) for t in EXPECTED_DELETED)
    gc = json.loads(server.cli("gc", "run", "--json", "--grace-seconds", "0"))
    assert gc["errors"] == []
    assert {b["digest"] for b in gc["blobs"]} == set(own)
    assert _metadata(server, lambda store: store.tenant_usage("team")) == usage_before - own_bytes
    for tag in EXPECTED_DELETED:
        r = api.head(f"/v2/team/app/manifests/{images[tag].digest}")
        assert r.status_code == 404, describe(r)
    for tag in everything - EXPECTED_DELETED:
        r = api.get(f"/v2/team/app/manifests/{tag}")
        assert r.status_code == 200 and r.content == images[tag].manifest, describe(r)


def test_a_scheduled_run_killed_mid_run_is_finished_once_by_another_replica(postgres_url, tmp_path):
    """Replica A claims the interval's slot, reads, and is SIGKILLed before deleting (a test hook
    pauses it there); replica B's next tick takes the slot over once A's lease ran out and finishes
    the run: one run for the slot, run by B, deleting exactly what the policy deletes."""
    env = {"DAOHUB_DATABASE_URL": postgres_url, "DAOHUB_GC_ENABLED": "false",
           "DAOHUB_STORAGE_FILESYSTEM_ROOT": str(tmp_path / "storage"),
           # One slot for the whole test (slot = floor(now / interval)); a 2 s lease, so a 2 s tick.
           "DAOHUB_RETENTION_INTERVAL_SECONDS": "1000000000", "DAOHUB_RETENTION_LEASE_SECONDS": "2"}
    seeder = DaoHubProcess(tmp_path / "seed", env={**env, "DAOHUB_RETENTION_ENABLED": "false"})
    seeder.start()
    try:
        seeder.cli("tenant", "create", "team")
        api = Api(seeder.url)
        for i in range(8):
            config = json.dumps({"n": i}).encode()
            digest = "sha256:" + hashlib.sha256(config).hexdigest()
            r = api.request("POST", f"/v2/team/app/blobs/uploads/?digest={digest}", data=config,
                            headers={"Content-Type": "application/octet-stream"})
            assert r.status_code == 201, describe(r)
            body = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                               "layers": [], "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                                        "digest": digest, "size": len(config)}}).encode()
            r = api.request("PUT", f"/v2/team/app/manifests/ci-{i}", data=body,
                            headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
            assert r.status_code == 201, describe(r)

        async def age(store):
            for i in range(8):
                await store.set_tag_times("team/app", f"ci-{i}", pushed_at=time.time() - (10 - i) * DAY)

        _metadata(seeder, age)
        seeder.cli("retention", "policy", "set", "--tenant", "team", "--file", "-", stdin=json.dumps(
            {"rules": [{"tags": {"glob": "**"}, "keep": {"latest_pushed": 3}}]}))
    finally:
        assert seeder.stop() == 0

    a = DaoHubProcess(tmp_path / "a", env={**env, "DAOHUB_TEST_RETENTION_PAUSE": "600"})
    a.start()
    b = None
    try:
        deadline = time.monotonic() + 60
        while not _metadata(a, lambda store: store.retention_runs(10)) and time.monotonic() < deadline:
            time.sleep(0.2)
        runs = _metadata(a, lambda store: store.retention_runs(10))
        assert len(runs) == 1 and runs[0].finished_at is None and runs[0].trigger == "schedule"
        a.kill()
        b = DaoHubProcess(tmp_path / "b", env=env)
        b.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            runs = _metadata(b, lambda store: store.retention_runs(10))
            if runs and runs[0].finished_at is not None:
                break
            time.sleep(0.3)
        assert len(runs) == 1 and runs[0].finished_at is not None, runs
        assert runs[0].counts["deleted"] == 5 and runs[0].errors == []
        _, verdicts = _metadata(b, lambda store: store.retention_run(runs[0].id))
        assert {v.tag for v in verdicts if v.outcome == "deleted"} == {f"ci-{i}" for i in range(5)}
        assert len(verdicts) == 8  # A's attempt left none behind
        r = Api(b.url).get("/v2/team/app/tags/list")
        assert sorted(r.json()["tags"]) == ["ci-5", "ci-6", "ci-7"]
        time.sleep(3)  # B's later ticks (every 2 s) find the slot done: still one run
        assert len(_metadata(b, lambda store: store.retention_runs(10))) == 1
    finally:
        if a.running:
            a.kill()
        if b is not None:
            assert b.stop() == 0, b.log_text()[-3000:]
