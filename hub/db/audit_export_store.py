"""AuditExportStore: the durable cursors and leases of the audit export (docs/events.md,
"Audit export"), for both stores; mixed into EventStore, over GcStore's transaction object.

A sink's position is the (xid, id) of the last audit row it exported. On SQLite xid is 0 and
rows commit in id order (one writer), so the id alone orders them. On PostgreSQL an id is taken
at INSERT, not at COMMIT, so a lower id can become visible after a higher one; every row
records its writing transaction's id (`xid`, migration 0013) instead, and a batch holds only
rows whose transaction is below the reading snapshot's xmin: those transactions have all ended,
so no row can still appear before the cursor. A long-running transaction holds the export back
until it ends; it never makes it skip a row.

One exporter per sink across processes and replicas: `audit_export_claim` takes the sink's
lease when it is free, expired, or already the caller's (as retention's run slot does), and
`audit_export_advance` moves the cursor only while the caller still holds it. A process killed
after sending a batch and before advancing leaves the cursor where it was: the next holder
sends that batch again (at least once, never lost).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

_XMIN = {"postgres": "SELECT (pg_snapshot_xmin(pg_current_snapshot())::text)::bigint",
         "sqlite": "SELECT 1"}


@dataclasses.dataclass(frozen=True, slots=True)
class AuditExportRow:
    id: int
    xid: int
    at: float
    actor: str
    action: str
    target: str
    tenant: str | None
    detail: str | None  # JSON text as stored

    @property
    def position(self) -> tuple[int, int]:
        return (self.xid, self.id)


@dataclasses.dataclass(frozen=True, slots=True)
class AuditCursor:
    sink: str
    xid: int
    last_id: int
    exported: int
    lease_owner: str | None
    lease_until: float
    updated_at: float
    last_error: str | None

    @property
    def position(self) -> tuple[int, int]:
        return (self.xid, self.last_id)


_CURSOR_COLUMNS = "sink, xid, last_id, exported, lease_owner, lease_until, updated_at, last_error"


class AuditExportStore:
    """Mixed into EventStore (which supplies `_gc_tx`)."""

    _gc_tx: Any

    async def audit_export_claim(self, sink: str, owner: str, lease_seconds: float) -> AuditCursor | None:
        """The sink's cursor, leased to `owner` for `lease_seconds` (created at the start of the
        log on first use), or None while another process holds a live lease."""
        now = time.time()

        async def run(tx: Any) -> AuditCursor | None:
            await tx.execute("INSERT INTO audit_export_cursors (sink, updated_at) VALUES ($1, $2) "
                             "ON CONFLICT (sink) DO NOTHING", sink, now)
            row = await tx.fetchrow(
                "UPDATE audit_export_cursors SET lease_owner = $2, lease_until = $3 WHERE sink = $1 AND "
                f"(lease_owner = $2 OR lease_owner IS NULL OR lease_until < $4) RETURNING {_CURSOR_COLUMNS}",
                sink, owner, now + lease_seconds, now)
            return None if row is None else AuditCursor(*row)

        return await self._gc_tx(run)

    async def audit_export_batch(self, position: tuple[int, int], limit: int) -> list[AuditExportRow]:
        """Up to `limit` audit rows after `position`, in export order, all of them final (no row
        can still commit before the last one returned)."""
        async def run(tx: Any) -> list[AuditExportRow]:
            xmin = await tx.fetchval(_XMIN[tx.dialect])
            rows = await tx.fetch(
                "SELECT id, xid, at, actor, action, target, tenant, detail FROM audit_log "
                "WHERE xid < $1 AND (xid > $2 OR (xid = $2 AND id > $3)) ORDER BY xid, id LIMIT $4",
                xmin, position[0], position[1], limit)
            return [AuditExportRow(*r) for r in rows]

        return await self._gc_tx(run, rollback=True)

    async def audit_export_advance(self, sink: str, owner: str, position: tuple[int, int], count: int,
                                   lease_seconds: float) -> bool:
        """Move the sink's cursor to `position` (`count` more rows exported) and renew the lease;
        False if `owner` no longer holds it (another process took over: stop)."""
        now = time.time()
        return bool(await self._gc_tx(lambda tx: tx.execute(
            "UPDATE audit_export_cursors SET xid = $3, last_id = $4, exported = exported + $5, lease_until = $6, "
            "updated_at = $7, last_error = NULL WHERE sink = $1 AND lease_owner = $2",
            sink, owner, position[0], position[1], count, now + lease_seconds, now)))

    async def audit_export_failed(self, sink: str, owner: str, error: str) -> None:
        """Note the sink's last failure (its cursor stays; the lease stays the caller's)."""
        await self._gc_tx(lambda tx: tx.execute(
            "UPDATE audit_export_cursors SET last_error = $3, updated_at = $4 WHERE sink = $1 AND lease_owner = $2",
            sink, owner, error[:500], time.time()))

    async def audit_export_release(self, sink: str, owner: str) -> None:
        """Give the lease up (a clean shutdown: another process may take the sink at once)."""
        await self._gc_tx(lambda tx: tx.execute(
            "UPDATE audit_export_cursors SET lease_owner = NULL, lease_until = 0 WHERE sink = $1 AND lease_owner = $2",
            sink, owner))

    async def audit_export_cursors(self) -> list[AuditCursor]:
        rows = await self._gc_tx(lambda tx: tx.fetch(
            f"SELECT {_CURSOR_COLUMNS} FROM audit_export_cursors ORDER BY sink"), rollback=True)
        return [AuditCursor(*r) for r in rows]
