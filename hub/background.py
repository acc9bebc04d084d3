"""serve's periodic jobs: one loop shape for all of them, and a stop that always stops.

A job's failure is logged and the loop goes on; a cancellation ends it. The catch is that an
exception raised while a cancellation unwinds replaces the CancelledError: asyncpg's rollback on
a connection whose statement was cut short raises InterfaceError from `transaction().__aexit__`,
say. A loop that logs every Exception and sleeps again would then outlive its shutdown, and the
app's cleanup would wait on it forever (a test teardown hung 600 s on exactly that). So every
loop asks `stop_if_cancelled()` after a failure: a task that was asked to stop raises
CancelledError whatever its job raised.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable


def cancelling() -> bool:
    """True when the running task has been asked to stop."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def stop_if_cancelled(cause: BaseException | None = None) -> None:
    if cancelling():
        raise asyncio.CancelledError() from cause


async def every(seconds: float, job: Callable[[], Awaitable[object]], log: logging.Logger, what: str, *,
                first: bool = False) -> None:
    """Run `job` every `seconds` (at once too, with `first`) until cancelled; a failure is logged."""
    if not first:
        await asyncio.sleep(seconds)
    while True:
        try:
            await job()
        except Exception as exc:
            stop_if_cancelled(exc)
            log.exception("%s failed", what)
        await asyncio.sleep(seconds)
