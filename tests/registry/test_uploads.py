"""Every upload style, and every way an upload can go wrong."""

from __future__ import annotations

import os

import pytest

from .conftest import Repo, error_code, raw_request, sha256, sha512

NAME = "team/app"


async def start(client, name=NAME) -> str:
    r = await client.post(f"/v2/{name}/blobs/uploads/")
    assert r.status == 202
    assert r.headers["Range"] == "0-0"
    assert r.headers["Location"].startswith(f"/v2/{name}/blobs/uploads/")
    assert r.headers["Docker-Upload-UUID"] in r.headers["Location"]
    return r.headers["Location"]


async def fetch(client, name, digest) -> bytes:
    r = await client.get(f"/v2/{name}/blobs/{digest}")
    assert r.status == 200, await r.text()
    assert r.headers["Docker-Content-Digest"] == digest
    return await r.read()


async def test_monolithic_post(client):
    data = os.urandom(3 * 1024 * 1024 + 17)
    digest = sha256(data)
    r = await client.post(f"/v2/{NAME}/blobs/uploads/?digest={digest}", data=data)
    assert r.status == 201
    assert r.headers["Location"] == f"/v2/{NAME}/blobs/{digest}"
    assert r.headers["Docker-Content-Digest"] == digest
    assert await fetch(client, NAME, digest) == data


async def test_post_then_put(client):
    data = b"hello world"
    location = await start(client)
    r = await client.put(f"{location}?digest={sha256(data)}", data=data,
                         headers={"Content-Type": "application/octet-stream"})
    assert r.status == 201, await r.text()
    assert await fetch(client, NAME, sha256(data)) == data
    # The session is gone after completion.
    r = await client.get(location)
    assert r.status == 404 and await error_code(r) == "BLOB_UPLOAD_UNKNOWN"


async def test_streamed_patch_then_put(client):
    data = os.urandom(2 * 1024 * 1024 + 3)

    async def gen():
        for i in range(0, len(data), 100_000):
            yield data[i:i + 100_000]

    location = await start(client)
    r = await client.patch(location, data=gen())
    assert r.status == 202, await r.text()
    assert r.headers["Range"] == f"0-{len(data) - 1}"
    r = await client.put(f"{r.headers['Location']}?digest={sha256(data)}")
    assert r.status == 201, await r.text()
    assert await fetch(client, NAME, sha256(data)) == data


async def test_chunked_patch_with_status(client):
    data = os.urandom(1_500_000)
    location = await start(client)
    offset = 0
    for size in (500_000, 1, 700_000, 299_999):
        chunk = data[offset:offset + size]
        r = await client.patch(location, data=chunk, headers={
            "Content-Range": f"{offset}-{offset + size - 1}", "Content-Type": "application/octet-stream"})
        assert r.status == 202, await r.text()
        offset += size
        assert r.headers["Range"] == f"0-{offset - 1}"
        status = await client.get(location)
        assert status.status == 204
        assert status.headers["Range"] == f"0-{offset - 1}"
        assert status.headers["Docker-Upload-UUID"] in location
    r = await client.put(f"{location}?digest={sha256(data)}")
    assert r.status == 201
    assert await fetch(client, NAME, sha256(data)) == data


async def test_final_chunk_in_put(client):
    data = os.urandom(10_000)
    location = await start(client)
    r = await client.patch(location, data=data[:6000], headers={"Content-Range": "0-5999"})
    assert r.status == 202
    r = await client.put(f"{location}?digest={sha256(data)}", data=data[6000:],
                         headers={"Content-Range": f"6000-{len(data) - 1}"})
    assert r.status == 201, await r.text()
    assert await fetch(client, NAME, sha256(data)) == data


@pytest.mark.parametrize("bad_range", ["5-9", "0-4", "3-7", "20-29"])
async def test_out_of_order_or_overlapping_chunk_is_416(client, bad_range):
    location = await start(client)
    r = await client.patch(location, data=b"x" * 10, headers={"Content-Range": "0-9"})
    assert r.status == 202
    start_, end = map(int, bad_range.split("-"))
    r = await client.patch(location, data=b"y" * (end - start_ + 1), headers={"Content-Range": bad_range})
    assert r.status == 416
    assert r.headers["Range"] == "0-9"
    # The session is intact and still at offset 10.
    status = await client.get(location)
    assert status.status == 204 and status.headers["Range"] == "0-9"
    r = await client.put(f"{location}?digest={sha256(b'x' * 10)}")
    assert r.status == 201


async def test_content_range_past_the_end_is_416(client):
    location = await start(client)
    r = await client.patch(location, data=b"abc", headers={"Content-Range": "100-102"})
    assert r.status == 416
    assert r.headers["Range"] == "0-0"


async def test_content_length_not_matching_range_is_416(client):
    location = await start(client)
    r = await client.patch(location, data=b"abcdef", headers={"Content-Range": "0-9"})
    assert r.status == 416


@pytest.mark.parametrize("header", ["garbage", "9-3", "bytes=a-b", "0-" + "9" * 5000, "9" * 20 + "-" + "9" * 20])
async def test_malformed_content_range(client, header):
    location = await start(client)
    r = await client.patch(location, data=b"abc", headers={"Content-Range": header})
    assert r.status == 416


async def test_digest_mismatch_on_put_cleans_up(client):
    location = await start(client)
    await client.patch(location, data=b"some data")
    wrong = sha256(b"other data")
    r = await client.put(f"{location}?digest={wrong}")
    assert r.status == 400 and await error_code(r) == "DIGEST_INVALID"
    r = await client.head(f"/v2/{NAME}/blobs/{wrong}")
    assert r.status == 404
    # The failed upload's data is gone: the session no longer exists.
    r = await client.get(location)
    assert r.status == 404


async def test_monolithic_digest_mismatch(client):
    wrong = sha256(b"not this")
    r = await client.post(f"/v2/{NAME}/blobs/uploads/?digest={wrong}", data=b"this")
    assert r.status == 400 and await error_code(r) == "DIGEST_INVALID"
    r = await client.head(f"/v2/{NAME}/blobs/{wrong}")
    assert r.status == 404


@pytest.mark.parametrize("digest", ["sha256:zz", "sha256:" + "A" * 64, "md5:d41d8cd98f00b204e9800998ecf8427e",
                                    "sha256", "", "sha256:" + "a" * 63, "../../etc/passwd"])
async def test_bad_digest_on_put(client, digest):
    location = await start(client)
    r = await client.put(location, params={"digest": digest}, data=b"abc")
    assert r.status == 400 and await error_code(r) == "DIGEST_INVALID"


async def test_put_without_digest(client):
    location = await start(client)
    r = await client.put(location, data=b"abc")
    assert r.status == 400 and await error_code(r) == "DIGEST_INVALID"


async def test_sha512_blob(client):
    data = os.urandom(5000)
    digest = sha512(data)
    r = await client.post(f"/v2/{NAME}/blobs/uploads/?digest={digest}", data=data)
    assert r.status == 201, await r.text()
    assert await fetch(client, NAME, digest) == data
    # Chunked with a sha512 digest: the running sha256 hash is not reusable, data is rehashed.
    data2 = os.urandom(7000)
    location = await start(client)
    await client.patch(location, data=data2[:3000], headers={"Content-Range": "0-2999"})
    r = await client.put(f"{location}?digest={sha512(data2)}", data=data2[3000:])
    assert r.status == 201, await r.text()
    assert await fetch(client, NAME, sha512(data2)) == data2


async def test_empty_blob(client):
    digest = sha256(b"")
    r = await client.post(f"/v2/{NAME}/blobs/uploads/?digest={digest}", data=b"")
    assert r.status == 201, await r.text()
    r = await client.head(f"/v2/{NAME}/blobs/{digest}")
    assert r.status == 200 and r.headers["Content-Length"] == "0"
    assert await fetch(client, NAME, digest) == b""
    location = await start(client)
    r = await client.put(f"{location}?digest={digest}")
    assert r.status == 201


@pytest.mark.parametrize("upload_id,status,code", [
    ("not-a-uuid", 404, "BLOB_UPLOAD_UNKNOWN"),
    ("00000000-0000-0000-0000-000000000000", 404, "BLOB_UPLOAD_UNKNOWN"),
    ("%2e%2e", 400, "NAME_INVALID"),
    ("..%2f..%2fblobs", 400, "NAME_INVALID"),
    ("..", 400, "NAME_INVALID"),
])
async def test_unknown_upload(client, upload_id, status, code):
    for method in ("GET", "PATCH", "PUT", "DELETE"):
        got, body = await raw_request(client, method, f"/v2/{NAME}/blobs/uploads/{upload_id}?digest={sha256(b'')}")
        assert got == status, (method, got)
        assert body["errors"][0]["code"] == code


async def test_upload_of_another_repository_is_unknown(client):
    location = await start(client, "team/one")
    upload_id = location.rsplit("/", 1)[1]
    r = await client.patch(f"/v2/team/two/blobs/uploads/{upload_id}", data=b"abc")
    assert r.status == 404 and await error_code(r) == "BLOB_UPLOAD_UNKNOWN"


async def test_cancel_then_put(client, config):
    location = await start(client)
    await client.patch(location, data=b"partial data")
    r = await client.delete(location)
    assert r.status == 204
    r = await client.put(f"{location}?digest={sha256(b'partial data')}")
    assert r.status == 404 and await error_code(r) == "BLOB_UPLOAD_UNKNOWN"
    r = await client.patch(location, data=b"more")
    assert r.status == 404
    r = await client.delete(location)
    assert r.status == 404
    if config.storage.driver == "filesystem":
        uploads = config.storage_root / "uploads"
        assert not uploads.exists() or not any(uploads.iterdir())


async def test_dedupe_same_blob_twice(client, config):
    repo_a, repo_b = Repo(client, "team/a"), Repo(client, "team/b")
    data = os.urandom(4096)
    await repo_a.push_blob(data)
    await repo_b.push_blob(data)
    if config.storage.driver == "filesystem":
        files = [p for p in (config.storage_root / "blobs").rglob("*") if p.is_file()]
        assert len(files) == 1
        assert not any((config.storage_root / "uploads").rglob("*")) if (config.storage_root / "uploads").exists() else True


async def test_mount_from(client):
    source = Repo(client, "team/source")
    data = os.urandom(2048)
    digest = await source.push_blob(data)
    r = await client.post(f"/v2/team/target/blobs/uploads/?mount={digest}&from=team/source")
    assert r.status == 201
    assert r.headers["Location"] == f"/v2/team/target/blobs/{digest}"
    assert await fetch(client, "team/target", digest) == data


async def test_mount_without_from(client):
    data = os.urandom(2048)
    digest = await Repo(client, "team/source").push_blob(data)
    r = await client.post(f"/v2/team/auto/blobs/uploads/?mount={digest}")
    assert r.status == 201
    assert await fetch(client, "team/auto", digest) == data


async def test_mount_of_unknown_blob_falls_back_to_upload(client):
    digest = sha256(b"never pushed")
    r = await client.post(f"/v2/team/target/blobs/uploads/?mount={digest}&from=team/source")
    assert r.status == 202
    assert "/blobs/uploads/" in r.headers["Location"]
    r = await client.head(f"/v2/team/target/blobs/{digest}")
    assert r.status == 404


async def test_mount_from_invalid_name(client):
    r = await client.post(f"/v2/team/target/blobs/uploads/?mount={sha256(b'x')}&from=../etc")
    assert r.status == 400 and await error_code(r) == "NAME_INVALID"


async def test_blob_size_limit(aiohttp_client, tmp_path):
    from hub.app import create_app
    from hub.config import load_config

    cfg = load_config(environ={}, overrides={"data_dir": str(tmp_path), "registry": {"max_blob_bytes": 1000},
                                             "auth": {"enabled": False},
                                             "log": {"access_log": False}})
    client = await aiohttp_client(create_app(cfg))
    data = os.urandom(1001)
    r = await client.post(f"/v2/{NAME}/blobs/uploads/?digest={sha256(data)}", data=data)
    assert r.status == 413
    r = await client.head(f"/v2/{NAME}/blobs/{sha256(data)}")
    assert r.status == 404
    assert not any((cfg.storage_root / "uploads").rglob("*")) if (cfg.storage_root / "uploads").exists() else True


async def test_purge_abandoned_uploads(client, config):
    from hub.keys import REGISTRY

    registry = client.server.app[REGISTRY]
    stale = await start(client)
    await client.patch(stale, data=b"abandoned")
    fresh = await start(client)
    # Upload data left behind with no session row (a crashed monolithic upload).
    import uuid as uuid_mod

    writer = await registry.storage.writer(f"uploads/{uuid_mod.uuid4()}/data")
    await writer.write(b"orphan")
    await writer.close()

    dry = await registry.purge_uploads(0, dry_run=True)
    assert dry == {"expired_sessions": 2, "orphaned_data": 1}
    assert (await client.get(stale)).status == 204

    # Only sessions idle past the TTL go: the fresh one was touched "now", so an hour's TTL keeps both.
    assert (await registry.purge_uploads(3600))["expired_sessions"] == 0
    result = await registry.purge_uploads(0)
    assert result == {"expired_sessions": 2, "orphaned_data": 1}
    for location in (stale, fresh):
        r = await client.get(location)
        assert r.status == 404 and await error_code(r) == "BLOB_UPLOAD_UNKNOWN"
    assert [p async for p in registry.storage.walk("")] == []


async def test_stalled_body_releases_upload_and_keeps_data(aiohttp_client, tmp_path):
    """A PATCH whose body stops arriving ends after body_idle_timeout; what arrived is kept."""
    import asyncio

    from hub.app import create_app
    from hub.config import load_config

    cfg = load_config(environ={}, overrides={"data_dir": str(tmp_path), "log": {"access_log": False}, "auth": {"enabled": False},
                                             "server": {"body_idle_timeout": 0.5}})
    client = await aiohttp_client(create_app(cfg))
    location = await start(client)
    data = os.urandom(2 * 1024 * 1024)
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    writer.write(f"PATCH {location} HTTP/1.1\r\nHost: t\r\nContent-Length: {len(data) * 2}\r\n"
                 f"Content-Range: 0-{len(data) * 2 - 1}\r\n\r\n".encode() + data)
    await writer.drain()
    # While the PATCH is stalled, status answers at once with the bytes stored so far.
    status = await client.get(location)
    assert status.status == 204
    # The server gives up on the silent body: 408 with an OCI error, then it closes the connection.
    answer = await asyncio.wait_for(reader.read(), 30)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b'"code": "BLOB_UPLOAD_INVALID"' in answer
    writer.close()
    status = await client.get(location)
    assert status.status == 204 and status.headers["Range"] == f"0-{len(data) - 1}"
    rest = os.urandom(1000)
    r = await client.patch(location, data=rest, headers={"Content-Range": f"{len(data)}-{len(data) + 999}"})
    assert r.status == 202
    r = await client.put(f"{location}?digest={sha256(data + rest)}")
    assert r.status == 201
    assert await fetch(client, NAME, sha256(data + rest)) == data + rest
