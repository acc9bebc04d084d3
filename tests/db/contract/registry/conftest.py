"""The registry area's contract fixtures: `registry` (every sub-store over one migrated store, on
SQLite and on PostgreSQL) and `writers` (two handles for concurrent callers, see `writer_pair`)."""

from __future__ import annotations

from ..conftest import area_fixtures
from .legacy import registry_over

registry, writers = area_fixtures("registry", registry_over)
