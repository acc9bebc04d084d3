"""GC under fire, on SQLite and PostgreSQL: workers push images that share layers, push deleted
ones again, retag, mount across repositories and delete, while GC passes run back to back with a
1 s grace period. No push may fail, every tag that should exist reads back whole with its digests
checked, and once the dust settles every blob and link nothing references is gone.

In-process (the Registry over each store and the filesystem driver), for a bounded time:
TORTURE_SECONDS (default 8) per store."""

from __future__ import annotations

import asyncio
import json
import os
import random
import time

from hub.registry.gc import Collector

from .test_gc import chunks, registry, sha, stored  # noqa: F401 (the registry fixture)

SECONDS = float(os.environ.get("TORTURE_SECONDS", "8"))
LAYERS = [f"shared layer {i}".encode() * 50 for i in range(6)]
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def image(n: int) -> tuple[bytes, dict[str, bytes]]:
    """Image n: its own config (one real clients accept: tests/e2e/test_gc_torture.py pulls
    these with skopeo) and two of the shared layers."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "image": n,
                         "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    layers = [LAYERS[n % len(LAYERS)], LAYERS[(n * 7 + 1) % len(LAYERS)]]
    blobs = {sha(b): b for b in (config, *layers)}
    body = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(config),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha(layer), "size": len(layer)}
                   for layer in layers]}).encode()
    return body, blobs


async def read_all(registry, repository: str, digest: str) -> bytes:
    location = await registry.stat_blob(repository, digest)
    return b"".join([c async for c in await registry.open_blob(location)])


async def test_pushes_deletes_and_mounts_while_gc_runs(registry):
    rng = random.Random(1)
    deadline = time.monotonic() + SECONDS
    expected: dict[tuple[str, str], str] = {}  # (repository, tag) -> manifest digest
    counts = {"push": 0, "delete": 0, "retag": 0, "mount": 0, "gc": 0}
    stop = asyncio.Event()

    async def push(repository: str, n: int, tag: str) -> str:
        body, blobs = image(n)
        for digest, data in blobs.items():
            if rng.random() < 0.3 and await registry.mount_blob(repository, digest, None, lambda _: True):
                counts["mount"] += 1
                continue
            await registry.monolithic_upload(repository, digest, chunks(data))
        digest, _ = await registry.put_manifest(repository, tag, body, OCI_MANIFEST)
        return str(digest)

    async def worker(w: int) -> None:
        repos = [f"team/w{w}-{i}" for i in range(2)]
        while time.monotonic() < deadline:
            repository, tag = rng.choice(repos), f"t{rng.randrange(3)}"
            op = rng.random()
            if op < 0.5:
                expected[(repository, tag)] = await push(repository, rng.randrange(12), tag)
                counts["push"] += 1
            elif op < 0.75 and (repository, tag) in expected:
                digest = expected.pop((repository, tag))
                for other in [k for k, v in expected.items() if k[0] == repository and v == digest]:
                    del expected[other]  # a manifest delete takes every tag of it
                await registry.delete_manifest(repository, digest)
                counts["delete"] += 1
            elif (repository, tag) in expected:
                other = f"t{rng.randrange(3)}"
                digest = expected[(repository, tag)]
                manifest = await registry.get_manifest(repository, digest)
                await registry.put_manifest(repository, other, manifest.content, manifest.media_type)
                expected[(repository, other)] = digest
                counts["retag"] += 1
            await asyncio.sleep(0)

    async def collect() -> None:
        while not stop.is_set():
            report = await Collector(registry, batch_size=20).run(grace_seconds=1)
            assert report.errors == []
            counts["gc"] += 1
            await asyncio.sleep(0.02)

    gc_task = asyncio.create_task(collect())
    await asyncio.gather(*(worker(w) for w in range(4)))
    stop.set()
    await gc_task
    assert counts["push"] > 20 and counts["delete"] > 5 and counts["gc"] > 5, counts

    # Every tag that should exist reads back whole, each blob checked against its digest.
    for (repository, tag), digest in expected.items():
        manifest = await registry.get_manifest(repository, tag)
        assert manifest.digest == digest
        body = json.loads(manifest.content)
        for desc in [body["config"], *body["layers"]]:
            assert sha(await read_all(registry, repository, desc["digest"])) == desc["digest"]

    # Past the grace period, what nothing references goes: a link stays exactly where a manifest of
    # its repository references it, a blob (row and bytes) exactly where a link holds it.
    await asyncio.sleep(1.1)
    await Collector(registry).run(grace_seconds=1)
    store = registry.store
    referenced: dict[str, set[str]] = {f"team/w{w}-{i}": set() for w in range(4) for i in range(2)}
    for (repository, _tag), digest in expected.items():
        body = json.loads((await registry.get_manifest(repository, digest)).content)
        referenced[repository].update(d["digest"] for d in [body["config"], *body["layers"]])
    everywhere = set().union(*referenced.values())
    for digest in {d for n in range(12) for d in image(n)[1]}:
        for repository, digests in referenced.items():
            linked = await store.get_blob_size(repository, digest) is not None
            assert linked == (digest in digests), (repository, digest, linked)
        assert (await store.get_global_blob_size(digest) is not None) == (digest in everywhere), digest
        assert (await stored(registry, digest)) == (digest in everywhere), digest
