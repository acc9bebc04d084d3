"""Driver conformance: every storage driver must pass every test here.

The `driver` fixture (conftest.py) runs each test once per backend and, afterwards,
checks that the store is empty again; so each test deletes what it created.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import random

import aiohttp
import pytest
from aiohttp import web

from storage_backends import (
    InvalidOffsetError,
    InvalidPathError,
    PathNotFoundError,
    WriterClosedError,
)
from storage_backends.checked import CheckedDriver
from storage_backends.memory import MemoryDriver

MiB = 1 << 20

# Content ------------------------------------------------------------------------------

CONTENTS = ["empty", "small", "non-utf8", "large"]


@functools.cache
def content(kind: str) -> bytes:
    if kind == "empty":
        return b""
    if kind == "small":
        return b"hello, registry\n"
    if kind == "non-utf8":
        data = bytes(range(255, -1, -1)) + b"\xc3\x28\xa0\xa1\xe2\x28\xa1\xf0\x28\x8c\x28\x00\xff\xfe"
        with pytest.raises(UnicodeDecodeError):
            data.decode("utf-8")
        return data
    if kind == "large":
        return random.Random(20).randbytes(20 * MiB)
    raise ValueError(kind)


def uneven_chunks(data: bytes):
    """Slice `data` into chunks of awkward, varying sizes (none aligned to a power of two)."""
    sizes = itertools.cycle([1, 7, 4093, 65537, MiB + 3, 3 * MiB - 11])
    i = 0
    while i < len(data):
        n = next(sizes)
        yield data[i : i + n]
        i += n


async def read_all(driver, path: str, offset: int = 0, chunk_size: int = MiB) -> bytes:
    it = await driver.reader(path, offset, chunk_size)
    return b"".join([chunk async for chunk in it])


async def populate(driver, layout: dict[str, bytes]) -> None:
    for path, data in layout.items():
        await driver.put_content(path, data)


async def walk_paths(driver, path: str) -> list[str]:
    return [info.path async for info in driver.walk(path)]


async def assert_url_serves(url: str, expected: bytes) -> None:
    """Fetch a redirect URL the way a client would and compare the bytes."""
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200, f"GET {url}: {response.status}"
        assert await response.read() == expected


# Round trips --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", CONTENTS)
async def test_put_content_get_content_round_trip(driver, kind):
    data = content(kind)
    await driver.put_content("rt/object", data)
    assert await driver.get_content("rt/object") == data
    assert await read_all(driver, "rt/object") == data
    info = await driver.stat("rt/object")
    assert (info.path, info.size, info.is_dir) == ("rt/object", len(data), False)
    await driver.delete("rt")


@pytest.mark.parametrize("kind", CONTENTS)
async def test_writer_in_uneven_chunks_then_commit(driver, kind):
    data = content(kind)
    writer = await driver.writer("wr/object")
    assert writer.size == 0
    for chunk in uneven_chunks(data):
        assert await writer.write(chunk) == len(chunk)
    assert writer.size == len(data)
    await writer.commit()
    assert (await driver.stat("wr/object")).size == len(data)
    assert await read_all(driver, "wr/object") == data
    assert await driver.get_content("wr/object") == data
    await driver.delete("wr/object")


@pytest.mark.parametrize(
    "first, second",
    [
        (b"short", b"a much longer replacement value"),
        (b"a much longer original value", b"short"),
        (b"something", b""),
        (b"", b"something"),
        (b"\xff\xfe\x00" * 100, b"\x80" * 7),
    ],
    ids=["grow", "shrink", "to-empty", "from-empty", "non-utf8"],
)
async def test_put_content_overwrites(driver, first, second):
    await driver.put_content("ow/object", first)
    await driver.put_content("ow/object", second)
    assert await driver.get_content("ow/object") == second
    assert (await driver.stat("ow/object")).size == len(second)
    assert await driver.list("ow") == ["ow/object"]
    await driver.delete("ow/object")


async def test_committed_writer_replaces_existing_object(driver):
    await driver.put_content("ow/object", b"an older and longer value")
    writer = await driver.writer("ow/object")
    await writer.write(b"new")
    await writer.commit()
    assert await driver.get_content("ow/object") == b"new"
    await driver.delete("ow/object")


# Reader -------------------------------------------------------------------------------

READ_DATA = bytes(range(256)) * 4 + b"tail"  # 1028 bytes


@pytest.mark.parametrize(
    "offset",
    [0, 1, len(READ_DATA) // 2, len(READ_DATA) - 1, len(READ_DATA)],
    ids=["start", "one", "middle", "last-byte", "exactly-end"],
)
async def test_reader_at_offset(driver, offset):
    await driver.put_content("rd/object", READ_DATA)
    it = await driver.reader("rd/object", offset)
    chunks = [chunk async for chunk in it]
    assert b"".join(chunks) == READ_DATA[offset:]
    if offset == len(READ_DATA):
        assert chunks == [], "a read at exactly the end must yield nothing"
    await driver.delete("rd/object")


@pytest.mark.parametrize(
    "offset", [len(READ_DATA) + 1, len(READ_DATA) + MiB, -1], ids=["past-end", "far", "negative"]
)
async def test_reader_invalid_offset_raises_before_iteration(driver, offset):
    await driver.put_content("rd/object", READ_DATA)
    with pytest.raises(InvalidOffsetError):
        await driver.reader("rd/object", offset)
    await driver.delete("rd/object")


async def test_reader_at_end_of_empty_object(driver):
    await driver.put_content("rd/empty", b"")
    it = await driver.reader("rd/empty", 0)
    assert [chunk async for chunk in it] == []
    with pytest.raises(InvalidOffsetError):
        await driver.reader("rd/empty", 1)
    await driver.delete("rd/empty")


@pytest.mark.parametrize("chunk_size", [1, 7, 1000, MiB])
async def test_reader_respects_chunk_size(driver, chunk_size):
    await driver.put_content("rd/object", READ_DATA[:300])
    it = await driver.reader("rd/object", 3, chunk_size)
    chunks = [chunk async for chunk in it]
    assert b"".join(chunks) == READ_DATA[3:300]
    assert all(0 < len(chunk) <= chunk_size for chunk in chunks)
    await driver.delete("rd/object")


async def test_reader_closed_early_releases_the_object(driver):
    data = content("large")[: 3 * MiB]
    await driver.put_content("rd/object", data)
    it = await driver.reader("rd/object", 0, MiB)
    first = await anext(it)
    assert 0 < len(first) <= MiB and data.startswith(first)  # at most a chunk: s3 hands on what arrived
    await it.aclose()
    await driver.delete("rd/object")


# Missing paths ------------------------------------------------------------------------


async def _append(driver, path):
    return await driver.writer(path, append=True)


async def _move_from(driver, path):
    return await driver.move(path, "nf/moved")


MISSING_OPERATIONS = {
    "get_content": lambda d, p: d.get_content(p),
    "reader": lambda d, p: d.reader(p),
    "reader-offset": lambda d, p: d.reader(p, 10),
    "writer-append": _append,
    "stat": lambda d, p: d.stat(p),
    "list": lambda d, p: d.list(p),
    "move-source": _move_from,
    "delete": lambda d, p: d.delete(p),
}


@pytest.mark.parametrize(
    "path", ["missing", "nf/missing", "nf/file/below"], ids=["top", "in-dir", "below-file"]
)
@pytest.mark.parametrize("operation", list(MISSING_OPERATIONS))
async def test_missing_path_raises_path_not_found(driver, operation, path):
    """Every operation on a path that does not exist raises PathNotFoundError, up front."""
    await driver.put_content("nf/file", b"x")
    with pytest.raises(PathNotFoundError):
        await MISSING_OPERATIONS[operation](driver, path)
    assert await driver.get_content("nf/file") == b"x"
    assert await driver.list("nf") == ["nf/file"]
    await driver.delete("nf")


@pytest.mark.parametrize("operation", ["get_content", "reader"])
async def test_reading_a_directory_raises_path_not_found(driver, operation):
    await driver.put_content("dir/child", b"x")
    with pytest.raises(PathNotFoundError):
        await MISSING_OPERATIONS[operation](driver, "dir")
    await driver.delete("dir")


# Writers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sessions",
    [
        [[b"first "], [b"second"]],
        [[b"a", b"b"], [], [b"c" * 1000, b"d"], [b"\xff\x00\xfe"]],
        [[], [b""], [b"late start"]],
        [[b"x" * 70000, b"y" * 3], [b"z" * 65537], [b"end"]],
    ],
    ids=["two", "four-with-empty-session", "empty-sessions-first", "uneven"],
)
async def test_writer_close_then_resume_then_commit(driver, sessions):
    """Each session but the last closes; the next resumes with append=True at the right size."""
    written = b""
    for number, chunks in enumerate(sessions):
        writer = await driver.writer("up/data", append=number > 0)
        assert writer.size == len(written)
        for chunk in chunks:
            await writer.write(chunk)
            written += chunk
        assert writer.size == len(written)
        if number < len(sessions) - 1:
            await writer.close()
            await writer.close()  # closing twice is harmless
        else:
            await writer.commit()
    assert await driver.get_content("up/data") == written
    assert await read_all(driver, "up/data") == written
    assert (await driver.stat("up/data")).size == len(written)
    await driver.delete("up")


async def test_resumed_size_survives_several_reopens(driver):
    writer = await driver.writer("up/data")
    await writer.write(b"12345")
    await writer.close()
    for _ in range(3):  # reopening without writing must not change anything
        writer = await driver.writer("up/data", append=True)
        assert writer.size == 5
        await writer.close()
    writer = await driver.writer("up/data", append=True)
    await writer.cancel()


async def test_new_writer_starts_over(driver):
    writer = await driver.writer("up/data")
    await writer.write(b"abandoned bytes")
    await writer.close()
    writer = await driver.writer("up/data")  # not append: a fresh object
    assert writer.size == 0
    await writer.write(b"fresh")
    await writer.commit()
    assert await driver.get_content("up/data") == b"fresh"
    await driver.delete("up/data")


CANCEL_SCENARIOS = ["nothing-written", "written", "after-close", "resumed-then-cancelled", "deep-path"]


@pytest.mark.parametrize("scenario", CANCEL_SCENARIOS)
async def test_cancel_leaves_nothing(driver, scenario):
    path = "cx/a/b/c/data" if scenario == "deep-path" else "cx/data"
    writer = await driver.writer(path)
    if scenario != "nothing-written":
        await writer.write(b"to be discarded")
    if scenario == "after-close":
        await writer.close()
    elif scenario == "resumed-then-cancelled":
        await writer.close()
        writer = await driver.writer(path, append=True)
        assert writer.size == len(b"to be discarded")
        await writer.write(b" and more")
    await writer.cancel()
    with pytest.raises(PathNotFoundError):
        await driver.stat(path)
    with pytest.raises(PathNotFoundError):
        await driver.get_content(path)
    with pytest.raises(PathNotFoundError):
        await driver.writer(path, append=True)
    assert await driver.list("") == []


async def test_cancel_keeps_sibling_objects(driver):
    await driver.put_content("cx/keep", b"kept")
    writer = await driver.writer("cx/drop")
    await writer.write(b"dropped")
    await writer.cancel()
    assert await driver.list("cx") == ["cx/keep"]
    assert await driver.get_content("cx/keep") == b"kept"
    await driver.delete("cx")


@pytest.mark.parametrize("use", ["write", "commit"])
@pytest.mark.parametrize("end", ["commit", "cancel", "close"])
async def test_writer_used_after_it_ended_raises(driver, end, use):
    writer = await driver.writer("wc/data")
    await writer.write(b"data")
    await getattr(writer, end)()
    with pytest.raises(WriterClosedError):
        if use == "write":
            await writer.write(b"more")
        else:
            await writer.commit()
    if end == "commit":
        assert await driver.get_content("wc/data") == b"data"
    if end != "cancel":
        await driver.delete("wc")


@pytest.mark.parametrize("after", ["cancel", "close", "cancel-twice"])
async def test_committed_data_survives_a_late_cancel_or_close(driver, after):
    """`async with` and error paths may cancel a writer that already committed."""
    writer = await driver.writer("lc/data")
    await writer.write(b"committed")
    await writer.commit()
    for _ in range(2 if after == "cancel-twice" else 1):
        await getattr(writer, after.removesuffix("-twice"))()
    assert await driver.get_content("lc/data") == b"committed"
    await driver.delete("lc/data")


async def test_writer_context_manager_closes_on_success(driver):
    async with await driver.writer("cm/data") as writer:
        await writer.write(b"kept for later")
    resumed = await driver.writer("cm/data", append=True)
    assert resumed.size == len(b"kept for later")
    await resumed.commit()
    assert await driver.get_content("cm/data") == b"kept for later"
    await driver.delete("cm/data")


async def test_writer_context_manager_cancels_on_error(driver):
    with pytest.raises(RuntimeError):
        async with await driver.writer("cm/data") as writer:
            await writer.write(b"doomed")
            raise RuntimeError("boom")
    with pytest.raises(PathNotFoundError):
        await driver.writer("cm/data", append=True)


# List, walk, stat ---------------------------------------------------------------------

TREE = {
    "t/a/b/c": b"c",
    "t/a/d": b"dd",
    "t/a/e/f": b"fff",
    "t/ab": b"prefix-trap",  # shares a prefix with the directory t/a
    "t/x": b"",
}


@pytest.mark.parametrize(
    "path, children",
    [
        ("", ["t"]),
        ("t", ["t/a", "t/ab", "t/x"]),
        ("t/a", ["t/a/b", "t/a/d", "t/a/e"]),
        ("t/a/b", ["t/a/b/c"]),
        ("t/a/e", ["t/a/e/f"]),
    ],
    ids=["root", "top", "nested", "deep", "other-deep"],
)
async def test_list_direct_children_sorted_full_paths(driver, path, children):
    await populate(driver, TREE)
    assert await driver.list(path) == children
    await driver.delete("t")


@pytest.mark.parametrize("path", ["missing", "t/missing", "t/a/d"], ids=["missing", "missing-in-dir", "file"])
async def test_list_of_missing_dir_or_file_raises(driver, path):
    await populate(driver, TREE)
    with pytest.raises(PathNotFoundError):
        await driver.list(path)
    await driver.delete("t")


async def test_list_many_children_sorted(driver):
    names = [f"ls/{n}" for n in ["b", "a", "C", "a.b", "a-b", "a_b", "0", "z9", "z10"]]
    await asyncio.gather(*(driver.put_content(name, b"") for name in names))
    assert await driver.list("ls") == sorted(names)
    await driver.delete("ls")


@pytest.mark.parametrize(
    "path, files",
    [
        ("", ["t/a/b/c", "t/a/d", "t/a/e/f", "t/ab", "t/x"]),
        ("t", ["t/a/b/c", "t/a/d", "t/a/e/f", "t/ab", "t/x"]),
        ("t/a", ["t/a/b/c", "t/a/d", "t/a/e/f"]),
        ("t/a/e", ["t/a/e/f"]),
        ("missing", []),
        ("t/missing", []),
    ],
    ids=["root", "top", "nested", "deep", "missing", "missing-in-dir"],
)
async def test_walk_files_depth_first_sorted(driver, path, files):
    await populate(driver, TREE)
    infos = [info async for info in driver.walk(path)]
    assert [info.path for info in infos] == files
    for info in infos:
        assert not info.is_dir
        assert info.size == len(TREE[info.path])
    await driver.delete("t")


@pytest.mark.parametrize(
    "path, is_dir, size",
    [
        ("t/a/d", False, 2),
        ("t/x", False, 0),
        ("t/a/e/f", False, 3),
        ("t/a", True, None),
        ("t/a/e", True, None),
    ],
    ids=["file", "empty-file", "deep-file", "dir", "deep-dir"],
)
async def test_stat(driver, path, is_dir, size):
    await populate(driver, TREE)
    info = await driver.stat(path)
    assert info.path == path
    assert info.is_dir is is_dir
    if size is not None:
        assert info.size == size
    assert info.mtime > 0
    await driver.delete("t")


# Move ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "before, src, dst, listing",
    [
        ({"m/src": b"payload"}, "m/src", "m/dst", {"m": ["m/dst"]}),
        ({"m/src": b"payload", "m/dst": b"old and longer"}, "m/src", "m/dst", {"m": ["m/dst"]}),
        ({"m/src": b"payload"}, "m/src", "m/new/deep/dst", {"m": ["m/new"], "m/new": ["m/new/deep"]}),
        ({"m/deep/er/src": b"payload", "m/keep": b"k"}, "m/deep/er/src", "m/dst", {"m": ["m/dst", "m/keep"]}),
        ({"m/src": b"\xff" * 5000}, "m/src", "m/src2", {"m": ["m/src2"]}),
    ],
    ids=["plain", "replaces-destination", "into-new-dir", "out-of-deep-dir", "non-utf8"],
)
async def test_move(driver, before, src, dst, listing):
    await populate(driver, before)
    await driver.move(src, dst)
    assert await driver.get_content(dst) == before[src]
    with pytest.raises(PathNotFoundError):
        await driver.stat(src)
    for directory, children in listing.items():
        assert await driver.list(directory) == children
    await driver.delete("m")


async def test_move_missing_source_leaves_destination(driver):
    await driver.put_content("m/dst", b"untouched")
    with pytest.raises(PathNotFoundError):
        await driver.move("m/missing", "m/dst")
    assert await driver.get_content("m/dst") == b"untouched"
    await driver.delete("m")


# Delete -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target, remaining, top_listing",
    [
        ("t/a/d", ["t/a/b/c", "t/a/e/f", "t/ab", "t/x"], ["t/a", "t/ab", "t/x"]),
        ("t/a/e/f", ["t/a/b/c", "t/a/d", "t/ab", "t/x"], ["t/a", "t/ab", "t/x"]),
        ("t/a/e", ["t/a/b/c", "t/a/d", "t/ab", "t/x"], ["t/a", "t/ab", "t/x"]),
        ("t/a", ["t/ab", "t/x"], ["t/ab", "t/x"]),
        ("t/ab", ["t/a/b/c", "t/a/d", "t/a/e/f", "t/x"], ["t/a", "t/x"]),
        ("t", [], None),
    ],
    ids=["file", "only-file-in-dir", "dir", "tree", "prefix-sibling", "everything"],
)
async def test_delete(driver, target, remaining, top_listing):
    await populate(driver, TREE)
    await driver.delete(target)
    assert await walk_paths(driver, "") == remaining
    with pytest.raises(PathNotFoundError):
        await driver.stat(target)
    if target.startswith("t/a/e"):  # the emptied directory t/a/e is gone too
        assert await driver.list("t/a") == ["t/a/b", "t/a/d"]
    if top_listing is not None:
        assert await driver.list("t") == top_listing
        await driver.delete("t")


@pytest.mark.parametrize("path", ["missing", "t/missing", "t/a/missing/deeper"])
async def test_delete_missing_raises(driver, path):
    await populate(driver, TREE)
    with pytest.raises(PathNotFoundError):
        await driver.delete(path)
    assert await walk_paths(driver, "") == sorted(TREE)
    await driver.delete("t")


async def test_delete_many_deletes_the_existing_paths_and_passes_over_the_missing(driver):
    await populate(driver, TREE)
    failures = await driver.delete_many(["t/a/d", "missing", "t/a/e/f", "t/a/missing/deeper", "t/x", "t/x"])
    assert failures == []
    assert await walk_paths(driver, "") == ["t/a/b/c", "t/ab"]
    assert await driver.list("t/a") == ["t/a/b"], "the emptied directory t/a/e is gone too"
    assert await driver.delete_many([]) == []
    with pytest.raises(InvalidPathError):
        await driver.delete_many(["t/ab", "../escape"])
    assert await walk_paths(driver, "") == ["t/a/b/c", "t/ab"], "a bad path is refused before any delete"
    await driver.delete("t")


async def test_delete_many_of_more_than_a_thousand_paths(driver):
    """S3 deletes at most 1,000 keys a request: the driver splits the call."""
    paths = [f"many/{i:04d}" for i in range(1003)]
    if driver.name in ("s3", "oss"):
        await asyncio.gather(*(driver.put_content(path, b"x") for path in paths[::2]))
    else:
        await populate(driver, {path: b"x" for path in paths[:5:2] + paths[-3:]})
    assert await driver.delete_many(paths) == []
    assert await walk_paths(driver, "") == []


# Concurrency --------------------------------------------------------------------------


async def test_concurrent_writers_to_different_paths(driver):
    async def upload(i: int) -> tuple[str, bytes]:
        path = f"cw/{i % 3}/object-{i}"
        data = random.Random(i).randbytes(1000 * i + 17)
        writer = await driver.writer(path)
        for chunk in uneven_chunks(data):
            await writer.write(chunk)
            await asyncio.sleep(0)
        if i % 2:  # half of them also close and resume halfway through
            await writer.close()
            writer = await driver.writer(path, append=True)
            assert writer.size == len(data)
        await writer.write(b"!")
        await writer.commit()
        return path, data + b"!"

    results = await asyncio.gather(*(upload(i) for i in range(8)))
    for path, data in results:
        assert await driver.get_content(path) == data
    assert await walk_paths(driver, "cw") == sorted(path for path, _ in results)
    await driver.delete("cw")


async def test_concurrent_put_content_to_one_path_is_never_mixed(driver):
    values = [bytes([i]) * (256 * 1024 + i) for i in range(8)]
    await asyncio.gather(*(driver.put_content("race/object", value) for value in values))
    assert await driver.get_content("race/object") in values
    assert await driver.list("race") == ["race/object"]
    await driver.delete("race")


async def test_concurrent_creates_and_deletes_in_one_directory(driver):
    """Deleting the last object in a directory must not break a concurrent create beside it."""
    await populate(driver, {f"cd/d/old-{i}": b"old" for i in range(8)})
    await asyncio.gather(
        *(driver.put_content(f"cd/d/new-{i}", b"new %d" % i) for i in range(8)),
        *(driver.delete(f"cd/d/old-{i}") for i in range(8)),
    )
    assert await driver.list("cd/d") == [f"cd/d/new-{i}" for i in range(8)]
    for i in range(8):
        assert await driver.get_content(f"cd/d/new-{i}") == b"new %d" % i
    await driver.delete("cd")


# Paths --------------------------------------------------------------------------------

BAD_PATHS = {
    "empty": "",
    "absolute": "/abs",
    "absolute-nested": "/etc/passwd",
    "dotdot": "a/../b",
    "dotdot-alone": "..",
    "dotdot-leading": "../escape",
    "dot": "./a",
    "dot-inner": "a/./b",
    "double-slash": "a//b",
    "trailing-slash": "a/",
    "space": "with space",
    "space-nested": "a/b c",
    "nul": "nul\x00byte",
    "backslash": "a\\b",
    "newline": "a\nb",
    "non-ascii": "caf\u00e9",
    "too-long": "a" * 1025,
}

ROOT_ALLOWED = {"stat", "list", "walk"}


async def _walk(driver, path):
    return [info async for info in driver.walk(path)]


PATH_OPERATIONS = {
    "get_content": lambda d, p: d.get_content(p),
    "put_content": lambda d, p: d.put_content(p, b"x"),
    "reader": lambda d, p: d.reader(p),
    "writer": lambda d, p: d.writer(p),
    "writer-append": lambda d, p: d.writer(p, append=True),
    "stat": lambda d, p: d.stat(p),
    "list": lambda d, p: d.list(p),
    "move-source": lambda d, p: d.move(p, "ok"),
    "move-destination": lambda d, p: d.move("ok", p),
    "delete": lambda d, p: d.delete(p),
    "redirect_url": lambda d, p: d.redirect_url(p),
    "walk": _walk,
}


@pytest.mark.parametrize(
    "operation, path",
    [
        pytest.param(op, path, id=f"{op}-{name}")
        for op in PATH_OPERATIONS
        for name, path in BAD_PATHS.items()
        if not (path == "" and op in ROOT_ALLOWED)
    ],
)
async def test_invalid_paths_rejected(driver, operation, path):
    with pytest.raises(InvalidPathError):
        await PATH_OPERATIONS[operation](driver, path)


@pytest.mark.parametrize("path", ["a.b", "-", "_x", "A-Z.0_9", "v1.2.3/sha256-0123abc", "...", ".hidden/x"])
async def test_unusual_but_valid_paths_round_trip(driver, path):
    await driver.put_content(path, b"ok")
    assert await driver.get_content(path) == b"ok"
    top = path.split("/", 1)[0]
    assert await driver.list("") == [top]
    await driver.delete(top)


# Redirects ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["small", "non-utf8", "empty"])
async def test_redirect_url_serves_the_object(driver, kind):
    """None means "cannot redirect"; any URL given must really serve the object's bytes."""
    data = content(kind)
    await driver.put_content("rd/blob", data)
    try:
        url = await driver.redirect_url("rd/blob")
        if url is not None:
            assert isinstance(url, str)
            await assert_url_serves(url, data)
    finally:
        await driver.delete("rd/blob")


CANNOT_REDIRECT = {"memory", "filesystem", "nfs"}


async def test_redirect_url_is_none_exactly_for_local_drivers(driver):
    """Local drivers cannot redirect; the harness turns redirects on for the others, so the
    fetch test above is not vacuous for them."""
    await driver.put_content("rd/blob", b"x")
    url = await driver.redirect_url("rd/blob")
    await driver.delete("rd/blob")
    if driver.name in CANNOT_REDIRECT:
        assert url is None
    else:
        assert url is not None, f"{driver.name}: configured to redirect, but gave no URL"


class _RedirectingMemoryDriver(MemoryDriver):
    """Test double: a memory driver whose objects are also served over HTTP."""

    name = "memory-redirecting"
    base_url = ""

    async def redirect_url(self, path: str, method: str = "GET", expires_in: int = 1200) -> str | None:
        return f"{self.base_url}/{path}"


async def test_redirect_url_fetch_branch_against_a_redirecting_driver(aiohttp_server):
    """Proves the fetching branch above works, while no real driver here redirects yet."""
    inner = _RedirectingMemoryDriver()

    async def serve(request: web.Request) -> web.Response:
        return web.Response(body=await inner.get_content(request.match_info["path"]))

    app = web.Application()
    app.router.add_get("/{path:.+}", serve)
    server = await aiohttp_server(app)
    inner.base_url = str(server.make_url("")).rstrip("/")
    driver = CheckedDriver(inner)
    data = content("non-utf8")
    await driver.put_content("rd/blob", data)
    url = await driver.redirect_url("rd/blob")
    assert url is not None
    await assert_url_serves(url, data)
    with pytest.raises(AssertionError):
        await assert_url_serves(url, data + b"extra")
    await driver.delete("rd/blob")
