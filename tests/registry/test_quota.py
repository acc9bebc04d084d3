"""Tenant storage quotas: refusal with DENIED, and exact, dedupe-aware usage at every step."""

from __future__ import annotations

import asyncio
import json
import os

import pytest

from hub.keys import STORE

from .conftest import error_code, sha256

KB = 1000
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture
async def store(client):
    s = client.server.app[STORE]
    await s.create_tenant("team", quota_bytes=10 * KB)
    await s.create_tenant("other", quota_bytes=None)
    return s


async def push(client, name: str, data: bytes, style: str = "monolithic"):
    """Push a blob; the response that ended the push (a refused PATCH ends a session push)."""
    digest = sha256(data)
    if style == "monolithic":
        return await client.post(f"/v2/{name}/blobs/uploads/?digest={digest}", data=data)
    r = await client.post(f"/v2/{name}/blobs/uploads/")
    location = r.headers["Location"]
    r = await client.patch(location, data=data)
    if r.status != 202:
        return r
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
        # A session push is refused at its PATCH: the session stays open, and holds nothing.
        held = [p.stat().st_size for p in (config.storage_root / "uploads").glob("*/data")]
        assert held == ([0] if style == "session" else [])
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


# Manifests -----------------------------------------------------------------------------------
def manifest_of(config: bytes, padding: int = 0) -> bytes:
    """An image manifest with `config` as its config blob, made `padding` bytes longer by an annotation."""
    body = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(config),
                       "size": len(config)}, "layers": []}
    if padding:
        body["annotations"] = {"pad": "x" * padding}
    return json.dumps(body).encode()


async def put_manifest(client, name: str, reference: str, body: bytes):
    return await client.put(f"/v2/{name}/manifests/{reference}", data=body, headers={"Content-Type": OCI_MANIFEST})


async def test_manifests_count_once_per_tenant_and_deletes_release_them(client, store):
    config = os.urandom(1 * KB)
    for repo in ("team/one", "team/two"):
        assert (await push(client, repo, config)).status == 201
    manifest = manifest_of(config)
    digest = sha256(manifest)
    assert (await put_manifest(client, "team/one", "v1", manifest)).status == 201
    assert await store.tenant_usage("team") == KB + len(manifest)
    # The same manifest again (another tag, another repository of the tenant) counts once.
    assert (await put_manifest(client, "team/one", "v2", manifest)).status == 201
    assert (await put_manifest(client, "team/two", "v1", manifest)).status == 201
    assert await store.tenant_usage("team") == KB + len(manifest)
    other = manifest_of(config, padding=100)
    assert (await put_manifest(client, "team/two", "v2", other)).status == 201
    assert await store.tenant_usage("team") == KB + len(manifest) + len(other)
    # A tag delete keeps the manifest (it is still stored by digest); manifest deletes release it
    # once no repository of the tenant holds it.
    assert (await client.delete("/v2/team/two/manifests/v2")).status == 202
    assert await store.tenant_usage("team") == KB + len(manifest) + len(other)
    assert (await client.delete(f"/v2/team/two/manifests/{sha256(other)}")).status == 202
    assert await store.tenant_usage("team") == KB + len(manifest)
    assert (await client.delete(f"/v2/team/one/manifests/{digest}")).status == 202
    assert await store.tenant_usage("team") == KB + len(manifest)
    assert (await client.delete(f"/v2/team/two/manifests/{digest}")).status == 202
    assert await store.tenant_usage("team") == KB
    # Another tenant's copy of the same manifest is that tenant's.
    assert (await push(client, "other/x", config)).status == 201
    assert (await put_manifest(client, "other/x", "v1", manifest)).status == 201
    assert await store.tenant_usage("other") == KB + len(manifest)
    assert await store.tenant_usage("team") == KB


async def test_manifest_past_the_quota_is_refused_and_stores_nothing(client, store):
    config = os.urandom(9 * KB)
    assert (await push(client, "team/app", config)).status == 201
    fits, too_big = manifest_of(config, padding=200), manifest_of(config, padding=1200)
    r = await put_manifest(client, "team/app", "big", too_big)
    assert r.status == 403 and await error_code(r) == "DENIED"
    error = (await r.json())["errors"][0]
    assert error["detail"] == {"tenant": "team", "used_bytes": 9 * KB, "limit_bytes": 10 * KB, "uploading_bytes": 0,
                               "requested_bytes": len(too_big), "kind": "manifest"}
    assert f"uses {9 * KB} of {10 * KB} bytes and this manifest needs {len(too_big)} more" in error["message"]
    assert (await client.get(f"/v2/team/app/manifests/{sha256(too_big)}")).status == 404
    assert (await client.get("/v2/team/app/manifests/big")).status == 404
    assert (await client.get("/v2/team/app/tags/list")).status in (200, 404)
    assert "team/app" not in (await (await client.get("/v2/_catalog")).json())["repositories"]
    assert await store.tenant_usage("team") == 9 * KB
    assert (await put_manifest(client, "team/app", "small", fits)).status == 201
    assert await store.tenant_usage("team") == 9 * KB + len(fits)
    # A manifest the tenant already holds adds nothing, so it is taken even at the limit.
    assert (await put_manifest(client, "team/app", "again", fits)).status == 201
    assert await store.tenant_usage("team") == 9 * KB + len(fits)


# Upload data -------------------------------------------------------------------------------
async def start(client, name: str = "team/app") -> str:
    r = await client.post(f"/v2/{name}/blobs/uploads/")
    assert r.status == 202
    return r.headers["Location"]


async def offset(client, location: str) -> int:
    r = await client.get(location)
    assert r.status == 204
    return int(r.headers["Range"].split("-")[1]) + 1 if r.headers["Range"] != "0-0" else 0


async def test_patch_past_the_quota_is_denied_and_the_offset_unchanged(client, store, config):
    first = await start(client)
    data = os.urandom(4 * KB)
    r = await client.patch(first, data=data[:3 * KB], headers={"Content-Range": f"0-{3 * KB - 1}"})
    assert r.status == 202
    # 3 KB held + 8 KB more > 10 KB: refused whole, nothing of it written.
    r = await client.patch(first, data=os.urandom(8 * KB), headers={"Content-Range": f"{3 * KB}-{11 * KB - 1}"})
    assert r.status == 403 and await error_code(r) == "DENIED"
    assert (await r.json())["errors"][0]["detail"] == {
        "tenant": "team", "used_bytes": 0, "limit_bytes": 10 * KB, "uploading_bytes": 0,
        "requested_bytes": 11 * KB, "kind": "upload"}
    assert await offset(client, first) == 3 * KB
    # Other unfinished uploads of the tenant count too.
    second = await start(client, "team/other")
    assert (await client.patch(second, data=os.urandom(5 * KB))).status == 202
    third = await start(client)
    r = await client.patch(third, data=os.urandom(3 * KB))
    assert r.status == 403
    detail = (await r.json())["errors"][0]["detail"]
    assert (detail["uploading_bytes"], detail["requested_bytes"]) == (8 * KB, 3 * KB)
    assert "its unfinished uploads hold 8000 more" in (await r.json())["errors"][0]["message"]
    assert await offset(client, third) == 0
    # What fits still goes in, and the blob commits with exact usage.
    r = await client.put(f"{first}?digest={sha256(data)}", data=data[3 * KB:],
                         headers={"Content-Range": f"{3 * KB}-{4 * KB - 1}"})
    assert r.status == 201
    assert await store.tenant_usage("team") == 4 * KB
    if config.storage.driver == "filesystem":
        held = sorted(p.stat().st_size for p in (config.storage_root / "uploads").glob("*/data"))
        assert held == [0, 5 * KB]  # the third upload (empty) and the second


async def stream(data: bytes, piece: int = 64 * 1024):
    for i in range(0, len(data), piece):
        yield data[i:i + piece]


@pytest.mark.parametrize("size", [11 * KB, 1 << 20], ids=["small", "past-one-buffer"])
async def test_streamed_patch_past_the_quota_is_denied_and_discarded(client, store, config, size):
    # No Content-Length: the bytes are counted as they arrive. A refused body that was partly
    # written already (past one 512 KiB buffer) is discarded: an empty upload is empty again.
    await store.update_tenant("team", {"quota_bytes": size - 1})
    location = await start(client)
    r = await client.patch(location, data=stream(os.urandom(size)))
    assert r.status == 403 and await error_code(r) == "DENIED"
    assert await offset(client, location) == 0
    assert await store.tenant_usage("team") == 0
    if config.storage.driver == "filesystem":
        assert [p.stat().st_size for p in (config.storage_root / "uploads").glob("*/data")] == [0]
    data = os.urandom(size - 1)
    assert (await client.patch(location, data=stream(data))).status == 202
    assert (await client.put(f"{location}?digest={sha256(data)}")).status == 201
    assert await store.tenant_usage("team") == size - 1


async def test_streamed_patch_past_the_quota_after_earlier_chunks_drops_the_upload(client, store):
    await store.update_tenant("team", {"quota_bytes": 1 << 20})
    location = await start(client)
    assert (await client.patch(location, data=os.urandom(100 * KB))).status == 202
    r = await client.patch(location, data=stream(os.urandom(1 << 20)))
    assert r.status == 403 and await error_code(r) == "DENIED"
    # Storage cannot cut the upload back to 100 KB: the whole upload is gone.
    r = await client.get(location)
    assert r.status == 404 and await error_code(r) == "BLOB_UPLOAD_UNKNOWN"


async def test_monolithic_push_past_the_quota_is_refused_before_its_body(client, store, config):
    assert (await push(client, "team/app", os.urandom(8 * KB))).status == 201
    data = os.urandom(3 * KB)
    for method, path in (("POST", f"/v2/team/app/blobs/uploads/?digest={sha256(data)}"),
                         ("PATCH", (await start(client)).split("://", 1)[-1])):
        # Only the head is sent: the answer comes without the body, which is never read.
        reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
        writer.write(f"{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Length: {len(data)}\r\n\r\n".encode())
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        writer.close()
        assert head.startswith(b"HTTP/1.1 403 "), head
    assert await store.tenant_usage("team") == 8 * KB
    if config.storage.driver == "filesystem":
        assert [p.stat().st_size for p in (config.storage_root / "uploads").glob("*/data")] == [0]


async def test_monolithic_push_of_a_blob_the_tenant_holds_needs_no_room(client, store):
    shared = os.urandom(4 * KB)
    assert (await push(client, "team/one", shared)).status == 201
    assert (await push(client, "team/one", os.urandom(5 * KB))).status == 201
    assert (await push(client, "team/two", shared)).status == 201  # 9 KB used, 4 KB more announced
    assert await store.tenant_usage("team") == 9 * KB


async def test_quota_warning_at_80_percent_and_quota_exceeded_for_a_refused_push_are_events(client, store):
    """Issue 17: quota.warning when usage crosses 80 % (in the link's transaction), quota.exceeded for
    each refused push (its own transaction: the push rolled back)."""
    def quota_events(events):
        return [(e.type.removeprefix("io.daohub."), e.cloudevent()["data"]) for e in events
                if e.type.startswith("io.daohub.quota.")]

    assert (await push(client, "team/one", os.urandom(7 * KB))).status == 201  # 70 %: nothing
    assert quota_events(await store.events_after(0)) == []
    assert (await push(client, "team/one", os.urandom(1 * KB))).status == 201  # 80 %: the crossing
    assert (await push(client, "team/one", os.urandom(1 * KB))).status == 201  # 90 %: no second warning
    refused = os.urandom(2 * KB)
    r = await push(client, "team/one", refused)
    assert r.status == 403
    got = quota_events(await store.events_after(0))
    assert [t for t, _ in got] == ["quota.warning", "quota.exceeded"]
    assert {k: got[0][1][k] for k in ("tenant", "used_bytes", "limit_bytes", "percent")} == {
        "tenant": "team", "used_bytes": 8 * KB, "limit_bytes": 10 * KB, "percent": 80.0}
    assert {k: v for k, v in got[1][1].items() if k != "actor"} == {
        "tenant": "team", "repository": "team/one", "used_bytes": 9 * KB, "limit_bytes": 10 * KB,
        "requested_bytes": 2 * KB, "kind": "blob"}
    assert await store.tenant_usage("team") == 9 * KB
