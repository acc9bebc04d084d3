"""Metadata store fixtures: each store opened and migrated, and two PostgreSQL "replicas"."""

from __future__ import annotations

import pytest

from hub.db import create_store

STORES = ["sqlite", "postgres"]


async def open_store(url: str, **pool):
    store = create_store(url, **pool)
    await store.open()
    await store.migrate()
    return store


@pytest.fixture(params=STORES)
async def store(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/daohub.db"
    else:
        url = request.getfixturevalue("postgres_url")
    s = await open_store(url, pool_min_size=1, pool_max_size=4)
    yield s
    await s.close()


@pytest.fixture
async def replicas(postgres_url):
    """Two independent PostgresStores (two pools, as two replicas would have) on one database."""
    a = await open_store(postgres_url, pool_min_size=1, pool_max_size=8)
    b = await open_store(postgres_url, pool_min_size=1, pool_max_size=8)
    yield a, b
    await a.close()
    await b.close()
