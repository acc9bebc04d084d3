"""PostgreSQL metadata store (asyncpg): what N stateless replicas share.

Concurrency. Every write is one transaction at READ COMMITTED with explicit row locks where
a decision depends on rows another replica may be changing, rather than SERIALIZABLE
everywhere: the quota check reads every blob link of a tenant, and under SERIALIZABLE those
predicate reads would make concurrent pushes into one tenant abort and retry one another.
Row locks serialise exactly the transactions that conflict:
- quota: a link into a tenant with a quota locks the tenant row (FOR UPDATE) before it sums
  the usage, so concurrent pushes into one tenant check and link one at a time and the
  total never passes the quota; pushes into tenants without a quota take no lock;
- a new repository takes a share lock on its tenant row, so deleting a tenant (FOR UPDATE,
  then "no repositories?") cannot miss a repository being created;
- a manifest share-locks the blob links and child manifests it references, so a concurrent
  blob or manifest delete cannot leave it pointing at nothing;
- tags, blobs, links and repositories are upserts (INSERT ... ON CONFLICT), atomic under
  races: two replicas setting one tag serialise on its row and the last one wins; two
  linking one blob both succeed with one row;
- an upload's size is a compare-and-set UPDATE, re-checked by PostgreSQL after a wait;
- login failures count in one upsert, so no failure is lost between replicas.
What remains (a deadlock, or a row that vanished under a foreign key because a repository
was deleted concurrently) is retried: each transaction here is idempotent and has no side
effect outside the database.

Migrations run under a transaction-level advisory lock, so replicas starting together apply
them once. Cross-replica named locks (store.lock) are session-level advisory locks; see
_AdvisoryLocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg

from ..background import stop_if_cancelled
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
from .event_store import EventStore, emit, emit_all, manifest_events, quota_warning
from .gc_store import PostgresGcMixin, PostgresTx
from .locks import KeyedLocks
from .signin_store import SignInStoreMixin
from .immutable_store import ImmutableStore, create_frozen_tags, guard_tag_writes
from .promotion_store import PromotionStore
from .retention_store import RetentionStore
from .postgres_identity import PostgresIdentityMixin, rows_affected, tenant_range
from .postgres_proxy import PostgresProxyMixin
from .server_state import PostgresServerStateMixin

if TYPE_CHECKING:
    from auth.policy import CatalogScope

log = logging.getLogger("daohub.db")

T = TypeVar("T")

# ping() answers within this (readiness probes must not hang on a dead server).
PING_TIMEOUT = 2.0
# Establishing a connection; a down server on loopback refuses at once, an unreachable one waits this.
CONNECT_TIMEOUT = 5.0
# Default bound on one statement.
COMMAND_TIMEOUT = 60.0
_ATTEMPTS = 5
_RETRYABLE = (asyncpg.SerializationError, asyncpg.DeadlockDetectedError, asyncpg.ForeignKeyViolationError)
# What a statement raises when the server closed its connection under it (a restart, a
# failover, pg_terminate_backend): retried on a new connection when the connection is indeed
# closed and nothing can have committed.
_CONNECTION_LOST = (asyncpg.PostgresConnectionError, asyncpg.OperatorInterventionError, asyncpg.InterfaceError,
                    asyncpg.InternalClientError, OSError)
_MIGRATION_LOCK = "daohub.migrate"


def _closed(conn) -> bool:
    """Whether a pooled connection is closed (asyncpg refuses even to say once it is detached)."""
    try:
        return conn.is_closed()
    except asyncpg.InterfaceError:
        return True


def is_postgres_url(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


class _AdvisoryLocks:
    """This replica's cross-replica locks: session-level advisory locks on one dedicated connection.

    Why one connection for all of them rather than a pooled connection held per lock: an
    upload request holds its lock while its body streams, for seconds or minutes, so a
    connection per lock would tie up one connection per in-flight upload (a pool of 20 would
    cap a replica at 20 concurrent uploads and starve queries, or need hundreds of server
    connections). A session may hold any number of advisory locks, so one connection holds
    them all, and each acquire or release is one short statement on it. The price: waiting
    is by polling pg_try_advisory_lock with backoff (contention on one upload across replicas
    is rare: a client retrying elsewhere, a status probe), and the local KeyedLocks in front
    must stop two tasks of this process from "sharing" a key, as a session's locks are
    reentrant. When this replica dies, or the connection does, PostgreSQL drops its locks.
    """

    _TRY = "SELECT pg_try_advisory_lock(hashtextextended($1, 0))"
    _UNLOCK = "SELECT pg_advisory_unlock(hashtextextended($1, 0))"
    _TRY_MANY = "SELECT k FROM unnest($1::text[]) AS k WHERE pg_try_advisory_lock(hashtextextended(k, 0))"
    _UNLOCK_MANY = ("SELECT count(*) FILTER (WHERE pg_advisory_unlock(hashtextextended(k, 0))) "
                    "FROM unnest($1::text[]) AS k")

    def __init__(self, connect: Callable[[], Awaitable[asyncpg.Connection]]):
        self._connect = connect
        self._conn: asyncpg.Connection | None = None
        self._io = asyncio.Lock()  # one statement at a time on the connection
        self._held: set[str] = set()
        self._background: set[asyncio.Task] = set()

    async def _run(self, statement: Callable[[asyncpg.Connection], Awaitable[Any]]
                   ) -> tuple[asyncpg.Connection, Any]:
        """`statement` on the lock connection (made again once if it was lost); its answer.
        The caller holds _io."""
        for attempt in (1, 2):
            conn = self._conn
            if conn is None or conn.is_closed():
                if self._held:
                    log.warning("lock connection lost while holding %d locks (released by the server)",
                                len(self._held))
                    self._held.clear()
                conn = self._conn = await self._connect()
            try:
                return conn, await statement(conn)
            except _CONNECTION_LOST:
                conn.terminate()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def _try_lock(self, key: str) -> asyncpg.Connection | None:
        async with self._io:
            conn, got = await self._run(lambda c: c.fetchval(self._TRY, key, timeout=COMMAND_TIMEOUT))
            if got:
                self._held.add(key)
                return conn
            return None

    async def _try_many(self, keys: list[str]) -> tuple[asyncpg.Connection, list[str]]:
        async with self._io:
            conn, rows = await self._run(lambda c: c.fetch(self._TRY_MANY, keys, timeout=COMMAND_TIMEOUT))
            got = [r[0] for r in rows]
            self._held.update(got)
            return conn, got

    async def try_many(self, keys: list[str]) -> tuple[asyncpg.Connection | None, list[str]]:
        """Those of `keys` free now, taken in one statement (none waited for), and the connection
        holding them."""
        if not keys:
            return None, []
        attempt = self._in_background(self._try_many(keys))
        try:
            return await asyncio.shield(attempt)  # as in acquire(): a cancel gives back what was won
        except asyncio.CancelledError:
            attempt.add_done_callback(lambda t: self._give_back_many(t))
            raise

    def _give_back_many(self, attempt: asyncio.Task) -> None:
        if not attempt.cancelled() and attempt.exception() is None:
            conn, got = attempt.result()
            self._in_background(self._unlock_many(got, conn))

    async def _unlock_many(self, keys: list[str], conn: asyncpg.Connection) -> None:
        async with self._io:
            if not keys or conn is not self._conn or conn.is_closed():
                return
            self._held.difference_update(keys)
            try:
                released = await conn.fetchval(self._UNLOCK_MANY, keys, timeout=COMMAND_TIMEOUT)
                if released != len(keys):
                    log.warning("%d of %d advisory locks were not held at release", len(keys) - released,
                                len(keys))
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
                log.warning("could not release %d advisory locks (%s); resetting the lock connection",
                            len(keys), type(exc).__name__)
                conn.terminate()

    async def release_many(self, keys: list[str], conn: asyncpg.Connection | None) -> None:
        if conn is not None:
            await asyncio.shield(self._in_background(self._unlock_many(keys, conn)))

    async def _unlock(self, key: str, conn: asyncpg.Connection) -> None:
        async with self._io:
            if conn is not self._conn or conn.is_closed():
                return  # the session that held it is gone, and the lock with it
            self._held.discard(key)
            try:
                if not await conn.fetchval(self._UNLOCK, key, timeout=COMMAND_TIMEOUT):
                    log.warning("advisory lock %r was not held at release", key)
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
                # Unsure whether it was released: drop the session, which releases all of its locks.
                log.warning("could not release advisory lock %r (%s); resetting the lock connection",
                            key, type(exc).__name__)
                conn.terminate()

    def _in_background(self, coro) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def acquire(self, key: str, wait: bool) -> asyncpg.Connection | None:
        """The connection holding `key` once acquired; None if taken and not `wait`."""
        delay = 0.005
        while True:
            attempt = self._in_background(self._try_lock(key))
            try:
                # Shielded: a cancelled request must not leave a lock won mid-statement behind.
                conn = await asyncio.shield(attempt)
            except asyncio.CancelledError:
                attempt.add_done_callback(lambda t: self._give_back(key, t))
                raise
            if conn is not None or not wait:
                return conn
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 0.1)

    def _give_back(self, key: str, attempt: asyncio.Task) -> None:
        if not attempt.cancelled() and attempt.exception() is None and attempt.result() is not None:
            self._in_background(self._unlock(key, attempt.result()))

    async def release(self, key: str, conn: asyncpg.Connection) -> None:
        await asyncio.shield(self._in_background(self._unlock(key, conn)))

    async def close(self) -> None:
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        if self._conn is not None and not self._conn.is_closed():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._conn.close(), 5)
        self._conn = None


class PostgresStore(ImmutableStore, SignInStoreMixin, PostgresProxyMixin, PostgresIdentityMixin, PostgresServerStateMixin,
                    PostgresGcMixin, RetentionStore, PromotionStore, EventStore, MetadataStore):
    dialect = "postgres"

    def __init__(self, url: str, *, pool_min_size: int = 2, pool_max_size: int = 20,
                 connect_timeout: float = CONNECT_TIMEOUT, command_timeout: float = COMMAND_TIMEOUT):
        if not is_postgres_url(url):
            raise ValueError("not a postgresql:// URL")
        self.url = url
        self.pool_min_size = pool_min_size
        self.pool_max_size = max(pool_max_size, pool_min_size, 1)
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self._pool: asyncpg.Pool | None = None
        self._local_locks = KeyedLocks()
        self._advisory = _AdvisoryLocks(self._connect_for_locks)

    def __repr__(self) -> str:
        return f"PostgresStore(pool {self.pool_min_size}..{self.pool_max_size})"  # the URL may hold a password

    # Connection management --------------------------------------------------------------
    async def open(self) -> None:
        self._pool = await asyncpg.create_pool(
            self.url, min_size=self.pool_min_size, max_size=self.pool_max_size, timeout=self.connect_timeout,
            command_timeout=self.command_timeout, server_settings={"application_name": "daohub"})

    async def _connect_for_locks(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.url, timeout=self.connect_timeout,
                                     server_settings={"application_name": "daohub-locks"})

    async def close(self) -> None:
        await self._advisory.close()
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), 10)
            except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                pool.terminate()

    @property
    def pool(self) -> asyncpg.Pool:
        assert self._pool is not None, "store not open"
        return self._pool

    async def ping(self) -> None:
        # A bounded wait: with the server down, the pool's reconnect fails fast and the next
        # ping after it is back reconnects, so readiness recovers without a restart.
        async with asyncio.timeout(PING_TIMEOUT):
            await self._fetchval("SELECT 1")

    async def _write(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """Run `fn` in one transaction; retry it after a deadlock or a lost foreign-key race,
        and on a new connection if the server closed this one before the commit."""
        lost = 0
        attempt = 0
        while True:
            attempt += 1
            committing = False
            async with self.pool.acquire() as conn:
                try:
                    async with conn.transaction():
                        result = await fn(conn)
                        committing = True
                    return result
                except _RETRYABLE as exc:
                    if attempt == _ATTEMPTS:
                        raise
                    log.debug("retrying a transaction after %s", type(exc).__name__)
                except _CONNECTION_LOST as exc:
                    stop_if_cancelled(exc)  # a cancelled statement's rollback raises InterfaceError
                    # A lost COMMIT may have committed: only a transaction cut short before it
                    # is run again (PostgreSQL rolled that one back when the session ended).
                    # Every connection of the pool may be a stale one: each is replaced once.
                    if committing or lost > self.pool_max_size or not _closed(conn):
                        raise
                    lost += 1
                    attempt -= 1
                    log.info("PostgreSQL closed a connection (%s); running the transaction on a new one",
                             type(exc).__name__)
                    continue
            await asyncio.sleep(0.002 * attempt * (1 + random.random()))

    async def _read(self, method: str, sql: str, args: tuple) -> Any:
        """One read statement; run again on a new connection if the server had closed this one
        (each of the pool's connections may be stale: each is replaced once)."""
        for attempt in range(self.pool_max_size + 2):
            async with self.pool.acquire() as conn:
                try:
                    return await getattr(conn, method)(sql, *args)
                except _CONNECTION_LOST as exc:
                    stop_if_cancelled(exc)
                    if attempt > self.pool_max_size or not _closed(conn):
                        raise
                    log.info("PostgreSQL closed a connection (%s); reading again on a new one", type(exc).__name__)
        raise AssertionError("unreachable")

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        return await self._read("fetch", sql, args)

    async def _fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        return await self._read("fetchrow", sql, args)

    async def _fetchval(self, sql: str, *args: Any) -> Any:
        return await self._read("fetchval", sql, args)

    # Cross-replica locks -------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def lock(self, key: str, *, wait: bool = True) -> AsyncIterator[bool]:
        async with self._local_locks.hold(key, wait=wait) as held_here:
            if not held_here:
                yield False
                return
            conn = await self._advisory.acquire(key, wait)
            if conn is None:
                yield False
                return
            try:
                yield True
            finally:
                await self._advisory.release(key, conn)

    @contextlib.asynccontextmanager
    async def try_locks(self, keys: Iterable[str]) -> AsyncIterator[set[str]]:
        # This process's holds first (each at once or not at all), then the free ones' advisory
        # locks in one statement, released in one at the end.
        async with contextlib.AsyncExitStack() as stack:
            local = []
            for key in dict.fromkeys(keys):
                if await stack.enter_async_context(self._local_locks.hold(key, wait=False)):
                    local.append(key)
            conn, got = await self._advisory.try_many(local)
            try:
                yield set(got)
            finally:
                await self._advisory.release_many(got, conn)

    # Migrations -----------------------------------------------------------------------------
    async def migrate(self) -> list[int]:
        migrations = schema.load("postgres")

        async def run(conn: asyncpg.Connection) -> list[int]:
            # Replicas starting together queue here; the second finds the work done.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", _MIGRATION_LOCK)
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, "
                "name text NOT NULL, applied_at double precision NOT NULL)")
            done = {r[0] for r in await conn.fetch("SELECT version FROM schema_migrations")}
            applied = []
            for version, name, sql in migrations:
                if version in done:
                    continue
                await conn.execute(sql)  # DDL is transactional: a failed migration leaves nothing
                await conn.execute("INSERT INTO schema_migrations VALUES ($1, $2, $3)", version, name, time.time())
                applied.append(version)
            return applied

        return await self._write(run)

    async def schema_version(self) -> int:
        try:
            return await self._fetchval("SELECT COALESCE(max(version), 0) FROM schema_migrations")
        except asyncpg.UndefinedTableError:
            return 0

    # Helpers used inside write transactions ----------------------------------------------
    @staticmethod
    async def _repo_id(conn: asyncpg.Connection, name: str, create: bool) -> int | None:
        repo_id = await conn.fetchval("SELECT id FROM repositories WHERE name = $1", name)
        if repo_id is not None or not create:
            return repo_id
        # Pairs with delete_tenant's FOR UPDATE: a tenant cannot go while a repository appears in it.
        await conn.execute("SELECT 1 FROM tenants WHERE name = $1 FOR SHARE", name.split("/", 1)[0])
        repo_id = await conn.fetchval(
            "INSERT INTO repositories (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING RETURNING id",
            name, time.time())
        if repo_id is None:  # created by a concurrent transaction, committed by now
            repo_id = await conn.fetchval("SELECT id FROM repositories WHERE name = $1", name)
        return repo_id

    @staticmethod
    async def _usage(conn: asyncpg.Connection | asyncpg.Pool, tenant: str) -> int:
        return await conn.fetchval(f"SELECT ({QUOTA_USAGE_SQL.format(low='$1', high='$2')})::bigint",
                                   *tenant_range(tenant))

    @staticmethod
    async def _counted(conn: asyncpg.Connection | asyncpg.Pool, tenant: str, digest: str, kind: str) -> bool:
        return await conn.fetchval(QUOTA_COUNTED_SQL[kind].format(digest="$1", low="$2", high="$3"),
                                   digest, *tenant_range(tenant)) is not None

    @classmethod
    async def _check_quota(cls, conn: asyncpg.Connection | asyncpg.Pool, repository: str, digest: str, size: int,
                           *, lock: bool, kind: str = "blob") -> None:
        """Refuse a blob link or a manifest (`kind`) that takes the tenant past its quota; with
        `lock`, hold the tenant row until commit."""
        tenant = repository.split("/", 1)[0]
        quota = await conn.fetchval("SELECT quota_bytes FROM tenants WHERE name = $1", tenant)
        if quota is None:
            return
        if lock:
            # Links and manifests into this tenant wait here until ours commits, and then see it in their sum.
            quota = await conn.fetchval("SELECT quota_bytes FROM tenants WHERE name = $1 FOR UPDATE", tenant)
            if quota is None:
                return
        if await cls._counted(conn, tenant, digest, kind):
            return  # already counted once for this tenant
        used = await cls._usage(conn, tenant)
        if used + size > quota:
            raise QuotaExceededError(tenant, used, quota, size, kind=kind)
        if lock:  # in the link's transaction (the unlocked pre-check changes nothing)
            await quota_warning(PostgresTx(conn), tenant, used, size, quota)

    @staticmethod
    async def _link(conn: asyncpg.Connection, repo_id: int, digest: str, size: int) -> None:
        now = time.time()
        await conn.execute("INSERT INTO blobs (digest, size, created_at) VALUES ($1, $2, $3) "
                           "ON CONFLICT (digest) DO NOTHING", digest, size, now)
        # A link made again refreshes its time: GC keeps links younger than its grace period.
        await conn.execute("INSERT INTO repository_blobs (repository_id, digest, created_at) VALUES ($1, $2, $3) "
                           "ON CONFLICT (repository_id, digest) DO UPDATE SET created_at = excluded.created_at",
                           repo_id, digest, now)

    # Repositories ---------------------------------------------------------------------------
    async def repository_exists(self, repository: str) -> bool:
        return await self._fetchval("SELECT 1 FROM repositories WHERE name = $1", repository) is not None

    async def list_repositories(self, limit: int, last: str | None, scope: CatalogScope | None = None) -> list[str]:
        where, args = ["r.name > $1"], [last or ""]
        if scope is not None:
            seen = []
            if scope.public:
                seen.append("r.public = 1")
            if scope.tenants:
                args.append(sorted(scope.tenants))
                seen.append(f"(strpos(r.name, '/') > 0 AND split_part(r.name, '/', 1) = ANY(${len(args)}::text[]))")
            if scope.robot_tenant is not None and scope.robot_patterns:
                args += [*tenant_range(scope.robot_tenant), list(scope.robot_patterns)]
                seen.append(f"(r.name >= ${len(args) - 2} AND r.name < ${len(args) - 1} "
                            f"AND ('/' || r.name) ~ ANY(${len(args)}::text[]))")
            if not seen:
                return []
            where.append(f"({' OR '.join(seen)})")
        args.append(limit)
        rows = await self._fetch(
            f"SELECT r.name FROM repositories r WHERE {' AND '.join(where)} "
            f"AND EXISTS (SELECT 1 FROM manifests m WHERE m.repository_id = r.id) ORDER BY r.name LIMIT ${len(args)}",
            *args)
        return [r[0] for r in rows]

    # Blobs ----------------------------------------------------------------------------------
    async def get_blob_size(self, repository: str, digest: str) -> int | None:
        return await self._fetchval(
            "SELECT b.size FROM repositories r JOIN repository_blobs rb ON rb.repository_id = r.id "
            "JOIN blobs b ON b.digest = rb.digest WHERE r.name = $1 AND rb.digest = $2", repository, digest)

    async def get_global_blob_size(self, digest: str) -> int | None:
        return await self._fetchval(
            "SELECT b.size FROM blobs b WHERE b.digest = $1 "
            "AND EXISTS (SELECT 1 FROM repository_blobs rb WHERE rb.digest = b.digest)", digest)

    async def repositories_linking(self, digest: str, limit: int = 100) -> list[str]:
        rows = await self._fetch(
            "SELECT r.name FROM repository_blobs rb JOIN repositories r ON r.id = rb.repository_id "
            "WHERE rb.digest = $1 ORDER BY r.name LIMIT $2", digest, limit)
        return [r[0] for r in rows]

    async def link_blob(self, repository: str, digest: str, size: int, *, mounted_from: str | None = None) -> None:
        async def run(conn: asyncpg.Connection) -> None:
            await self._check_quota(conn, repository, digest, size, lock=True)
            repo_id = await self._repo_id(conn, repository, True)
            new = mounted_from is not None and await conn.fetchval(
                "SELECT 1 FROM repository_blobs WHERE repository_id = $1 AND digest = $2", repo_id, digest) is None
            await self._link(conn, repo_id, digest, size)
            if new:
                await emit(PostgresTx(conn), ce.BLOB_MOUNTED, repository=repository,
                           subject=f"{repository}@{digest}",
                           data={"repository": repository, "digest": digest, "size": size,
                                 "from": mounted_from or None})

        await self._write(run)

    async def tenant_usage(self, tenant: str) -> int:
        return await self._usage(self.pool, tenant)

    async def check_quota(self, repository: str, digest: str, size: int) -> None:
        await self._check_quota(self.pool, repository, digest, size, lock=False)

    async def quota_room(self, repository: str, *, upload_id: str | None = None,
                         digest: str | None = None) -> QuotaRoom | None:
        tenant = repository.split("/", 1)[0]
        quota = await self._fetchval("SELECT quota_bytes FROM tenants WHERE name = $1", tenant)
        if quota is None or (digest is not None and await self._counted(self.pool, tenant, digest, "blob")):
            return None
        uploading = await self._fetchval(
            "SELECT COALESCE(SUM(u.size), 0)::bigint FROM uploads u JOIN repositories r ON r.id = u.repository_id "
            "WHERE r.name >= $1 AND r.name < $2 AND u.id <> $3", *tenant_range(tenant), upload_id or "")
        return QuotaRoom(tenant, quota, await self._usage(self.pool, tenant), uploading)

    async def unlink_blob(self, repository: str, digest: str) -> bool:
        status = await self.pool.execute(
            "DELETE FROM repository_blobs WHERE digest = $2 "
            "AND repository_id = (SELECT id FROM repositories WHERE name = $1)", repository, digest)
        return rows_affected(status) > 0

    # Uploads --------------------------------------------------------------------------------
    async def create_upload(self, upload_id: str, repository: str) -> None:
        async def run(conn: asyncpg.Connection) -> None:
            repo_id = await self._repo_id(conn, repository, True)
            now = time.time()
            await conn.execute("INSERT INTO uploads (id, repository_id, size, created_at, updated_at) "
                               "VALUES ($1, $2, 0, $3, $3)", upload_id, repo_id, now)

        await self._write(run)

    async def get_upload(self, upload_id: str) -> UploadRecord | None:
        row = await self._fetchrow(
            "SELECT u.id, r.name, u.size, u.created_at, u.updated_at FROM uploads u "
            "JOIN repositories r ON r.id = u.repository_id WHERE u.id = $1", upload_id)
        return UploadRecord(*row) if row else None

    async def set_upload_size(self, upload_id: str, expected: int | None, size: int) -> bool:
        if expected is None:
            status = await self.pool.execute("UPDATE uploads SET size = $1, updated_at = $2 WHERE id = $3",
                                             size, time.time(), upload_id)
        else:
            status = await self.pool.execute(
                "UPDATE uploads SET size = $1, updated_at = $2 WHERE id = $3 AND size = $4",
                size, time.time(), upload_id, expected)
        return rows_affected(status) > 0

    async def delete_upload(self, upload_id: str) -> bool:
        return rows_affected(await self.pool.execute("DELETE FROM uploads WHERE id = $1", upload_id)) > 0

    async def expired_uploads(self, updated_before: float, limit: int = 1000) -> list[str]:
        rows = await self._fetch("SELECT id FROM uploads WHERE updated_at < $1 ORDER BY updated_at LIMIT $2",
                                 updated_before, limit)
        return [r[0] for r in rows]

    async def uploads_exist(self, upload_ids: list[str]) -> set[str]:
        if not upload_ids:
            return set()
        rows = await self._fetch("SELECT id FROM uploads WHERE id = ANY($1::text[])", upload_ids)
        return {r[0] for r in rows}

    async def complete_upload(self, upload_id: str, repository: str, digest: str, size: int) -> None:
        async def run(conn: asyncpg.Connection) -> None:
            await self._check_quota(conn, repository, digest, size, lock=True)
            await self._link(conn, await self._repo_id(conn, repository, True), digest, size)
            await conn.execute("DELETE FROM uploads WHERE id = $1", upload_id)

        await self._write(run)

    # Manifests and tags ---------------------------------------------------------------------
    async def get_manifest(self, repository: str, reference: str, *, by_digest: bool,
                           with_content: bool = True) -> ManifestRecord | None:
        cols = "m.digest, m.media_type, m.size, " + ("m.content" if with_content else "NULL::bytea")
        cols += ", m.subject, m.artifact_type"
        if by_digest:
            row = await self._fetchrow(
                f"SELECT {cols} FROM repositories r JOIN manifests m ON m.repository_id = r.id "
                "WHERE r.name = $1 AND m.digest = $2", repository, reference)
        else:
            row = await self._fetchrow(
                f"SELECT {cols} FROM repositories r JOIN tags t ON t.repository_id = r.id "
                "JOIN manifests m ON m.repository_id = r.id AND m.digest = t.digest "
                "WHERE r.name = $1 AND t.name = $2", repository, reference)
        return ManifestRecord(*row) if row else None

    async def put_manifest(self, repository: str, manifest: NewManifest, tags: list[str], *,
                           verify_references: bool = True) -> list[str]:
        async def run(conn: asyncpg.Connection) -> list[str]:
            # First, as in link_blob: the tenant row's FOR UPDATE before _repo_id's FOR SHARE, never after.
            await self._check_quota(conn, repository, manifest.digest, len(manifest.content), lock=True,
                                    kind="manifest")
            repo_id = await self._repo_id(conn, repository, True)
            if verify_references:  # not for the pull-through cache, which fetches references later
                missing = await self._missing_references(conn, repo_id, manifest)
                if missing:
                    return missing
            now = time.time()
            stored = await conn.execute(
                "INSERT INTO manifests (repository_id, digest, media_type, size, content, subject, artifact_type, "
                "annotations, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) "
                "ON CONFLICT (repository_id, digest) DO NOTHING",
                repo_id, manifest.digest, manifest.media_type, len(manifest.content), manifest.content,
                manifest.subject, manifest.artifact_type, manifest.annotations_json, now)
            kids = [(d, "blob") for d in set(manifest.blob_refs)] + [(d, "manifest") for d in set(manifest.manifest_refs)]
            if kids:
                await conn.execute(
                    "INSERT INTO manifest_references (repository_id, manifest_digest, child_digest, child_kind) "
                    "SELECT $1, $2, c, k FROM unnest($3::text[], $4::text[]) AS x(c, k) ON CONFLICT DO NOTHING",
                    repo_id, manifest.digest, [d for d, _ in kids], [k for _, k in kids])
            unique_tags = list(dict.fromkeys(tags))  # one upsert may touch a row only once
            tx = PostgresTx(conn)
            previous: dict[str, str] = {}
            if unique_tags:
                # Locked, so two replicas moving one tag each report what they moved it from (and
                # the immutable-tag guard judges what the tags hold at commit). Read once, for both.
                previous = {r[0]: r[1] for r in await conn.fetch(
                    "SELECT name, digest FROM tags WHERE repository_id = $1 AND name = ANY($2::text[]) "
                    "ORDER BY name FOR UPDATE", repo_id, unique_tags)}
            frozen = await guard_tag_writes(tx, self.tag_guard, repo_id, repository, manifest.digest, unique_tags,
                                            previous)
            upserted = [t for t in unique_tags if t not in frozen]  # new immutable ones: create_frozen_tags
            if upserted:
                await conn.execute(
                    "INSERT INTO tags (repository_id, name, digest, updated_at) "
                    "SELECT $1, t, $2, $3 FROM unnest($4::text[]) AS x(t) "
                    "ON CONFLICT (repository_id, name) DO UPDATE SET digest = excluded.digest, "
                    "updated_at = excluded.updated_at", repo_id, manifest.digest, now, upserted)
            await create_frozen_tags(tx, repo_id, repository, manifest.digest, frozen, now)
            if verify_references:  # the pull-through cache's fills are not changes anyone made
                await emit_all(tx, repository, manifest_events(
                    repository, manifest, unique_tags, rows_affected(stored) > 0, previous))
            return []

        return await self._write(run)

    @staticmethod
    async def _missing_references(conn: asyncpg.Connection, repo_id: int, manifest: NewManifest) -> list[str]:
        # Share locks: a concurrent unlink or manifest delete waits until this manifest is in.
        blobs = {r[0] for r in await conn.fetch(
            "SELECT digest FROM repository_blobs WHERE repository_id = $1 AND digest = ANY($2::text[]) "
            "FOR SHARE", repo_id, list(set(manifest.blob_refs)))} if manifest.blob_refs else set()
        children = {r[0] for r in await conn.fetch(
            "SELECT digest FROM manifests WHERE repository_id = $1 AND digest = ANY($2::text[]) FOR SHARE",
            repo_id, list(set(manifest.manifest_refs)))} if manifest.manifest_refs else set()
        return ([d for d in manifest.blob_refs if d not in blobs]
                + [d for d in manifest.manifest_refs if d not in children])

    async def list_tags(self, repository: str, limit: int, last: str | None) -> list[str] | None:
        repo_id = await self._fetchval("SELECT id FROM repositories WHERE name = $1", repository)
        if repo_id is None:
            return None
        rows = await self._fetch("SELECT name FROM tags WHERE repository_id = $1 AND name > $2 "
                                 "ORDER BY name LIMIT $3", repo_id, last or "", limit)
        return [r[0] for r in rows]

    async def list_referrers(self, repository: str, subject: str,
                             artifact_type: str | None = None) -> list[ReferrerRecord]:
        sql = ("SELECT m.digest, m.media_type, m.size, m.artifact_type, m.annotations FROM repositories r "
               "JOIN manifests m ON m.repository_id = r.id WHERE r.name = $1 AND m.subject = $2")
        args: tuple = (repository, subject)
        if artifact_type is not None:
            sql += " AND m.artifact_type = $3"
            args += (artifact_type,)
        rows = await self._fetch(sql + " ORDER BY m.created_at, m.digest", *args)
        return [ReferrerRecord(*r) for r in rows]

    # Pull-through cache ---------------------------------------------------------------------
    async def proxy_tag_checked_at(self, repository: str, tag: str) -> float | None:
        return await self._fetchval(
            "SELECT p.checked_at FROM repositories r JOIN proxy_tags p ON p.repository_id = r.id "
            "WHERE r.name = $1 AND p.tag = $2", repository, tag)

    async def set_proxy_tag_checked(self, repository: str, tag: str, checked_at: float) -> None:
        # An upsert from a SELECT: nothing happens without the repository, as in SQLite.
        await self.pool.execute(
            "INSERT INTO proxy_tags (repository_id, tag, checked_at) SELECT id, $2, $3 FROM repositories "
            "WHERE name = $1 ON CONFLICT (repository_id, tag) DO UPDATE SET checked_at = excluded.checked_at",
            repository, tag, checked_at)

    # App store catalog index -------------------------------------------------------------------
    _APP_COLUMNS = ("r.name, a.tag, a.digest, a.app_key, a.title, a.summary, a.categories, a.version, "
                    "a.deprecated, r.public, a.icon_digest, a.icon_media_type, a.indexed_at")
    # A row counts only while its tag still points at the indexed manifest.
    _APP_JOIN = ("FROM app_versions a JOIN repositories r ON r.id = a.repository_id "
                 "JOIN tags t ON t.repository_id = a.repository_id AND t.name = a.tag AND t.digest = a.digest")

    async def unindex_app_versions(self, repository: str, tags: list[str]) -> None:
        if tags:
            await self.pool.execute(
                "DELETE FROM app_versions WHERE tag = ANY($2::text[]) "
                "AND repository_id = (SELECT id FROM repositories WHERE name = $1)", repository, tags)

    async def list_app_versions(self, limit: int, after: str | None, *, tenants: frozenset[str] | None = None,
                                tenant: str | None = None) -> list[AppVersionRecord]:
        where, args = ["r.name > $1"], [after or ""]
        if tenant is not None:
            low, high = tenant_range(tenant)
            args += [low, high]
            where.append(f"r.name >= ${len(args) - 1} AND r.name < ${len(args)}")
        if tenants is not None:
            args.append(sorted(tenants))
            where.append(f"(r.public = 1 OR (strpos(r.name, '/') > 0 AND split_part(r.name, '/', 1) = "
                         f"ANY(${len(args)}::text[])))")
        args.append(limit)
        rows = await self._fetch(
            f"SELECT {self._APP_COLUMNS} {self._APP_JOIN} WHERE a.repository_id IN ("
            f"SELECT a.repository_id {self._APP_JOIN} WHERE {' AND '.join(where)} "
            f"GROUP BY a.repository_id, r.name ORDER BY r.name LIMIT ${len(args)}) ORDER BY r.name, a.tag", *args)
        return [app_version_record(row) for row in rows]

    async def app_versions_of(self, repository: str) -> list[AppVersionRecord]:
        rows = await self._fetch(f"SELECT {self._APP_COLUMNS} {self._APP_JOIN} WHERE r.name = $1 ORDER BY a.tag",
                                 repository)
        return [app_version_record(row) for row in rows]

    async def get_app_version(self, repository: str, tag: str) -> AppVersionRecord | None:
        row = await self._fetchrow(
            f"SELECT {self._APP_COLUMNS}, a.document {self._APP_JOIN} WHERE r.name = $1 AND a.tag = $2",
            repository, tag)
        return app_version_record(row) if row else None


__all__ = ["PostgresStore", "is_postgres_url"]
