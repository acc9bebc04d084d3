"""Upstream faults, injected by a proxy in front of a real upstream: 503, 429, refused, stalled and
cut transfers. Cached tags keep being served; what is not cached fails clearly; a transfer cut
half way leaves nothing cached and every waiting client sees the failure."""

from __future__ import annotations

import asyncio
import logging
import os

import aiohttp
import pytest

from hub.keys import METRICS, PROXY, STORAGE, STORE
from tests.helpers.faultproxy import FaultProxy, match

from .util import error_of, pull

FLAKY = "flaky.test"
INTERVAL = 300


@pytest.fixture
def faulty(distribution):
    proxy = FaultProxy(distribution.url).start()
    yield proxy
    proxy.stop()


# Storage on a local disk (clients follow the upload file) and elsewhere (clients follow a spool).
STORAGES = pytest.mark.parametrize("storage", ["filesystem", "memory"])


async def _hub(proxy_hub, faulty, **options):
    client = await proxy_hub([{"name": FLAKY, "url": faulty.url, "manifest_revalidate_seconds": INTERVAL}],
                             **options)
    now = [1_000_000.0]
    client.server.app[PROXY].clock = lambda: now[0]
    return client, now


def _sample(client, name: str, **labels) -> float:
    return client.server.app[METRICS].registry.get_sample_value(name, labels) or 0.0


async def test_cached_tag_is_served_while_the_upstream_fails(proxy_hub, faulty, dist, caplog):
    image = dist.push_image("library/sturdy", "1")
    client, now = await _hub(proxy_hub, faulty)
    repo = f"{FLAKY}/library/sturdy"
    await pull(client, repo, "1")
    caplog.set_level(logging.WARNING, "daohub.proxy")

    # 503: the revalidating HEAD fails, the cached manifest is served, with a metric and a log line.
    faulty.fail(503, times=None)
    now[0] += INTERVAL + 1
    heads = faulty.count(match(method="HEAD", path="/manifests/1$"))
    assert (await pull(client, repo, "1")).digest == image.digest
    assert faulty.count(match(method="HEAD", path="/manifests/1$")) == heads + 1
    assert _sample(client, "daohub_proxy_cache_requests_total", upstream=FLAKY, kind="manifest",
                   result="stale") == 1
    assert any("serving cached" in r.getMessage() and "503" in r.getMessage() for r in caplog.records)
    # Nothing cached under another tag: a clear error naming the upstream.
    r = await client.get(f"/v2/{repo}/manifests/2")
    assert r.status == 503
    err = await error_of(r)
    assert err["code"] == "UNAVAILABLE" and FLAKY in err["message"] and "503" in err["message"], err

    # 429, with the upstream's rate-limit headers exported.
    faulty.clear()
    faulty.fail(429, times=None, headers={"Retry-After": "30", "RateLimit-Limit": "100;w=21600",
                                          "RateLimit-Remaining": "0;w=21600"})
    now[0] += INTERVAL + 1
    assert (await pull(client, repo, "1")).digest == image.digest
    r = await client.get(f"/v2/{repo}/manifests/2")
    assert r.status == 429 and r.headers["Retry-After"] == "30"
    assert (await error_of(r))["code"] == "TOOMANYREQUESTS"
    assert _sample(client, "daohub_proxy_upstream_ratelimit_remaining", upstream=FLAKY) == 0
    assert _sample(client, "daohub_proxy_upstream_ratelimit_limit", upstream=FLAKY) == 100
    assert _sample(client, "daohub_proxy_upstream_ratelimit_window_seconds", upstream=FLAKY) == 21600

    # Connection refused: nothing listens any more.
    faulty.stop()
    now[0] += INTERVAL + 1
    assert (await pull(client, repo, "1")).digest == image.digest
    r = await client.get(f"/v2/{repo}/manifests/2")
    assert r.status == 503 and "cannot connect" in (await error_of(r))["message"]
    r = await client.get(f"/v2/{FLAKY}/library/other/blobs/sha256:{'1' * 64}")
    assert r.status == 503
    assert _sample(client, "daohub_proxy_cache_requests_total", upstream=FLAKY, kind="manifest",
                   result="stale") == 3


async def test_a_stalled_upstream_times_out_and_the_cache_answers(proxy_hub, faulty, dist):
    image = dist.push_image("library/stalled", "1")
    client, now = await _hub(proxy_hub, faulty, read_timeout_seconds=0.5)
    repo = f"{FLAKY}/library/stalled"
    await pull(client, repo, "1")
    faulty.stall(times=None)
    now[0] += INTERVAL + 1
    assert (await pull(client, repo, "1")).digest == image.digest
    r = await client.get(f"/v2/{repo}/manifests/other")
    assert r.status == 503 and (await error_of(r))["detail"]["reason"] == "timeout"


async def _wait_for(condition, what: str) -> None:
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"gave up waiting for {what}")


def _leftovers(client) -> list[str]:
    """Files under uploads/ in storage and in the spool directory (both must be empty when idle)."""
    storage_root = client.server.app[STORAGE].local_path("uploads")
    spool = client.server.app[PROXY].spool_dir
    found = []
    for root in (storage_root, spool):
        if root is not None and os.path.isdir(root):
            for dirpath, _, files in os.walk(root):
                found += [os.path.join(dirpath, f) for f in files]
    return found


@STORAGES
async def test_a_cut_mid_blob_leaves_nothing_cached_and_fails_every_waiting_client(proxy_hub, faulty, dist, storage):
    image = dist.push_image("library/cut", "1", (3 << 20,))
    layer = next(d for d, data in image.blobs.items() if len(data) == 3 << 20)
    client, _ = await _hub(proxy_hub, faulty, storage=storage)
    repo = f"{FLAKY}/library/cut"
    rule = faulty.hold(after_bytes=1 << 20, then="cut", when=match(method="GET", path=f"/blobs/{layer}"))

    async def fetch() -> tuple[int, int, str | None]:
        async with client.get(f"/v2/{repo}/blobs/{layer}") as r:
            length = int(r.headers["Content-Length"])
            got = 0
            try:
                async for chunk in r.content.iter_any():
                    got += len(chunk)
            except aiohttp.ClientPayloadError as exc:
                return length, got, type(exc).__name__
            return length, got, None

    waiting = [asyncio.create_task(fetch()) for _ in range(3)]
    await asyncio.to_thread(rule.reached.wait, 30)
    await _wait_for(lambda: _sample(client, "daohub_proxy_coalesced_total", upstream=FLAKY, kind="blob") == 2,
                    "the other two clients to join the fetch")
    rule.release()
    for length, got, error in await asyncio.gather(*waiting):
        # Each client was promised the whole blob and saw the connection end short of it.
        assert length == 3 << 20 and got < length and error is not None, (length, got, error)
    store = client.server.app[STORE]
    assert await store.get_blob_size(repo, layer) is None
    assert await store.get_global_blob_size(layer) is None
    assert client.server.app[STORAGE].local_path(f"blobs/sha256/{layer[7:9]}/{layer[7:]}") is None or not \
        os.path.exists(client.server.app[STORAGE].local_path(f"blobs/sha256/{layer[7:9]}/{layer[7:]}"))
    await _wait_for(lambda: not _leftovers(client), "upload and spool files to go")
    # The next pull fetches again, and succeeds.
    assert (await pull(client, repo, "1")).blobs == image.blobs
    assert faulty.count(match(method="GET", path=f"/blobs/{layer}")) == 2
    assert await store.get_blob_size(repo, layer) == 3 << 20


@STORAGES
async def test_a_late_joiner_and_a_client_that_leaves_do_not_restart_or_stop_the_fetch(
        proxy_hub, faulty, dist, storage):
    image = dist.push_image("library/joiner", "1", (2 << 20,))
    layer = next(d for d, data in image.blobs.items() if len(data) == 2 << 20)
    client, _ = await _hub(proxy_hub, faulty, storage=storage)
    repo = f"{FLAKY}/library/joiner"
    rule = faulty.hold(after_bytes=1 << 20, when=match(method="GET", path=f"/blobs/{layer}"))

    # The first client starts the fetch, reads a little of it, and goes away.
    first = await client.get(f"/v2/{repo}/blobs/{layer}")
    assert first.status == 200
    await first.content.readexactly(1000)
    await asyncio.to_thread(rule.reached.wait, 30)
    first.close()
    # A client arriving now joins the fetch under way and gets the blob from its first byte.
    late = asyncio.create_task(client.get(f"/v2/{repo}/blobs/{layer}"))
    await _wait_for(lambda: _sample(client, "daohub_proxy_coalesced_total", upstream=FLAKY, kind="blob") == 1,
                    "the late client to join")
    rule.release()
    r = await late
    assert r.status == 200 and await r.read() == image.blobs[layer]
    # The last byte goes out once the blob hashes right; storing it goes on after that.
    await client.server.app[PROXY].settled()
    assert not _leftovers(client)
    assert await client.server.app[STORE].get_blob_size(repo, layer) == 2 << 20
    assert faulty.count(match(method="GET", path=f"/blobs/{layer}")) == 1
