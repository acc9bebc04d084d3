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
from hub.keys import METRICS, RELAY
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


# Relayed reads (redirect off): with an http:// endpoint the body goes from the S3 connection to
# the client's with splice(2) (hub/relay.py). A connection that breaks mid-body is reopened at the
# byte it reached; one that cannot be reopened, or a client that goes away, ends that transfer only.

def is_blob_get(seen: Seen) -> bool:
    return seen.method == "GET" and "/blobs/" in seen.path and "X-Amz-Signature" in seen.query


def relays(client) -> dict[str, float]:
    counter = client.server.app[METRICS].relays
    return {method: counter.labels(method)._value.get() for method in ("splice", "stream")}


async def relay_idle(client) -> int:
    """Transfers still running once the hub has had its chance to finish them (the client has
    its last byte a moment before the handler returns)."""
    relay = client.server.app[RELAY]
    for _ in range(500):
        if relay.active == 0:
            break
        await asyncio.sleep(0.02)
    return relay.active


async def pushed(client, repo: str, size: int) -> tuple[bytes, str]:
    data = os.urandom(size)
    digest = sha256(data)
    r = await client.post(f"/v2/{repo}/blobs/uploads/?digest={digest}", data=data)
    assert r.status == 201, await r.text()
    return data, digest


@pytest.mark.parametrize("socket_reads", [True, False])
async def test_relayed_blob_reads_go_socket_to_socket(aiohttp_client, tmp_path, moto_s3, proxy, socket_reads):
    client, _ = await hub_through(aiohttp_client, tmp_path, moto_s3, proxy, socket_reads=socket_reads)
    data, digest = await pushed(client, "team/relayed", 3 * MiB + 11)
    url = f"/v2/team/relayed/blobs/{digest}"
    for _ in range(2):  # one connection, kept alive: the second response follows the first cleanly
        r = await client.get(url)
        assert r.status == 200 and r.headers["Docker-Content-Digest"] == digest
        assert await r.read() == data
    r = await client.get(url, headers={"Range": "bytes=1000-2000999"})
    assert r.status == 206 and r.headers["Content-Range"] == f"bytes 1000-2000999/{len(data)}"
    assert await r.read() == data[1000:2001000]
    r = await client.get(url, headers={"Range": f"bytes=-{MiB}"})
    assert r.status == 206 and await r.read() == data[-MiB:]
    gets = [seen for seen in proxy.requests if is_blob_get(seen)]
    small, small_digest = await pushed(client, "team/relayed", 1000)  # a config blob: not worth a connection
    r = await client.get(f"/v2/team/relayed/blobs/{small_digest}")
    assert r.status == 200 and await r.read() == small
    if socket_reads:
        assert relays(client) == {"splice": 4, "stream": 1}
        # Each read asks storage for exactly the bytes it serves, on a connection of its own.
        assert [seen.headers["Range"] for seen in gets] == [
            f"bytes=0-{len(data) - 1}", f"bytes=0-{len(data) - 1}", "bytes=1000-2000999",
            f"bytes={len(data) - MiB}-{len(data) - 1}"]
        assert all(seen.headers["Connection"] == "close" for seen in gets)
    else:
        assert relays(client) == {"splice": 0, "stream": 5}
    assert await relay_idle(client) == 0


async def test_a_storage_connection_cut_mid_body_is_resumed_at_the_byte_it_reached(
        aiohttp_client, tmp_path, moto_s3, proxy):
    client, _ = await hub_through(aiohttp_client, tmp_path, moto_s3, proxy, max_attempts=3)
    data, digest = await pushed(client, "team/resumed", 4 * MiB + 3)
    proxy.cut(MiB + 17, times=2, when=is_blob_get)
    r = await client.get(f"/v2/team/resumed/blobs/{digest}")
    assert r.status == 200 and await r.read() == data
    gets = [seen for seen in proxy.requests if is_blob_get(seen)]
    assert [seen.headers["Range"] for seen in gets] == [
        f"bytes=0-{len(data) - 1}", f"bytes={MiB + 17}-{len(data) - 1}", f"bytes={2 * (MiB + 17)}-{len(data) - 1}"]
    etag = gets[1].headers["If-Match"]
    assert etag.startswith('"') and gets[2].headers["If-Match"] == etag  # the rest from the same object
    assert relays(client)["splice"] == 1


async def test_storage_that_cannot_give_the_rest_cuts_the_client_short_and_nothing_else(
        aiohttp_client, tmp_path, moto_s3, proxy):
    client, backend = await hub_through(aiohttp_client, tmp_path, moto_s3, proxy, max_attempts=2)
    data, digest = await pushed(client, "team/broken", 3 * MiB)
    url = f"/v2/team/broken/blobs/{digest}"
    proxy.cut(MiB, times=1, when=is_blob_get)  # the first GET breaks...
    proxy.fail(500, body=S3_INTERNAL_ERROR, times=None, when=is_blob_get)  # ...and S3 fails from then on
    r = await client.get(url)
    assert r.status == 200 and r.content_length == len(data)
    with pytest.raises(aiohttp.ClientPayloadError):
        await r.read()  # short of its Content-Length: never a whole-looking blob
    assert proxy.count(is_blob_get) == 3  # the cut GET, then the driver's 2 attempts to resume
    proxy.clear()
    r = await client.get(url)  # the blob, the hub and its relay are fine
    assert r.status == 200 and await r.read() == data
    assert backend.stored_blobs() == {digest: len(data)}
    assert await relay_idle(client) == 0


async def test_a_client_that_goes_away_mid_body_ends_its_transfer_only(aiohttp_client, tmp_path, moto_s3, proxy):
    client, _ = await hub_through(aiohttp_client, tmp_path, moto_s3, proxy)
    data, digest = await pushed(client, "team/gone", 24 * MiB)
    held = proxy.hold(2 * MiB, when=is_blob_get)  # storage pauses mid-body while the client leaves
    host, port = client.server.host, client.server.port
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"GET /v2/team/gone/blobs/{digest} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    await writer.drain()
    assert b" 200 " in await reader.readline()
    await asyncio.to_thread(held.reached.wait, 30)
    await reader.read(256 * 1024)
    writer.transport.abort()  # gone, with ~22 MiB unread
    held.release()
    assert await relay_idle(client) == 0  # the thread noticed at its next write and let go
    r = await client.get(f"/v2/team/gone/blobs/{digest}")
    assert r.status == 200 and await r.read() == data
    assert relays(client) == {"splice": 2, "stream": 0}


@pytest.mark.parametrize("event_loop", ["asyncio", "uvloop"])
async def test_daohub_serve_splices_relayed_reads_on_either_event_loop(moto_s3, tmp_path, event_loop):
    backend = s3_backend(moto_s3, "")
    hub = DaoHubProcess(tmp_path / "hub", env=backend.env(DAOHUB_SERVER_EVENT_LOOP=event_loop))
    hub.start()
    try:
        data = os.urandom(5 * MiB + 1)
        digest = sha256(data)
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{hub.url}/v2/team/loop/blobs/uploads/?digest={digest}", data=data) as r:
                assert r.status == 201, await r.text()
            for headers, want in (({}, data), ({"Range": "bytes=100-3145827"}, data[100:3145828])):
                async with session.get(f"{hub.url}/v2/team/loop/blobs/{digest}", headers=headers) as r:
                    assert r.status in (200, 206) and await r.read() == want
            async with session.get(f"{hub.url}/metrics") as r:
                metrics = await r.text()
        assert 'daohub_blob_relays_total{method="splice"} 2.0' in metrics, metrics
    finally:
        hub.stop()
