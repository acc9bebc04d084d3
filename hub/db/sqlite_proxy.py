"""SQLite implementation of ProxyStore (mixed into SqliteStore)."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Mapping
from typing import Any

from .proxy_store import (
    UPSTREAM_FIELDS,
    CachedImage,
    EvictedImage,
    ProxyStore,
    UpstreamRecord,
    namespace_range,
)

UPSTREAM_COLUMNS = ("name, url, aliases, username, password, manifest_revalidate_seconds, tenants, anonymous_pull, "
                    "max_size_bytes, ttl_days, created_at, updated_at")
# Lists are stored as JSON text in both dialects, so rows copy across unchanged.
_LISTS = frozenset({"aliases", "tenants"})


def upstream_record(row: Any) -> UpstreamRecord:
    (name, url, aliases, username, password, revalidate, tenants, anonymous, max_size, ttl, created,
     updated) = tuple(row)
    return UpstreamRecord(name, url, tuple(json.loads(aliases)), username, password, revalidate,
                          tuple(json.loads(tenants)), bool(anonymous), max_size, ttl, created, updated)


def upstream_values(record: UpstreamRecord) -> tuple:
    return (record.name, record.url, json.dumps(list(record.aliases)), record.username, record.password,
            record.manifest_revalidate_seconds, json.dumps(list(record.tenants)), int(record.anonymous_pull),
            record.max_size_bytes, record.ttl_days, record.created_at, record.updated_at)


def column_value(column: str, value: object) -> object:
    if column not in UPSTREAM_FIELDS:
        raise ValueError(f"cannot change {column!r}")
    if column in _LISTS:
        return json.dumps(list(value))  # type: ignore[call-overload]
    if column == "anonymous_pull":
        return int(bool(value))
    return value


# The images of a namespace with their last pull: roots (manifests no manifest of their
# repository references), each with the latest pull of itself or a platform manifest of it,
# and the bytes of the blobs they reference.
IMAGES_SQL = """
SELECT r.name, m.digest, COALESCE(
    (SELECT max(p.pulled_at) FROM proxy_pulls p WHERE p.repository_id = m.repository_id AND (p.digest = m.digest
        OR p.digest IN (SELECT c.child_digest FROM manifest_references c WHERE c.repository_id = m.repository_id
                        AND c.manifest_digest = m.digest AND c.child_kind = 'manifest'))),
    m.created_at) AS last_pulled,
    (SELECT CAST(COALESCE(SUM(b.size), 0) AS BIGINT) FROM blobs b WHERE b.digest IN (
        SELECT r2.child_digest FROM manifest_references r2 WHERE r2.repository_id = m.repository_id
        AND r2.child_kind = 'blob' AND (r2.manifest_digest = m.digest OR r2.manifest_digest IN (
            SELECT c.child_digest FROM manifest_references c WHERE c.repository_id = m.repository_id
            AND c.manifest_digest = m.digest AND c.child_kind = 'manifest')))) AS size
FROM repositories r JOIN manifests m ON m.repository_id = r.id
WHERE r.name >= {p1} AND r.name < {p2}
  AND NOT EXISTS (SELECT 1 FROM manifest_references x WHERE x.repository_id = m.repository_id
                  AND x.child_digest = m.digest AND x.child_kind = 'manifest')
ORDER BY last_pulled, r.name, m.digest
"""
CACHE_SIZE_SQL = """
SELECT COALESCE(SUM(b.size), 0) FROM blobs b WHERE b.digest IN (
    SELECT rb.digest FROM repository_blobs rb JOIN repositories r ON r.id = rb.repository_id
    WHERE r.name >= {p1} AND r.name < {p2})
"""


class SqliteProxyMixin(ProxyStore):
    # Provided by SqliteStore.
    _write: Any
    _one: Any
    _scan: Any
    _repo_id: Any

    @staticmethod
    def _bump(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO proxy_upstreams_version (id, version) VALUES (1, 1) "
                     "ON CONFLICT (id) DO UPDATE SET version = version + 1")

    # Upstreams -------------------------------------------------------------------------------------
    async def list_upstreams(self) -> list[UpstreamRecord]:
        rows = await self._scan(f"SELECT {UPSTREAM_COLUMNS} FROM proxy_upstreams ORDER BY name")
        return [upstream_record(r) for r in rows]

    async def get_upstream(self, name: str) -> UpstreamRecord | None:
        row = self._one(f"SELECT {UPSTREAM_COLUMNS} FROM proxy_upstreams WHERE name = ?", (name,))
        return upstream_record(row) if row else None

    async def create_upstream(self, record: UpstreamRecord) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(f"INSERT INTO proxy_upstreams ({UPSTREAM_COLUMNS}) VALUES "
                               "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING",
                               upstream_values(record))
            if cur.rowcount:
                self._bump(conn)
            return cur.rowcount > 0

        return await self._write(run)

    async def update_upstream(self, name: str, changes: Mapping[str, object]) -> UpstreamRecord | None:
        columns = sorted(changes)
        values = [column_value(c, changes[c]) for c in columns]

        def run(conn: sqlite3.Connection) -> UpstreamRecord | None:
            sets = ", ".join(f"{c} = ?" for c in (*columns, "updated_at"))
            cur = conn.execute(f"UPDATE proxy_upstreams SET {sets} WHERE name = ?", (*values, time.time(), name))
            if not cur.rowcount:
                return None
            self._bump(conn)
            row = conn.execute(f"SELECT {UPSTREAM_COLUMNS} FROM proxy_upstreams WHERE name = ?", (name,)).fetchone()
            return upstream_record(row)

        return await self._write(run)

    async def delete_upstream(self, name: str) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            deleted = conn.execute("DELETE FROM proxy_upstreams WHERE name = ?", (name,)).rowcount > 0
            if deleted:
                self._bump(conn)
            return deleted

        return await self._write(run)

    async def upstreams_version(self) -> int:
        row = self._one("SELECT version FROM proxy_upstreams_version WHERE id = 1")
        return row[0] if row else 0

    # Cache bounds ----------------------------------------------------------------------------------
    async def record_pulls(self, pulls: Iterable[tuple[str, str, float]]) -> None:
        batch = list(pulls)
        if not batch:
            return

        def run(conn: sqlite3.Connection) -> None:
            # WHERE true: SQLite needs it to tell an upsert's ON CONFLICT from a join's ON.
            conn.executemany(
                "INSERT INTO proxy_pulls (repository_id, digest, pulled_at) "
                "SELECT m.repository_id, m.digest, ? FROM repositories r JOIN manifests m "
                "ON m.repository_id = r.id AND m.digest = ? WHERE r.name = ? AND true "
                "ON CONFLICT (repository_id, digest) DO UPDATE SET pulled_at = max(pulled_at, excluded.pulled_at)",
                [(at, digest, repository) for repository, digest, at in batch])

        await self._write(run)

    async def cache_size(self, namespace: str) -> int:
        rows = await self._scan(CACHE_SIZE_SQL.format(p1="?", p2="?"), namespace_range(namespace))
        return rows[0][0]

    async def cache_images(self, namespace: str) -> list[CachedImage]:
        rows = await self._scan(IMAGES_SQL.format(p1="?", p2="?"), namespace_range(namespace))
        return [CachedImage(*r) for r in rows]

    async def evict_image(self, repository: str, digest: str, namespace: str) -> EvictedImage:
        low, high = namespace_range(namespace)

        def run(conn: sqlite3.Connection) -> EvictedImage:
            repo_id = self._repo_id(conn, repository, False)
            if repo_id is None:
                return EvictedImage((), (), 0)
            removed: list[str] = []
            doomed = [digest]
            while doomed:
                gone = doomed.pop()
                children = [r[0] for r in conn.execute(
                    "SELECT child_digest FROM manifest_references WHERE repository_id = ? AND manifest_digest = ? "
                    "AND child_kind = 'manifest'", (repo_id, gone))]
                if not conn.execute("DELETE FROM manifests WHERE repository_id = ? AND digest = ?",
                                    (repo_id, gone)).rowcount:
                    continue
                removed.append(gone)
                # A platform manifest goes too once no remaining manifest references it.
                doomed += [c for c in children if not conn.execute(
                    "SELECT 1 FROM manifest_references WHERE repository_id = ? AND child_digest = ? "
                    "AND child_kind = 'manifest'", (repo_id, c)).fetchone()]
            if not removed:
                return EvictedImage((), (), 0)
            conn.execute("DELETE FROM proxy_tags WHERE repository_id = ? "
                         "AND tag NOT IN (SELECT name FROM tags WHERE repository_id = ?)", (repo_id, repo_id))
            unlinked = conn.execute(
                "DELETE FROM repository_blobs WHERE repository_id = ? AND NOT EXISTS (SELECT 1 FROM "
                "manifest_references mr WHERE mr.repository_id = repository_blobs.repository_id "
                "AND mr.child_digest = repository_blobs.digest AND mr.child_kind = 'blob') RETURNING digest",
                (repo_id,)).fetchall()
            digests = tuple(sorted(r[0] for r in unlinked))
            freed = 0
            for d in digests:
                if not conn.execute(
                        "SELECT 1 FROM repository_blobs rb JOIN repositories r ON r.id = rb.repository_id "
                        "WHERE rb.digest = ? AND r.name >= ? AND r.name < ? LIMIT 1", (d, low, high)).fetchone():
                    freed += conn.execute("SELECT size FROM blobs WHERE digest = ?", (d,)).fetchone()[0]
            conn.execute(
                "DELETE FROM repositories WHERE id = ? "
                "AND NOT EXISTS (SELECT 1 FROM manifests WHERE repository_id = ?) "
                "AND NOT EXISTS (SELECT 1 FROM repository_blobs WHERE repository_id = ?) "
                "AND NOT EXISTS (SELECT 1 FROM uploads WHERE repository_id = ?)", (repo_id,) * 4)
            return EvictedImage(tuple(removed), digests, freed)

        return await self._write(run)

    async def delete_unlinked_blob(self, digest: str) -> bool:
        return await self._write(lambda conn: conn.execute(
            "DELETE FROM blobs WHERE digest = ? AND NOT EXISTS "
            "(SELECT 1 FROM repository_blobs WHERE digest = ?)", (digest, digest)).rowcount > 0)
