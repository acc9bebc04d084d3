"""Cache bounds: least-recently-pulled eviction under a size cap, TTL expiry, blobs that other
repositories still link, two instances on one PostgreSQL, metrics and the CLI."""

from __future__ import annotations

import asyncio
import json
import logging
import os

from prometheus_client.parser import text_string_to_metric_families

from hub.cli import main
from hub.keys import PROXY, STORAGE, STORE
from hub.proxy import eviction
from hub.proxy.eviction import BLOB_GRACE_SECONDS, DAY, PullLog
from storage_backends import PathNotFoundError

from .conftest import DIST, dist_upstream
from .util import Image, pull, sha256

START = 1_000_000.0


def _size(image: Image) -> int:
    return sum(len(d) for d in image.blobs.values())


def _clock(client, start: float = START) -> list[float]:
    now = [start]
    client.server.app[PROXY].clock = lambda: now[0]
    return now


async def _bounded(proxy_hub, distribution, database: str = "sqlite", grace: float = 0.05, **bounds):
    client = await proxy_hub([dist_upstream(distribution, **bounds)], database=database, pull_record_seconds=0,
                             eviction_interval_seconds=0)
    client.server.app[PROXY].blob_grace = grace  # the default (2 s) in one test below
    return client


async def _stored(client, digest: str) -> bool:
    """Whether a blob's row and bytes are both still there."""
    store, storage = client.server.app[STORE], client.server.app[STORAGE]
    row = await store.get_global_blob_size(digest) is not None
    try:
        await storage.stat(f"blobs/sha256/{digest[7:9]}/{digest[7:]}")
        data = True
    except PathNotFoundError:
        data = False
    assert row == data, f"{digest}: row {row}, bytes {data}"
    return row


async def _metric(client, name: str, upstream: str = DIST) -> float:
    text = await (await client.get("/metrics")).text()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels.get("upstream") == upstream:
                return sample.value
    return 0.0


async def test_the_most_recently_pulled_images_stay_under_a_small_cap(proxy_hub, distribution, dist):
    images = {n: dist.push_image(f"evict/lru-{n}", "1", (4000, 6000)) for n in "abc"}
    size = {n: _size(i) for n, i in images.items()}
    cap = size["a"] + size["c"]
    client = await _bounded(proxy_hub, distribution, max_size_bytes=cap)
    now = _clock(client)
    for n in "abca":  # a again last: b is now the least recently pulled
        now[0] += 60
        await pull(client, f"{DIST}/evict/lru-{n}", "1")
    store, proxy = client.server.app[STORE], client.server.app[PROXY]
    assert await store.cache_size(DIST) == sum(size.values()) > cap

    report = await proxy.evict()
    [result] = report.upstreams
    assert result.images == [f"{DIST}/evict/lru-b@{images['b'].digest}"] and result.expired == 0
    assert (result.size_before, result.size_after) == (sum(size.values()), cap)
    assert result.evicted_bytes == result.deleted_bytes == size["b"] and result.blobs_deleted == 3
    assert await store.cache_size(DIST) == cap
    assert not await store.repository_exists(f"{DIST}/evict/lru-b")
    for digest in images["b"].blobs:
        assert not await _stored(client, digest)
    for n in "ac":
        assert (await store.get_manifest(f"{DIST}/evict/lru-{n}", "1", by_digest=False)).digest == images[n].digest
        assert all([await _stored(client, d) for d in images[n].blobs])
    assert await _metric(client, "daohub_proxy_evicted_bytes_total") == size["b"]
    assert await _metric(client, "daohub_proxy_evicted_deleted_bytes_total") == size["b"]
    assert await _metric(client, "daohub_proxy_evicted_images_total") == 1
    assert await _metric(client, "daohub_proxy_cache_size_bytes") == cap

    # Within the cap now: a second run evicts nothing; an evicted image is fetched again.
    assert (await proxy.evict()).upstreams[0].images == []
    again = await pull(client, f"{DIST}/evict/lru-b", "1")
    assert again.digest == images["b"].digest and again.blobs == images["b"].blobs


async def test_images_not_pulled_within_the_ttl_expire(proxy_hub, distribution, dist):
    old, recent = dist.push_image("evict/ttl-old", "1"), dist.push_image("evict/ttl-recent", "1")
    client = await _bounded(proxy_hub, distribution, ttl_days=1)
    now = _clock(client)
    await pull(client, f"{DIST}/evict/ttl-old", "1")
    now[0] += 0.5 * DAY
    await pull(client, f"{DIST}/evict/ttl-recent", "1")
    proxy, store = client.server.app[PROXY], client.server.app[STORE]
    now[0] += 0.6 * DAY  # old: 1.1 days unpulled; recent: 0.6
    [result] = (await proxy.evict()).upstreams
    assert result.images == [f"{DIST}/evict/ttl-old@{old.digest}"] and result.expired == 1
    assert await store.get_manifest(f"{DIST}/evict/ttl-old", old.digest, by_digest=True) is None
    assert await store.get_manifest(f"{DIST}/evict/ttl-recent", recent.digest, by_digest=True) is not None
    # A pull renews an image: pulled now, it outlives the day after its first pull.
    now[0] += 0.3 * DAY
    await pull(client, f"{DIST}/evict/ttl-recent", "1")
    now[0] += 0.9 * DAY
    assert (await proxy.evict()).upstreams[0].images == []
    now[0] += 0.2 * DAY
    assert (await proxy.evict()).upstreams[0].images == [f"{DIST}/evict/ttl-recent@{recent.digest}"]
    assert await store.cache_size(DIST) == 0


async def test_a_blob_a_tenant_repository_links_survives(proxy_hub, distribution, dist):
    shared = os.urandom(5000)
    image = dist.push_image("evict/shared", "1", layers=[shared, os.urandom(3000)])
    client = await _bounded(proxy_hub, distribution, grace=BLOB_GRACE_SECONDS, max_size_bytes=1)
    await pull(client, f"{DIST}/evict/shared", "1")
    # The same layer, pushed into a tenant's repository.
    r = await client.post(f"/v2/team/app/blobs/uploads/?digest={sha256(shared)}", data=shared)
    assert r.status == 201, await r.text()
    [result] = (await client.server.app[PROXY].evict()).upstreams
    assert result.images == [f"{DIST}/evict/shared@{image.digest}"]
    # The cache no longer holds any of it, but only the blobs nothing else links left storage.
    assert result.evicted_bytes == _size(image) and result.deleted_bytes == _size(image) - len(shared)
    assert await _stored(client, sha256(shared))
    assert [d for d in image.blobs if await _stored(client, d)] == [sha256(shared)]
    r = await client.get(f"/v2/team/app/blobs/{sha256(shared)}")
    assert r.status == 200 and await r.read() == shared


async def test_a_push_that_found_the_bytes_present_keeps_them(proxy_hub, distribution, dist, monkeypatch):
    """The push racing the eviction: it saw the layer present (so it will not write it) before
    the cache unlinked it, and links it while eviction waits before deleting bytes."""
    layer = os.urandom(4000)
    image = dist.push_image("evict/race", "1", layers=[layer])
    client = await _bounded(proxy_hub, distribution, max_size_bytes=1)
    await pull(client, f"{DIST}/evict/race", "1")
    store = client.server.app[STORE]

    async def push_links_meanwhile(seconds: float) -> None:
        assert await store.get_manifest(f"{DIST}/evict/race", image.digest, by_digest=True) is None
        await store.link_blob("team/race", sha256(layer), len(layer))

    monkeypatch.setattr(eviction, "wait_grace", push_links_meanwhile)
    [result] = (await client.server.app[PROXY].evict()).upstreams
    assert result.images == [f"{DIST}/evict/race@{image.digest}"]
    assert await _stored(client, sha256(layer))
    assert result.deleted_bytes == _size(image) - len(layer)
    r = await client.get(f"/v2/team/race/blobs/{sha256(layer)}")
    assert r.status == 200 and await r.read() == layer


async def test_a_layer_shared_by_cached_images_counts_once_and_stays_while_used(proxy_hub, distribution, dist):
    shared = os.urandom(6000)
    first = dist.push_image("evict/one", "1", layers=[shared, os.urandom(1000)])
    second = dist.push_image("evict/two", "1", layers=[shared, os.urandom(1000)])
    client = await _bounded(proxy_hub, distribution, max_size_bytes=_size(second))
    now = _clock(client)
    for name in ("one", "two"):
        now[0] += 60
        await pull(client, f"{DIST}/evict/{name}", "1")
    store = client.server.app[STORE]
    assert await store.cache_size(DIST) == _size(first) + _size(second) - len(shared)
    [result] = (await client.server.app[PROXY].evict()).upstreams
    assert result.images == [f"{DIST}/evict/one@{first.digest}"]
    assert result.evicted_bytes == result.deleted_bytes == _size(first) - len(shared)
    assert await _stored(client, sha256(shared))
    assert await store.cache_size(DIST) == _size(second)


async def test_an_index_goes_with_its_platform_manifests(proxy_hub, distribution, dist):
    index = dist.push_index("evict/multi", "1")
    client = await _bounded(proxy_hub, distribution, max_size_bytes=1)
    assert (await client.get(f"/v2/{DIST}/evict/multi/manifests/1")).status == 200
    for child in index.children:
        await pull(client, f"{DIST}/evict/multi", child.digest)
    [result] = (await client.server.app[PROXY].evict()).upstreams
    assert result.images == [f"{DIST}/evict/multi@{index.digest}"]
    store = client.server.app[STORE]
    for digest in (index.digest, *(c.digest for c in index.children)):
        assert await store.get_manifest(f"{DIST}/evict/multi", digest, by_digest=True) is None
    for child in index.children:
        assert not any([await _stored(client, d) for d in child.blobs])
    assert await store.cache_size(DIST) == 0 and await store.list_repositories(10, None) == []


async def test_pulls_are_recorded_at_most_once_per_interval(proxy_hub, distribution, dist):
    image = dist.push_image("evict/record", "1")
    client = await proxy_hub([dist_upstream(distribution)], pull_record_seconds=300, eviction_interval_seconds=0)
    now = _clock(client)
    proxy, store = client.server.app[PROXY], client.server.app[STORE]
    await pull(client, f"{DIST}/evict/record", "1")
    for _ in range(3):  # within the interval: memory only
        now[0] += 60
        await pull(client, f"{DIST}/evict/record", "1")
    assert await proxy.pulls.flush(store) == 1
    [cached] = await store.cache_images(DIST)
    assert (cached.digest, cached.last_pulled) == (image.digest, START)
    now[0] += 300
    await pull(client, f"{DIST}/evict/record", "1")
    assert await proxy.pulls.flush(store) == 1 and await proxy.pulls.flush(store) == 0
    assert (await store.cache_images(DIST))[0].last_pulled == START + 480


def test_pull_log_keeps_the_latest_note_per_image():
    log = PullLog(interval=100)
    log.note("r", "d1", 1000)
    log.note("r", "d1", 1050)  # within the interval: dropped
    log.note("r", "d2", 1050)
    log.note("r", "d1", 1100)
    assert log._pending == {("r", "d1"): 1100, ("r", "d2"): 1050}


async def test_two_instances_on_postgres_evict_each_image_once(proxy_hub, distribution, dist):
    old, new = dist.push_image("evict/pg-old", "1"), dist.push_image("evict/pg-new", "1")
    one = await _bounded(proxy_hub, distribution, "postgres", max_size_bytes=_size(new))
    two = await _bounded(proxy_hub, distribution, "postgres", max_size_bytes=_size(new))
    _clock(one, START)
    _clock(two, START + 60)
    await pull(one, f"{DIST}/evict/pg-old", "1")
    await pull(two, f"{DIST}/evict/pg-new", "1")
    proxies = [c.server.app[PROXY] for c in (one, two)]
    for proxy in proxies:
        await proxy.pulls.flush(proxy.store)

    reports = await asyncio.gather(*(p.evict(wait=True) for p in proxies))
    evicted = [img for r in reports for u in r.upstreams for img in u.images]
    assert evicted == [f"{DIST}/evict/pg-old@{old.digest}"]
    assert sum(u.deleted_bytes for r in reports for u in r.upstreams) == _size(old)
    assert [await _metric(c, "daohub_proxy_evicted_bytes_total") for c in (one, two)] in (
        [_size(old), 0], [0, _size(old)])
    assert not any([await _stored(one, d) for d in old.blobs]) and all([await _stored(two, d) for d in new.blobs])

    # Without the lock too, one transaction wins: the other finds the image gone.
    await pull(one, f"{DIST}/evict/pg-old", "1")
    stores = [c.server.app[STORE] for c in (one, two)]
    results = await asyncio.gather(*(s.evict_image(f"{DIST}/evict/pg-old", old.digest, DIST) for s in stores))
    assert sorted(len(r.manifests) for r in results) == [0, 1]
    assert sum(r.freed_bytes for r in results) == _size(old)


async def test_the_cli_reports_and_evicts(proxy_hub, distribution, dist, tmp_path, capsys):
    images = [dist.push_image(f"evict/cli-{i}", "1") for i in range(2)]
    bounds = {"max_size_bytes": _size(images[1])}
    client = await _bounded(proxy_hub, distribution, **bounds)
    now = _clock(client)
    for image in images:
        now[0] += 60
        await pull(client, f"{DIST}/{image.name}", "1")
    store = client.server.app[STORE]
    await client.server.app[PROXY].pulls.flush(store)
    config_file = tmp_path / "daohub.yaml"
    config_file.write_text(json.dumps({"data_dir": str(tmp_path / "hub"), "log": {"level": "WARNING"},
                                       "proxy": {"upstreams": [dist_upstream(distribution, **bounds)]}}))

    async def cli(*args: str):
        root = logging.getLogger()
        handlers, level = root.handlers[:], root.level
        try:  # main() installs its own root log handler
            assert await asyncio.to_thread(main, ["proxy", *args, "--config", str(config_file)]) == 0
        finally:
            root.handlers[:] = handlers
            root.setLevel(level)
        return json.loads(capsys.readouterr().out)

    total = sum(_size(i) for i in images)
    assert await cli("usage") == [{"upstream": DIST, "source": "config", "size_bytes": total,
                                   "max_size_bytes": _size(images[1]), "ttl_days": None}]
    dry = await cli("evict", "--dry-run")
    assert dry["ran"] and dry["upstreams"][0]["images"] == [f"{DIST}/evict/cli-0@{images[0].digest}"]
    assert await store.cache_size(DIST) == total
    done = await cli("evict")
    assert done["upstreams"][0]["images"] == dry["upstreams"][0]["images"]
    assert done["upstreams"][0]["deleted_bytes"] == _size(images[0])
    assert await store.cache_size(DIST) == _size(images[1])


async def test_serve_evicts_periodically(proxy_hub, distribution, dist):
    images = [dist.push_image(f"evict/loop-{i}", "1") for i in range(2)]
    client = await proxy_hub([dist_upstream(distribution, max_size_bytes=_size(images[1]))],
                             pull_record_seconds=0, eviction_interval_seconds=1)
    client.server.app[PROXY].blob_grace = 0.05
    now = _clock(client)
    for image in images:
        now[0] += 60
        await pull(client, f"{DIST}/{image.name}", "1")
    store = client.server.app[STORE]
    for _ in range(600):  # polled, not timed: the loop runs every second
        if await store.cache_size(DIST) <= _size(images[1]):
            break
        await asyncio.sleep(0.1)
    assert await store.get_manifest(f"{DIST}/evict/loop-0", images[0].digest, by_digest=True) is None
    assert await store.get_manifest(f"{DIST}/evict/loop-1", images[1].digest, by_digest=True) is not None
