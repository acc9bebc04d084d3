"""`daohub transfer`, storage half: blobs stream from one driver to another, idempotently."""

from __future__ import annotations

import hashlib
import os

import pytest

import storage_backends
from hub.cli.transfer import TransferError, copy_blobs


def _blob_path(data: bytes) -> str:
    hexdigest = hashlib.sha256(data).hexdigest()
    return f"blobs/sha256/{hexdigest[:2]}/{hexdigest}/data"


async def _put(driver, path: str, data: bytes) -> None:
    writer = await driver.writer(path)
    await writer.write(data)
    await writer.commit()


@pytest.fixture
async def drivers(tmp_path):
    source = storage_backends.create("filesystem", root=str(tmp_path / "old"))
    target = storage_backends.create("filesystem", root=str(tmp_path / "new"))
    yield source, target
    await source.aclose()
    await target.aclose()


async def test_copies_blobs_but_not_unfinished_uploads(drivers):
    source, target = drivers
    blobs = [os.urandom(n) for n in (0, 1, 3 << 20)]
    for data in blobs:
        await _put(source, _blob_path(data), data)
    await _put(source, "uploads/0d4b7a9e-0000-4000-8000-000000000000/data", b"half an upload")

    report = await copy_blobs(source, target)

    assert (report.copied, report.skipped, report.bytes_copied) == (3, 0, sum(map(len, blobs)))
    for data in blobs:
        assert await target.get_content(_blob_path(data)) == data
    assert await target.list("") == ["blobs"]


async def test_second_run_skips_what_arrived_and_repairs_a_short_copy(drivers):
    source, target = drivers
    first, second = os.urandom(1000), os.urandom(2000)
    for data in (first, second):
        await _put(source, _blob_path(data), data)
    await copy_blobs(source, target)
    # An interrupted earlier run might have left a wrong-sized object behind.
    await _put(target, _blob_path(second), second[:10])

    report = await copy_blobs(source, target)

    assert (report.copied, report.skipped) == (1, 1)
    assert await target.get_content(_blob_path(second)) == second


async def test_source_changing_under_the_copy_is_an_error_and_leaves_nothing(drivers, monkeypatch):
    source, target = drivers
    data = os.urandom(4096)
    await _put(source, _blob_path(data), data)
    real_walk = source.walk

    async def lying_walk(path):
        async for info in real_walk(path):
            yield type(info)(info.path, info.size + 1, info.mtime)

    monkeypatch.setattr(source, "walk", lying_walk)
    with pytest.raises(TransferError, match="expected 4097"):
        await copy_blobs(source, target)
    assert [info.path async for info in target.walk("")] == []
