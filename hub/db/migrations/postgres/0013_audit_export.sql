-- Audit export (issue 17; hub/db/audit_export_store.py, hub/events/audit_export.py, docs/events.md).

-- The position a reader must page by. Identity values are taken at INSERT, not at COMMIT, so a
-- row with a lower id can become visible after a higher one: an exporter paging by id would
-- skip it. Each row records its writing transaction's id instead; every transaction below the
-- current snapshot's xmin has ended, so the rows with xid < xmin are final, and paging by
-- (xid, id) below xmin misses none.
ALTER TABLE audit_log ADD COLUMN xid bigint NOT NULL DEFAULT (pg_current_xact_id()::text)::bigint;
CREATE INDEX audit_log_export ON audit_log (xid, id);

-- One row per configured sink: its durable cursor (the last exported row's (xid, id)) and the
-- lease that makes one process, of all replicas, the sink's exporter at a time.
CREATE TABLE audit_export_cursors (
    sink        text COLLATE "C" PRIMARY KEY,
    xid         bigint NOT NULL DEFAULT 0,
    last_id     bigint NOT NULL DEFAULT 0,
    exported    bigint NOT NULL DEFAULT 0,
    lease_owner text,
    lease_until double precision NOT NULL DEFAULT 0,
    updated_at  double precision NOT NULL,
    last_error  text
);
