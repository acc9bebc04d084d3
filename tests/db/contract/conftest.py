"""Fixtures every area of the store contract suite shares (docs/design/metadata-split.md §9).

`metadata` is today's MetadataStore, opened and migrated, once per dialect; each area's conftest wraps
it in that area's target API (its legacy.py). `writer_pair` gives two stores for concurrent callers:
the same store twice, or on PostgreSQL also two stores with pools of their own on one database, as
two replicas would have. `dialect` names the dialect, for the few places the two differ today.

PostgreSQL: the whole suite shares one database, copied once from the session's migrated template,
and every test starts by emptying its tables (~15 ms), not by copying a database of its own (~200 ms).
"""

from __future__ import annotations

import asyncpg
import pytest

from hub.db import create_store
from tests.conftest import TEMPLATE_DB

DIALECTS = ["sqlite", "postgres"]


@pytest.fixture(scope="session")
def contract_database(postgres_cluster) -> str:
    """The URL of the one PostgreSQL database the contract suite shares (the cluster goes at the end)."""
    return postgres_cluster.create_database(template=TEMPLATE_DB)


async def _emptied(url: str) -> str:
    """Every table emptied but the migration record. DELETE with triggers off (foreign keys and the GC
    queue's triggers, so the order does not matter) takes ~15 ms; TRUNCATE of 25 tables ~80 ms."""
    conn = await asyncpg.connect(url)
    try:
        tables = [r["tablename"] for r in await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            " AND tablename <> 'schema_migrations'")]
        await conn.execute("SET session_replication_role = replica; "
                           + "; ".join(f'DELETE FROM "{t}"' for t in tables))
    finally:
        await conn.close()
    return url


async def _url(request, dialect: str, tmp_path) -> str:
    if dialect == "sqlite":
        return f"sqlite:///{tmp_path}/daohub.db"
    return await _emptied(request.getfixturevalue("contract_database"))


async def open_metadata(url: str):
    store = create_store(url, pool_min_size=1, pool_max_size=8)
    await store.open()
    await store.migrate()
    return store


@pytest.fixture(params=DIALECTS)
def dialect(request) -> str:
    return request.param


@pytest.fixture
async def metadata(request, dialect, tmp_path):
    store = await open_metadata(await _url(request, dialect, tmp_path))
    yield store
    await store.close()


@pytest.fixture(params=["sqlite", "postgres", "postgres-replicas"])
async def writer_pair(request, tmp_path):
    """Two MetadataStores for concurrent callers; the same store twice but for postgres-replicas."""
    url = await _url(request, request.param.split("-")[0], tmp_path)
    stores = [await open_metadata(url)]
    if request.param == "postgres-replicas":
        stores.append(await open_metadata(url))
    yield stores[0], stores[-1]
    for s in stores:
        await s.close()


def area_fixtures(name: str, over):
    """An area's two fixtures: `name` (its handle over `metadata`) and `writers` (a handle over each
    store of `writer_pair`). An area's conftest binds both: `registry, writers = area_fixtures(...)`."""

    @pytest.fixture(name=name)
    def one(metadata):
        return over(metadata)

    @pytest.fixture(name="writers")
    def pair(writer_pair):
        return over(writer_pair[0]), over(writer_pair[1])

    return one, pair
