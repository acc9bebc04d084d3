"""S3 faults seen through the hub's HTTP API, with a fault proxy between the hub and moto.

The driver-level cases are in tests/storage/test_s3.py; here a client pushes through the hub:
SlowDown and 500s are retried and the push succeeds, and a storage failure after every byte of an
upload was written (the multipart completion, or the move to the blob's address) fails the PUT
and leaves nothing visible: no blob through the API, no object at the blob's key, no manifest can
use it. Once the fault is gone, the same upload is finished with a second PUT. And a replica
SIGKILLed while its blob's move is held up leaves nothing visible; another replica finishes it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os

import aiohttp
import pytest

from hub.app import create_app
from tests.helpers.faultproxy import S3_INTERNAL_ERROR, S3_SLOW_DOWN, FaultProxy, Seen
from tests.helpers.scaleout import MiB, leftover_uploads, s3_backend
from tests.helpers.server import DaoHubProcess
from tests.storage.test_s3 import hub_config, is_complete, is_copy

from .conftest import Hub, image_manifest, sha256


def is_upload_part(seen: Seen) -> bool:
    return seen.method == "PUT" and "partNumber" in seen.query and "x-amz-copy-source" not in seen.headers


@pytest.fixture
def proxy(moto_s3):
    with FaultProxy(moto_s3.url) as running:
        yield running


async def hub_through(aiohttp_client, tmp_path, moto_s3, proxy, **storage):
    bucket = moto_s3.create_bucket()
    client = await aiohttp_client(create_app(hub_config(tmp_path, moto_s3, bucket, endpoint=proxy.url, **storage)))
    backend = s3_backend(moto_s3, "", bucket=bucket)  # for reading the bucket without the hub
    return client, backend


async def start_and_write(client, repo: str, data: bytes) -> str:
    r = await client.post(f"/v2/{repo}/blobs/uploads/")
    assert r.status == 202, await r.text()
    r = await client.patch(r.headers["Location"], data=data,
                           headers={"Content-Range": f"0-{len(data) - 1}", "Content-Type": "application/octet-stream"})
    assert r.status == 202, await r.text()
    return r.headers["Location"]


async def test_slow_down_and_server_errors_during_a_push_are_retried(aiohttp_client, tmp_path, moto_s3, proxy):
    client, backend = await hub_through(aiohttp_client, tmp_path, moto_s3, proxy)
    proxy.fail(503, body=S3_SLOW_DOWN, times=2, when=is_upload_part)
    proxy.fail(500, body=S3_INTERNAL_ERROR, times=1, when=is_complete)
    proxy.fail(503, body=S3_SLOW_DOWN, times=1, when=is_copy)
    data = os.urandom(7 * MiB + 5)
    location = await start_and_write(client, "team/retried", data)
    digest = sha256(data)
    r = await client.put(f"{location}?digest={digest}")
    assert r.status == 201, await r.text()
    fired = [seen for seen in proxy.requests if seen.action != "forward"]
    assert len(fired) == 4, fired  # every fault was met, and retried
    r = await client.get(f"/v2/team/retried/blobs/{digest}")
    assert r.status == 200 and await r.read() == data
    assert backend.stored_blobs() == {digest: len(data)}


@pytest.mark.parametrize("step", ["complete", "move"])
async def test_a_storage_error_after_the_upload_was_written_leaves_no_visible_blob(
        aiohttp_client, tmp_path, moto_s3, proxy, step):
    client, backend = await hub_through(aiohttp_client, tmp_path, moto_s3, proxy, max_attempts=2)
    repo = "team/partial"
    data = os.urandom(6 * MiB + 77)  # a multipart upload: part, tail, completion, part-copy move
    digest = sha256(data)
    config = b'{"architecture": "amd64", "os": "linux"}'
    assert (await client.post(f"/v2/{repo}/blobs/uploads/?digest={sha256(config)}", data=config)).status == 201
    location = await start_and_write(client, repo, data)
    rule = proxy.fail(500, body=S3_INTERNAL_ERROR, times=None, when=is_complete if step == "complete" else is_copy)

    r = await client.put(f"{location}?digest={digest}")
    assert r.status >= 500, await r.text()
    assert rule.fired >= 2, "the failing step was not reached or not retried"
    # Nothing of the blob is visible: not through the API, not in the bucket, not to a manifest.
    for method in ("HEAD", "GET"):
        r = await client.request(method, f"/v2/{repo}/blobs/{digest}")
        assert r.status == 404, (method, r.status)
    assert backend.stored_blobs() == {sha256(config): len(config)}
    r = await client.put(f"/v2/{repo}/manifests/v1", data=image_manifest(config, [data]),
                         headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status == 400 and (await r.json())["errors"][0]["code"] == "MANIFEST_BLOB_UNKNOWN"

    # The fault clears: the client's PUT again finishes the same upload, from the data already sent.
    proxy.clear()
    r = await client.get(location)
    assert r.status == 204 and r.headers["Range"] == f"0-{len(data) - 1}"
    r = await client.put(f"{location}?digest={digest}")
    assert r.status == 201, await r.text()
    r = await client.get(f"/v2/{repo}/blobs/{digest}")
    assert r.status == 200 and await r.read() == data
    assert backend.stored_blobs() == {sha256(config): len(config), digest: len(data)}


async def test_replica_killed_while_moving_a_blob_into_place(moto_s3, postgres_cluster, tmp_path):
    """A crash between the upload's data being complete and the blob being linked: nothing is
    visible meanwhile, and another replica finishes the upload from the data already in the bucket."""
    with FaultProxy(moto_s3.url) as proxy:
        backend = s3_backend(moto_s3, postgres_cluster.create_database())
        # A reaches S3 through the proxy (which will hold its move), B directly.
        a = DaoHubProcess(tmp_path / "a", env=backend.env(DAOHUB_STORAGE_ENDPOINT=proxy.url))
        b = DaoHubProcess(tmp_path / "b", env=backend.env())
        try:
            with concurrent.futures.ThreadPoolExecutor(2) as pool:
                for started in [pool.submit(a.start), pool.submit(b.start)]:
                    started.result()
            async with aiohttp.ClientSession() as session:
                hub_a, hub_b = Hub(session, a.url), Hub(session, b.url)
                repo, data = "team/crash-in-move", os.urandom(6 * MiB + 3)
                digest = sha256(data)
                location = await hub_a.patch(await hub_a.start_upload(repo), data, 0, len(data))
                stalled = proxy.stall(times=1, when=is_copy)
                put = asyncio.create_task(hub_a.finish_upload(location, digest))
                try:
                    while not stalled.fired:
                        assert not put.done(), put
                        await asyncio.sleep(0.05)
                    for hub in (hub_a, hub_b):
                        async with session.head(f"{hub.url}/v2/{repo}/blobs/{digest}") as r:
                            assert r.status == 404, "blob visible before its upload finished"
                    a.kill()
                    with pytest.raises(aiohttp.ClientError):
                        await asyncio.wait_for(put, 60)
                finally:
                    put.cancel()
                assert await hub_b.upload_offset(location) == len(data)
                await hub_b.finish_upload(location, digest)
                assert await hub_b.get_blob(repo, digest) == data
        finally:
            a.stop()
            b.stop()
    assert backend.stored_blobs() == {digest: len(data)}
    assert leftover_uploads(backend) == []
