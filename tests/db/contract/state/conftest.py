"""The server state's contract fixtures: `state` over one migrated store (SQLite and PostgreSQL)
and `writers` (two handles for concurrent callers, see `writer_pair`)."""

from __future__ import annotations

from ..conftest import area_fixtures
from .legacy import State

state, writers = area_fixtures("state", State)
