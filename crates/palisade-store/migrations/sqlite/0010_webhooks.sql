-- Webhooks (WHK-1 … WHK-4): endpoints, the transactional outbox, deliveries and their attempts.
-- SQLite has no row-level security: every tenant statement filters by workspace_id in the
-- store, and the conformance suite proves it.
--
-- Times the store compares in SQL are µs since the Unix epoch (INTEGER, named `…_us`): RFC
-- 3339 text of varying fraction width does not sort as time does. Times only shown are text.

-- An endpoint. events is the JSON array of event types it receives; grants is what its
-- payloads may show (its creator's read grants, as serde writes palisade_core's Grants).
-- secret and previous_secret are sealed under the workspace's data key. failing_since_us is
-- the start of the current run of failed attempts (NULL after a success). created_by is a user
-- id or an API key id (no foreign key, it names one or the other).
CREATE TABLE webhooks (
    workspace_id               TEXT NOT NULL REFERENCES workspaces (id),
    id                         TEXT NOT NULL,
    url                        TEXT NOT NULL,
    description                TEXT NOT NULL,
    events                     TEXT NOT NULL,
    enabled                    INTEGER NOT NULL,
    disabled_reason            TEXT,
    grants                     TEXT NOT NULL,
    created_by                 TEXT NOT NULL,
    created_at                 TEXT NOT NULL,
    updated_at                 TEXT NOT NULL,
    secret                     BLOB NOT NULL,
    previous_secret            BLOB,
    previous_secret_expires_at TEXT,
    failing_since_us           INTEGER,  -- µs since the epoch
    PRIMARY KEY (workspace_id, id)
) STRICT;
-- The failure sweep (webhooks_failing_since) looks only at failing endpoints.
CREATE INDEX webhooks_failing ON webhooks (failing_since_us) WHERE failing_since_us IS NOT NULL;

-- The outbox: one row per event, written in the transaction of the change it describes. The
-- payload is the event's data, sealed under the workspace's data key. Events outlive their
-- endpoint (a deleted endpoint takes only its deliveries); the retention job prunes them.
CREATE TABLE webhook_events (
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    id           TEXT NOT NULL,
    event_type   TEXT NOT NULL,
    collection   TEXT,
    payload      BLOB NOT NULL,
    draft        INTEGER NOT NULL,  -- a draft record's event: only for endpoints that may read drafts
    created_us   INTEGER NOT NULL,       -- µs since the epoch
    PRIMARY KEY (workspace_id, id)
) STRICT;
CREATE INDEX webhook_events_created ON webhook_events (created_us);

-- One event's delivery to one endpoint. status is pending, succeeded, failed or paused (its
-- endpoint is disabled; due again when it is enabled);
-- next_attempt_us is when a pending one is due, and set for pending ones only (the claim finds
-- due deliveries by it alone). A dispatcher holds a claim (a random token) until
-- claimed_until_us; only its holder records the outcome.
CREATE TABLE webhook_deliveries (
    workspace_id     TEXT NOT NULL REFERENCES workspaces (id),
    id               TEXT NOT NULL,
    webhook_id       TEXT NOT NULL,
    event_id         TEXT NOT NULL,
    event_type       TEXT NOT NULL,
    status           TEXT NOT NULL,
    attempts         INTEGER NOT NULL,
    schedule_step    INTEGER NOT NULL,
    next_attempt_us  INTEGER,            -- µs since the epoch
    claim            TEXT,
    claimed_until_us INTEGER,            -- µs since the epoch
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    PRIMARY KEY (workspace_id, id),
    FOREIGN KEY (workspace_id, webhook_id) REFERENCES webhooks (workspace_id, id) ON DELETE CASCADE,
    FOREIGN KEY (workspace_id, event_id) REFERENCES webhook_events (workspace_id, id) ON DELETE CASCADE,
    CONSTRAINT webhook_deliveries_due_when_pending
        CHECK ((status = 'pending') = (next_attempt_us IS NOT NULL))
) STRICT;
-- An endpoint's deliveries newest first (and the cascade from webhooks).
CREATE INDEX webhook_deliveries_webhook ON webhook_deliveries (workspace_id, webhook_id, id);
-- An event's deliveries (the prune's check and the cascade from webhook_events).
CREATE INDEX webhook_deliveries_event ON webhook_deliveries (workspace_id, event_id);
-- The claim, across workspaces: pending deliveries, oldest due first.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_us) WHERE next_attempt_us IS NOT NULL;

-- Every HTTP attempt of a delivery, numbered from 1; never changed once written.
CREATE TABLE webhook_attempts (
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id),
    delivery_id   TEXT NOT NULL,
    number        INTEGER NOT NULL,
    attempted_at  TEXT NOT NULL,
    status_code   INTEGER,
    latency_ms    INTEGER NOT NULL,
    response_body TEXT NOT NULL,
    error         TEXT,
    trigger       TEXT NOT NULL,
    PRIMARY KEY (workspace_id, delivery_id, number),
    FOREIGN KEY (workspace_id, delivery_id) REFERENCES webhook_deliveries (workspace_id, id) ON DELETE CASCADE
) STRICT;
