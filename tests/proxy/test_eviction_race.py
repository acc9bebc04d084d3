"""Eviction against a push of the very bytes it is deleting: nothing is lost.

Eviction is paused under the blob's lock, after its final "nothing links it" check and
before it deletes the bytes (eviction.checked_unlinked), while a push of the same layer
into a tenant's repository runs: monolithic, POST+PUT, through the same app or another app
on the same PostgreSQL, or a pull of the evicted image through the cache again. The push
must queue on the blob's lock, and its layer must be readable afterwards. A control case
with the lock switched off shows the race is real: the pushed layer is lost.

A mount is the other way round: paused after it saw the source's link and before its own
link commits, while eviction unlinks the source and tries to delete the bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from pathlib import Path

import pytest

from hub.keys import PROXY, STORE
from hub.proxy import eviction
from hub.registry.service import Registry, blob_lock_key

from .conftest import DIST, dist_upstream
from .util import pull, sha256

ROOT = str(Path(__file__).resolve().parents[2])  # the checkout, for a subprocess importing hub


class LockWatch:
    """Wraps one store's lock(): `requested` is set when someone asks for `key`."""

    def __init__(self, store, key: str):
        self.key = key
        self.requested = asyncio.Event()
        self._lock = store.lock

    def __call__(self, key: str, *, wait: bool = True):
        if key == self.key:
            self.requested.set()
        return self._lock(key, wait=wait)


async def _bounded(proxy_hub, distribution, database: str):
    client = await proxy_hub([dist_upstream(distribution, max_size_bytes=1)], database=database,
                             pull_record_seconds=0, eviction_interval_seconds=0)
    client.server.app[PROXY].blob_grace = 0
    return client


async def _push_monolithic(client, repository: str, layer: bytes) -> None:
    r = await client.post(f"/v2/{repository}/blobs/uploads/?digest={sha256(layer)}", data=layer)
    assert r.status == 201, await r.text()


async def _push_post_put(client, repository: str, layer: bytes) -> None:
    r = await client.post(f"/v2/{repository}/blobs/uploads/")
    assert r.status == 202, await r.text()
    location = r.headers["Location"]
    sep = "&" if "?" in location else "?"
    r = await client.put(f"{location}{sep}digest={sha256(layer)}", data=layer)
    assert r.status == 201, await r.text()


async def _read(client, repository: str, digest: str) -> bytes | None:
    r = await client.get(f"/v2/{repository}/blobs/{digest}")
    return await r.read() if r.status == 200 else None


@contextlib.contextmanager
def _no_blob_lock(monkeypatch):
    """The code before the fix: nobody takes the blob's lock."""

    @contextlib.asynccontextmanager
    async def free(self, digest: str):
        yield True

    monkeypatch.setattr(Registry, "blob_lock", free)
    yield


async def _race(monkeypatch, evicting, pushing, push, layer: bytes, image_name: str, image_digest: str):
    """Evict through `evicting`, pausing after the final check of `layer` until `push` (through
    `pushing`) has finished or waits for the blob's lock. Returns whether it waited."""
    digest = sha256(layer)
    watch = LockWatch(pushing.server.app[STORE], blob_lock_key(digest))
    monkeypatch.setattr(pushing.server.app[STORE], "lock", watch)
    state = {}

    async def pause(checked: str) -> None:
        if checked != digest:
            return
        state["push"] = task = asyncio.ensure_future(push())
        asked = asyncio.ensure_future(watch.requested.wait())
        await asyncio.wait({task, asked}, return_when=asyncio.FIRST_COMPLETED)
        asked.cancel()
        state["waited"] = not task.done()

    monkeypatch.setattr(eviction, "checked_unlinked", pause)
    [result] = (await evicting.server.app[PROXY].evict()).upstreams
    assert result.images == [f"{DIST}/{image_name}@{image_digest}"]
    assert "push" in state, "eviction never reached the layer's delete"
    await state["push"]
    return state["waited"]


PUSHES = {"monolithic": _push_monolithic, "post-put": _push_post_put}


@pytest.mark.parametrize("style", list(PUSHES))
async def test_a_push_during_the_delete_keeps_its_layer_sqlite(proxy_hub, distribution, dist, monkeypatch, style):
    layer = os.urandom(6000)
    image = dist.push_image(f"race/sqlite-{style}", "1", layers=[layer])
    client = await _bounded(proxy_hub, distribution, "sqlite")
    await pull(client, f"{DIST}/{image.name}", "1")

    waited = await _race(monkeypatch, client, client, lambda: PUSHES[style](client, "team/race", layer), layer,
                         image.name, image.digest)
    assert await _read(client, "team/race", sha256(layer)) == layer
    assert await client.server.app[STORE].get_global_blob_size(sha256(layer)) == len(layer)
    assert waited, "the push did not wait for the blob's lock"


async def test_without_the_lock_the_layer_is_lost(proxy_hub, distribution, dist, monkeypatch):
    """The control: the same race with the lock switched off loses the pushed layer, so the
    cases above do exercise it."""
    layer = os.urandom(6000)
    image = dist.push_image("race/unlocked", "1", layers=[layer])
    client = await _bounded(proxy_hub, distribution, "sqlite")
    await pull(client, f"{DIST}/{image.name}", "1")

    with _no_blob_lock(monkeypatch):
        waited = await _race(monkeypatch, client, client, lambda: _push_monolithic(client, "team/race", layer),
                             layer, image.name, image.digest)
    assert not waited
    assert await _read(client, "team/race", sha256(layer)) is None


async def test_a_pull_through_the_cache_during_the_delete_keeps_its_layer(proxy_hub, distribution, dist,
                                                                          monkeypatch):
    layer = os.urandom(6000)
    image = dist.push_image("race/repull", "1", layers=[layer])
    client = await _bounded(proxy_hub, distribution, "sqlite")
    await pull(client, f"{DIST}/{image.name}", "1")

    async def repull() -> None:
        await pull(client, f"{DIST}/{image.name}", "1")
        # The client may have read the layer from the spool before the fetch links it.
        flights = client.server.app[PROXY]._flights.values()
        await asyncio.gather(*(f.task for f in list(flights) if f.task is not None))

    waited = await _race(monkeypatch, client, client, repull, layer, image.name, image.digest)
    assert await _read(client, f"{DIST}/{image.name}", sha256(layer)) == layer
    assert waited


@pytest.mark.parametrize(("style", "apps"), [("monolithic", 2), ("post-put", 2), ("monolithic", 1)])
async def test_a_push_during_the_delete_keeps_its_layer_postgres(proxy_hub, distribution, dist, monkeypatch, style,
                                                                 apps):
    """With two apps on one PostgreSQL (and one storage), eviction on one and the push on the other."""
    layer = os.urandom(6000)
    image = dist.push_image(f"race/pg-{style}-{apps}", "1", layers=[layer])
    clients = [await _bounded(proxy_hub, distribution, "postgres") for _ in range(apps)]
    one, two = clients[0], clients[-1]
    await pull(one, f"{DIST}/{image.name}", "1")

    waited = await _race(monkeypatch, one, two, lambda: PUSHES[style](two, "team/race", layer), layer,
                         image.name, image.digest)
    for client in clients:
        assert await _read(client, "team/race", sha256(layer)) == layer
    assert waited, "the push did not wait for the blob's lock"


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
async def test_a_mount_from_an_image_being_evicted_keeps_its_layer(proxy_hub, distribution, dist, monkeypatch,
                                                                   database):
    """The mount saw the cache repository's link; before its own link commits, eviction unlinks
    the image and tries to delete the bytes. It must wait for the mount's link, and keep them."""
    layer = os.urandom(6000)
    image = dist.push_image(f"race/mount-{database}", "1", layers=[layer])
    client = await _bounded(proxy_hub, distribution, database)
    await pull(client, f"{DIST}/{image.name}", "1")
    store = client.server.app[STORE]
    digest = sha256(layer)
    watch = LockWatch(store, blob_lock_key(digest))
    monkeypatch.setattr(store, "lock", watch)
    linking, proceed = asyncio.Event(), asyncio.Event()
    link_blob = store.link_blob

    async def paused_link(repository: str, linked: str, size: int, **options) -> None:
        if repository == "team/mounted":
            linking.set()
            await proceed.wait()
        await link_blob(repository, linked, size, **options)

    monkeypatch.setattr(store, "link_blob", paused_link)
    mount = asyncio.ensure_future(client.post(f"/v2/team/mounted/blobs/uploads/?mount={digest}"
                                              f"&from={DIST}/{image.name}"))
    await linking.wait()
    watch.requested.clear()  # the mount's own request
    evicting = asyncio.ensure_future(client.server.app[PROXY].evict())
    # Eviction reaches the layer's delete and waits for the lock (without it, it finishes).
    asked = asyncio.ensure_future(watch.requested.wait())
    await asyncio.wait({asked, evicting}, return_when=asyncio.FIRST_COMPLETED)
    asked.cancel()
    waited = not evicting.done()
    proceed.set()
    r = await mount
    assert r.status == 201, await r.text()
    [result] = (await evicting).upstreams
    assert result.images == [f"{DIST}/{image.name}@{image.digest}"]
    assert await _read(client, "team/mounted", digest) == layer
    assert waited, "eviction did not wait for the mount's lock"


async def test_sqlite_locks_exclude_a_cli_process(tmp_path):
    """`daohub proxy evict` runs in a process of its own beside `serve` on SQLite: the blob lock
    (every store lock) must exclude it too."""
    from hub.db.sqlite import SqliteStore

    path = str(tmp_path / "daohub.db")
    store = SqliteStore(path)
    await store.open()
    key = blob_lock_key(sha256(b"x"))
    probe = ("import asyncio, sys\nfrom hub.db.sqlite import SqliteStore\n"
             "async def main():\n    s = SqliteStore(sys.argv[1])\n    await s.open()\n"
             "    async with s.lock(sys.argv[2], wait=False) as held:\n        print(held)\n    await s.close()\n"
             "asyncio.run(main())\n")

    async def other_process_gets_it() -> bool:
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", probe, path, key,
                                                    stdout=asyncio.subprocess.PIPE, cwd=ROOT)
        out, _ = await proc.communicate()
        assert proc.returncode == 0
        return out.decode().strip() == "True"

    try:
        async with store.lock(key) as held:
            assert held
            assert not await other_process_gets_it()
        assert await other_process_gets_it()
    finally:
        await store.close()
