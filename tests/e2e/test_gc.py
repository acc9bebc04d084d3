"""Online GC over a real `daohub serve` (SQLite and PostgreSQL, filesystem), with skopeo: images A and B share a
layer; A is deleted with skopeo; a dry run lists exactly A's own blobs and deletes nothing; the
pass deletes them from storage and metadata, B and the shared layer pull intact, and the tenant's
usage drops by exactly A's own bytes. Then `daohub gc run` killed with SIGKILL between a verdict's
commit and the delete of the bytes: nothing referenced is lost and the next pass (with the sweep)
finishes the work. And a `serve` replica killed with SIGKILL in its own pass (two replicas on
PostgreSQL and a shared filesystem): the other replica's passes finish the reviews."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from hub.db import create_store
from hub.registry import gc as gc_module
from tests.helpers.images import BuiltImage, find_busybox, runnable_image
from tests.helpers.server import REPO_ROOT, DaoHubProcess, blob_files

from .util import Api, describe, run, sha256_bytes

pytestmark = pytest.mark.e2e

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


@pytest.fixture(params=["sqlite", "postgres"])
def server(request, tmp_path):
    # gc in serve on, on a long interval (the passes under test run from the CLI beside it).
    env = {"DAOHUB_GC_INTERVAL_SECONDS": "3600"}
    if request.param == "postgres":
        # A killed worker's claims come free after a second.
        env |= {"DAOHUB_DATABASE_URL": request.getfixturevalue("postgres_url"),
                "DAOHUB_GC_LEASE_SECONDS": "1"}
    proc = DaoHubProcess(tmp_path / "data", env=env)
    proc.start()
    yield proc
    assert proc.stop() == 0, proc.log_text()[-4000:]


def push(api: Api, repo: str, image: BuiltImage, tag: str) -> None:
    for digest, data in image.blobs.items():
        r = api.request("POST", f"/v2/{repo}/blobs/uploads/?digest={digest}", data=data,
                        headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 201, describe(r)
    r = api.request("PUT", f"/v2/{repo}/manifests/{tag}", data=image.manifest,
                    headers={"Content-Type": DOCKER_MANIFEST})
    assert r.status_code == 201, describe(r)


def _metadata(server: DaoHubProcess, read):
    """`await read(store)` on the server's metadata store (SQLite or PostgreSQL)."""
    return metadata(server.extra_env.get("DAOHUB_DATABASE_URL") or f"sqlite:///{server.data_dir / 'daohub.db'}",
                    read)


def metadata(url: str, read):
    """`await read(store)` on the metadata store at `url`."""
    async def run():
        store = create_store(url, pool_min_size=1, pool_max_size=1)
        await store.open()
        try:
            return await read(store)
        finally:
            await store.close()

    return asyncio.run(run())


def usage(server: DaoHubProcess, tenant: str) -> int:
    return _metadata(server, lambda store: store.tenant_usage(tenant))


def blob_rows(server: DaoHubProcess, digests: set[str]) -> set[str]:
    """Those of `digests` that have a blob row."""
    return _metadata(server, lambda store: store.gc_known_blobs(sorted(digests)))


def stored(server: DaoHubProcess) -> set[str]:
    return {f"{p.parent.parent.name}:{p.name}" for p in server.blob_files()}


def pull(server: DaoHubProcess, ref: str, dest, env) -> tuple[bytes, dict[str, bytes]]:
    """`skopeo copy docker://... dir:DEST` (the manifest and blobs exactly as served): the manifest
    and the blobs by digest, each checked to hash to its name."""
    run(["skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://{server.host}/{ref}",
         f"dir:{dest}"], env=env)
    blobs = {}
    for path in dest.iterdir():
        if len(path.name) == 64:
            data = path.read_bytes()
            assert sha256_bytes(data) == f"sha256:{path.name}", f"{path} is corrupt"
            blobs[f"sha256:{path.name}"] = data
    return (dest / "manifest.json").read_bytes(), blobs


def gc(server: DaoHubProcess, *args: str) -> dict:
    return json.loads(server.cli("gc", "run", "--json", *args))


def two_images(server: DaoHubProcess, api: Api) -> tuple[BuiltImage, BuiltImage, set[str]]:
    busybox = find_busybox()
    assert busybox, "busybox is needed to build the test images"
    a, b = runnable_image(busybox), runnable_image(busybox)
    shared = set(a.blobs) & set(b.blobs)
    assert len(shared) == 1  # the busybox layer; configs and payload layers differ
    server.cli("tenant", "create", "team", "--quota-bytes", str(1 << 30))
    push(api, "team/app", a, "a")
    push(api, "team/app", b, "b")
    return a, b, shared


def test_deleting_an_image_frees_exactly_its_own_blobs(server, containers_env, tmp_path):
    api = Api(server.url)
    a, b, shared = two_images(server, api)
    own, everything = set(a.blobs) - shared, set(a.blobs) | set(b.blobs)
    own_bytes = sum(len(a.blobs[d]) for d in own)
    run(["skopeo", "delete", "--tls-verify=false", f"docker://{server.host}/team/app:a"], env=containers_env)
    before = usage(server, "team")

    dry = gc(server, "--dry-run", "--grace-seconds", "0")
    assert {x["digest"] for x in dry["blobs"]} == own
    assert dry["tenant_bytes_freed"] == {"team": own_bytes}
    assert dry["run_id"] is None
    assert own <= stored(server) and own <= blob_rows(server, everything)  # a dry run deletes nothing
    assert usage(server, "team") == before

    done = gc(server, "--grace-seconds", "0")
    assert {x["digest"] for x in done["blobs"]} == own
    assert done["counts"]["bytes_freed"] == own_bytes and done["errors"] == []
    assert not own & stored(server) and not own & blob_rows(server, everything)
    assert set(b.blobs) <= stored(server) and set(b.blobs) <= blob_rows(server, everything)
    assert usage(server, "team") == before - own_bytes

    assert pull(server, "team/app:b", tmp_path / "b", containers_env) == (b.manifest, b.blobs)  # B, intact
    for digest in own:
        r = api.head(f"/v2/team/app/blobs/{digest}")
        assert r.status_code == 404, describe(r)
    r = api.get(f"/v2/team/app/manifests/{a.digest}", headers={"Accept": DOCKER_MANIFEST})
    assert r.status_code == 404, describe(r)
    # A pushed again: all of it back, and it pulls.
    push(api, "team/app", a, "a")
    assert pull(server, "team/app:a", tmp_path / "a", containers_env) == (a.manifest, a.blobs)


def test_gc_killed_between_commit_and_storage_delete_loses_nothing(server, containers_env, tmp_path):
    api = Api(server.url)
    a, b, shared = two_images(server, api)
    own, everything = set(a.blobs) - shared, set(a.blobs) | set(b.blobs)
    run(["skopeo", "delete", "--tls-verify=false", f"docker://{server.host}/team/app:a"], env=containers_env)
    env = server.environment() | {gc_module.PAUSE_ENV: "60"}
    proc = subprocess.Popen([sys.executable, "-m", "hub", "gc", "run", "--grace-seconds", "0", "--data-dir",
                             str(server.data_dir)], cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not own - blob_rows(server, everything):  # the first verdict's commit
            assert proc.poll() is None and time.monotonic() < deadline, "gc run never committed a verdict"
            time.sleep(0.05)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    # Killed in the pause: some of A's blob rows are gone (verdicts run a few at once), their bytes
    # are still there, nothing else changed.
    committed = own - blob_rows(server, everything)
    assert committed and own <= stored(server)
    assert set(b.blobs) <= blob_rows(server, everything)
    assert pull(server, "team/app:b", tmp_path / "b", containers_env) == (b.manifest, b.blobs)

    # The next pass finishes the reviews; the sweep deletes the object whose row went before the kill.
    done = gc(server, "--grace-seconds", "0", "--sweep")
    assert done["errors"] == []
    assert not own & stored(server) and not own & blob_rows(server, everything)
    assert done["counts"]["orphans_deleted"] == len(committed)
    assert {x["digest"] for x in done["blobs"]} == own - committed
    assert set(b.blobs) <= stored(server)
    assert pull(server, "team/app:b", tmp_path / "b2", containers_env) == (b.manifest, b.blobs)
    assert api.manifest("team/app", "b", accept=DOCKER_MANIFEST).content == b.manifest


def many_layer_image(base: BuiltImage, layers: int) -> BuiltImage:
    """An image of `layers` small layers of its own plus `base`'s first layer (shared)."""
    own = [f"layer {i} of the image to collect\n".encode() * 20 for i in range(layers)]
    shared = base.layers[0]
    config = json.dumps({"architecture": "amd64", "os": "linux", "salt": layers}).encode()
    layer_type = "application/vnd.docker.image.rootfs.diff.tar.gzip"
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": sha256_bytes(config),
                   "size": len(config)},
        "layers": [{"mediaType": layer_type, "digest": sha256_bytes(x), "size": len(x)} for x in (shared, *own)],
    }).encode()
    blobs = {sha256_bytes(x): x for x in (config, shared, *own)}
    return BuiltImage(manifest, config, [shared, *own], b"", blobs)


def test_serve_replica_killed_in_a_gc_pass_loses_nothing_and_the_other_finishes(postgres_url,
                                                                                 containers_env, tmp_path):
    """Two `serve` replicas on PostgreSQL and one shared filesystem. Replica A's own pass (claims
    of 10) commits its first verdicts and pauses before their batch delete: SIGKILL there. Then
    replica B's passes do every due review (A's claims come free after their 1 s lease), the
    sweep beside B deletes the bytes whose rows A committed, and the kept images pull intact
    from B with their quota exact."""
    shared = tmp_path / "shared-storage"
    common = {"DAOHUB_DATABASE_URL": postgres_url, "DAOHUB_STORAGE_ROOT": str(shared),
              "DAOHUB_GC_GRACE_SECONDS": "0", "DAOHUB_GC_LEASE_SECONDS": "1", "DAOHUB_GC_BATCH_SIZE": "10"}
    replica_a = DaoHubProcess(tmp_path / "a", env=common | {"DAOHUB_GC_INTERVAL_SECONDS": "0.2",
                                                           gc_module.PAUSE_ENV: "120"})
    replica_b = DaoHubProcess(tmp_path / "b", env=common | {"DAOHUB_GC_ENABLED": "false"})
    replica_a.start()
    replica_b.start()
    try:
        api_a, api_b = Api(replica_a.url), Api(replica_b.url)
        a, b, _ = two_images(replica_a, api_a)
        push(api_b, "team/app", b, "b2")  # pushed again through B: the same blobs and manifest
        d = many_layer_image(a, 40)
        push(api_b, "team/other", d, "d")
        own = set(d.blobs) - set(a.blobs)
        kept = set(a.blobs) | set(b.blobs)
        before = usage(replica_b, "team")
        r = api_b.request("DELETE", f"/v2/team/other/manifests/{d.digest}")
        assert r.status_code == 202, describe(r)

        deadline = time.monotonic() + 60
        while not own - blob_rows(replica_b, own):  # A's first verdicts committed
            assert replica_a.running and time.monotonic() < deadline, "A's pass never committed a verdict"
            time.sleep(0.05)
        replica_a.kill()
        committed = own - blob_rows(replica_b, own)
        # Mid-way: a claim's verdicts committed, their bytes still there, most of the reviews not done.
        assert 0 < len(committed) <= 10 and own <= {f"{p.parent.parent.name}:{p.name}" for p in blob_files(shared)}
        backlog = _metadata(replica_b, lambda store: store.gc_backlog(time.time()))
        assert backlog["link_queued"] >= len(own) - 10, backlog

        # B's own passes (GC on now, every 0.2 s) finish every review.
        replica_b.stop()
        replica_b.extra_env |= {"DAOHUB_GC_ENABLED": "true", "DAOHUB_GC_INTERVAL_SECONDS": "0.2"}
        replica_b.start()
        deadline = time.monotonic() + 120
        while any(_metadata(replica_b, lambda store: store.gc_backlog(time.time())).values()) \
                or own & blob_rows(replica_b, own):
            assert time.monotonic() < deadline, "B's passes never finished the reviews A left"
            time.sleep(0.2)
        in_storage = {f"{p.parent.parent.name}:{p.name}" for p in blob_files(shared)}
        assert in_storage - kept == committed, "only the bytes of the verdicts A committed are left"
        assert blob_rows(replica_b, kept | own) == kept
        assert usage(replica_b, "team") == before - len(d.manifest) - sum(len(d.blobs[x]) for x in own)

        done = gc(replica_b, "--grace-seconds", "0", "--sweep")
        assert done["errors"] == [] and {x["digest"] for x in done["orphans"]} == committed
        assert {f"{p.parent.parent.name}:{p.name}" for p in blob_files(shared)} == kept
        for name, image in (("app:a", a), ("app:b", b), ("app:b2", b)):
            dest = tmp_path / name.replace(":", "-")
            assert pull(replica_b, f"team/{name}", dest, containers_env) == (image.manifest, image.blobs)
        r = api_b.get(f"/v2/team/other/manifests/{d.digest}", headers={"Accept": DOCKER_MANIFEST})
        assert r.status_code == 404, describe(r)
    finally:
        replica_a.kill()
        assert replica_b.stop() == 0, replica_b.log_text()[-4000:]


def test_serve_collects_on_its_own_and_counts_it(tmp_path):
    """gc.interval_seconds and gc.grace_seconds from DAOHUB_GC_* variables: serve's own passes
    collect a deleted image, record the run and count it in daohub_gc_* metrics."""
    server = DaoHubProcess(tmp_path / "data", env={"DAOHUB_GC_INTERVAL_SECONDS": "0.2",
                                                   "DAOHUB_GC_GRACE_SECONDS": "0"})
    server.start()
    try:
        api = Api(server.url)
        a, b, shared = two_images(server, api)
        own = set(a.blobs) - shared
        r = api.request("DELETE", f"/v2/team/app/manifests/{a.digest}")
        assert r.status_code == 202, describe(r)
        deadline = time.monotonic() + 60
        while own & stored(server):
            assert time.monotonic() < deadline, "serve's GC never collected the deleted image"
            time.sleep(0.1)
        assert set(b.blobs) <= stored(server) and api.manifest("team/app", "b").content == b.manifest
        metrics = api.get("/metrics").text
        deleted = [line for line in metrics.splitlines()
                   if line.startswith('daohub_gc_deleted_total{kind="blobs"}')]
        assert deleted and float(deleted[0].split()[-1]) >= len(own), metrics[-3000:]
        assert 'daohub_gc_backlog{due="true",kind="link"} 0.0' in metrics, metrics[-3000:]
        with sqlite3.connect(server.data_dir / "daohub.db") as conn:
            assert conn.execute("SELECT SUM(blobs_deleted) FROM gc_runs").fetchone()[0] == len(own)
    finally:
        assert server.stop() == 0, server.log_text()[-4000:]
