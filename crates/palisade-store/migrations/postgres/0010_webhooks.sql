-- Webhooks (WHK-1 … WHK-4): endpoints, the transactional outbox, deliveries and their attempts.
-- All four are tenant tables: RLS enabled and forced, keys leading with workspace_id. The
-- dispatcher works across workspaces in a system transaction (policies at the end).
--
-- Times the store compares in SQL are µs since the Unix epoch (BIGINT, named `…_us`), as on
-- SQLite, so the statements are the same on both backends; times only shown are TIMESTAMPTZ.

-- An endpoint. events is the JSON array of event types it receives; grants is what its
-- payloads may show (its creator's read grants, as serde writes palisade_core's Grants).
-- secret and previous_secret are sealed under the workspace's data key. failing_since_us is
-- the start of the current run of failed attempts (NULL after a success). created_by is a user
-- id or an API key id (no foreign key, it names one or the other).
CREATE TABLE webhooks (
    workspace_id               TEXT COLLATE "C" NOT NULL REFERENCES workspaces (id),
    id                         TEXT COLLATE "C" NOT NULL,
    url                        TEXT NOT NULL,
    description                TEXT NOT NULL,
    events                     JSONB NOT NULL,
    enabled                    BOOLEAN NOT NULL,
    disabled_reason            TEXT,
    grants                     JSONB NOT NULL,
    created_by                 TEXT COLLATE "C" NOT NULL,
    created_at                 TIMESTAMPTZ NOT NULL,
    updated_at                 TIMESTAMPTZ NOT NULL,
    secret                     BYTEA NOT NULL,
    previous_secret            BYTEA,
    previous_secret_expires_at TIMESTAMPTZ,
    failing_since_us           BIGINT,   -- µs since the epoch
    PRIMARY KEY (workspace_id, id)
);
-- The failure sweep (webhooks_failing_since) looks only at failing endpoints.
CREATE INDEX webhooks_failing ON webhooks (failing_since_us) WHERE failing_since_us IS NOT NULL;

-- The outbox: one row per event, written in the transaction of the change it describes. The
-- payload is the event's data, sealed under the workspace's data key. Events outlive their
-- endpoint (a deleted endpoint takes only its deliveries); the retention job prunes them.
CREATE TABLE webhook_events (
    workspace_id TEXT COLLATE "C" NOT NULL REFERENCES workspaces (id),
    id           TEXT COLLATE "C" NOT NULL,
    event_type   TEXT NOT NULL,
    collection   TEXT,
    payload      BYTEA NOT NULL,
    draft        BOOLEAN NOT NULL,  -- a draft record's event: only for endpoints that may read drafts
    created_us   BIGINT NOT NULL,        -- µs since the epoch
    PRIMARY KEY (workspace_id, id)
);
CREATE INDEX webhook_events_created ON webhook_events (created_us);

-- One event's delivery to one endpoint. status is pending, succeeded, failed or paused (its
-- endpoint is disabled; due again when it is enabled);
-- next_attempt_us is when a pending one is due, and set for pending ones only (the claim finds
-- due deliveries by it alone). A dispatcher holds a claim (a random token) until
-- claimed_until_us; only its holder records the outcome.
CREATE TABLE webhook_deliveries (
    workspace_id     TEXT COLLATE "C" NOT NULL REFERENCES workspaces (id),
    id               TEXT COLLATE "C" NOT NULL,
    webhook_id       TEXT COLLATE "C" NOT NULL,
    event_id         TEXT COLLATE "C" NOT NULL,
    event_type       TEXT NOT NULL,
    status           TEXT NOT NULL,
    attempts         BIGINT NOT NULL,
    schedule_step    BIGINT NOT NULL,
    next_attempt_us  BIGINT,             -- µs since the epoch
    claim            TEXT,
    claimed_until_us BIGINT,             -- µs since the epoch
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (workspace_id, id),
    FOREIGN KEY (workspace_id, webhook_id) REFERENCES webhooks (workspace_id, id) ON DELETE CASCADE,
    FOREIGN KEY (workspace_id, event_id) REFERENCES webhook_events (workspace_id, id) ON DELETE CASCADE,
    CONSTRAINT webhook_deliveries_due_when_pending
        CHECK ((status = 'pending') = (next_attempt_us IS NOT NULL))
);
-- An endpoint's deliveries newest first (and the cascade from webhooks).
CREATE INDEX webhook_deliveries_webhook ON webhook_deliveries (workspace_id, webhook_id, id);
-- An event's deliveries (the prune's check and the cascade from webhook_events).
CREATE INDEX webhook_deliveries_event ON webhook_deliveries (workspace_id, event_id);
-- The claim, across workspaces: pending deliveries, oldest due first. The one index that does
-- not lead with workspace_id, since the dispatcher serves every workspace; on a distributed
-- engine it is local to each shard, which is what the claim reads. Its predicate is the
-- column's, not the status's, so the planner estimates the claim from the column's statistics.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_us) WHERE next_attempt_us IS NOT NULL;

-- Every HTTP attempt of a delivery, numbered from 1; never changed once written.
CREATE TABLE webhook_attempts (
    workspace_id  TEXT COLLATE "C" NOT NULL REFERENCES workspaces (id),
    delivery_id   TEXT COLLATE "C" NOT NULL,
    number        BIGINT NOT NULL,
    attempted_at  TIMESTAMPTZ NOT NULL,
    status_code   BIGINT,
    latency_ms    BIGINT NOT NULL,
    response_body TEXT NOT NULL,
    error         TEXT,
    trigger       TEXT NOT NULL,
    PRIMARY KEY (workspace_id, delivery_id, number),
    FOREIGN KEY (workspace_id, delivery_id) REFERENCES webhook_deliveries (workspace_id, id) ON DELETE CASCADE
);

-- Endpoints change every column but their identity, creator and creation time; events only
-- their payload (re-sealed); deliveries only their state. Deliveries and attempts are deleted
-- only with their endpoint or event (the cascade runs as the tables' owner), attempts never
-- change.
GRANT SELECT, INSERT, DELETE ON webhooks, webhook_events TO palisade_app;
GRANT UPDATE (url, description, events, enabled, disabled_reason, grants, updated_at, secret,
              previous_secret, previous_secret_expires_at, failing_since_us) ON webhooks TO palisade_app;
GRANT UPDATE (payload) ON webhook_events TO palisade_app;
GRANT SELECT, INSERT ON webhook_deliveries, webhook_attempts TO palisade_app;
GRANT UPDATE (status, attempts, schedule_step, next_attempt_us, claim, claimed_until_us, updated_at)
    ON webhook_deliveries TO palisade_app;

ALTER TABLE webhooks ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhooks FORCE ROW LEVEL SECURITY;
ALTER TABLE webhook_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook_events FORCE ROW LEVEL SECURITY;
ALTER TABLE webhook_deliveries ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook_deliveries FORCE ROW LEVEL SECURITY;
ALTER TABLE webhook_attempts ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook_attempts FORCE ROW LEVEL SECURITY;

-- Every command on a tenant row needs the row's workspace set.
CREATE POLICY tenant_isolation ON webhooks
    USING (workspace_id = current_setting('app.workspace_id', true))
    WITH CHECK (workspace_id = current_setting('app.workspace_id', true));
CREATE POLICY tenant_isolation ON webhook_events
    USING (workspace_id = current_setting('app.workspace_id', true))
    WITH CHECK (workspace_id = current_setting('app.workspace_id', true));
CREATE POLICY tenant_isolation ON webhook_deliveries
    USING (workspace_id = current_setting('app.workspace_id', true))
    WITH CHECK (workspace_id = current_setting('app.workspace_id', true));
CREATE POLICY tenant_isolation ON webhook_attempts
    USING (workspace_id = current_setting('app.workspace_id', true))
    WITH CHECK (workspace_id = current_setting('app.workspace_id', true));

-- The dispatcher and the retention job serve every workspace from a SystemScope transaction
-- (app.system = 'on'), each command only where it needs it: claim and record (read endpoints,
-- events and deliveries; update deliveries and an endpoint's failure run; insert attempts) and
-- prune (delete events). Only a system transaction bound to no workspace: one bound to a
-- workspace (key rotation) reaches that workspace's rows alone, through tenant_isolation.
--
-- The test is one CASE, not `current_setting(…) = 'on' AND …`: the planner estimates a
-- comparison without a column at 0.5 %, so the policies would tell it a system transaction
-- sees almost no deliveries, and it would sort every due delivery instead of reading the
-- claim's index in order up to the limit. A CASE it estimates at one half.
CREATE FUNCTION webhooks_dispatching() RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN current_setting('app.system', true) = 'on'
                     AND coalesce(current_setting('app.workspace_id', true), '') = ''
                THEN true ELSE false END
$$;

CREATE POLICY system_dispatch ON webhooks FOR SELECT USING (webhooks_dispatching());
CREATE POLICY system_failure_run ON webhooks FOR UPDATE
    USING (webhooks_dispatching()) WITH CHECK (webhooks_dispatching());
CREATE POLICY system_dispatch ON webhook_events FOR SELECT USING (webhooks_dispatching());
CREATE POLICY system_prune ON webhook_events FOR DELETE USING (webhooks_dispatching());
CREATE POLICY system_dispatch ON webhook_deliveries FOR SELECT USING (webhooks_dispatching());
CREATE POLICY system_record ON webhook_deliveries FOR UPDATE
    USING (webhooks_dispatching()) WITH CHECK (webhooks_dispatching());
CREATE POLICY system_record ON webhook_attempts FOR INSERT WITH CHECK (webhooks_dispatching());
