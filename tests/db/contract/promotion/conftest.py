"""Promotion's contract fixtures: `promotions` is today's store itself (hub/db/promotion_store.py is
written once for both dialects), and `writers` two handles for concurrent callers."""

from __future__ import annotations

from ..conftest import area_fixtures

promotions, writers = area_fixtures("promotions", lambda store: store)
