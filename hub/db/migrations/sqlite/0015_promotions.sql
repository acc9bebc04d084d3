-- Promotion of images between repositories and tenants (issue 17; hub/db/promotion_store.py,
-- hub/registry/promotion.py, docs/promotion.md).

-- One gate document per tenant, for the tenant's target repositories:
-- {"gates": [{"repositories": GLOB, "annotations": [...], "referrer_artifact_types": [...],
--   "approval": {"role": ROLE, "allow_self_approval": false}}, ...]}.
CREATE TABLE promotion_gates (
    tenant     TEXT PRIMARY KEY,
    document   TEXT NOT NULL,
    updated_at REAL NOT NULL,
    updated_by TEXT NOT NULL
) WITHOUT ROWID;

-- Every promotion that was accepted: pending (waiting for an approval), completed or rejected.
-- A request refused by a gate is answered 422 and leaves no row here (an audit row only).
CREATE TABLE promotions (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    state             TEXT NOT NULL,
    source_repository TEXT NOT NULL,
    source_reference  TEXT NOT NULL,
    digest            TEXT NOT NULL,
    target_repository TEXT NOT NULL,
    target_tag        TEXT NOT NULL,
    source_tenant     TEXT NOT NULL,
    target_tenant     TEXT NOT NULL,
    requested_by      TEXT NOT NULL,
    requested_at      REAL NOT NULL,
    gates             TEXT NOT NULL,
    approval_role     TEXT,
    self_approval     INTEGER NOT NULL DEFAULT 0,
    decided_by        TEXT,
    decided_at        REAL,
    reason            TEXT,
    completed_at      REAL,
    copied            TEXT
);
CREATE INDEX promotions_digest ON promotions (digest, id);
CREATE INDEX promotions_target_tenant ON promotions (target_tenant, id);
CREATE INDEX promotions_source_tenant ON promotions (source_tenant, id);
