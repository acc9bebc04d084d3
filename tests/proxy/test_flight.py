"""BlobFlight and Coalescer on their own: what readers may see, and when."""

from __future__ import annotations

import asyncio
import os

import pytest

from hub.proxy.flight import BlobFlight, Coalescer, FlightFailed


async def _settle() -> None:
    """Let every ready task run until it waits (no wall-clock time involved)."""
    for _ in range(20):
        await asyncio.sleep(0)


async def _read_all(flight: BlobFlight, start: int = 0, end: int | None = None) -> bytes:
    assert flight.attach()
    try:
        return b"".join([c async for c in flight.chunks(start, end)])
    finally:
        flight.detach()


async def test_readers_are_held_one_byte_short_until_the_digest_is_verified(tmp_path):
    flight = BlobFlight("up", "up/repo", "sha256:x", str(tmp_path))
    flight.begin(10)
    flight.opened(None)  # storage is remote: the flight spools what arrives
    flight.append(b"0123456789")
    reader = asyncio.create_task(_read_all(flight))
    await _settle()
    assert not reader.done()  # all ten bytes arrived, but only nine may be sent before verification
    flight.finish()
    assert await reader == b"0123456789"
    assert not flight.attach()  # once finished, nobody new reads the spool: the blob is in storage


async def test_a_failure_reaches_every_reader_and_ranges_come_from_the_spool(tmp_path):
    flight = BlobFlight("up", "up/repo", "sha256:x", str(tmp_path))
    flight.begin(100)
    flight.opened(None)
    flight.append(bytes(range(50)))
    ranged = await _read_all(flight, 10, 20)
    assert ranged == bytes(range(10, 20))
    readers = [asyncio.create_task(_read_all(flight)) for _ in range(3)]
    await _settle()
    flight.finish(ConnectionResetError("cut"))
    for reader in readers:
        with pytest.raises(FlightFailed, match="cut"):
            await reader
    assert os.listdir(tmp_path) == []  # the spool never had a name


async def test_the_spool_closes_when_the_last_reader_leaves(tmp_path):
    flight = BlobFlight("up", "up/repo", "sha256:x", str(tmp_path))
    flight.begin(None)  # no length from the upstream: readers follow what arrived
    flight.opened(None)
    assert flight.attach()
    flight.append(b"abc")
    chunks = flight.chunks(0, None)
    assert await anext(chunks) == b"abc"
    flight.finish()
    fd = flight._fd
    assert fd is not None
    flight.detach()
    assert flight._fd is None
    with pytest.raises(OSError):
        os.fstat(fd)


async def test_with_local_storage_readers_follow_the_storage_file_and_outlive_its_move(tmp_path):
    """Storage on a local disk: nothing is spooled; readers get what storage has written, and
    keep reading after the upload file is moved to its content address and its folder deleted."""
    spool = tmp_path / "spool"
    spool.mkdir()
    upload = tmp_path / "uploads" / "u1" / "data"
    upload.parent.mkdir(parents=True)
    blob = bytes(range(256)) * 40
    with open(upload, "wb", buffering=0) as storage:  # noqa: ASYNC230 - a local test file
        flight = BlobFlight("up", "up/repo", "sha256:x", str(spool))
        flight.begin(len(blob))
        flight.opened(str(upload))
        assert flight.attach()
        reader = asyncio.create_task(_read_all(flight))
        flight.append(blob[:4000])  # arrived from the upstream, not yet written by storage
        await _settle()
        assert flight.received == 0 and not reader.done()
        storage.write(blob[:4000])
        flight.written(4000)
        spans = flight.spans(0, None)
        assert await anext(spans) == (0, 4000)
        storage.write(blob[4000:])
        flight.written(len(blob))
        assert await anext(spans) == (4000, len(blob) - 4001)  # one byte short: not verified yet
        flight.hashed()
        assert await anext(spans) == (len(blob) - 1, 1)
    moved = tmp_path / "blob"
    os.rename(upload, moved)
    upload.parent.rmdir()
    os.unlink(moved)
    flight.finish()
    assert await reader == blob
    assert os.listdir(spool) == []
    flight.detach()
    assert flight._fd is None


async def test_coalescer_runs_one_task_per_key_and_outlives_its_callers():
    runs, gate = [], asyncio.Event()

    async def work():
        runs.append(1)
        await gate.wait()
        return "done"

    coalescer = Coalescer()
    joined = []
    first = asyncio.create_task(coalescer.run("k", work))
    await asyncio.sleep(0)
    others = [asyncio.create_task(coalescer.run("k", work, on_join=lambda: joined.append(1))) for _ in range(4)]
    await _settle()
    first.cancel()  # a caller that goes away does not cancel the work for the others
    gate.set()
    assert await asyncio.gather(*others) == ["done"] * 4
    assert runs == [1] and len(joined) == 4
