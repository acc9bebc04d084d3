"""Moving an installation to another stack: `daohub transfer`.

The usual move is from the embedded default (filesystem + SQLite on one machine) to the
scale-out stack (S3/OSS or NFS + PostgreSQL), without losing anything:

0. Checks first, before hours of copying: the target database gets the current schema (as
   `daohub migrate` would), must then be at the same schema version as the SQLite source,
   and must be empty, so a transfer never merges two registries by accident.
1. Blobs. Every committed object under `blobs/` is streamed from the old storage driver to
   the new one, a few at a time. An object already present with the same size is skipped,
   so an interrupted transfer can simply be run again. Upload sessions in flight are not
   moved (their rows are not copied either): clients start those uploads over.
2. Metadata. The SQLite and PostgreSQL schemas use the same table and column names (their
   migrations are kept in step), so the rows are copied table by table, parents before
   children, in one PostgreSQL transaction: either everything arrives or nothing.

All of it reads one SQLite snapshot, taken before the blob copy starts. The registry commits
a blob's bytes before the row that names it, so every blob that snapshot names is already in
the old storage when the copy walks it, even if the old server kept taking pushes (whatever
it took after the snapshot is simply not moved). Before the metadata is committed, every
blob it names is checked against a listing of the new storage, so the new stack never
serves a manifest whose layers it lacks.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from storage_backends import PathNotFoundError, StorageDriver

log = logging.getLogger("daohub.transfer")

# Bookkeeping of the migration runner, not registry data: each side keeps its own.
_SKIP_TABLES = {"schema_migrations"}
# Unfinished upload sessions: their bytes live under uploads/, which is not moved, so a row
# copied to the new stack would point at nothing.
_UNCOPIED_TABLES = {"uploads"}
# Objects under this prefix are registry data; uploads/ holds unfinished sessions.
BLOB_PREFIX = "blobs"
DEFAULT_JOBS = 4


class TransferError(Exception):
    """The transfer cannot start or finish; the message tells the operator what to do."""


@dataclass
class BlobReport:
    copied: int = 0
    skipped: int = 0
    bytes_copied: int = 0


@dataclass
class MetadataReport:
    rows: dict[str, int] = field(default_factory=dict)
    # Tables whose rows were left behind on purpose, with how many there were.
    left_behind: dict[str, int] = field(default_factory=dict)


async def count_blobs(source: StorageDriver) -> tuple[int, int]:
    """(objects, bytes) under blobs/: the total a progress bar measures the copy against."""
    count = total = 0
    async for info in source.walk(BLOB_PREFIX):
        count += 1
        total += info.size
    return count, total


async def copy_blobs(source: StorageDriver, target: StorageDriver, *, jobs: int = DEFAULT_JOBS,
                     progress: Callable[[str, int], None] | None = None, meter=None) -> BlobReport:
    """Stream every object under blobs/ from `source` to `target`, `jobs` at a time; idempotent.
    `meter` (hub/cli/progress.Meter) advances by every byte copied, and by the size of every object
    skipped because the target has it.

    Object stores answer each request after a round trip of their own, so a few copies in
    flight at once move many small blobs several times faster than one after another.
    """
    report = BlobReport()
    queue: asyncio.Queue = asyncio.Queue(maxsize=2 * jobs)

    async def feed() -> None:
        async for info in source.walk(BLOB_PREFIX):
            await queue.put(info)
        for _ in range(jobs):
            await queue.put(None)

    async def work() -> None:
        while (info := await queue.get()) is not None:
            if await _copy_object(source, target, info.path, info.size, meter):
                report.copied += 1
                report.bytes_copied += info.size
                if progress is not None:
                    progress(info.path, info.size)
            else:
                report.skipped += 1
                if meter is not None:
                    meter.advance(info.size)

    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(feed())
            for _ in range(jobs):
                group.create_task(work())
    except ExceptionGroup as failed:
        # One copy failing stops the others; its own error says more than the group does.
        raise failed.exceptions[0] from None
    return report


async def _copy_object(source: StorageDriver, target: StorageDriver, path: str, size: int, meter=None) -> bool:
    """Copy one object unless the target has it at the same size; True if it was copied."""
    try:
        existing = await target.stat(path)
    except PathNotFoundError:
        existing = None
    if existing is not None and not existing.is_dir and existing.size == size:
        return False
    writer = await target.writer(path)
    try:
        async for chunk in await source.reader(path):
            await writer.write(chunk)
            if meter is not None:
                meter.advance(len(chunk))
        if writer.size != size:
            raise TransferError(f"{path}: read {writer.size} bytes, expected {size}")
        await writer.commit()
    except BaseException:
        await writer.cancel()
        raise
    return True


# --- the SQLite side ----------------------------------------------------------------------------

def open_snapshot(sqlite_path: str | Path) -> sqlite3.Connection:
    """A read-only connection inside one read transaction: every query on it sees the database
    as it was at the first, whatever a still-running server commits meanwhile."""
    path = Path(sqlite_path).resolve()
    if not path.is_file():
        raise TransferError(f"the source database {path} does not exist")
    # As a URI (percent-encoded), so a path with '?', '#' or '%' in it stays a path.
    conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, isolation_level=None)
    try:
        conn.execute("BEGIN")
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error as exc:
        conn.close()
        raise TransferError(f"cannot read the source database {path}: {exc}") from None
    return conn


def _sqlite_tables(conn: sqlite3.Connection) -> list[str]:
    """User tables, parents before children (by their foreign keys)."""
    names = [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]
    names = [n for n in names if n not in _SKIP_TABLES]
    parents = {n: {r[2] for r in conn.execute(f'PRAGMA foreign_key_list("{n}")')} - {n} for n in names}
    ordered: list[str] = []
    while parents:
        ready = sorted(n for n, deps in parents.items() if not deps - set(ordered))
        if not ready:
            raise TransferError(f"circular foreign keys between {sorted(parents)}")
        for n in ready:
            ordered.append(n)
            del parents[n]
    return ordered


def _sqlite_version(conn: sqlite3.Connection) -> int:
    try:
        return conn.execute("SELECT max(version) FROM schema_migrations").fetchone()[0] or 0
    except sqlite3.OperationalError:
        return 0


def blob_paths(conn: sqlite3.Connection) -> dict[str, int]:
    """Storage path -> size of every blob the metadata names."""
    from ..registry.names import parse_digest

    return {parse_digest(digest).blob_path: size for digest, size in conn.execute("SELECT digest, size FROM blobs")}


async def check_blobs_present(conn: sqlite3.Connection, target: StorageDriver) -> None:
    """Every blob the metadata names is in `target` at its size (one listing of the target)."""
    wanted = blob_paths(conn)
    async for info in target.walk(BLOB_PREFIX):
        if wanted.get(info.path) == info.size:
            del wanted[info.path]
    if wanted:
        first = min(wanted)
        raise TransferError(
            f"{len(wanted)} blobs the metadata names are missing from the target storage (or have another "
            f"size there), e.g. {first}: copy the blobs (run the transfer again without --skip-blobs)")


# --- the PostgreSQL side ------------------------------------------------------------------------

def _converter(pg_type: str) -> Callable[[object], object]:
    """SQLite keeps booleans as 0/1 and is loose about numeric affinity; PostgreSQL is not."""
    if pg_type == "boolean":
        return lambda v: None if v is None else bool(v)
    if pg_type in ("smallint", "integer", "bigint"):
        return lambda v: None if v is None else int(v)
    if pg_type in ("double precision", "real", "numeric"):
        return lambda v: None if v is None else float(v)
    if pg_type == "bytea":
        return lambda v: None if v is None else (v if isinstance(v, bytes) else str(v).encode())
    return lambda v: v


async def _check_target(source: sqlite3.Connection, conn, tables: list[str]) -> None:
    source_version = _sqlite_version(source)
    target_version = await conn.fetchval("SELECT COALESCE(max(version), 0) FROM schema_migrations")
    if target_version != source_version:
        raise TransferError(
            f"schema versions differ (SQLite {source_version}, PostgreSQL {target_version}): run "
            "`daohub migrate` with both configurations first, using the same DaoHub version")
    for table in tables:
        if await conn.fetchval(f'SELECT EXISTS (SELECT 1 FROM "{table}")'):
            raise TransferError(
                f"the target database is not empty (table {table} has rows): transfer into a "
                "freshly migrated database, before the new stack serves for the first time")


async def check_metadata_target(source: sqlite3.Connection, postgres_url: str) -> None:
    """Raise TransferError unless the target is empty and at the source's schema version."""
    import asyncpg

    conn = await asyncpg.connect(postgres_url)
    try:
        await _check_target(source, conn, _sqlite_tables(source))
    finally:
        await conn.close()


async def copy_metadata(source: str | Path | sqlite3.Connection, postgres_url: str) -> MetadataReport:
    """Copy every row of a SQLite metadata database (a path, or a snapshot from `open_snapshot`)
    into a migrated, empty PostgreSQL one, in one transaction."""
    import asyncpg

    snapshot = source if isinstance(source, sqlite3.Connection) else open_snapshot(source)
    try:
        tables = _sqlite_tables(snapshot)
        conn = await asyncpg.connect(postgres_url)
        try:
            report = MetadataReport()
            async with conn.transaction():
                # Checked again inside the transaction: another transfer may have run meanwhile.
                await _check_target(snapshot, conn, tables)
                for table in tables:
                    if table in _UNCOPIED_TABLES:
                        report.left_behind[table] = snapshot.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
                    else:
                        report.rows[table] = await _copy_table(snapshot, conn, table)
            return report
        finally:
            await conn.close()
    finally:
        if snapshot is not source:
            snapshot.close()


async def _copy_table(source: sqlite3.Connection, conn, table: str) -> int:
    columns = [r[1] for r in source.execute(f'PRAGMA table_info("{table}")')]
    types = dict(await conn.fetch(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = $1", table))
    missing = [c for c in columns if c not in types]
    if missing:
        raise TransferError(f"table {table}: columns {missing} do not exist in PostgreSQL")
    convert = [_converter(types[c]) for c in columns]
    quoted = ", ".join(f'"{c}"' for c in columns)
    cursor = source.execute(f'SELECT {quoted} FROM "{table}"')
    total = 0
    while batch := cursor.fetchmany(5000):
        records = [tuple(f(v) for f, v in zip(convert, row, strict=True)) for row in batch]
        await conn.copy_records_to_table(table, records=records, columns=columns)
        total += len(records)
    # Serial/identity columns must continue after the copied ids, or the next insert collides.
    for column in columns:
        sequence = await conn.fetchval("SELECT pg_get_serial_sequence($1, $2)", f'"{table}"', column)
        if sequence:
            await conn.execute(
                f'SELECT setval($1::regclass, COALESCE((SELECT max("{column}") FROM "{table}"), 0) + 1, false)',
                sequence)
    log.info("copied %d rows of %s", total, table)
    return total


# --- the command --------------------------------------------------------------------------------

async def run(source_config, target_config, *, blobs: bool = True, metadata: bool = True,
              jobs: int = DEFAULT_JOBS, out: Callable[[str], None] = print) -> None:
    """`daohub transfer`: checks, blobs, then metadata, from one configuration's stack to another's."""
    import storage_backends

    from ..db import create_store
    from ..db.sqlite import path_from_url
    from .progress import Meter

    source_url, target_url = source_config.database_url, target_config.database_url
    snapshot = None
    if metadata:
        if not source_url.startswith("sqlite:///"):
            raise TransferError("metadata can be transferred from SQLite only (between PostgreSQL "
                                "servers, use pg_dump and pg_restore)")
        if not target_url.startswith(("postgresql://", "postgres://")):
            raise TransferError("the target configuration's database.url must be a PostgreSQL URL")
        snapshot = open_snapshot(path_from_url(source_url))
    try:
        if snapshot is not None:
            # The target gets the current schema first, exactly as `daohub migrate` would.
            store = create_store(target_url, pool_min_size=1, pool_max_size=1)
            await store.open()
            try:
                await store.migrate()
            finally:
                await store.close()
            await check_metadata_target(snapshot, target_url)
        target = storage_backends.create(target_config.storage.driver, target_config.storage_params())
        try:
            if blobs:
                source = storage_backends.create(source_config.storage.driver, source_config.storage_params())
                try:
                    _, total = await count_blobs(source)
                    with Meter("blobs", unit="bytes", total=total) as meter:
                        report = await copy_blobs(source, target, jobs=jobs, meter=meter)
                finally:
                    await source.aclose()
                out(f"blobs: {report.copied} copied ({report.bytes_copied} bytes), "
                    f"{report.skipped} already present")
            if snapshot is not None:
                await check_blobs_present(snapshot, target)
        finally:
            await target.aclose()
        if snapshot is not None:
            rows = await copy_metadata(snapshot, target_url)
            out("metadata: " + ", ".join(f"{t} {n}" for t, n in rows.rows.items()))
            for table, count in rows.left_behind.items():
                if count:
                    out(f"not moved: {count} rows of {table} (unfinished uploads start over on the new stack)")
    finally:
        if snapshot is not None:
            snapshot.close()

