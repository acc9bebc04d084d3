"""The identity area's contract fixtures: `identity` (every sub-store over one migrated store, on
SQLite and on PostgreSQL), `add_repository` (a repository made through the registry area, for the
tenant-not-empty rule) and `writers` (two handles for concurrent callers, see `writer_pair`)."""

from __future__ import annotations

import hashlib

import pytest

from ..conftest import area_fixtures
from .legacy import identity_over

identity, writers = area_fixtures("identity", identity_over)


@pytest.fixture
def add_repository(metadata):
    async def add(name: str) -> None:
        await metadata.link_blob(name, "sha256:" + hashlib.sha256(name.encode()).hexdigest(), 1)

    return add
