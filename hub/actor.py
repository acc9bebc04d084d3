"""Who the current request or job acts as: the `actor` of the events its writes produce
(hub/db/event_store.py). A context variable, so it follows the request's task and the SQLite
writer thread that runs in the caller's context. A foundation module: the middleware opens a
block per request, authorization and the admin API name the caller, the store reads it."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

_ACTOR: contextvars.ContextVar[str | None] = contextvars.ContextVar("daohub_actor", default=None)


@contextlib.contextmanager
def acting_as(actor: str | None) -> Iterator[None]:
    """Within this block the events written name `actor` (a user, a robot account, or a job
    such as 'gc'); the middleware opens one per request and authorization fills it in."""
    token = _ACTOR.set(actor)
    try:
        yield
    finally:
        _ACTOR.reset(token)


def set_actor(actor: str | None) -> None:
    """Name the actor of the rest of the current `acting_as` block (the request's caller)."""
    _ACTOR.set(actor)


def current_actor() -> str | None:
    return _ACTOR.get()
