"""Pulls through the cache: the three ways in share one cache repository; what is stored where."""

from __future__ import annotations

import asyncio
import json

import pytest

from hub.keys import STORAGE, STORE

from .conftest import DIST, HUB, dist_upstream, hub_upstream
from .util import content_requests, error_of, pull


async def test_path_prefix_pull_is_cached_as_an_ordinary_repository(proxy_hub, distribution, dist):
    image = dist.push_image("library/prefix", "3")
    client = await proxy_hub([dist_upstream(distribution)])
    pulled = await pull(client, f"{DIST}/library/prefix", "3")
    assert pulled.digest == image.digest and pulled.blobs == image.blobs
    store, storage = client.server.app[STORE], client.server.app[STORAGE]
    cache = f"{DIST}/library/prefix"
    record = await store.get_manifest(cache, "3", by_digest=False)
    assert record is not None and record.digest == image.digest and record.content == image.manifest
    for digest, data in image.blobs.items():
        assert await store.get_blob_size(cache, digest) == len(data)
        assert await storage.get_content(f"blobs/sha256/{digest[7:9]}/{digest[7:]}") == data
    assert await store.list_tags(cache, 10, None) == ["3"]


async def test_second_pull_is_served_without_the_upstream(proxy_hub, token_hub, hub_up, hub_log):
    image = hub_up.push_image("up/warm", "v1")
    client = await proxy_hub([hub_upstream(token_hub)])
    mark = hub_log.mark()
    await pull(client, f"{HUB}/up/warm", "v1")
    first = content_requests(await hub_log.asince(mark))
    # Through the token dance: a token from the upstream's realm, then one GET per object.
    assert first == {("GET", "/v2/up/warm/manifests/v1"): 1,
                     **{("GET", f"/v2/up/warm/blobs/{d}"): 1 for d in image.blobs}}, first
    mark = hub_log.mark()
    again = await pull(client, f"{HUB}/up/warm", "v1")
    assert again.digest == image.digest
    assert content_requests(await hub_log.asince(mark)) == {}


async def test_three_ways_in_share_one_cache(proxy_hub, token_hub, hub_up, hub_log):
    image = hub_up.push_image("up/three", "1")
    client = await proxy_hub([hub_upstream(token_hub)], default_mirror=HUB)
    mark = hub_log.mark()
    by_prefix = await pull(client, f"{HUB}/up/three", "1")
    by_mirror = await pull(client, "up/three", "1")  # no tenant `up` here: the default mirror
    by_ns = await pull(client, "up/three", "1", query=f"?ns={token_hub.host}")
    by_name_ns = await pull(client, "up/three", image.digest, query=f"?ns={HUB}")
    assert by_prefix.digest == by_mirror.digest == by_ns.digest == by_name_ns.digest == image.digest
    counts = content_requests(await hub_log.asince(mark))
    assert counts == {("GET", "/v2/up/three/manifests/1"): 1,
                      **{("GET", f"/v2/up/three/blobs/{d}"): 1 for d in image.blobs}}, counts
    store = client.server.app[STORE]
    assert await store.list_repositories(100, None) == [f"{HUB}/up/three"]


async def test_index_children_are_fetched_by_digest_when_asked_for(proxy_hub, distribution, dist):
    index = dist.push_index("multi/arch", "2")
    client = await proxy_hub([dist_upstream(distribution)])
    r = await client.get(f"/v2/{DIST}/multi/arch/manifests/2")
    assert r.status == 200 and await r.read() == index.manifest
    assert r.headers["Content-Type"] == "application/vnd.oci.image.index.v1+json"
    for child in index.children:
        pulled = await pull(client, f"{DIST}/multi/arch", child.digest)
        assert pulled.blobs == child.blobs
    # The index was stored before its children were: references recorded, not required.
    store = client.server.app[STORE]
    assert await store.get_manifest(f"{DIST}/multi/arch", index.digest, by_digest=True) is not None


async def test_push_and_delete_into_the_cache_are_refused(proxy_hub, distribution, dist):
    image = dist.push_image("library/ro", "1")
    client = await proxy_hub([dist_upstream(distribution)], default_mirror=DIST)
    await client.server.app[STORE].create_tenant("team")
    await pull(client, f"{DIST}/library/ro", "1")
    manifest = image.manifest
    for method, path in (("POST", f"/v2/{DIST}/library/ro/blobs/uploads/"),
                         ("PUT", f"/v2/{DIST}/library/ro/manifests/2"),
                         ("DELETE", f"/v2/{DIST}/library/ro/manifests/{image.digest}"),
                         ("DELETE", f"/v2/{DIST}/library/ro/blobs/{next(iter(image.blobs))}"),
                         ("POST", "/v2/library/ro/blobs/uploads/"),  # mirror mode
                         ("PUT", f"/v2/library/ro/manifests/1?ns={DIST}")):
        r = await client.request(method, path, data=manifest if method == "PUT" else None,
                                 headers={"Content-Type": image.media_type})
        assert r.status == 405, (method, path, r.status)
        err = await error_of(r)
        assert err["code"] == "UNSUPPORTED" and "pull-through cache" in err["message"], err
    # The cached image is untouched, and a tenant's own repositories stay ordinary ones.
    assert (await pull(client, f"{DIST}/library/ro", "1")).digest == image.digest
    r = await client.post("/v2/team/app/blobs/uploads/")
    assert r.status == 202


async def test_unknown_ns_is_an_error_and_is_never_dialled(proxy_hub, distribution):
    import asyncio

    connections = []

    async def count(reader, writer):
        connections.append(1)
        writer.close()

    canary = await asyncio.start_server(count, "127.0.0.1", 0)
    port = canary.sockets[0].getsockname()[1]
    try:
        client = await proxy_hub([dist_upstream(distribution)])
        for ns in (f"127.0.0.1:{port}", "evil.example", "docker.io"):
            r = await client.get(f"/v2/library/x/manifests/1?ns={ns}")
            assert r.status == 404
            err = await error_of(r)
            assert err["code"] == "NAME_UNKNOWN" and err["detail"] == {"ns": ns}, err
    finally:
        canary.close()
        await canary.wait_closed()
    assert connections == []


async def test_upstream_404s_map_to_oci_errors(proxy_hub, distribution, dist):
    image = dist.push_image("library/missing", "1")
    client = await proxy_hub([dist_upstream(distribution)])
    r = await client.get(f"/v2/{DIST}/library/missing/manifests/nope")
    assert r.status == 404 and (await error_of(r))["code"] == "MANIFEST_UNKNOWN"
    absent = "sha256:" + "0" * 64
    r = await client.get(f"/v2/{DIST}/library/missing/blobs/{absent}")
    assert r.status == 404 and (await error_of(r))["code"] == "BLOB_UNKNOWN"
    r = await client.head(f"/v2/{DIST}/library/missing/blobs/{absent}")
    assert r.status == 404
    r = await client.get(f"/v2/{DIST}/no/such/repo/manifests/1")
    assert r.status == 404 and (await error_of(r))["code"] in ("NAME_UNKNOWN", "MANIFEST_UNKNOWN")
    # HEAD of an uncached blob answers from the upstream without caching it.
    digest, data = next(iter(image.blobs.items()))
    r = await client.head(f"/v2/{DIST}/library/missing/blobs/{digest}")
    assert r.status == 200 and int(r.headers["Content-Length"]) == len(data)
    assert await client.server.app[STORE].get_blob_size(f"{DIST}/library/missing", digest) is None
    r = await client.get(f"/v2/{DIST}/manifests/1")  # an upstream, but no repository under it
    assert r.status == 404 and "name a repository under it" in (await error_of(r))["message"]


async def test_tags_are_listed_from_the_upstream(proxy_hub, distribution, dist):
    for tag in ("a", "b", "c"):
        dist.push_image("library/tagged", tag, (100,))
    client = await proxy_hub([dist_upstream(distribution)])
    r = await client.get(f"/v2/{DIST}/library/tagged/tags/list")
    assert r.status == 200
    assert json.loads(await r.read()) == {"name": f"{DIST}/library/tagged", "tags": ["a", "b", "c"]}
    r = await client.get(f"/v2/{DIST}/library/tagged/tags/list?n=2")
    assert (await r.json())["tags"] == ["a", "b"] and "last=b" in r.headers["Link"]


@pytest.mark.parametrize("sendfile", [True, False], ids=["sendfile", "no-sendfile"])
async def test_cold_blobs_reach_clients_with_sendfile_and_without(proxy_hub, distribution, dist, monkeypatch,
                                                                  sendfile):
    """Clients of a fetch under way get its file with sendfile(2); on an event loop without it
    (uvloop) they get the same bytes read in chunks."""
    image = dist.push_image("library/sendfile", "1", (3 << 20, 1 << 20))
    client = await proxy_hub([dist_upstream(distribution)])
    loop = asyncio.get_running_loop()
    native, calls = loop.sendfile, []

    async def counting(transport, file, offset=0, count=None, *, fallback=True):
        calls.append(count)
        if not sendfile:
            raise NotImplementedError
        return await native(transport, file, offset, count, fallback=fallback)

    monkeypatch.setattr(loop, "sendfile", counting)
    pulled = await pull(client, f"{DIST}/library/sendfile", "1")
    assert pulled.blobs == image.blobs
    assert calls  # the cold blobs went through the flight, not storage
    if sendfile:
        assert sum(calls) == sum(len(b) for b in image.blobs.values())
