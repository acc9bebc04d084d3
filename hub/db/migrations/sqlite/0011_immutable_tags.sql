-- Immutable tags (issue 16; hub/retention/immutable.py validates the document, hub/db/immutable_store.py
-- enforces it inside the transactions that move or delete tags, docs/retention.md).

-- One rule document per tenant: {"rules": [{"repositories": GLOB, "tags": SELECTOR}, ...]}.
CREATE TABLE immutable_tag_rules (
    tenant     TEXT PRIMARY KEY,
    document   TEXT NOT NULL,
    updated_at REAL NOT NULL,
    updated_by TEXT NOT NULL
) WITHOUT ROWID;
