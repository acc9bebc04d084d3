"""The filesystem driver on one root shared by several replicas: separate processes, no shared locks.

Each test starts real processes (multiprocessing, spawn) that each open their own driver on
the same root and race for it: same and different blobs published at once, one replica
pruning directories while another creates files in them, uploads resumed by another process.
What is left on disk is checked at the end.
"""

from __future__ import annotations

import asyncio
import hashlib
import multiprocessing
import os
import random
import traceback
import uuid

import pytest

import storage_backends

from .conftest import leftovers_on_disk

MiB = 1 << 20
TIMEOUT = 120  # per process, a safety net only: the work is bounded by counts


def blob(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def blob_path(data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    return f"blobs/sha256/{digest[:2]}/{digest}"


# What each process runs (module level, so spawned processes can import it) -----------------


async def publish(driver, data: bytes, chunk_seed: int, max_chunk: int = 300_000) -> None:
    """Push `data` the registry's way: a fresh upload, committed, then moved to its address."""
    upload = f"uploads/{uuid.uuid4()}/data"
    writer = await driver.writer(upload)
    sizes = random.Random(chunk_seed)
    position = 0
    while position < len(data):
        size = sizes.randint(1, max_chunk)
        await writer.write(data[position : position + size])
        position += size
    await writer.commit()
    await driver.move(upload, blob_path(data))


async def _same_blob(driver, replica: int, barrier) -> None:
    data = blob(1, 2 * MiB + 5)
    for round_number in range(10):
        barrier.wait()
        await publish(driver, data, replica * 1000 + round_number)
        await driver.put_content(blob_path(data), data)
        assert await driver.get_content(blob_path(data)) == data


async def _different_blobs(driver, replica: int, barrier) -> None:
    barrier.wait()
    for i in range(30):
        await publish(driver, blob(replica * 100 + i, 1000 + 997 * i), i)


RACE_DIR = "race/a/b/c/d/e/f/g"


async def prune_versus_create(driver, replica: int, barrier, rounds: int = 200) -> None:
    """Replica 0 empties RACE_DIR over and over (each delete prunes it and all its parents);
    replica 1 keeps creating files in it. Every create must succeed and stay readable."""
    barrier.wait()
    for i in range(rounds):
        if replica == 0:
            await driver.put_content(f"{RACE_DIR}/pruned", b"x")
            await driver.delete(f"{RACE_DIR}/pruned")
        else:
            path = f"{RACE_DIR}/kept-{i}"
            if i % 3 == 0:
                writer = await driver.writer(path)
                await writer.write(b"written %d" % i)
                await writer.commit()
            elif i % 3 == 1:
                await driver.put_content(path, b"written %d" % i)
            else:
                await driver.put_content(f"race/tmp-{i}", b"written %d" % i)
                await driver.move(f"race/tmp-{i}", path)
            assert await driver.get_content(path) == b"written %d" % i
            await driver.delete(path)


async def _resume_step(driver, replica: int, barrier) -> int:
    """One step of an upload passed between processes: resume, append, close (or commit last)."""
    path = "uploads/shared/data"
    step = replica
    writer = await driver.writer(path, append=step > 0)
    size = writer.size
    await writer.write(blob(step, 100_000 + step))
    if step == 3:
        await writer.commit()
    else:
        await writer.close()
    return size


async def _delete_same_tree(driver, replica: int, barrier) -> str:
    """Both replicas delete one big tree at once (say, two GC runs). Returns how it ended."""
    barrier.wait()
    try:
        await driver.delete("tree")
    except storage_backends.PathNotFoundError:
        return "not found"
    return "deleted"


SCENARIOS = {
    "delete-same-tree": _delete_same_tree,
    "same-blob": _same_blob,
    "different-blobs": _different_blobs,
    "prune-versus-create": prune_versus_create,
    "resume": _resume_step,
}


def _process_main(scenario: str, root: str, replica: int, barrier, results) -> None:
    async def run():
        driver = storage_backends.create("filesystem", root=root)
        try:
            return await SCENARIOS[scenario](driver, replica, barrier)
        finally:
            await driver.aclose()

    try:
        results.put((replica, "ok", asyncio.run(run())))
    except BaseException:  # noqa: BLE001 - every failure goes back to the test, with its traceback
        results.put((replica, "error", traceback.format_exc()))


def run_replicas(scenario: str, root, replicas: list[int], parties: int | None = None) -> dict[int, object]:
    """Run `scenario` in one new process per replica number, together; return their results."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(parties or len(replicas))
    results = context.Queue()
    processes = [context.Process(target=_process_main, args=(scenario, str(root), r, barrier, results))
                 for r in replicas]
    for process in processes:
        process.start()
    outcomes = {}
    try:
        for _ in processes:
            replica, status, value = results.get(timeout=TIMEOUT)
            outcomes[replica] = (status, value)
    finally:
        for process in processes:
            process.join(10)
            if process.is_alive():
                process.kill()
                process.join()
    failures = {r: v for r, (s, v) in outcomes.items() if s != "ok"}
    assert not failures, "\n".join(f"replica {r}:\n{v}" for r, v in failures.items())
    return {r: v for r, (_s, v) in outcomes.items()}


@pytest.fixture
def shared_root(tmp_path):
    root = tmp_path / "shared"
    root.mkdir()
    return root


def temp_files(root) -> list[str]:
    return [p for p in leftovers_on_disk(root) if os.path.basename(p).startswith(".tmp-")]


def test_two_processes_publish_the_same_blob(shared_root):
    run_replicas("same-blob", shared_root, [0, 1])
    data = blob(1, 2 * MiB + 5)
    digest = hashlib.sha256(data).hexdigest()
    assert leftovers_on_disk(shared_root) == ["blobs", "blobs/sha256", f"blobs/sha256/{digest[:2]}",
                                              f"blobs/sha256/{digest[:2]}/{digest}"]
    assert (shared_root / blob_path(data)).read_bytes() == data


def test_two_processes_publish_different_blobs(shared_root):
    run_replicas("different-blobs", shared_root, [0, 1])
    expected = {blob_path(blob(r * 100 + i, 1000 + 997 * i)) for r in (0, 1) for i in range(30)}
    files = {p for p in leftovers_on_disk(shared_root) if (shared_root / p).is_file()}
    assert files == expected  # every blob, no upload or temp file left
    for path in expected:
        data = (shared_root / path).read_bytes()
        assert blob_path(data) == path


def test_prune_in_one_process_while_another_creates(shared_root):
    run_replicas("prune-versus-create", shared_root, [0, 1])
    assert leftovers_on_disk(shared_root) == []  # the last delete pruned everything, temp files too


def test_two_processes_delete_one_tree(shared_root):
    for i in range(1000):  # written directly: the race is in the delete
        path = shared_root / f"tree/{i % 7}/{i % 5}/file-{i}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"%d" % i)
    outcomes = run_replicas("delete-same-tree", shared_root, [0, 1])
    assert "deleted" in outcomes.values()  # at least one saw it through; the other may find it gone
    assert leftovers_on_disk(shared_root) == []


def test_upload_resumed_across_processes(shared_root):
    sizes = []
    for step in range(4):  # each step in a new process: start, two resumes, resume and commit
        sizes.append(run_replicas("resume", shared_root, [step], parties=1)[step])
    expected = b"".join(blob(step, 100_000 + step) for step in range(4))
    assert sizes == [len(b"".join(blob(s, 100_000 + s) for s in range(n))) for n in range(4)]
    assert (shared_root / "uploads/shared/data").read_bytes() == expected
    assert temp_files(shared_root) == []


async def test_another_process_sees_a_commit_at_once(shared_root):
    """Nothing is cached per process: what one replica commits, another reads right away."""
    driver = storage_backends.create("filesystem", root=str(shared_root))
    try:
        run_replicas("resume", shared_root, [0], parties=1)
        writer = await driver.writer("uploads/shared/data", append=True)
        assert writer.size == 100_000
        await writer.cancel()
        assert leftovers_on_disk(shared_root) == []
    finally:
        await driver.aclose()
