"""The registry area's contract fixtures: `registry` (every sub-store over one migrated store, on
SQLite and on PostgreSQL) and `writers` (two handles for concurrent callers, see `writer_pair`)."""

from __future__ import annotations

import pytest

from .legacy import RegistryStores, registry_over


@pytest.fixture
def registry(metadata) -> RegistryStores:
    return registry_over(metadata)


@pytest.fixture
def writers(writer_pair) -> tuple[RegistryStores, RegistryStores]:
    a, b = writer_pair
    return registry_over(a), registry_over(b)
