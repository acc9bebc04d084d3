"""GC and the app store (issue 15, must-show 5): a published app version's artifact is held by
its tag, so a pass frees nothing of it; deleting the version through the app store's API deletes
its manifest, and the next pass frees the blobs only it used, and keeps a blob another version still uses (the icon
both carry). Over SQLite and PostgreSQL, through the admin API's GC run."""

from __future__ import annotations

import json

from hub.keys import GC, STORAGE, STORE
from hub.registry.names import parse_digest
from storage_backends import PathNotFoundError

from . import hubs
from .hubs import headers, publish_body

auth_hub = hubs.auth_hub  # the fixture
APPS = "/api/v1/appstore/apps"


async def _publish(client, version: str) -> None:
    r = await client.post(f"{APPS}/team/web/versions", json=publish_body("web", version, with_icon=True),
                          headers=headers("developer"))
    assert r.status == 201, await r.text()


async def _gc(client) -> dict:
    r = await client.post("/api/v1/gc/runs", json={"dry_run": False}, headers=headers("platform_admin"))
    assert r.status == 201, await r.text()
    report = await r.json()
    assert report["errors"] == []
    return report


def _blobs(content: bytes) -> set[str]:
    manifest = json.loads(content)
    return {manifest["config"]["digest"], *(layer["digest"] for layer in manifest["layers"])}


async def _stored(client, digest: str) -> bool:
    try:
        await client.server.app[STORAGE].stat(parse_digest(digest).blob_path)
    except PathNotFoundError:
        return False
    return True


async def test_gc_keeps_published_versions_and_frees_a_deleted_ones_own_blobs(auth_hub):
    app = auth_hub.server.app
    app[GC].grace_seconds = 0
    store = app[STORE]
    await _publish(auth_hub, "1.0.0")
    await _publish(auth_hub, "1.1.0")
    old = await store.get_manifest("team/web", "1.0.0", by_digest=False, with_content=True)
    new = await store.get_manifest("team/web", "1.1.0", by_digest=False, with_content=True)
    old_blobs, new_blobs = _blobs(old.content), _blobs(new.content)
    shared, own = old_blobs & new_blobs, old_blobs - new_blobs
    assert shared and own  # the icon is shared; the metadata (its version) is not

    kept = await _gc(auth_hub)
    assert kept["counts"]["manifests_deleted"] == 0 and kept["counts"]["blobs_deleted"] == 0
    assert all([await _stored(auth_hub, d) for d in old_blobs | new_blobs])

    r = await auth_hub.delete(f"{APPS}/team/web/versions/1.0.0", headers=headers("maintainer"))
    assert r.status == 204
    freed = await _gc(auth_hub)
    assert await store.get_manifest("team/web", old.digest, by_digest=True) is None  # deleted with the version
    assert sorted(b["digest"] for b in freed["deleted"]["blobs"]) == sorted(own)
    for digest in own:
        assert not await _stored(auth_hub, digest)
    for digest in new_blobs:
        assert await _stored(auth_hub, digest)
    r = await auth_hub.post(f"{APPS}/team/web/versions/1.1.0/render", json={"values": {"HTTP_PORT": 8081}},
                            headers=headers("guest"))
    assert r.status == 200, await r.text()  # the version left renders from what is stored
