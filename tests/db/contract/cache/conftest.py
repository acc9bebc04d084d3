"""The cache area's contract fixtures: `cache` (its sub-stores over one migrated store, on SQLite
and on PostgreSQL), `registry` (the registry area on the same store, to push the images the cache
reads), and for concurrent callers `writers` (two cache handles, see `writer_pair`) with
`writers_registry` (the registry area on the first of them)."""

from __future__ import annotations

import pytest

from ..conftest import area_fixtures
from ..registry.legacy import RegistryStores, registry_over
from .legacy import cache_over

cache, writers = area_fixtures("cache", cache_over)


@pytest.fixture
def registry(metadata) -> RegistryStores:
    return registry_over(metadata)


@pytest.fixture
def writers_registry(writer_pair) -> RegistryStores:
    return registry_over(writer_pair[0])
