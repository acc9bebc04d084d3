"""A pooled connection that PostgreSQL closed (a restart, a failover, an idle timeout) costs no
request: a statement or transaction that finds its connection gone runs again on a new one."""

from __future__ import annotations

import asyncpg

from .conftest import open_store
from .test_store import digest


async def _drop_pool_connections(url: str) -> int:
    """What a server restart does to the store's pool: every other session of this database ends."""
    admin = await asyncpg.connect(url)
    try:
        return await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()")
    finally:
        await admin.close()


async def test_connections_the_server_closed_are_replaced_without_failing_a_request(postgres_url):
    store = await open_store(postgres_url, pool_min_size=2, pool_max_size=2)
    try:
        await store.link_blob("team/app", digest("a"), 1)
        async with store.lock("blob:x"):
            pass  # the dedicated lock connection is open too
        # Each step right after the server ended every session of the store (pool and lock
        # connections): a statement may find its connection closed under it.
        # After the first, at least the connection the last step used is live again (asyncpg
        # restores the pool's minimum in the background, when its own timing says: counting on
        # both failed this test on a quiet machine).
        assert await _drop_pool_connections(postgres_url) >= 3
        assert await store.get_blob_size("team/app", digest("a")) == 1
        assert await _drop_pool_connections(postgres_url) >= 1
        await store.link_blob("team/app", digest("b"), 2)
        assert await _drop_pool_connections(postgres_url) >= 1
        async with store.lock("blob:x") as held:
            assert held
        assert await _drop_pool_connections(postgres_url) >= 1
        await store.ping()
        assert await store.get_blob_size("team/app", digest("b")) == 2
    finally:
        await store.close()
