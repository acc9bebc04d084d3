"""`daohub transfer`, metadata half: a registry filled through the real app on SQLite and the
filesystem moves to PostgreSQL and new storage, and a hub on the copy answers exactly as the
old one did; logins, tokens and new writes keep working there. Refusals leave the target as
it was."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sqlite3
import time
from pathlib import Path

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

import storage_backends
from hub.cli import transfer
from hub.app import create_app
from hub.config import load_config
from hub.db import create_store
from hub.keys import STORE
from hub.cli.transfer import TransferError
from tests.helpers.server import blob_files

ADMIN = ("admin", "admin-pw-1234")
ALICE = ("alice", "alice-pw-1234")
BOB = ("bob", "bob-pw-12345")
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
SBOM = "application/vnd.example.sbom.v1"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def make_config(data_dir: Path, database_url: str = ""):
    return load_config(environ={}, overrides={
        "data_dir": str(data_dir), "database": {"url": database_url, "pool_min_size": 1},
        "log": {"access_log": False},
        "auth": {"enabled": True, "password_memory_kib": 64, "password_time_cost": 1},
    })


class Hub:
    """An in-process hub with auth on, and the protocol steps the tests need."""

    def __init__(self, client: TestClient):
        self.client = client

    async def token(self, *scopes: str, creds: tuple[str, str] | None = ADMIN) -> str:
        query = [("service", "daohub")] + [("scope", s) for s in scopes]
        r = await self.client.get("/auth/token", params=query, headers=basic(*creds) if creds else {})
        assert r.status == 200, await r.text()
        return (await r.json())["token"]

    async def api(self, method: str, path: str, body: dict | None = None, status: int = 200,
                  creds: tuple[str, str] = ADMIN):
        r = await self.client.request(method, "/api/v1" + path, json=body, headers=basic(*creds))
        assert r.status == status, await r.text()
        return await r.json() if r.status != 204 else None

    async def push_blob(self, name: str, data: bytes, token: str) -> dict:
        r = await self.client.post(f"/v2/{name}/blobs/uploads/?digest={sha256(data)}", data=data,
                                   headers=bearer(token))
        assert r.status == 201, await r.text()
        return {"mediaType": "application/octet-stream", "digest": sha256(data), "size": len(data)}

    async def push_manifest(self, name: str, ref: str, manifest: dict, token: str) -> str:
        body = json.dumps(manifest).encode()
        r = await self.client.put(f"/v2/{name}/manifests/{ref}", data=body,
                                  headers={**bearer(token), "Content-Type": manifest["mediaType"]})
        assert r.status == 201, await r.text()
        return r.headers["Docker-Content-Digest"]

    async def push_image(self, name: str, tag: str, token: str, layers: int = 2, **extra) -> str:
        config = await self.push_blob(name, json.dumps({"n": os.urandom(8).hex()}).encode(), token)
        config["mediaType"] = "application/vnd.oci.image.config.v1+json"
        blobs = [await self.push_blob(name, os.urandom(2000 + i), token) for i in range(layers)]
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": blobs, **extra}
        return await self.push_manifest(name, tag, manifest, token)


async def open_hub(config) -> tuple[Hub, TestClient]:
    client = TestClient(TestServer(create_app(config)))
    await client.start_server()
    return Hub(client), client


async def populate(hub: Hub) -> dict:
    """Every kind of row, written the way users write them: admin API, token endpoint, pushes."""
    await hub.api("POST", "/tenants", {"name": "team", "display_name": "The Team", "quota_bytes": 10**9}, 201)
    await hub.api("POST", "/tenants", {"name": "other"}, 201)
    for user, password in (ALICE, BOB):
        await hub.api("POST", "/users", {"username": user, "password": password}, 201)
    await hub.api("PUT", "/tenants/team/members/alice", {"role": "developer"})
    await hub.api("PUT", "/tenants/other/members/bob", {"role": "admin"})
    robot = await hub.api("POST", "/tenants/team/robots",
                          {"name": "ci", "repositories": ["team/ci/*"], "actions": ["pull", "push"]}, 201)
    robot_creds = ("robot$team+ci", robot["secret"])

    alice = await hub.token("repository:team/app:pull,push", "repository:team/pub:pull,push", creds=ALICE)
    v1 = await hub.push_image("team/app", "v1", alice)
    v2 = await hub.push_image("team/app", "v2", alice, layers=1)
    await hub.push_image("team/app", "gone", alice, layers=0)
    children = []
    for digest in (v1, v2):
        r = await hub.client.get(f"/v2/team/app/manifests/{digest}", headers=bearer(alice))
        children.append({"mediaType": OCI_MANIFEST, "digest": digest, "size": len(await r.read()),
                         "platform": {"architecture": "amd64" if digest == v1 else "arm64", "os": "linux"}})
    index = await hub.push_manifest("team/app", "multi", {"schemaVersion": 2, "mediaType": OCI_INDEX,
                                                          "manifests": children}, alice)
    sbom = await hub.push_blob("team/app", b'{"sbom": true}', alice)
    empty = await hub.push_blob("team/app", b"{}", alice)
    empty["mediaType"] = "application/vnd.oci.empty.v1+json"
    r = await hub.client.get(f"/v2/team/app/manifests/{v1}", headers=bearer(alice))
    referrer = await hub.push_manifest("team/app", "sbom-v1", {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": SBOM, "config": empty, "layers": [sbom],
        "subject": {"mediaType": OCI_MANIFEST, "digest": v1, "size": len(await r.read())},
        "annotations": {"org.example.kind": "sbom"}}, alice)
    await hub.push_image("team/pub", "1", alice, layers=1)
    await hub.api("PATCH", "/repositories/team/pub", {"public": True})
    await hub.api("DELETE", "/repositories/team/app/tags/gone", status=204)

    ci = await hub.token("repository:team/ci/build:pull,push", creds=robot_creds)
    await hub.push_image("team/ci/build", "42", ci, layers=1)
    # A login failure (a throttling row), an unfinished upload (not moved), a cache check time.
    r = await hub.client.get("/auth/token", params={"service": "daohub"}, headers=basic("bob", "wrong"))
    assert r.status == 401
    r = await hub.client.post("/v2/team/app/blobs/uploads/", headers=bearer(alice))
    assert r.status == 202
    await hub.client.server.app[STORE].set_proxy_tag_checked("team/app", "v1", 1700000000.25)
    upload = r.headers["Location"]
    # A refresh token and a signed-in web session (their rows move; the old hub's revocations too).
    r = await hub.client.post("/auth/token", data={"grant_type": "password", "username": ALICE[0],
                                                   "password": ALICE[1], "client_id": "moved",
                                                   "access_type": "offline"})
    refresh = (await r.json())["refresh_token"]
    await hub.client.server.app[STORE].add_web_session("session-hash", "alice", time.time() + 3600)
    await hub.client.server.app[STORE].add_web_session("ended-hash", "alice", time.time() + 3600)
    await hub.client.server.app[STORE].end_web_session("ended-hash")
    return {"v1": v1, "v2": v2, "index": index, "referrer": referrer, "robot": robot_creds,
            "upload": upload, "alice_token": alice, "refresh": refresh}


REPOSITORIES = ["team/app", "team/ci/build", "team/pub"]
API_READS = ["/tenants", "/users", "/tenants/team", "/tenants/team/members", "/tenants/other/members",
             "/tenants/team/robots", "/tenants/team/quota", "/tenants/team/repositories",
             "/users/alice/refresh-tokens"]
# Issuing a token writes an audit row, so the trail is compared right where the two hubs meet:
# last thing on the old one, first thing on the new one.
AUDIT_READS = ["/audit?limit=100", "/audit?limit=3", "/audit?tenant=team"]


async def observe(hub: Hub, facts: dict) -> dict:
    """What clients see: catalog, tags (paged too), manifests by tag and digest, referrers,
    blobs, anonymous access, and the admin API's listings."""
    seen: dict = {}
    token = await hub.token("registry:catalog:*", *(f"repository:{n}:pull" for n in REPOSITORIES))
    auth = bearer(token)
    for path in ["/v2/_catalog", "/v2/_catalog?n=1", "/v2/_catalog?n=1&last=team/app"] + [
            f"/v2/{n}/tags/list{q}" for n in REPOSITORIES for q in ("", "?n=1", "?n=1&last=multi")]:
        r = await hub.client.get(path, headers=auth)
        seen[path] = (r.status, await r.json(), r.headers.get("Link"))
    refs = ["v1", "v2", "multi", "sbom-v1", "gone", facts["v1"], facts["v2"], facts["index"], facts["referrer"]]
    for ref in refs:
        r = await hub.client.get(f"/v2/team/app/manifests/{ref}", headers=auth)
        body = await r.read()
        seen[f"manifest {ref}"] = (r.status, r.headers.get("Content-Type"), r.headers.get("Docker-Content-Digest"),
                                   body)
        if r.status == 200 and json.loads(body).get("mediaType") == OCI_MANIFEST:
            manifest = json.loads(body)
            for blob in [manifest["config"], *manifest["layers"]]:
                b = await hub.client.get(f"/v2/team/app/blobs/{blob['digest']}", headers=auth)
                seen[f"blob {blob['digest']}"] = (b.status, sha256(await b.read()))
    for query in ("", f"?artifactType={SBOM}", "?artifactType=application/other"):
        r = await hub.client.get(f"/v2/team/app/referrers/{facts['v1']}{query}", headers=auth)
        seen[f"referrers {query}"] = (r.status, await r.json(), r.headers.get("OCI-Filters-Applied"))
    anonymous = await hub.token("repository:team/pub:pull", "repository:team/app:pull", creds=None)
    for name in ("team/pub", "team/app"):
        r = await hub.client.get(f"/v2/{name}/manifests/1", headers=bearer(anonymous))
        seen[f"anonymous {name}"] = r.status
    for path in API_READS:
        seen[f"api {path}"] = await hub.api("GET", path)
    return seen


async def test_a_hub_on_the_copy_answers_as_the_old_one(tmp_path, postgres_url, monkeypatch):
    monkeypatch.setenv("DAOHUB_ADMIN_PASSWORD", ADMIN[1])
    old_config = make_config(tmp_path / "old")
    old, client = await open_hub(old_config)
    try:
        facts = await populate(old)
        before = await observe(old, facts)
        audit = [await old.api("GET", path) for path in AUDIT_READS]
    finally:
        await client.close()
    assert before["anonymous team/pub"] == 200 and before["anonymous team/app"] == 401
    assert len(before["referrers "][1]["manifests"]) == 1

    new_config = make_config(tmp_path / "new", postgres_url)
    lines: list[str] = []
    await transfer.run(old_config, new_config, out=lines.append)

    assert lines[0].startswith(f"blobs: {len(blob_files(old_config.storage_root))} copied")
    assert "tenants 2" in lines[1] and "robots 1" in lines[1] and "proxy_tags 1" in lines[1]
    assert lines[2].startswith("not moved: 1 rows of uploads")
    new, client = await open_hub(new_config)
    try:
        assert [await new.api("GET", path) for path in AUDIT_READS] == audit
        assert await observe(new, facts) == before
        store = client.server.app[STORE]
        assert store.dialect == "postgres"
        assert await store.proxy_tag_checked_at("team/app", "v1") == 1700000000.25

        # The same secrets log in; a token the old hub signed is good here (the key ring moved).
        r = await new.client.get(f"/v2/team/app/manifests/{facts['v1']}", headers=bearer(facts["alice_token"]))
        assert r.status == 200
        ci = await new.token("repository:team/ci/build:pull,push", creds=facts["robot"])
        await new.push_image("team/ci/build", "43", ci, layers=1)
        # The refresh token and the web session are good here; the ended session stays ended.
        r = await new.client.post("/auth/token", data={"grant_type": "refresh_token", "client_id": "moved",
                                                       "refresh_token": facts["refresh"]})
        assert r.status == 200, await r.text()
        assert await store.web_session_live("session-hash", "alice")
        assert not await store.web_session_live("ended-hash", "alice")
        # The unfinished upload did not come along: its bytes were never moved.
        alice = await new.token("repository:team/app:pull,push", "repository:team/new:pull,push", creds=ALICE)
        r = await new.client.get(facts["upload"], headers=bearer(alice))
        assert r.status == 404

        # New rows of every identity-keyed table get fresh ids (the sequences continue after
        # the copied ones), so none of these collides.
        await new.api("POST", "/tenants", {"name": "third"}, 201)
        await new.api("POST", "/users", {"username": "carol", "password": "carol-pw-1234"}, 201)
        await new.api("PUT", "/tenants/third/members/carol", {"role": "developer"})
        await new.api("POST", "/tenants/third/robots",
                      {"name": "ci", "repositories": ["third/*"], "actions": ["pull"]}, 201)
        await new.push_image("team/app", "v3", alice)
        await new.push_image("team/new", "1", alice)
        catalog = await new.token("registry:catalog:*")
        r = await new.client.get("/v2/_catalog", headers=bearer(catalog))
        assert (await r.json())["repositories"] == sorted([*REPOSITORIES, "team/new"])
        trail = (await new.api("GET", "/audit?limit=100"))["items"]
        assert {"tenant.create", "user.create", "robot.create"} <= {item["action"] for item in trail[:12]}
        assert len({item["id"] for item in trail}) == len(trail)
    finally:
        await client.close()


# --- refusals ---------------------------------------------------------------------------------

async def _sqlite_source(tmp_path: Path) -> tuple[object, str]:
    """A migrated SQLite database with one tenant, and the config naming it."""
    config = make_config(tmp_path / "old")
    Path(config.data_dir).mkdir(parents=True)
    store = create_store(config.database_url)
    await store.open()
    try:
        await store.migrate()
        await store.create_tenant("team")
    finally:
        await store.close()
    return config, config.database_url[len("sqlite:///"):]


async def _table_counts(url: str) -> dict[str, int]:
    conn = await asyncpg.connect(url)
    try:
        return {t: await conn.fetchval(f'SELECT count(*) FROM "{t}"') for t in ("tenants", "users", "blobs")}
    finally:
        await conn.close()


async def _put_blob(config, data: bytes) -> None:
    driver = storage_backends.create("filesystem", root=str(config.storage_root))
    try:
        await driver.put_content(f"blobs/sha256/{sha256(data)[7:9]}/{sha256(data)[7:]}", data)
    finally:
        await driver.aclose()


async def _refused(old_config, tmp_path: Path, postgres_url: str, match: str) -> None:
    with pytest.raises(TransferError, match=match):
        await transfer.run(old_config, make_config(tmp_path / "new", postgres_url), out=lambda line: None)
    assert await _table_counts(postgres_url) == {"tenants": 0, "users": 0, "blobs": 0}


async def test_refuses_a_target_with_rows_before_copying_anything(tmp_path, postgres_url):
    old_config, _ = await _sqlite_source(tmp_path)
    await _put_blob(old_config, b"layer")
    store = create_store(postgres_url, pool_min_size=1, pool_max_size=1)
    await store.open()
    try:
        await store.create_user("someone", "hash")
    finally:
        await store.close()
    new_config = make_config(tmp_path / "new", postgres_url)

    with pytest.raises(TransferError, match="not empty.*table users"):
        await transfer.run(old_config, new_config, out=lambda line: None)

    assert await _table_counts(postgres_url) == {"tenants": 0, "users": 1, "blobs": 0}
    assert not (new_config.storage_root / "blobs").exists(), "checked before the blob copy"


async def test_refuses_differing_schema_versions(tmp_path, postgres_url):
    old_config, sqlite_path = await _sqlite_source(tmp_path)
    # As a database last migrated by an older DaoHub would be.
    with sqlite3.connect(sqlite_path) as conn:
        conn.execute("DELETE FROM schema_migrations WHERE version = (SELECT max(version) FROM schema_migrations)")
    await _refused(old_config, tmp_path, postgres_url,
                   r"schema versions differ \(SQLite \d+, PostgreSQL \d+\).*daohub migrate")


async def test_refuses_metadata_naming_a_blob_the_storage_lacks(tmp_path, postgres_url):
    old_config, sqlite_path = await _sqlite_source(tmp_path)
    present, lost = b"present", b"lost"
    await _put_blob(old_config, present)
    with sqlite3.connect(sqlite_path) as conn:
        conn.executemany("INSERT INTO blobs (digest, size, created_at) VALUES (?, ?, 0)",
                         [(sha256(present), len(present)), (sha256(lost), len(lost))])
    await _refused(old_config, tmp_path, postgres_url, f"1 blobs .* missing .*{sha256(lost)[7:]}")


async def test_metadata_comes_from_one_snapshot(tmp_path, postgres_url):
    _, sqlite_path = await _sqlite_source(tmp_path)
    snapshot = transfer.open_snapshot(sqlite_path)
    try:
        # A server still running commits after the snapshot: that row is not part of the move.
        with sqlite3.connect(sqlite_path) as conn:
            conn.execute("INSERT INTO tenants (name, display_name, created_at) VALUES ('late', '', 0)")
        report = await transfer.copy_metadata(snapshot, postgres_url)
    finally:
        snapshot.close()
    assert report.rows["tenants"] == 1
    conn = await asyncpg.connect(postgres_url)
    try:
        assert [r[0] for r in await conn.fetch("SELECT name FROM tenants")] == ["team"]
    finally:
        await conn.close()


async def test_source_path_with_uri_characters(tmp_path, postgres_url):
    _, sqlite_path = await _sqlite_source(tmp_path / "odd ?#% dir")
    report = await transfer.copy_metadata(sqlite_path, postgres_url)
    assert report.rows["tenants"] == 1


async def test_the_first_start_decision_moves_with_the_registry(tmp_path, postgres_url):
    """server_state is copied like registry data: the new stack's first start does not publish the
    seed catalog again into a registry whose first start already happened on the old one."""
    from hub.app import open_registry
    from hub.cli.seed import STATE, seed_on_first_start

    old_config, sqlite_path = await _sqlite_source(tmp_path)
    store = create_store(old_config.database_url)
    await store.open()
    try:
        await store.set_server_state(STATE, "published")
    finally:
        await store.close()
    report = await transfer.copy_metadata(sqlite_path, postgres_url)
    assert report.rows["server_state"] == 1
    new_config = make_config(tmp_path / "new", postgres_url)
    async with open_registry(new_config) as registry:
        assert await seed_on_first_start(registry, new_config) == "published"
        assert await registry.store.list_repositories(10, None) == []
