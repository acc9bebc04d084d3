"""PostgreSQL implementation of ProxyStore (mixed into PostgresStore).

Same semantics as sqlite_proxy.py. Replicas evicting at once (the serve loop takes a store
lock, but `daohub proxy evict` may run beside it) cannot double-count: every delete returns
the rows it removed itself, and a second transaction finds them gone.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

import asyncpg

from .postgres_identity import rows_affected
from .proxy_store import CachedImage, EvictedImage, ProxyStore, UpstreamRecord, namespace_range
from .sqlite_proxy import (
    CACHE_SIZE_SQL,
    IMAGES_SQL,
    UPSTREAM_COLUMNS,
    column_value,
    upstream_record,
    upstream_values,
)


class PostgresProxyMixin(ProxyStore):
    # Provided by PostgresStore.
    pool: asyncpg.Pool
    _write: Any
    _fetch: Any
    _fetchrow: Any
    _fetchval: Any

    @staticmethod
    async def _bump(conn: asyncpg.Connection) -> None:
        await conn.execute("INSERT INTO proxy_upstreams_version (id, version) VALUES (1, 1) "
                           "ON CONFLICT (id) DO UPDATE SET version = proxy_upstreams_version.version + 1")

    # Upstreams -------------------------------------------------------------------------------------
    async def list_upstreams(self) -> list[UpstreamRecord]:
        return [upstream_record(r) for r in await self._fetch(
            f"SELECT {UPSTREAM_COLUMNS} FROM proxy_upstreams ORDER BY name")]

    async def get_upstream(self, name: str) -> UpstreamRecord | None:
        row = await self._fetchrow(f"SELECT {UPSTREAM_COLUMNS} FROM proxy_upstreams WHERE name = $1", name)
        return upstream_record(row) if row else None

    async def create_upstream(self, record: UpstreamRecord) -> bool:
        async def run(conn: asyncpg.Connection) -> bool:
            created = rows_affected(await conn.execute(
                f"INSERT INTO proxy_upstreams ({UPSTREAM_COLUMNS}) VALUES "
                "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT (name) DO NOTHING",
                *upstream_values(record))) > 0
            if created:
                await self._bump(conn)
            return created

        return await self._write(run)

    async def update_upstream(self, name: str, changes: Mapping[str, object]) -> UpstreamRecord | None:
        columns = sorted(changes)
        values = [column_value(c, changes[c]) for c in columns]

        async def run(conn: asyncpg.Connection) -> UpstreamRecord | None:
            sets = ", ".join(f"{c} = ${i}" for i, c in enumerate((*columns, "updated_at"), start=2))
            row = await conn.fetchrow(f"UPDATE proxy_upstreams SET {sets} WHERE name = $1 RETURNING "
                                      f"{UPSTREAM_COLUMNS}", name, *values, time.time())
            if row is None:
                return None
            await self._bump(conn)
            return upstream_record(row)

        return await self._write(run)

    async def delete_upstream(self, name: str) -> bool:
        async def run(conn: asyncpg.Connection) -> bool:
            deleted = rows_affected(await conn.execute("DELETE FROM proxy_upstreams WHERE name = $1", name)) > 0
            if deleted:
                await self._bump(conn)
            return deleted

        return await self._write(run)

    async def upstreams_version(self) -> int:
        return await self._fetchval("SELECT COALESCE((SELECT version FROM proxy_upstreams_version WHERE id = 1), 0)")

    # Cache bounds ----------------------------------------------------------------------------------
    async def record_pulls(self, pulls: Iterable[tuple[str, str, float]]) -> None:
        batch = list(pulls)
        if not batch:
            return
        names, digests, times = (list(column) for column in zip(*batch, strict=True))
        # Sorted by key so two replicas flushing overlapping batches lock rows in one order.
        await self._write(lambda conn: conn.execute(
            "INSERT INTO proxy_pulls (repository_id, digest, pulled_at) "
            "SELECT m.repository_id, m.digest, max(x.at) FROM unnest($1::text[], $2::text[], $3::float8[]) "
            "AS x(name, digest, at) JOIN repositories r ON r.name = x.name "
            "JOIN manifests m ON m.repository_id = r.id AND m.digest = x.digest "
            "GROUP BY m.repository_id, m.digest ORDER BY m.repository_id, m.digest "
            "ON CONFLICT (repository_id, digest) DO UPDATE "
            "SET pulled_at = GREATEST(proxy_pulls.pulled_at, excluded.pulled_at)", names, digests, times))

    async def cache_size(self, namespace: str) -> int:
        return int(await self._fetchval(CACHE_SIZE_SQL.format(p1="$1", p2="$2"), *namespace_range(namespace)))

    async def cache_images(self, namespace: str) -> list[CachedImage]:
        rows = await self._fetch(IMAGES_SQL.format(p1="$1", p2="$2"), *namespace_range(namespace))
        return [CachedImage(*r) for r in rows]

    async def evict_image(self, repository: str, digest: str, namespace: str) -> EvictedImage:
        low, high = namespace_range(namespace)

        async def run(conn: asyncpg.Connection) -> EvictedImage:
            repo_id = await conn.fetchval("SELECT id FROM repositories WHERE name = $1", repository)
            if repo_id is None:
                return EvictedImage((), (), 0)
            removed: list[str] = []
            doomed = [digest]
            while doomed:
                gone = doomed.pop()
                children = [r[0] for r in await conn.fetch(
                    "SELECT child_digest FROM manifest_references WHERE repository_id = $1 AND manifest_digest = $2 "
                    "AND child_kind = 'manifest'", repo_id, gone)]
                if not rows_affected(await conn.execute(
                        "DELETE FROM manifests WHERE repository_id = $1 AND digest = $2", repo_id, gone)):
                    continue
                removed.append(gone)
                for child in children:
                    if not await conn.fetchval(
                            "SELECT 1 FROM manifest_references WHERE repository_id = $1 AND child_digest = $2 "
                            "AND child_kind = 'manifest'", repo_id, child):
                        doomed.append(child)
            if not removed:
                return EvictedImage((), (), 0)
            await conn.execute("DELETE FROM proxy_tags p WHERE p.repository_id = $1 AND NOT EXISTS "
                               "(SELECT 1 FROM tags t WHERE t.repository_id = $1 AND t.name = p.tag)", repo_id)
            unlinked = await conn.fetch(
                "DELETE FROM repository_blobs rb WHERE rb.repository_id = $1 AND NOT EXISTS (SELECT 1 FROM "
                "manifest_references mr WHERE mr.repository_id = rb.repository_id AND mr.child_digest = rb.digest "
                "AND mr.child_kind = 'blob') RETURNING rb.digest", repo_id)
            digests = tuple(sorted(r[0] for r in unlinked))
            freed = await conn.fetchval(
                "SELECT COALESCE(SUM(b.size), 0)::bigint FROM blobs b WHERE b.digest = ANY($1::text[]) "
                "AND NOT EXISTS (SELECT 1 FROM repository_blobs rb JOIN repositories r ON r.id = rb.repository_id "
                "WHERE rb.digest = b.digest AND r.name >= $2 AND r.name < $3)", list(digests), low, high)
            await conn.execute(
                "DELETE FROM repositories WHERE id = $1 "
                "AND NOT EXISTS (SELECT 1 FROM manifests WHERE repository_id = $1) "
                "AND NOT EXISTS (SELECT 1 FROM repository_blobs WHERE repository_id = $1) "
                "AND NOT EXISTS (SELECT 1 FROM uploads WHERE repository_id = $1)", repo_id)
            return EvictedImage(tuple(removed), digests, int(freed))

        return await self._write(run)

    async def delete_unlinked_blob(self, digest: str) -> bool:
        # A link committed while this waited makes it fail on the foreign key; the retry sees the link.
        return await self._write(lambda conn: self._delete_blob_row(conn, digest))

    @staticmethod
    async def _delete_blob_row(conn: asyncpg.Connection, digest: str) -> bool:
        return rows_affected(await conn.execute(
            "DELETE FROM blobs WHERE digest = $1 AND NOT EXISTS "
            "(SELECT 1 FROM repository_blobs WHERE digest = $1)", digest)) > 0
