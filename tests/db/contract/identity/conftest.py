"""The identity area's contract fixtures: `identity` (every sub-store over one migrated store, on
SQLite and on PostgreSQL), `registry` (the registry area on the same store, for set-up),
`add_repository` (a repository made through it, for the tenant-not-empty rule) and `writers` (two
handles for concurrent callers, see `writer_pair`)."""

from __future__ import annotations

import hashlib

import pytest

from ..conftest import area_fixtures
from ..registry.legacy import RegistryStores, registry_over
from .legacy import identity_over

identity, writers = area_fixtures("identity", identity_over)


@pytest.fixture
def add_repository(registry):
    async def add(name: str) -> None:
        await registry.blobs.link(name, "sha256:" + hashlib.sha256(name.encode()).hexdigest(), 1)

    return add


@pytest.fixture
def registry(metadata) -> RegistryStores:
    return registry_over(metadata)
