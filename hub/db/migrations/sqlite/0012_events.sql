-- Events and webhooks (issue 17; hub/db/event_store.py, hub/events/, docs/events.md).

-- The outbox: one row per change, written in the change's own transaction. body is the whole
-- CloudEvent (structured mode JSON) as it is delivered, so every retry sends the same bytes.
CREATE TABLE events (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT NOT NULL UNIQUE,
    type       TEXT NOT NULL,
    tenant     TEXT,
    repository TEXT,
    actor      TEXT NOT NULL,
    at         REAL NOT NULL,
    body       TEXT NOT NULL
);
CREATE INDEX events_at ON events (at);

-- Webhook subscriptions: a tenant's (tenant set) or platform-wide (tenant NULL). event_types and
-- repositories are JSON arrays of globs (empty: every one). previous_secret signs too until
-- previous_secret_until (secret rotation).
CREATE TABLE webhook_subscriptions (
    id                    INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant                TEXT,
    name                  TEXT NOT NULL,
    url                   TEXT NOT NULL,
    event_types           TEXT NOT NULL DEFAULT '[]',
    repositories          TEXT NOT NULL DEFAULT '[]',
    enabled               INTEGER NOT NULL DEFAULT 1,
    secret                TEXT NOT NULL,
    previous_secret       TEXT,
    previous_secret_until REAL,
    created_at            REAL NOT NULL,
    created_by            TEXT NOT NULL,
    updated_at            REAL NOT NULL
);
CREATE INDEX webhook_subscriptions_tenant ON webhook_subscriptions (tenant);

-- One row per (subscription, event), made with the event. state: pending, delivered or dead.
-- A worker claims a due row for lease_until (a killed worker's claim runs out); attempts counts
-- every claim, budget_from is its value when the row was last queued (a redelivery starts a new
-- retry budget).
CREATE TABLE webhook_deliveries (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    subscription_id INTEGER NOT NULL REFERENCES webhook_subscriptions(id) ON DELETE CASCADE,
    event_seq       INTEGER NOT NULL REFERENCES events(seq) ON DELETE CASCADE,
    state           TEXT NOT NULL DEFAULT 'pending',
    attempts        INTEGER NOT NULL DEFAULT 0,
    budget_from     INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    lease_until     REAL NOT NULL DEFAULT 0,
    lease_owner     TEXT,
    created_at      REAL NOT NULL,
    finished_at     REAL,
    last_status     INTEGER,
    last_error      TEXT,
    last_latency_ms REAL
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (state, next_attempt_at);
CREATE INDEX webhook_deliveries_subscription ON webhook_deliveries (subscription_id, id);
CREATE INDEX webhook_deliveries_event ON webhook_deliveries (event_seq);

-- Every attempt of a delivery: the delivery log.
CREATE TABLE webhook_attempts (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id INTEGER NOT NULL REFERENCES webhook_deliveries(id) ON DELETE CASCADE,
    attempt     INTEGER NOT NULL,
    at          REAL NOT NULL,
    owner       TEXT NOT NULL,
    status      INTEGER,
    latency_ms  REAL,
    error       TEXT
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id, id);
