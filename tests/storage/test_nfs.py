"""NFS driver checks beyond the conformance suite: several replicas on one export, streaming,
errors, a server restart, and the hub running on it. Against a real nfs-ganesha (one per session).

Each "replica" is a driver instance of its own: its own worker threads and NFS connections.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import tracemalloc

import pytest

import storage_backends
from hub.app import create_app
from hub.config import load_config
from storage_backends import PathNotFoundError, StorageError
from storage_backends.nfs import NfsParams, NfsPermissionError, NfsStaleHandleError, NfsUnavailableError

from .conftest import leftovers_on_disk
from .test_shared_filesystem import blob_path, prune_versus_create, publish

MiB = 1 << 20


@pytest.fixture
async def replicas(nfs_root):
    """Two drivers on one export directory; teardown requires the directory to be empty."""
    drivers = [storage_backends.create("nfs", url=nfs_root.url, threads=2) for _ in range(2)]
    try:
        yield drivers, nfs_root.path
        assert leftovers_on_disk(nfs_root.path) == []
    finally:
        for driver in drivers:
            await driver.aclose()


async def test_driver_really_writes_through_the_server(replicas):
    (a, _b), root = replicas
    await a.put_content("x/y/object", b"over the wire")
    assert (root / "x/y/object").read_bytes() == b"over the wire"
    assert sorted(p.name for p in (root / "x/y").iterdir()) == ["object"]  # no temp file left
    await a.delete("x")
    assert not (root / "x").exists()


async def test_upload_resumed_by_another_replica(replicas):
    (a, b), root = replicas
    first, second, third = (random.Random(i).randbytes(n) for i, n in enumerate([MiB + 5, 3, 2 * MiB]))
    writer = await a.writer("uploads/u1/data")
    await writer.write(first)
    await writer.close()
    # The partial data is on the server, where any replica finds it by path.
    assert (root / "uploads/u1/data").stat().st_size == len(first)

    resumed = await b.writer("uploads/u1/data", append=True)
    assert resumed.size == len(first)
    await resumed.write(second)
    await resumed.close()

    again = await a.writer("uploads/u1/data", append=True)
    assert again.size == len(first) + len(second)
    await again.write(third)
    await again.commit()

    expected = first + second + third
    for driver in (a, b):
        assert await driver.get_content("uploads/u1/data") == expected
    assert (root / "uploads/u1/data").read_bytes() == expected
    await b.delete("uploads")


async def test_concurrent_commits_of_one_blob_from_two_replicas(replicas):
    """Both replicas receive the same blob at once and publish it the registry's way:
    upload, commit, move to the content address. Both succeed; the blob is intact."""
    (a, b), root = replicas
    data = random.Random(7).randbytes(3 * MiB + 17)
    target = blob_path(data)

    for round_number in range(5):
        await asyncio.gather(publish(a, data, round_number, 700_000), publish(b, data, round_number + 100, 700_000))
        for driver in (a, b):
            assert await driver.get_content(target) == data
        assert await a.list("") == ["blobs"]  # both upload directories were pruned

    # put_content of one content address from both replicas, many times over: never mixed.
    await asyncio.gather(*(driver.put_content(target, data) for driver in (a, b) for _ in range(4)))
    assert (root / target).read_bytes() == data
    assert await b.list(target.rsplit("/", 1)[0]) == [target]
    await a.delete("blobs")


class _Together:
    """Stands in for the processes' barrier: the two replicas here start together anyway."""

    def wait(self) -> None:
        pass


async def test_prune_in_one_replica_while_another_creates(replicas):
    (a, b), root = replicas
    # ganesha drops some requests caught in this race (the driver sends them again after 2 s),
    # so fewer rounds than between processes on a local disk.
    await asyncio.gather(prune_versus_create(a, 0, _Together(), 100), prune_versus_create(b, 1, _Together(), 100))
    assert leftovers_on_disk(root) == []


async def test_reader_streams_a_large_object_in_bounded_memory(replicas):
    (a, b), _root = replicas
    block = random.Random(3).randbytes(MiB)
    blocks = 48
    writer = await a.writer("big/object")
    expected = hashlib.sha256()
    for i in range(blocks):
        piece = block[i:] + block[:i]  # every MiB differs, so a misplaced chunk is caught
        await writer.write(piece)
        expected.update(piece)
    await writer.commit()
    del piece

    got = hashlib.sha256()
    received = 0
    tracemalloc.start()
    try:
        stream = await b.reader("big/object", 0, MiB)
        async for chunk in stream:
            assert 0 < len(chunk) <= MiB
            got.update(chunk)
            received += len(chunk)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert received == blocks * MiB
    assert got.hexdigest() == expected.hexdigest()
    assert peak < 8 * MiB, f"streaming {blocks} MiB held {peak / MiB:.1f} MiB at once"

    tail = await b.reader("big/object", blocks * MiB - 10, MiB)
    assert b"".join([c async for c in tail]) == (block[blocks - 1 :] + block[: blocks - 1])[-10:]
    await a.delete("big")


async def test_reader_of_an_object_deleted_by_another_replica(replicas):
    (a, b), _root = replicas
    await a.put_content("gone/object", random.Random(1).randbytes(3 * MiB))
    stream = await a.reader("gone/object", 0, MiB)
    assert len(await anext(stream)) == MiB
    await b.delete("gone")
    with pytest.raises(StorageError) as caught:
        async for _chunk in stream:
            pass
    assert isinstance(caught.value, NfsStaleHandleError), caught.value
    assert "stale" in str(caught.value)


async def test_writer_of_an_upload_deleted_by_another_replica(replicas):
    (a, b), _root = replicas
    writer = await a.writer("uploads/u2/data")
    await writer.write(b"some bytes")
    await b.delete("uploads")  # another replica purges the upload
    with pytest.raises(NfsStaleHandleError):
        await writer.write(b"more")
    await writer.cancel()
    with pytest.raises(PathNotFoundError):
        await a.stat("uploads/u2/data")


async def test_permission_denied_is_a_clear_storage_error(nfs_root):
    nfs_root.path.chmod(0o755)  # owned by root; the client below is nobody
    driver = storage_backends.create("nfs", url=nfs_root.url + "&uid=65534&gid=65534", threads=1)
    try:
        with pytest.raises(NfsPermissionError, match="permission denied"):
            await driver.put_content("denied", b"x")
        with pytest.raises(NfsPermissionError):
            await driver.writer("deep/denied")
        assert await driver.list("") == []  # reading is allowed
    finally:
        await driver.aclose()
    assert leftovers_on_disk(nfs_root.path) == []


async def test_missing_root_directory_is_created(ganesha, nfs_root):
    url = ganesha.url(f"{nfs_root.path.name}/a/b/store")
    driver = storage_backends.create("nfs", url=url, threads=1)
    try:
        await driver.put_content("object", b"in a new root")
        assert (nfs_root.path / "a/b/store/object").read_bytes() == b"in a new root"
        await driver.delete("object")
    finally:
        await driver.aclose()


@pytest.mark.parametrize(
    "url",
    ["", "http://127.0.0.1/export", "nfs:///export", "nfs://127.0.0.1", "nfs://127.0.0.1/export?version=4"],
    ids=["empty", "scheme", "no-server", "no-path", "nfsv4"],
)
def test_bad_urls_are_refused(url):
    with pytest.raises(ValueError):
        NfsParams(url=url)


async def test_unreachable_server_is_a_clear_error(ganesha):
    url = ganesha.url().replace(f"nfsport={ganesha.nfs_port}", "nfsport=1").replace(
        f"mountport={ganesha.mount_port}", "mountport=1")
    driver = storage_backends.create("nfs", url=url, threads=1)
    try:
        with pytest.raises(NfsUnavailableError, match="unavailable"):
            await driver.stat("")
    finally:
        await driver.aclose()


async def test_server_restart(ganesha, replicas):
    """During the outage: a clear StorageError. After it: the same driver objects work again,
    and an upload written before the outage resumes, even on its already open writer."""
    (a, b), root = replicas
    await a.put_content("keep/object", b"survives the restart")
    writer = await a.writer("uploads/u3/data")
    await writer.write(b"before ")
    try:
        ganesha.stop()
        for operation in (lambda: a.get_content("keep/object"), lambda: b.list(""),
                          lambda: writer.write(b"lost"), lambda: b.put_content("new", b"x")):
            with pytest.raises(NfsUnavailableError, match="unavailable") as caught:
                await operation()
            assert isinstance(caught.value, StorageError)
    finally:
        if not ganesha.running:
            ganesha.start()
    assert await a.get_content("keep/object") == b"survives the restart"
    assert await b.list("") == ["keep", "uploads"]
    await writer.write(b"and after")
    await writer.commit()
    assert await b.get_content("uploads/u3/data") == b"before and after"
    assert (root / "uploads/u3/data").read_bytes() == b"before and after"
    await b.delete("keep")
    await a.delete("uploads")


async def test_hub_pushes_and_pulls_a_blob_on_nfs(aiohttp_client, nfs_root, tmp_path):
    config = load_config(environ={}, overrides={
        "data_dir": str(tmp_path / "data"),
        "storage": {"driver": "nfs", "nfs": {"url": nfs_root.url, "threads": 2}},
        "log": {"access_log": False},
        "auth": {"enabled": False},
    })
    client = await aiohttp_client(create_app(config))
    data = random.Random(5).randbytes(2 * MiB + 3)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    r = await client.post("/v2/team/app/blobs/uploads/")
    assert r.status == 202, await r.text()
    location = r.headers["Location"]
    r = await client.patch(location, data=data[:MiB])
    assert r.status == 202, await r.text()
    r = await client.put(f"{r.headers['Location']}&digest={digest}" if "?" in r.headers["Location"]
                         else f"{r.headers['Location']}?digest={digest}", data=data[MiB:])
    assert r.status == 201, await r.text()
    r = await client.get(f"/v2/team/app/blobs/{digest}")
    assert r.status == 200
    assert await r.read() == data
    assert (nfs_root.path / "blobs/sha256" / digest[7:9] / digest[7:]).read_bytes() == data
