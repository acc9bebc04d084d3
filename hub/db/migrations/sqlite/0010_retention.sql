-- Retention (issue 16; hub/db/retention_store.py, hub/registry/retention.py, docs/retention.md).

-- One policy document per tenant (hub/retention/policy.py validates it; overrides are inside).
CREATE TABLE retention_policies (
    tenant     TEXT PRIMARY KEY,
    document   TEXT NOT NULL,
    updated_at REAL NOT NULL,
    updated_by TEXT NOT NULL
) WITHOUT ROWID;

-- When each tag was last pulled (a manifest GET or HEAD by the tag, or by the digest it points
-- at), written in batches that keep the greater time (hub/registry/pulls.py). The row goes with
-- its tag.
CREATE TABLE tag_pulls (
    repository_id INTEGER NOT NULL,
    tag           TEXT NOT NULL,
    pulled_at     REAL NOT NULL,
    PRIMARY KEY (repository_id, tag),
    FOREIGN KEY (repository_id, tag) REFERENCES tags(repository_id, name) ON DELETE CASCADE
) WITHOUT ROWID;

-- One row per retention run that changed (or could change) something; dry runs are not kept.
-- slot: a scheduled run's interval number (floor(start / interval)), unique, so one replica
-- claims it; owner and lease_until: who runs it and until when it may, renewed as it goes (a
-- replica killed mid-run lets another take the slot over). counts and errors are JSON.
CREATE TABLE retention_runs (
    id          INTEGER PRIMARY KEY,
    slot        INTEGER UNIQUE,
    owner       TEXT NOT NULL,
    lease_until REAL NOT NULL,
    started_at  REAL NOT NULL,
    finished_at REAL,
    tenant      TEXT,
    trigger     TEXT NOT NULL,
    actor       TEXT NOT NULL,
    counts      TEXT NOT NULL DEFAULT '{}',
    errors      TEXT NOT NULL DEFAULT '[]'
);

-- Every verdict of a run: the tag (NULL for an untagged manifest), what the plan said (action:
-- keep, protect or delete; the rules that keep it and why), what happened (outcome: kept,
-- deleted, moved: pushed again after the run read it, so left alone; gone; failed), and the
-- tag's push and pull times as the run saw them.
CREATE TABLE retention_verdicts (
    run_id        INTEGER NOT NULL REFERENCES retention_runs(id) ON DELETE CASCADE,
    seq           INTEGER NOT NULL,
    repository    TEXT NOT NULL,
    tag           TEXT,
    digest        TEXT NOT NULL,
    artifact_type TEXT NOT NULL,
    action        TEXT NOT NULL,
    outcome       TEXT NOT NULL,
    rules         TEXT NOT NULL,
    reason        TEXT NOT NULL,
    pushed_at     REAL NOT NULL,
    pulled_at     REAL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
