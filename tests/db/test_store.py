"""The engine's share of the metadata store, over SQLite and PostgreSQL: migrations and locks (step 3
of docs/design/metadata-split.md moves these next to the engine tests). The rest of the contract
lives in tests/db/contract/, one suite per area; the helpers below serve it and other tests here."""

from __future__ import annotations

import asyncio
import hashlib
import json

from hub.db import NewManifest
from hub.db import schema as migrations

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def digest(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode()
    return "sha256:" + hashlib.sha256(data).hexdigest()


def manifest(blobs=(), children=(), subject=None, artifact_type=None, salt="") -> NewManifest:
    content = json.dumps({"blobs": list(blobs), "children": list(children), "subject": subject,
                          "salt": salt}).encode()
    annotations = json.dumps({"salt": salt}) if salt else None
    return NewManifest(digest(content), OCI_MANIFEST, content, subject, artifact_type, annotations,
                       tuple(blobs), tuple(children))


async def test_migrations_are_applied_once(store):
    latest = len(migrations.load(store.dialect))
    assert await store.schema_version() == latest
    assert await store.migrate() == []
    assert await store.schema_version() == latest


async def test_try_locks_takes_the_free_keys_and_leaves_the_taken_ones(store):
    async with store.lock("blob:taken"):
        async with store.try_locks(["blob:a", "blob:taken", "blob:b", "blob:a"]) as held:
            assert held == {"blob:a", "blob:b"}
            async with store.lock("blob:a", wait=False) as probe:
                assert probe is False  # held by the batch until its block ends
        async with store.try_locks([]) as none:
            assert none == set()
    async with store.try_locks(["blob:a", "blob:b", "blob:taken"]) as held:
        assert held == {"blob:a", "blob:b", "blob:taken"}  # all free again
    for key in ("blob:a", "blob:b", "blob:taken"):
        async with store.lock(key, wait=False) as free:
            assert free is True


async def test_lock_excludes_and_can_be_probed(store):
    order = []

    async def holder(name: str) -> None:
        async with store.lock("upload:x") as held:
            assert held
            order.append(f"{name} in")
            await asyncio.sleep(0.05)
            order.append(f"{name} out")

    async with store.lock("upload:x") as held:
        assert held
        waiters = [asyncio.create_task(holder(n)) for n in ("a", "b")]
        async with store.lock("upload:x", wait=False) as probe:
            assert probe is False
        async with store.lock("upload:y", wait=False) as other:
            assert other is True  # other keys are free
        await asyncio.sleep(0.05)
        assert order == []
    await asyncio.gather(*waiters)
    assert order in (["a in", "a out", "b in", "b out"], ["b in", "b out", "a in", "a out"])
    async with store.lock("upload:x", wait=False) as free:
        assert free is True
