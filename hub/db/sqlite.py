"""SQLite metadata store: the embedded default for one process.

Threading: all writes go through one connection on one dedicated thread (SQLite allows
one writer at a time anyway), each as a `BEGIN IMMEDIATE` transaction. Reads use a
separate connection in WAL mode *inline on the event loop*: a point lookup by primary
key takes a few microseconds, an order of magnitude less than a hop to a thread, and
WAL readers never wait for the writer. Reads that may scan (listings) go to a thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import functools
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from . import schema
from .base import (
    QUOTA_COUNTED_SQL,
    QUOTA_USAGE_SQL,
    AppIndexEntry,
    AppVersionRecord,
    ManifestRecord,
    MetadataStore,
    NewManifest,
    QuotaExceededError,
    QuotaRoom,
    ReferrerRecord,
    UploadRecord,
    app_version_record,
)
from ..events import cloudevents as ce
from .event_store import EventStore, emit, manifest_events, quota_warning
from .gc_store import SqliteGcMixin, SqliteTx, drive
from .locks import FileLocks, KeyedLocks
from .signin_store import SignInStoreMixin
from .immutable_store import ImmutableStore, create_frozen_tags, guard_tag_writes
from .promotion_store import PromotionStore
from .retention_store import RetentionStore
from .sqlite_identity import SqliteIdentityMixin
from .server_state import SqliteServerStateMixin
from .sqlite_proxy import SqliteProxyMixin

if TYPE_CHECKING:
    from auth.policy import CatalogScope

T = TypeVar("T")

# The longest a background write gives way to foreground ones (see SqliteStore._write).
_YIELD_SECONDS = 0.5


def path_from_url(url: str) -> str:
    if not url.startswith("sqlite:///"):
        raise ValueError(f"not a sqlite URL: {url}")
    # sqlite:////abs/path.db -> /abs/path.db ; sqlite:///rel.db -> rel.db
    return url[len("sqlite:///"):]


class SqliteStore(ImmutableStore, SignInStoreMixin, SqliteProxyMixin, SqliteIdentityMixin, SqliteServerStateMixin, SqliteGcMixin,
                  RetentionStore, PromotionStore, EventStore, MetadataStore):
    dialect = "sqlite"

    def __init__(self, path: str, synchronous: str = "FULL"):
        self.path = path
        self.synchronous = synchronous.upper()
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._read_executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._scan_reader: sqlite3.Connection | None = None
        self._locks = KeyedLocks()
        self._file_locks = FileLocks(f"{path}.locks")
        self._foreground_writes = 0  # see _write
        self._foreground_idle = asyncio.Event()
        self._foreground_idle.set()
        self._background_turn = asyncio.Lock()

    # Connection management --------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=30000")
        conn.create_function("regexp", 2, _regexp, deterministic=True)
        return conn

    async def open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._file_locks.open()
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sqlite-write")
        self._read_executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sqlite-scan")
        loop = asyncio.get_running_loop()
        self._writer = await loop.run_in_executor(self._executor, self._connect)
        self._reader = self._connect()
        self._scan_reader = await loop.run_in_executor(self._read_executor, self._connect)

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        if self._writer is not None:
            await loop.run_in_executor(self._executor, self._writer.close)
            self._writer = None
        if self._scan_reader is not None:
            await loop.run_in_executor(self._read_executor, self._scan_reader.close)
            self._scan_reader = None
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        for ex in (self._executor, self._read_executor):
            if ex is not None:
                ex.shutdown(wait=True)
        self._executor = self._read_executor = None
        self._file_locks.close()

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """`fn` in one `BEGIN IMMEDIATE` transaction on the writer thread.

        Background writes (MetadataStore.background(): GC) give way. In this process, one at a
        time, each after the foreground writes waiting: so a push queues behind at most one GC
        transaction, not behind the eight verdicts a pass keeps in flight. Across processes (a
        `daohub gc run` beside serve), foreground writers announce themselves on the lock file
        (FileLocks.announce_write) and a background write waits while any other process has
        one announced. SQLite's own busy handler cannot do this: a writer that finds the
        database locked sleeps for ever longer steps (up to 100 ms), and a busy GC retakes the
        lock in the microseconds between its transactions, so serve's pushes waited seconds.
        Either wait is bounded (_YIELD_SECONDS): a steady foreground never stops a pass."""
        conn = self._writer
        assert conn is not None, "store not open"
        background = self.in_background()

        def run() -> T:
            if background:
                deadline = time.monotonic() + _YIELD_SECONDS
                while self._file_locks.others_writing() and time.monotonic() < deadline:
                    time.sleep(0.001)
            else:
                self._file_locks.announce_write()
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    result = fn(conn)
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
                return result
            finally:
                if not background:
                    self._file_locks.write_done()

        loop = asyncio.get_running_loop()
        # The writer thread sees this task's context variables (the actor its events name).
        run = functools.partial(contextvars.copy_context().run, run)
        if not background:
            self._foreground_writes += 1
            self._foreground_idle.clear()
            try:
                return await loop.run_in_executor(self._executor, run)
            finally:
                self._foreground_writes -= 1
                if not self._foreground_writes:
                    self._foreground_idle.set()
        async with self._background_turn:
            if self._foreground_writes:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._foreground_idle.wait(), _YIELD_SECONDS)
            return await loop.run_in_executor(self._executor, run)

    def _one(self, sql: str, args: tuple = ()) -> Any:
        assert self._reader is not None, "store not open"
        return self._reader.execute(sql, args).fetchone()

    async def _scan(self, sql: str, args: tuple = ()) -> list[Any]:
        conn = self._scan_reader
        assert conn is not None, "store not open"
        return await asyncio.get_running_loop().run_in_executor(
            self._read_executor, lambda: conn.execute(sql, args).fetchall()
        )

    async def ping(self) -> None:
        self._one("SELECT 1")

    @contextlib.asynccontextmanager
    async def lock(self, key: str, *, wait: bool = True) -> AsyncIterator[bool]:
        # `serve` owns the database, but CLI commands (proxy evict, purge-uploads) run beside it
        # in processes of their own: a record lock on a file next to the database excludes them.
        async with self._locks.hold(key, wait=wait) as held_here:
            if not held_here:
                yield False
                return
            async with self._file_locks.hold(key, wait=wait) as held:
                yield held

    # Migrations -----------------------------------------------------------------------
    async def migrate(self) -> list[int]:
        migrations = schema.load("sqlite")

        def run(conn: sqlite3.Connection) -> list[int]:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                "name TEXT NOT NULL, applied_at REAL NOT NULL)"
            )
            done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
            applied = []
            for version, name, sql in migrations:
                if version in done:
                    continue
                for statement in _split_sql(sql):
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)", (version, name, time.time()))
                applied.append(version)
            return applied

        return await self._write(run)

    async def schema_version(self) -> int:
        try:
            row = self._one("SELECT max(version) FROM schema_migrations")
        except sqlite3.OperationalError:
            return 0
        return row[0] or 0

    # Helpers used inside write transactions ------------------------------------------
    @staticmethod
    def _repo_id(conn: sqlite3.Connection, name: str, create: bool) -> int | None:
        row = conn.execute("SELECT id FROM repositories WHERE name = ?", (name,)).fetchone()
        if row:
            return row[0]
        if not create:
            return None
        return conn.execute(
            "INSERT INTO repositories (name, created_at) VALUES (?, ?)", (name, time.time())
        ).lastrowid

    @staticmethod
    def _tenant_range(tenant: str) -> tuple[str, str]:
        # Repository names of a tenant sort between "<tenant>/" and "<tenant>0" ('0' follows '/').
        return tenant + "/", tenant + "0"

    @classmethod
    def _usage(cls, conn: sqlite3.Connection, tenant: str) -> int:
        low, high = cls._tenant_range(tenant)
        return conn.execute(f"SELECT {QUOTA_USAGE_SQL.format(low='?1', high='?2')}", (low, high)).fetchone()[0]

    @classmethod
    def _counted(cls, conn: sqlite3.Connection, tenant: str, digest: str, kind: str) -> bool:
        low, high = cls._tenant_range(tenant)
        return conn.execute(QUOTA_COUNTED_SQL[kind].format(digest="?", low="?", high="?"),
                            (digest, low, high)).fetchone() is not None

    @classmethod
    def _check_quota(cls, conn: sqlite3.Connection, repository: str, digest: str, size: int,
                     kind: str = "blob", warn: bool = True) -> None:
        """Inside the write transaction: refuse a blob link or a manifest (`kind`) that takes the
        tenant past its quota."""
        tenant = repository.split("/", 1)[0]
        row = conn.execute("SELECT quota_bytes FROM tenants WHERE name = ?", (tenant,)).fetchone()
        if row is None or row[0] is None or cls._counted(conn, tenant, digest, kind):
            return  # no quota, or already counted once for this tenant
        used = cls._usage(conn, tenant)
        if used + size > row[0]:
            raise QuotaExceededError(tenant, used, row[0], size, kind=kind)
        if warn:  # in the link's write transaction (not the pre-check on a reader)
            drive(quota_warning(SqliteTx(conn), tenant, used, size, row[0]))

    @staticmethod
    def _link(conn: sqlite3.Connection, repo_id: int, digest: str, size: int) -> None:
        now = time.time()
        conn.execute("INSERT OR IGNORE INTO blobs (digest, size, created_at) VALUES (?, ?, ?)", (digest, size, now))
        # A link made again refreshes its time: GC keeps links younger than its grace period.
        conn.execute(
            "INSERT INTO repository_blobs (repository_id, digest, created_at) VALUES (?, ?, ?) "
            "ON CONFLICT (repository_id, digest) DO UPDATE SET created_at = excluded.created_at",
            (repo_id, digest, now),
        )

    # Repositories -----------------------------------------------------------------------
    async def repository_exists(self, repository: str) -> bool:
        return self._one("SELECT 1 FROM repositories WHERE name = ?", (repository,)) is not None

    async def list_repositories(self, limit: int, last: str | None, scope: CatalogScope | None = None) -> list[str]:
        where, args = ["r.name > ?"], [last or ""]
        if scope is not None:
            seen = []
            if scope.public:
                seen.append("r.public = 1")
            if scope.tenants:
                seen.append(f"substr(r.name, 1, instr(r.name, '/') - 1) IN ({','.join('?' * len(scope.tenants))})")
                args += sorted(scope.tenants)
            if scope.robot_tenant is not None and scope.robot_patterns:
                matches = " OR ".join(["('/' || r.name) REGEXP ?"] * len(scope.robot_patterns))
                seen.append(f"(r.name >= ? AND r.name < ? AND ({matches}))")
                args += [*self._tenant_range(scope.robot_tenant), *scope.robot_patterns]
            if not seen:
                return []
            where.append(f"({' OR '.join(seen)})")
        rows = await self._scan(
            f"SELECT r.name FROM repositories r WHERE {' AND '.join(where)} "
            "AND EXISTS (SELECT 1 FROM manifests m WHERE m.repository_id = r.id) "
            "ORDER BY r.name LIMIT ?",
            (*args, limit),
        )
        return [r[0] for r in rows]

    # Blobs ------------------------------------------------------------------------------
    async def get_blob_size(self, repository: str, digest: str) -> int | None:
        row = self._one(
            "SELECT b.size FROM repositories r JOIN repository_blobs rb ON rb.repository_id = r.id "
            "JOIN blobs b ON b.digest = rb.digest WHERE r.name = ? AND rb.digest = ?",
            (repository, digest),
        )
        return row[0] if row else None

    async def get_global_blob_size(self, digest: str) -> int | None:
        row = self._one(
            "SELECT b.size FROM blobs b WHERE b.digest = ? "
            "AND EXISTS (SELECT 1 FROM repository_blobs rb WHERE rb.digest = b.digest)",
            (digest,),
        )
        return row[0] if row else None

    async def repositories_linking(self, digest: str, limit: int = 100) -> list[str]:
        rows = await self._scan(
            "SELECT r.name FROM repository_blobs rb JOIN repositories r ON r.id = rb.repository_id "
            "WHERE rb.digest = ? ORDER BY r.name LIMIT ?",
            (digest, limit),
        )
        return [r[0] for r in rows]

    async def link_blob(self, repository: str, digest: str, size: int, *, mounted_from: str | None = None) -> None:
        def run(conn: sqlite3.Connection) -> None:
            self._check_quota(conn, repository, digest, size)
            repo_id = self._repo_id(conn, repository, True)
            new = mounted_from is not None and conn.execute(
                "SELECT 1 FROM repository_blobs WHERE repository_id = ? AND digest = ?", (repo_id, digest)
            ).fetchone() is None
            self._link(conn, repo_id, digest, size)
            if new:
                _event(conn, ce.BLOB_MOUNTED, repository, f"{repository}@{digest}",
                       {"repository": repository, "digest": digest, "size": size, "from": mounted_from or None})

        await self._write(run)

    async def tenant_usage(self, tenant: str) -> int:
        conn = self._scan_reader
        return await asyncio.get_running_loop().run_in_executor(self._read_executor, self._usage, conn, tenant)

    async def check_quota(self, repository: str, digest: str, size: int) -> None:
        tenant = repository.split("/", 1)[0]
        row = self._one("SELECT quota_bytes FROM tenants WHERE name = ?", (tenant,))
        if row is None or row[0] is None:
            return  # the common case costs one indexed read
        conn = self._scan_reader
        await asyncio.get_running_loop().run_in_executor(
            self._read_executor, self._check_quota, conn, repository, digest, size, "blob", False)

    async def quota_room(self, repository: str, *, upload_id: str | None = None,
                         digest: str | None = None) -> QuotaRoom | None:
        tenant = repository.split("/", 1)[0]
        row = self._one("SELECT quota_bytes FROM tenants WHERE name = ?", (tenant,))
        if row is None or row[0] is None:
            return None  # the common case costs one indexed read

        def run(conn: sqlite3.Connection) -> QuotaRoom | None:
            if digest is not None and self._counted(conn, tenant, digest, "blob"):
                return None
            low, high = self._tenant_range(tenant)
            uploading = conn.execute(
                "SELECT COALESCE(SUM(u.size), 0) FROM uploads u JOIN repositories r ON r.id = u.repository_id "
                "WHERE r.name >= ? AND r.name < ? AND u.id != ?", (low, high, upload_id or "")).fetchone()[0]
            return QuotaRoom(tenant, row[0], self._usage(conn, tenant), uploading)

        return await asyncio.get_running_loop().run_in_executor(self._read_executor, run, self._scan_reader)

    async def unlink_blob(self, repository: str, digest: str) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            repo_id = self._repo_id(conn, repository, False)
            if repo_id is None:
                return False
            cur = conn.execute(
                "DELETE FROM repository_blobs WHERE repository_id = ? AND digest = ?", (repo_id, digest)
            )
            return cur.rowcount > 0

        return await self._write(run)

    # Uploads ----------------------------------------------------------------------------
    async def create_upload(self, upload_id: str, repository: str) -> None:
        def run(conn: sqlite3.Connection) -> None:
            repo_id = self._repo_id(conn, repository, True)
            now = time.time()
            conn.execute(
                "INSERT INTO uploads (id, repository_id, size, created_at, updated_at) VALUES (?, ?, 0, ?, ?)",
                (upload_id, repo_id, now, now),
            )

        await self._write(run)

    async def get_upload(self, upload_id: str) -> UploadRecord | None:
        row = self._one(
            "SELECT u.id, r.name, u.size, u.created_at, u.updated_at FROM uploads u "
            "JOIN repositories r ON r.id = u.repository_id WHERE u.id = ?",
            (upload_id,),
        )
        return UploadRecord(*row) if row else None

    async def set_upload_size(self, upload_id: str, expected: int | None, size: int) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            if expected is None:
                cur = conn.execute(
                    "UPDATE uploads SET size = ?, updated_at = ? WHERE id = ?", (size, time.time(), upload_id)
                )
            else:
                cur = conn.execute(
                    "UPDATE uploads SET size = ?, updated_at = ? WHERE id = ? AND size = ?",
                    (size, time.time(), upload_id, expected),
                )
            return cur.rowcount > 0

        return await self._write(run)

    async def delete_upload(self, upload_id: str) -> bool:
        return await self._write(
            lambda conn: conn.execute("DELETE FROM uploads WHERE id = ?", (upload_id,)).rowcount > 0
        )

    async def expired_uploads(self, updated_before: float, limit: int = 1000) -> list[str]:
        rows = await self._scan("SELECT id FROM uploads WHERE updated_at < ? ORDER BY updated_at LIMIT ?",
                                (updated_before, limit))
        return [r[0] for r in rows]

    async def uploads_exist(self, upload_ids: list[str]) -> set[str]:
        found: set[str] = set()
        for i in range(0, len(upload_ids), 500):
            batch = upload_ids[i:i + 500]
            marks = ",".join("?" * len(batch))
            rows = await self._scan(f"SELECT id FROM uploads WHERE id IN ({marks})", tuple(batch))
            found.update(r[0] for r in rows)
        return found

    async def complete_upload(self, upload_id: str, repository: str, digest: str, size: int) -> None:
        def run(conn: sqlite3.Connection) -> None:
            self._check_quota(conn, repository, digest, size)
            self._link(conn, self._repo_id(conn, repository, True), digest, size)
            conn.execute("DELETE FROM uploads WHERE id = ?", (upload_id,))

        await self._write(run)

    # Manifests and tags -----------------------------------------------------------------
    async def get_manifest(self, repository: str, reference: str, *, by_digest: bool,
                           with_content: bool = True) -> ManifestRecord | None:
        cols = "m.digest, m.media_type, m.size, " + ("m.content" if with_content else "NULL")
        cols += ", m.subject, m.artifact_type"
        if by_digest:
            row = self._one(
                f"SELECT {cols} FROM repositories r JOIN manifests m ON m.repository_id = r.id "
                "WHERE r.name = ? AND m.digest = ?",
                (repository, reference),
            )
        else:
            row = self._one(
                f"SELECT {cols} FROM repositories r JOIN tags t ON t.repository_id = r.id "
                "JOIN manifests m ON m.repository_id = r.id AND m.digest = t.digest "
                "WHERE r.name = ? AND t.name = ?",
                (repository, reference),
            )
        return ManifestRecord(*row) if row else None

    async def put_manifest(self, repository: str, manifest: NewManifest, tags: list[str], *,
                           verify_references: bool = True) -> list[str]:
        def run(conn: sqlite3.Connection) -> list[str]:
            self._check_quota(conn, repository, manifest.digest, len(manifest.content), "manifest")
            repo_id = self._repo_id(conn, repository, True)
            missing = []
            for digest in manifest.blob_refs if verify_references else ():
                if not conn.execute(
                    "SELECT 1 FROM repository_blobs WHERE repository_id = ? AND digest = ?", (repo_id, digest)
                ).fetchone():
                    missing.append(digest)
            for digest in manifest.manifest_refs if verify_references else ():
                if not conn.execute(
                    "SELECT 1 FROM manifests WHERE repository_id = ? AND digest = ?", (repo_id, digest)
                ).fetchone():
                    missing.append(digest)
            if missing:
                return missing
            now = time.time()
            stored = conn.execute(
                "INSERT INTO manifests (repository_id, digest, media_type, size, content, subject, "
                "artifact_type, annotations, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (repository_id, digest) DO NOTHING",
                (repo_id, manifest.digest, manifest.media_type, len(manifest.content), manifest.content,
                 manifest.subject, manifest.artifact_type, manifest.annotations_json, now),
            ).rowcount > 0
            unique_tags = list(dict.fromkeys(tags))
            marks = ",".join("?" * len(unique_tags))
            previous = dict(conn.execute(f"SELECT name, digest FROM tags WHERE repository_id = ? AND name IN ({marks})",
                                         (repo_id, *unique_tags)).fetchall()) if unique_tags else {}
            refs = [(repo_id, manifest.digest, d, "blob") for d in set(manifest.blob_refs)]
            refs += [(repo_id, manifest.digest, d, "manifest") for d in set(manifest.manifest_refs)]
            conn.executemany("INSERT OR IGNORE INTO manifest_references VALUES (?, ?, ?, ?)", refs)
            tx = SqliteTx(conn)
            frozen = drive(guard_tag_writes(tx, self.tag_guard, repo_id, repository, manifest.digest, tags,
                                            previous))  # the tags' rows, read once
            for tag in tags:
                if tag in frozen:
                    continue
                conn.execute(
                    "INSERT INTO tags (repository_id, name, digest, updated_at) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (repository_id, name) DO UPDATE SET digest = excluded.digest, "
                    "updated_at = excluded.updated_at",
                    (repo_id, tag, manifest.digest, now),
                )
            drive(create_frozen_tags(tx, repo_id, repository, manifest.digest, frozen, now))
            if verify_references:  # the pull-through cache's fills are not changes anyone made
                for event_type, subject, data in manifest_events(repository, manifest, unique_tags, stored, previous):
                    _event(conn, event_type, repository, subject, data)
            return []

        return await self._write(run)

    async def list_tags(self, repository: str, limit: int, last: str | None) -> list[str] | None:
        row = self._one("SELECT id FROM repositories WHERE name = ?", (repository,))
        if row is None:
            return None
        rows = await self._scan(
            "SELECT name FROM tags WHERE repository_id = ? AND name > ? ORDER BY name LIMIT ?",
            (row[0], last or "", limit),
        )
        return [r[0] for r in rows]

    async def list_referrers(self, repository: str, subject: str,
                             artifact_type: str | None = None) -> list[ReferrerRecord]:
        sql = (
            "SELECT m.digest, m.media_type, m.size, m.artifact_type, m.annotations FROM repositories r "
            "JOIN manifests m ON m.repository_id = r.id WHERE r.name = ? AND m.subject = ?"
        )
        args: tuple = (repository, subject)
        if artifact_type is not None:
            sql += " AND m.artifact_type = ?"
            args += (artifact_type,)
        rows = await self._scan(sql + " ORDER BY m.created_at, m.digest", args)
        return [ReferrerRecord(*r) for r in rows]

    # Pull-through cache ----------------------------------------------------------------------
    async def proxy_tag_checked_at(self, repository: str, tag: str) -> float | None:
        row = self._one("SELECT p.checked_at FROM repositories r JOIN proxy_tags p ON p.repository_id = r.id "
                        "WHERE r.name = ? AND p.tag = ?", (repository, tag))
        return row[0] if row else None

    async def set_proxy_tag_checked(self, repository: str, tag: str, checked_at: float) -> None:
        def run(conn: sqlite3.Connection) -> None:
            repo_id = self._repo_id(conn, repository, False)
            if repo_id is not None:
                conn.execute("INSERT INTO proxy_tags (repository_id, tag, checked_at) VALUES (?, ?, ?) "
                             "ON CONFLICT (repository_id, tag) DO UPDATE SET checked_at = excluded.checked_at",
                             (repo_id, tag, checked_at))

        await self._write(run)


    # App store catalog index -----------------------------------------------------------------
    _APP_COLUMNS = ("r.name, a.tag, a.digest, a.app_key, a.title, a.summary, a.categories, a.version, "
                    "a.deprecated, r.public, a.icon_digest, a.icon_media_type, a.indexed_at")
    # A row counts only while its tag still points at the indexed manifest.
    _APP_JOIN = ("FROM app_versions a JOIN repositories r ON r.id = a.repository_id "
                 "JOIN tags t ON t.repository_id = a.repository_id AND t.name = a.tag AND t.digest = a.digest")

    async def unindex_app_versions(self, repository: str, tags: list[str]) -> None:
        def run(conn: sqlite3.Connection) -> None:
            repo_id = self._repo_id(conn, repository, False)
            if repo_id is not None:
                conn.executemany("DELETE FROM app_versions WHERE repository_id = ? AND tag = ?",
                                 [(repo_id, t) for t in tags])

        if tags:
            await self._write(run)

    async def list_app_versions(self, limit: int, after: str | None, *, tenants: frozenset[str] | None = None,
                                tenant: str | None = None) -> list[AppVersionRecord]:
        where, args = ["r.name > ?"], [after or ""]
        if tenant is not None:
            where.append("r.name >= ? AND r.name < ?")
            args += self._tenant_range(tenant)
        if tenants is not None:
            marks = ",".join("?" * len(tenants))
            where.append(f"(r.public = 1 OR substr(r.name, 1, instr(r.name, '/') - 1) IN ({marks}))")
            args += sorted(tenants)
        rows = await self._scan(
            f"SELECT {self._APP_COLUMNS} {self._APP_JOIN} WHERE a.repository_id IN ("
            f"SELECT a.repository_id {self._APP_JOIN} WHERE {' AND '.join(where)} "
            "GROUP BY a.repository_id, r.name ORDER BY r.name LIMIT ?) ORDER BY r.name, a.tag", (*args, limit))
        return [app_version_record(row) for row in rows]

    async def app_versions_of(self, repository: str) -> list[AppVersionRecord]:
        rows = await self._scan(f"SELECT {self._APP_COLUMNS} {self._APP_JOIN} WHERE r.name = ? ORDER BY a.tag",
                                (repository,))
        return [app_version_record(row) for row in rows]

    async def get_app_version(self, repository: str, tag: str) -> AppVersionRecord | None:
        row = self._one(f"SELECT {self._APP_COLUMNS}, a.document {self._APP_JOIN} WHERE r.name = ? AND a.tag = ?",
                        (repository, tag))
        return app_version_record(row) if row else None


def _event(conn: sqlite3.Connection, event_type: str, repository: str, subject: str, data: dict) -> None:
    """An event in the writer's open transaction (hub/db/event_store.py)."""
    drive(emit(SqliteTx(conn), event_type, repository=repository, subject=subject, data=data))


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _regexp(pattern: str, value: str | None) -> bool:
    """SQLite's `value REGEXP pattern` (the catalog's robot patterns, auth.policy.pattern_regex)."""
    return value is not None and _compiled(pattern).search(value) is not None


def _split_sql(sql: str) -> list[str]:
    """Split a migration into statements (no semicolons inside statements here, but for the
    statements of a trigger's BEGIN ... END, which stay in their CREATE TRIGGER)."""
    lines = [ln for ln in sql.splitlines() if not ln.strip().startswith("--")]
    statements: list[str] = []
    trigger: list[str] = []
    for part in (s.strip() for s in "\n".join(lines).split(";")):
        if trigger:
            trigger.append(part)
            if part.upper() == "END":
                statements.append(";\n".join(trigger))
                trigger = []
        elif part.upper().startswith("CREATE TRIGGER"):
            trigger = [part]
        elif part:
            statements.append(part)
    return statements
