"""An upstream created, changed and deleted through the admin API of one replica is pulled
through, refused and gone on another replica sharing the PostgreSQL store, without a restart."""

from __future__ import annotations

from hub.keys import AUTH, PROXY, STORE

from .util import basic, pull

ROOT = ("root", "root-pw-1234")
NAME = "api.test"


async def _anonymous(client, repository: str) -> dict[str, str]:
    r = await client.get("/auth/token", params={"service": "daohub", "scope": f"repository:{repository}:pull"})
    assert r.status == 200, await r.text()
    return {"Authorization": f"Bearer {(await r.json())['token']}"}


async def test_an_api_upstream_is_served_by_every_replica(proxy_hub, distribution, dist):
    image = dist.push_image("api/app", "1")
    one = await proxy_hub([], auth=True, database="postgres", upstream_refresh_seconds=0)
    two = await proxy_hub([], auth=True, database="postgres", upstream_refresh_seconds=0)
    app = one.server.app
    app[PROXY].blob_grace = 0.05  # before the deleted upstream's blobs go
    await app[STORE].create_user(ROOT[0], await app[AUTH].hash_password(ROOT[1]), is_admin=True)
    admin = basic(*ROOT)
    repo = f"{NAME}/api/app"
    assert (await two.get(f"/v2/{repo}/manifests/1", headers=await _anonymous(two, repo))).status == 401

    r = await one.post("/api/v1/upstreams", headers=admin, json={
        "name": NAME, "url": distribution.url, "aliases": [distribution.host], "anonymous_pull": True})
    assert r.status == 201, await r.text()
    pulled = await pull(two, repo, "1", headers=await _anonymous(two, repo))
    assert pulled.digest == image.digest and pulled.blobs == image.blobs
    by_ns = await pull(two, "api/app", "1", query=f"?ns={distribution.host}", headers=await _anonymous(two, repo))
    assert by_ns.digest == image.digest
    assert await two.server.app[STORE].repository_exists(repo)

    # Anonymous pulls switched off on one replica: the other's token endpoint grants nothing.
    r = await one.patch(f"/api/v1/upstreams/{NAME}", headers=admin, json={"anonymous_pull": False})
    assert r.status == 200 and (await r.json())["anonymous_pull"] is False
    assert (await two.get(f"/v2/{repo}/manifests/1", headers=await _anonymous(two, repo))).status == 401

    # Deleted: its cache goes with it.
    assert (await one.delete(f"/api/v1/upstreams/{NAME}", headers=admin)).status == 204
    store = two.server.app[STORE]
    assert not await store.repository_exists(repo) and await store.cache_size(NAME) == 0
    for digest in image.blobs:
        assert await store.get_global_blob_size(digest) is None
    r = await two.get(f"/v2/api/app/manifests/1?ns={distribution.host}", headers=await _anonymous(two, repo))
    assert r.status == 404 and (await r.json())["errors"][0]["code"] == "NAME_UNKNOWN"
