"""Tenant storage quotas: refusal with DENIED, and exact, dedupe-aware usage at every step."""

from __future__ import annotations

import asyncio
import os

import pytest

from hub.keys import STORE

from .conftest import error_code, sha256

KB = 1000


@pytest.fixture
async def store(client):
    s = client.server.app[STORE]
    await s.create_tenant("team", quota_bytes=10 * KB)
    await s.create_tenant("other", quota_bytes=None)
    return s


async def push(client, name: str, data: bytes, style: str = "monolithic"):
    digest = sha256(data)
    if style == "monolithic":
        return await client.post(f"/v2/{name}/blobs/uploads/?digest={digest}", data=data)
    r = await client.post(f"/v2/{name}/blobs/uploads/")
    location = r.headers["Location"]
    await client.patch(location, data=data)
    return await client.put(f"{location}?digest={digest}")


@pytest.mark.parametrize("style", ["monolithic", "session"])
async def test_usage_exact_through_push_dedupe_delete_and_refusal(client, store, config, style):
    a, b, c = os.urandom(4 * KB), os.urandom(4 * KB), os.urandom(3 * KB)
    assert (await push(client, "team/one", a, style)).status == 201
    assert await store.tenant_usage("team") == 4 * KB
    # The same blob in a second repository of the tenant is stored and counted once.
    assert (await push(client, "team/two", a, style)).status == 201
    assert await store.tenant_usage("team") == 4 * KB
    assert (await push(client, "team/one", b, style)).status == 201
    assert await store.tenant_usage("team") == 8 * KB
    # 8 + 3 > 10: refused with a clear DENIED, and nothing of it counts or stays visible.
    r = await push(client, "team/one", c, style)
    assert r.status == 403 and await error_code(r) == "DENIED"
    assert "quota" in (await r.json())["errors"][0]["message"]
    assert await store.tenant_usage("team") == 8 * KB
    assert (await client.head(f"/v2/team/one/blobs/{sha256(c)}")).status == 404
    if config.storage.driver == "filesystem":
        hex_ = sha256(c).split(":")[1]
        assert (config.storage_root / "blobs" / "sha256" / sha256(a).split(":")[1][:2]).exists()
        assert not (config.storage_root / "blobs" / "sha256" / hex_[:2] / hex_).exists()
        uploads = config.storage_root / "uploads"
        assert not uploads.exists() or not any(uploads.iterdir())
    # Deleting one of two links keeps the blob counted; deleting the last frees it.
    assert (await client.delete(f"/v2/team/two/blobs/{sha256(a)}")).status == 202
    assert await store.tenant_usage("team") == 8 * KB
    assert (await client.delete(f"/v2/team/one/blobs/{sha256(a)}")).status == 202
    assert await store.tenant_usage("team") == 4 * KB
    assert (await push(client, "team/one", c, style)).status == 201
    assert await store.tenant_usage("team") == 7 * KB


async def test_mount_between_tenants_counts_for_the_target(client, store):
    big = os.urandom(9 * KB)
    assert (await push(client, "other/src", big)).status == 201
    small = os.urandom(2 * KB)
    assert (await push(client, "team/app", small)).status == 201
    r = await client.post(f"/v2/team/app/blobs/uploads/?mount={sha256(big)}&from=other/src")
    assert r.status == 403 and await error_code(r) == "DENIED"
    assert await store.tenant_usage("team") == 2 * KB
    assert await store.tenant_usage("other") == 9 * KB
    await client.delete(f"/v2/team/app/blobs/{sha256(small)}")
    r = await client.post(f"/v2/team/app/blobs/uploads/?mount={sha256(big)}&from=other/src")
    assert r.status == 201
    assert await store.tenant_usage("team") == 9 * KB
    assert await store.tenant_usage("other") == 9 * KB


async def test_concurrent_pushes_cannot_race_past_the_limit(client, store):
    blobs = [os.urandom(3 * KB) for _ in range(8)]  # 24 KB offered, 10 KB allowed
    results = await asyncio.gather(*(push(client, f"team/race{i % 2}", b, "session" if i % 2 else "monolithic")
                                     for i, b in enumerate(blobs)))
    accepted = [b for b, r in zip(blobs, results) if r.status == 201]
    assert {r.status for r in results} <= {201, 403}
    assert len(accepted) == 3
    assert await store.tenant_usage("team") == 9 * KB == sum(len(b) for b in accepted)


async def test_no_quota_means_no_limit(client, store):
    assert (await push(client, "other/big", os.urandom(50 * KB))).status == 201
    assert (await push(client, "untenanted/x", os.urandom(50 * KB))).status == 201
