"""Freshness: tags are revalidated with one HEAD after their interval; digests never again."""

from __future__ import annotations

import pytest

from hub.keys import PROXY, STORE
from tests.registry.conftest import METADATA_STORES

from .conftest import HUB, hub_upstream
from .util import content_requests, pull

INTERVAL = 300


def _clock(client, start: float = 1_000_000.0) -> list[float]:
    now = [start]
    client.server.app[PROXY].clock = lambda: now[0]
    return now


async def test_revalidation_interval_is_honoured(proxy_hub, token_hub, hub_up, hub_log):
    first = hub_up.push_image("up/fresh", "latest")
    client = await proxy_hub([hub_upstream(token_hub, manifest_revalidate_seconds=INTERVAL)])
    now = _clock(client)
    await pull(client, f"{HUB}/up/fresh", "latest")

    # Within the interval: GET and HEAD by tag are answered by the cache alone.
    now[0] += INTERVAL - 1
    mark = hub_log.mark()
    for method in ("GET", "HEAD", "GET"):
        r = await client.request(method, f"/v2/{HUB}/up/fresh/manifests/latest")
        assert r.status == 200 and r.headers["Docker-Content-Digest"] == first.digest
    assert content_requests(await hub_log.asince(mark)) == {}

    # After it: exactly one HEAD, however many clients ask, and no GET (the tag did not move).
    now[0] += 2
    mark = hub_log.mark()
    for method in ("GET", "HEAD", "GET"):
        r = await client.request(method, f"/v2/{HUB}/up/fresh/manifests/latest")
        assert r.status == 200 and r.headers["Docker-Content-Digest"] == first.digest
    assert content_requests(await hub_log.asince(mark)) == {("HEAD", "/v2/up/fresh/manifests/latest"): 1}

    # A manifest by digest is never fetched again, however old.
    now[0] += 100 * INTERVAL
    mark = hub_log.mark()
    r = await client.get(f"/v2/{HUB}/up/fresh/manifests/{first.digest}")
    assert r.status == 200 and await r.read() == first.manifest
    assert content_requests(await hub_log.asince(mark)) == {}


async def test_a_tag_moved_upstream_is_picked_up_after_the_interval(proxy_hub, token_hub, hub_up, hub_log):
    first = hub_up.push_image("up/moving", "stable")
    client = await proxy_hub([hub_upstream(token_hub, manifest_revalidate_seconds=INTERVAL)])
    now = _clock(client)
    assert (await pull(client, f"{HUB}/up/moving", "stable")).digest == first.digest
    second = hub_up.push_image("up/moving", "stable")
    now[0] += INTERVAL - 1
    assert (await pull(client, f"{HUB}/up/moving", "stable")).digest == first.digest  # still fresh
    now[0] += 2
    mark = hub_log.mark()
    moved = await pull(client, f"{HUB}/up/moving", "stable")
    assert moved.digest == second.digest and moved.blobs == second.blobs
    manifests = {k: v for k, v in content_requests(await hub_log.asince(mark)).items() if "/manifests/" in k[1]}
    # One HEAD saw the new digest, one GET fetched exactly that digest.
    assert manifests == {("HEAD", "/v2/up/moving/manifests/stable"): 1,
                         ("GET", f"/v2/up/moving/manifests/{second.digest}"): 1}, manifests
    # The old manifest stays cached by digest.
    store = client.server.app[STORE]
    assert await store.get_manifest(f"{HUB}/up/moving", first.digest, by_digest=True) is not None


@pytest.mark.parametrize("database", METADATA_STORES)
async def test_last_check_survives_a_restart(proxy_hub, token_hub, hub_up, hub_log, database):
    image = hub_up.push_image(f"up/restart-{database}", "1")
    repo = f"{HUB}/up/restart-{database}"
    client = await proxy_hub([hub_upstream(token_hub, manifest_revalidate_seconds=INTERVAL)], database=database)
    now = _clock(client)
    await pull(client, repo, "1")
    checked = await client.server.app[STORE].proxy_tag_checked_at(repo, "1")
    assert checked == now[0]
    await client.close()
    # A new process on the same data (or another replica on the same database): the tag is
    # still fresh, so nothing is asked upstream; after the interval, one HEAD.
    client = await proxy_hub([hub_upstream(token_hub, manifest_revalidate_seconds=INTERVAL)], database=database)
    now = _clock(client, now[0] + INTERVAL - 1)
    mark = hub_log.mark()
    assert (await pull(client, repo, "1")).digest == image.digest
    assert content_requests(await hub_log.asince(mark)) == {}
    now[0] += 2
    r = await client.head(f"/v2/{repo}/manifests/1")
    assert r.status == 200
    assert content_requests(await hub_log.asince(mark)) == {("HEAD", f"/v2/up/restart-{database}/manifests/1"): 1}
