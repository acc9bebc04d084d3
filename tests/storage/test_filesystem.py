"""Filesystem-only checks the conformance suite cannot express: what is actually on disk."""

from __future__ import annotations

import asyncio
import os

import pytest

import storage_backends
from storage_backends import StorageError

from .conftest import leftovers_on_disk


def temp_files(root) -> list[str]:
    return [p for p in leftovers_on_disk(root) if os.path.basename(p).startswith(".tmp-")]


@pytest.mark.parametrize(
    "writes",
    [
        [("obj", b"one")],
        [("a/b/obj", b"first"), ("a/b/obj", b"second, longer"), ("a/b/obj", b"")],
        [("x/1", b"1"), ("x/2", b"\xff" * 100_000), ("y/3", b"3")],
    ],
    ids=["single", "overwrites", "several-dirs"],
)
async def test_put_content_leaves_no_temp_files(filesystem, writes):
    driver, root = filesystem
    expected = {}
    for path, data in writes:
        await driver.put_content(path, data)
        expected[path] = data
        assert temp_files(root) == []
    for path, data in expected.items():
        assert (root / path).read_bytes() == data
    for top in sorted({path.split("/", 1)[0] for path in expected}):
        await driver.delete(top)


async def test_concurrent_put_content_leaves_no_temp_files(filesystem):
    driver, root = filesystem
    values = [bytes([i]) * 100_000 for i in range(8)]
    await asyncio.gather(*(driver.put_content("race/obj", value) for value in values))
    assert temp_files(root) == []
    assert leftovers_on_disk(root) == ["race", os.path.join("race", "obj")]
    assert (root / "race" / "obj").read_bytes() in values
    await driver.delete("race")


async def test_failed_put_content_leaves_no_temp_file(filesystem):
    driver, root = filesystem
    await driver.put_content("file", b"a file, not a directory")
    with pytest.raises(StorageError):
        await driver.put_content("file/child", b"cannot live below a file")
    assert leftovers_on_disk(root) == ["file"]
    await driver.delete("file")


@pytest.mark.parametrize(
    "sizes", [[0], [1], [4093, 65537, 1], [1 << 20, 3]], ids=["empty", "one", "uneven", "large"]
)
async def test_committed_writer_data_is_on_disk(filesystem, sizes):
    driver, root = filesystem
    data = b"".join(bytes([n % 251]) * n for n in sizes)
    writer = await driver.writer("up/data")
    offset = 0
    for n in sizes:
        await writer.write(data[offset : offset + n])
        offset += n
    await writer.commit()
    local = driver.local_path("up/data")
    assert local == root / "up" / "data"
    assert local.stat().st_size == len(data)
    assert local.read_bytes() == data
    assert temp_files(root) == []
    await driver.delete("up")


async def test_another_driver_on_the_same_root_resumes_an_upload(filesystem):
    """Replicas sharing one root (NFS) must be able to resume each other's uploads."""
    driver, root = filesystem
    other = storage_backends.create("filesystem", root=str(root))
    writer = await driver.writer("up/data")
    await writer.write(b"from replica one; ")
    await writer.close()
    resumed = await other.writer("up/data", append=True)
    assert resumed.size == len(b"from replica one; ")
    await resumed.write(b"from replica two")
    await resumed.commit()
    assert await driver.get_content("up/data") == b"from replica one; from replica two"
    await other.delete("up")
    await other.aclose()


async def test_open_reader_keeps_old_content_across_put_content(filesystem):
    """put_content renames a new file into place; a reader already open sees the old bytes."""
    driver, _ = filesystem
    await driver.put_content("obj", b"old" * 1000)
    it = await driver.reader("obj", 0, 100)
    await driver.put_content("obj", b"new" * 1000)
    assert b"".join([chunk async for chunk in it]) == b"old" * 1000
    assert await driver.get_content("obj") == b"new" * 1000
    await driver.delete("obj")


async def test_list_and_walk_hide_stray_temp_files(filesystem):
    """A crash mid put_content can leave a temp file; it must never show up as an object."""
    driver, root = filesystem
    await driver.put_content("d/real", b"x")
    stray = root / "d" / ".tmp-real-0123456789abcdef"
    stray.write_bytes(b"partial")
    assert await driver.list("d") == ["d/real"]
    assert [info.path async for info in driver.walk("")] == ["d/real"]
    stray.unlink()
    await driver.delete("d")


@pytest.mark.parametrize("scratch", [False, True])
async def test_a_scratch_writer_syncs_its_directory_at_commit_only(filesystem, monkeypatch, scratch):
    """A resumable upload is recorded before its data is complete, so its file must exist
    durably from the start; a scratch writer (a blob received in one request) is recorded only
    after commit(), which syncs the directory either way."""
    from storage_backends import filesystem as fs_module

    driver, root = filesystem
    synced: list[str] = []
    real = fs_module._fsync_dir
    monkeypatch.setattr(fs_module, "_fsync_dir", lambda path: (synced.append(str(path)), real(path)))
    directory = str(root.resolve() / "up" / "1")
    writer = await driver.writer("up/1/data", scratch=scratch)
    # (Directories the writer had to create are synced into their parents either way.)
    assert synced.count(directory) == (0 if scratch else 1)
    await writer.write(b"blob bytes")
    await writer.commit()
    assert synced[-1] == directory and synced.count(directory) == (1 if scratch else 2)
    assert (root / "up" / "1" / "data").read_bytes() == b"blob bytes"
    await driver.delete("up")
