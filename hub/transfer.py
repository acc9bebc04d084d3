"""Moving an installation to another stack: `daohub transfer`.

The usual move is from the embedded default (filesystem + SQLite on one machine) to the
scale-out stack (S3/OSS or NFS + PostgreSQL), without losing anything:

1. Blobs first. Every committed object under `blobs/` is streamed from the old storage
   driver to the new one. An object already present with the same size is skipped, so an
   interrupted transfer can simply be run again. Upload sessions in flight are not moved:
   stop pushes (or the old server) before the transfer.
2. Then metadata. The SQLite and PostgreSQL schemas use the same table and column names
   (their migrations are kept in step), so the rows are copied table by table, parents
   before children, in one PostgreSQL transaction: either everything arrives or nothing.
   The target must be freshly migrated and empty, so a transfer never merges two
   registries by accident.

Because blobs go first, the new metadata never points at a blob the new storage lacks.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field

from storage_backends import PathNotFoundError, StorageDriver

log = logging.getLogger("daohub.transfer")

# Bookkeeping of the migration runner, not registry data: each side keeps its own.
_SKIP_TABLES = {"schema_migrations"}
# Objects under these prefixes are registry data; uploads/ holds unfinished sessions.
BLOB_PREFIX = "blobs"


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


async def copy_blobs(source: StorageDriver, target: StorageDriver, *,
                     progress: Callable[[str, int], None] | None = None) -> BlobReport:
    """Stream every object under blobs/ from `source` to `target`; idempotent."""
    report = BlobReport()
    async for info in source.walk(BLOB_PREFIX):
        try:
            existing = await target.stat(info.path)
        except PathNotFoundError:
            existing = None
        if existing is not None and not existing.is_dir and existing.size == info.size:
            report.skipped += 1
            continue
        writer = await target.writer(info.path)
        try:
            async for chunk in await source.reader(info.path):
                await writer.write(chunk)
            if writer.size != info.size:
                raise TransferError(f"{info.path}: read {writer.size} bytes, expected {info.size}")
            await writer.commit()
        except BaseException:
            await writer.cancel()
            raise
        report.copied += 1
        report.bytes_copied += info.size
        if progress is not None:
            progress(info.path, info.size)
    return report


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


async def copy_metadata(sqlite_path: str, postgres_url: str) -> MetadataReport:
    """Copy every row of a SQLite metadata database into a migrated, empty PostgreSQL one."""
    import asyncpg

    source = sqlite3.connect(f"file:{sqlite_path}?mode=ro", uri=True)
    try:
        tables = _sqlite_tables(source)
        source_version = _sqlite_version(source)
        conn = await asyncpg.connect(postgres_url)
        try:
            target_version = await conn.fetchval("SELECT max(version) FROM schema_migrations")
            if target_version != source_version:
                raise TransferError(
                    f"schema versions differ (SQLite {source_version}, PostgreSQL {target_version}): run "
                    "`daohub migrate` with both configurations first, using the same DaoHub version")
            report = MetadataReport()
            async with conn.transaction():
                for table in tables:
                    if await conn.fetchval(f'SELECT EXISTS (SELECT 1 FROM "{table}")'):
                        raise TransferError(
                            f"the target database is not empty (table {table} has rows): transfer into a "
                            "freshly migrated database, before the new stack serves for the first time")
                for table in tables:
                    report.rows[table] = await _copy_table(source, conn, table)
            return report
        finally:
            await conn.close()
    finally:
        source.close()


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


async def run(source_config, target_config, *, blobs: bool = True, metadata: bool = True,
              out: Callable[[str], None] = print) -> None:
    """`daohub transfer`: blobs, then metadata, from one configuration's stack to another's."""
    import storage_backends

    from .app import _storage_options
    from .db import create_store
    from .db.sqlite import path_from_url

    source_url, target_url = source_config.database_url, target_config.database_url
    if metadata:
        if not source_url.startswith("sqlite:///"):
            raise TransferError("metadata can be transferred from SQLite only (between PostgreSQL "
                                "servers, use pg_dump and pg_restore)")
        if not target_url.startswith(("postgresql://", "postgres://")):
            raise TransferError("the target configuration's database.url must be a PostgreSQL URL")
        # The target gets the current schema first, exactly as `daohub migrate` would.
        store = create_store(target_url)
        await store.open()
        try:
            await store.migrate()
        finally:
            await store.close()
    if blobs:
        source = storage_backends.create(source_config.storage.driver, **_storage_options(source_config))
        target = storage_backends.create(target_config.storage.driver, **_storage_options(target_config))
        try:
            report = await copy_blobs(source, target)
        finally:
            await source.aclose()
            await target.aclose()
        out(f"blobs: {report.copied} copied ({report.bytes_copied} bytes), {report.skipped} already present")
    if metadata:
        rows = await copy_metadata(path_from_url(source_url), target_url)
        out("metadata: " + ", ".join(f"{t} {n}" for t, n in rows.rows.items()))
