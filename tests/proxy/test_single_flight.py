"""Single flight: concurrent cold pulls make one upstream request per manifest and per blob."""

from __future__ import annotations

import asyncio
import os

import pytest

from hub.keys import PROXY, STORE
from tests.helpers.faultproxy import FaultProxy, match
from tests.registry.conftest import METADATA_STORES

from .conftest import HUB, hub_upstream
from .util import content_requests, pull


@pytest.mark.parametrize(("database", "storage"), [*((d, "filesystem") for d in METADATA_STORES),
                                                   ("sqlite", "memory")])
async def test_twenty_concurrent_cold_pulls_make_one_upstream_get_each(proxy_hub, token_hub, hub_up, hub_log,
                                                                        database, storage):
    image = hub_up.push_image(f"up/crowd-{database}-{storage}", "1", (4 << 20, 3 << 20, 1 << 20))
    client = await proxy_hub([hub_upstream(token_hub)], database=database, storage=storage)
    mark = hub_log.mark()
    pulled = await asyncio.gather(*(pull(client, f"{HUB}/up/crowd-{database}-{storage}", "1") for _ in range(20)))
    for p in pulled:  # every client got every byte, checked by digest in pull()
        assert p.digest == image.digest and p.blobs == image.blobs
    counts = content_requests(await hub_log.asince(mark))
    assert counts == {("GET", f"/v2/up/crowd-{database}-{storage}/manifests/1"): 1,
                      **{("GET", f"/v2/up/crowd-{database}-{storage}/blobs/{d}"): 1 for d in image.blobs}}, counts
    metrics = (await (await client.get("/metrics")).text())
    joined = [line for line in metrics.splitlines() if line.startswith("daohub_proxy_coalesced_total")]
    assert joined, metrics  # the other clients joined fetches under way


async def test_a_layer_shared_by_two_repositories_is_fetched_once(proxy_hub, distribution, dist):
    shared = os.urandom(2 << 20)
    first = dist.push_image("library/share-a", "1", layers=[shared])
    second = dist.push_image("library/share-b", "1", layers=[shared])
    third = dist.push_image("library/share-c", "1", layers=[shared])
    layer = next(d for d, data in first.blobs.items() if data == shared)
    with FaultProxy(distribution.url) as faulty:
        client = await proxy_hub([{"name": "via.test", "url": faulty.url}])
        # Two repositories at once: one fetch, and both end up linking the layer.
        a, b = await asyncio.gather(pull(client, "via.test/library/share-a", "1"),
                                    pull(client, "via.test/library/share-b", "1"))
        assert a.blobs == first.blobs and b.blobs == second.blobs
        # A third one later: the bytes are here, so the upstream is only asked to confirm (HEAD).
        assert (await pull(client, "via.test/library/share-c", "1")).blobs == third.blobs
        assert faulty.count(match(method="GET", path=f"/blobs/{layer}$")) == 1
        assert faulty.count(match(method="HEAD", path=f"/v2/library/share-c/blobs/{layer}$")) == 1
    store = client.server.app[STORE]
    for repo in ("share-a", "share-b", "share-c"):
        assert await store.get_blob_size(f"via.test/library/{repo}", layer) == len(shared)


async def test_two_replicas_on_one_database_fetch_a_blob_once(proxy_hub, distribution, dist):
    """Replicas share PostgreSQL and storage: the store's lock makes the second wait for the first."""
    image = dist.push_image("library/replicas", "1", (3 << 20,))
    layer = next(d for d, data in image.blobs.items() if len(data) == 3 << 20)
    with FaultProxy(distribution.url) as faulty:
        upstreams = [{"name": "via.test", "url": faulty.url}]
        one = await proxy_hub(upstreams, database="postgres")
        two = await proxy_hub(upstreams, database="postgres")
        rule = faulty.hold(after_bytes=1 << 20, when=match(method="GET", path=f"/blobs/{layer}$"))
        first = asyncio.create_task(one.get(f"/v2/via.test/library/replicas/blobs/{layer}"))
        await asyncio.to_thread(rule.reached.wait, 30)
        second = asyncio.create_task(two.get(f"/v2/via.test/library/replicas/blobs/{layer}"))
        for _ in range(1000):  # until the second replica's fetch exists (it then waits for the lock)
            if two.server.app[PROXY]._flights:
                break
            await asyncio.sleep(0.01)
        rule.release()
        for task in (first, second):
            r = await task
            assert r.status == 200 and await r.read() == image.blobs[layer]
        assert faulty.count(match(method="GET", path=f"/blobs/{layer}$")) == 1
