"""Single flight: concurrent cold pulls make one upstream request per manifest and per blob."""

from __future__ import annotations

import asyncio

import pytest

from tests.registry.conftest import METADATA_STORES

from .conftest import HUB, hub_upstream
from .util import content_requests, pull


@pytest.mark.parametrize("database", METADATA_STORES)
async def test_twenty_concurrent_cold_pulls_make_one_upstream_get_each(proxy_hub, token_hub, hub_up, hub_log,
                                                                        database):
    image = hub_up.push_image(f"up/crowd-{database}", "1", (4 << 20, 3 << 20, 1 << 20))
    client = await proxy_hub([hub_upstream(token_hub)], database=database)
    mark = hub_log.mark()
    pulled = await asyncio.gather(*(pull(client, f"{HUB}/up/crowd-{database}", "1") for _ in range(20)))
    for p in pulled:  # every client got every byte, checked by digest in pull()
        assert p.digest == image.digest and p.blobs == image.blobs
    counts = content_requests(await hub_log.asince(mark))
    assert counts == {("GET", f"/v2/up/crowd-{database}/manifests/1"): 1,
                      **{("GET", f"/v2/up/crowd-{database}/blobs/{d}"): 1 for d in image.blobs}}, counts
    metrics = (await (await client.get("/metrics")).text())
    joined = [line for line in metrics.splitlines() if line.startswith("daohub_proxy_coalesced_total")]
    assert joined, metrics  # the other clients joined fetches under way
