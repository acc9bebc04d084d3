"""serve's periodic loops stop when cancelled, even when the job turns the cancellation into
another exception (asyncpg's rollback on a cut-short statement raises InterfaceError from
transaction().__aexit__, which replaces the CancelledError: a loop that logged it and slept
again hung the app's cleanup for 600 s in CI)."""

import asyncio
import logging

import pytest

from hub.background import every, stop_if_cancelled
from hub.registry.pulls import TagPulls

log = logging.getLogger("test")


class Busy(Exception):
    """What asyncpg raises when a rollback meets a connection still busy with a cut statement."""


async def _masking_job(started: asyncio.Event, calls: list) -> None:
    calls.append(1)
    try:
        started.set()
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        raise Busy("cannot perform operation: another operation is in progress") from None


@pytest.mark.parametrize("first", [True, False])
async def test_every_stops_when_its_job_masks_the_cancellation(first):
    started, calls = asyncio.Event(), []
    task = asyncio.create_task(every(0.01, lambda: _masking_job(started, calls), log, "job", first=first))
    await asyncio.wait_for(started.wait(), 30)
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=30)
    assert done == {task}, "the loop went on after its cancellation"
    assert task.cancelled()
    assert len(calls) == 1


async def test_every_goes_on_after_an_ordinary_failure(caplog):
    calls = []

    async def job():
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("boom")

    task = asyncio.create_task(every(0, job, log, "flaky job", first=True))
    while len(calls) < 3:
        await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.wait([task], timeout=30)
    assert task.cancelled()
    assert [r.getMessage() for r in caplog.records].count("flaky job failed") == 2


async def test_stop_if_cancelled_raises_only_in_a_cancelled_task():
    stop_if_cancelled()  # not cancelled: nothing happens
    entered = asyncio.Event()

    async def body():
        try:
            entered.set()
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            try:
                raise Busy()
            except Busy as exc:
                stop_if_cancelled(exc)
            return "swallowed"

    task = asyncio.create_task(body())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_tag_pulls_loop_stops_when_its_store_masks_the_cancellation():
    started = asyncio.Event()

    class Store:
        async def record_tag_pulls(self, rows):
            list(rows)
            await _masking_job(started, [])

    pulls = TagPulls(Store(), flush_seconds=0.01)
    pulls.note("t/r", "v1", False)
    task = asyncio.create_task(pulls.run())
    await asyncio.wait_for(started.wait(), 30)
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=30)
    assert done == {task} and task.cancelled()
    assert pulls.pending == 1  # the note is kept for the last flush at shutdown
