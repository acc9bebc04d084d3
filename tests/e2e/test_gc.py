"""Online GC over a real `daohub serve` (SQLite and PostgreSQL, filesystem), with skopeo: images A and B share a
layer; A is deleted with skopeo; a dry run lists exactly A's own blobs and deletes nothing; the
pass deletes them from storage and metadata, B and the shared layer pull intact, and the tenant's
usage drops by exactly A's own bytes. Then `daohub gc run` killed with SIGKILL between a verdict's
commit and the delete of the bytes: nothing referenced is lost and the next pass (with the sweep)
finishes the work."""

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
from tests.helpers.server import REPO_ROOT, DaoHubProcess

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
    async def run():
        url = server.extra_env.get("DAOHUB_DATABASE_URL") or f"sqlite:///{server.data_dir / 'daohub.db'}"
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
