-- Online garbage collection (hub/registry/gc.py, hub/db/gc_store.py).
-- gc_reviews: the review queue. Every event that may orphan something queues a review of that
-- digest, in the same transaction, by the triggers below (so no code path can forget one: a
-- manifest, tag or repository delete, a tag moved, a cache eviction, an app version removed with
-- its tag). kind: 'manifest' (a manifest row of repository_id), 'link' (the blob link of
-- repository_id) or 'blob' (the blob row and its bytes; repository_id 0). A review is due once
-- queued_at is older than gc.grace_seconds; claimed_until keeps other workers off a claimed one.
CREATE TABLE gc_reviews (
    kind          TEXT NOT NULL CHECK (kind IN ('manifest', 'link', 'blob')),
    repository_id INTEGER NOT NULL,
    digest        TEXT NOT NULL,
    queued_at     REAL NOT NULL,
    claimed_until REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (kind, repository_id, digest)
) WITHOUT ROWID;
CREATE INDEX gc_reviews_by_queued ON gc_reviews(queued_at);

-- One row per GC pass (the run history): counts, bytes freed per tenant (JSON object), errors (JSON list).
CREATE TABLE gc_runs (
    id                 INTEGER PRIMARY KEY,
    started_at         REAL NOT NULL,
    finished_at        REAL,
    dry_run            INTEGER NOT NULL DEFAULT 0,
    tenant             TEXT,
    sweep              INTEGER NOT NULL DEFAULT 0,
    grace_seconds      REAL NOT NULL,
    manifests_reviewed INTEGER NOT NULL DEFAULT 0,
    manifests_kept     INTEGER NOT NULL DEFAULT 0,
    manifests_deleted  INTEGER NOT NULL DEFAULT 0,
    blobs_reviewed     INTEGER NOT NULL DEFAULT 0,
    blobs_kept         INTEGER NOT NULL DEFAULT 0,
    blobs_deleted      INTEGER NOT NULL DEFAULT 0,
    links_deleted      INTEGER NOT NULL DEFAULT 0,
    orphans_deleted    INTEGER NOT NULL DEFAULT 0,
    bytes_freed        INTEGER NOT NULL DEFAULT 0,
    tenant_bytes_freed TEXT NOT NULL DEFAULT '{}',
    errors             TEXT NOT NULL DEFAULT '[]'
);

-- Each trigger deletes the review it queues before it inserts it: an INSERT OR REPLACE would not
-- do, as a trigger's conflict clause gives way to its statement's (a tag upsert's is ABORT).
CREATE TRIGGER gc_tag_deleted AFTER DELETE ON tags BEGIN
    DELETE FROM gc_reviews WHERE kind = 'manifest' AND repository_id = OLD.repository_id AND digest = OLD.digest;
    INSERT INTO gc_reviews (kind, repository_id, digest, queued_at)
    VALUES ('manifest', OLD.repository_id, OLD.digest, (julianday('now') - 2440587.5) * 86400.0);
END;

CREATE TRIGGER gc_tag_moved AFTER UPDATE OF digest ON tags WHEN OLD.digest <> NEW.digest BEGIN
    DELETE FROM gc_reviews WHERE kind = 'manifest' AND repository_id = OLD.repository_id AND digest = OLD.digest;
    INSERT INTO gc_reviews (kind, repository_id, digest, queued_at)
    VALUES ('manifest', OLD.repository_id, OLD.digest, (julianday('now') - 2440587.5) * 86400.0);
END;

-- A deleted manifest's children (its references go with it, ON DELETE CASCADE) and its referrers.
CREATE TRIGGER gc_reference_deleted AFTER DELETE ON manifest_references BEGIN
    DELETE FROM gc_reviews WHERE kind = CASE OLD.child_kind WHEN 'blob' THEN 'link' ELSE 'manifest' END
        AND repository_id = OLD.repository_id AND digest = OLD.child_digest;
    INSERT INTO gc_reviews (kind, repository_id, digest, queued_at)
    VALUES (CASE OLD.child_kind WHEN 'blob' THEN 'link' ELSE 'manifest' END, OLD.repository_id,
            OLD.child_digest, (julianday('now') - 2440587.5) * 86400.0);
END;

CREATE TRIGGER gc_manifest_deleted AFTER DELETE ON manifests BEGIN
    DELETE FROM gc_reviews WHERE kind = 'manifest' AND repository_id = OLD.repository_id AND digest IN (
        SELECT m.digest FROM manifests m WHERE m.repository_id = OLD.repository_id AND m.subject = OLD.digest);
    INSERT INTO gc_reviews (kind, repository_id, digest, queued_at)
    SELECT 'manifest', m.repository_id, m.digest, (julianday('now') - 2440587.5) * 86400.0
    FROM manifests m WHERE m.repository_id = OLD.repository_id AND m.subject = OLD.digest;
END;

CREATE TRIGGER gc_link_deleted AFTER DELETE ON repository_blobs BEGIN
    DELETE FROM gc_reviews WHERE kind = 'blob' AND repository_id = 0 AND digest = OLD.digest;
    INSERT INTO gc_reviews (kind, repository_id, digest, queued_at)
    VALUES ('blob', 0, OLD.digest, (julianday('now') - 2440587.5) * 86400.0);
END;
