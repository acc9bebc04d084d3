-- Audit export (issue 17; hub/db/audit_export_store.py, hub/events/audit_export.py, docs/events.md).

-- The position a reader must page by. SQLite has one writer, so audit rows commit in id order:
-- xid stays 0 and the id alone is the position. (PostgreSQL sets it to the writing transaction.)
ALTER TABLE audit_log ADD COLUMN xid INTEGER NOT NULL DEFAULT 0;

-- One row per configured sink: its durable cursor (the last exported row's (xid, id)) and the
-- lease that makes one process, of all replicas, the sink's exporter at a time.
CREATE TABLE audit_export_cursors (
    sink        TEXT PRIMARY KEY,
    xid         INTEGER NOT NULL DEFAULT 0,
    last_id     INTEGER NOT NULL DEFAULT 0,
    exported    INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until REAL NOT NULL DEFAULT 0,
    updated_at  REAL NOT NULL,
    last_error  TEXT
);
