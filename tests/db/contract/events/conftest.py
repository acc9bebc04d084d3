"""Events' contract fixtures: `events` is today's store itself (hub/db/event_store.py is written
once for both dialects), and `writers` two handles for concurrent callers."""

from __future__ import annotations

from ..conftest import area_fixtures

events, writers = area_fixtures("events", lambda store: store)
