"""Retention's contract fixtures: `retention` is today's store itself (hub/db/retention_store.py is
already written once for both dialects), and `writers` two handles for concurrent callers."""

from __future__ import annotations

from ..conftest import area_fixtures

retention, writers = area_fixtures("retention", lambda store: store)
