"""Two app replicas on one PostgreSQL database and one storage root; a database that goes away."""

from __future__ import annotations

import asyncio
import hashlib

import asyncpg
import pytest

import auth.service
from auth.keys import KeyRing, SigningKey
from auth.tokens import InvalidToken, TokenIssuer
from hub.app import create_app
from hub.config import load_config
from hub.keys import AUTH, STORE
from tests.registry.conftest import bearer

from .conftest import open_store


def replica_config(tmp_path, name: str, url: str, *, auth_enabled: bool = False):
    return load_config(environ={}, overrides={
        "data_dir": str(tmp_path / name), "log": {"access_log": False},
        "database": {"url": url, "pool_min_size": 1, "pool_max_size": 4},
        "storage": {"driver": "filesystem", "root": str(tmp_path / "shared-storage")},
        "registry": {"upload_purge_interval_seconds": 0},
        "auth": {"enabled": auth_enabled, "password_memory_kib": 64, "password_time_cost": 1},
    })


@pytest.fixture
async def two_replicas(aiohttp_client, tmp_path, postgres_url):
    a = await aiohttp_client(create_app(replica_config(tmp_path, "a", postgres_url)))
    b = await aiohttp_client(create_app(replica_config(tmp_path, "b", postgres_url)))
    return a, b


async def test_upload_moves_between_replicas_chunk_by_chunk(two_replicas):
    a, b = two_replicas
    data = [b"a" * 1000, b"b" * 2000, b"c" * 500]
    r = await a.post("/v2/team/app/blobs/uploads/")
    assert r.status == 202
    location = r.headers["Location"]
    offset = 0
    for i, chunk in enumerate(data):
        replica = (a, b)[i % 2]
        r = await replica.patch(location, data=chunk, headers={
            "Content-Range": f"{offset}-{offset + len(chunk) - 1}", "Content-Type": "application/octet-stream"})
        assert r.status == 202, await r.text()
        offset += len(chunk)
        location = r.headers["Location"]
    r = await a.get(location)
    assert r.status == 204 and r.headers["Range"] == f"0-{offset - 1}"
    whole = b"".join(data)
    digest = "sha256:" + hashlib.sha256(whole).hexdigest()
    r = await b.put(f"{location}&digest={digest}" if "?" in location else f"{location}?digest={digest}")
    assert r.status == 201, await r.text()
    r = await a.get(f"/v2/team/app/blobs/{digest}")
    assert r.status == 200 and await r.read() == whole


async def test_racing_patches_on_two_replicas_are_serialised(two_replicas):
    """Both replicas append 'the first chunk' of one upload at once: one wins, the other
    finds the offset moved (416) instead of writing beside it."""
    a, b = two_replicas
    r = await a.post("/v2/team/app/blobs/uploads/")
    location = r.headers["Location"]

    async def slow_body(fill: bytes):
        for _ in range(20):
            yield fill * 4096
            await asyncio.sleep(0.005)

    async def patch(replica, fill: bytes):
        r = await replica.patch(location, data=slow_body(fill), headers={
            "Content-Range": f"0-{20 * 4096 - 1}", "Content-Type": "application/octet-stream"})
        return r.status

    statuses = sorted(await asyncio.gather(patch(a, b"x"), patch(b, b"y")))
    assert statuses == [202, 416]
    r = await b.get(location)
    assert r.headers["Range"] == f"0-{20 * 4096 - 1}"


async def test_a_key_rotated_on_one_replica_is_accepted_by_the_other(aiohttp_client, tmp_path, postgres_url,
                                                                     monkeypatch):
    # Long enough that only the unknown-kid path (not the periodic refresh) can explain a reload.
    monkeypatch.setattr(auth.service, "UNKNOWN_KID_RELOAD_INTERVAL", 3600.0)
    a = await aiohttp_client(create_app(replica_config(tmp_path, "a", postgres_url, auth_enabled=True)))
    b = await aiohttp_client(create_app(replica_config(tmp_path, "b", postgres_url, auth_enabled=True)))
    auth_a, auth_b = a.server.app[AUTH], b.server.app[AUTH]
    assert auth_a.verifier_keyring().current.kid == auth_b.verifier_keyring().current.kid

    new_kid = await auth_a.rotate_keys()  # what `daohub keys rotate` does, on replica a
    r = await a.get("/auth/token", params={"service": "daohub"})
    token = (await r.json())["token"]
    assert auth_a.verifier_keyring().current.kid == new_kid
    assert new_kid not in auth_b.verifier_keyring()

    reloads = auth_b.key_reloads
    r = await b.get("/v2/", headers=bearer(token))
    assert r.status == 200, await r.text()
    assert new_kid in auth_b.verifier_keyring() and auth_b.key_reloads == reloads + 1

    # Tokens with kids nobody made reload at most once per interval, then are refused from memory.
    stranger = TokenIssuer(KeyRing(SigningKey.generate()), "daohub", "daohub")
    for _ in range(3):
        forged = stranger.issue("admin", [], 300).token
        with pytest.raises(InvalidToken):
            await auth_b.verify(forged)
        r = await b.get("/v2/", headers=bearer(forged))
        assert r.status == 401
    assert auth_b.key_reloads == reloads + 1


async def test_readiness_follows_the_database_down_and_back(aiohttp_client, tmp_path, postgres_cluster, postgres_url):
    client = await aiohttp_client(create_app(replica_config(tmp_path, "a", postgres_url)))
    store = await open_store(postgres_url, pool_min_size=2, pool_max_size=2)
    try:
        assert (await client.get("/readyz")).status == 200
        await store.ping()
        postgres_cluster.stop()
        try:
            with pytest.raises((OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)):
                await store.ping()  # refused at once here; PING_TIMEOUT bounds an unreachable server
            r = await client.get("/readyz")
            body = await r.json()
            assert r.status == 503 and body["checks"]["metadata"].startswith("error")
        finally:
            postgres_cluster.start()
        # Back without a restart: the pools reconnect on their next use.
        await store.ping()
        r = await client.get("/readyz")
        assert r.status == 200, await r.text()
        r = await client.post("/v2/team/app/blobs/uploads/")
        assert r.status == 202
        assert await client.server.app[STORE].get_upload(r.headers["Docker-Upload-UUID"]) is not None
    finally:
        await store.close()
