"""The apps area's contract fixtures: `apps` (apps.index over one migrated store, on SQLite and on
PostgreSQL) and `registry` (the registry area on the same store, for the tags the index follows)."""

from __future__ import annotations

import pytest

from ..registry.legacy import RegistryStores, registry_over
from .legacy import Index


@pytest.fixture
def apps(metadata) -> Index:
    return Index(metadata)


@pytest.fixture
def registry(metadata) -> RegistryStores:
    return registry_over(metadata)
