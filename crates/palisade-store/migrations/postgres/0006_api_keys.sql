-- Workspace API keys (KEY-1, KEY-2). api_keys is a tenant table: RLS enabled and forced, keys
-- and indexes leading with workspace_id (but the secret's hash, unique across the instance).

-- Only the SHA-256 of a key's secret, unique across the instance (a key is found by its secret
-- alone). created_by is a user id or an API key id (no foreign key, it names one or the other).
CREATE TABLE api_keys (
    workspace_id TEXT COLLATE "C" NOT NULL REFERENCES workspaces (id),
    id           TEXT COLLATE "C" NOT NULL,
    name         TEXT NOT NULL,
    key_hash     BYTEA NOT NULL,
    prefix       TEXT NOT NULL,
    scopes       JSONB NOT NULL,
    grants       JSONB NOT NULL,
    created_by   TEXT COLLATE "C" NOT NULL,
    on_behalf_of TEXT COLLATE "C" NOT NULL REFERENCES users (id),
    created_at   TIMESTAMPTZ NOT NULL,
    expires_at   TIMESTAMPTZ,
    rotated_at   TIMESTAMPTZ,
    revoked_at   TIMESTAMPTZ,
    PRIMARY KEY (workspace_id, id)
);
CREATE UNIQUE INDEX api_keys_hash ON api_keys (key_hash);

-- When each key was last used, flushed by the nodes in batches. Not tenant data (a time per key
-- id), like rate_limits: no RLS. µs since the Unix epoch, as on SQLite, so the statements that
-- compare times in SQL are the same on both backends.
CREATE TABLE api_key_usage (
    key_id       TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    last_used_at BIGINT NOT NULL         -- µs since the epoch
);

-- Key-cache invalidations: a row per revoke, rotate or workspace change, read by every node
-- and pruned once old. Not tenant data (a workspace id and a time): no RLS.
CREATE TABLE api_key_changes (
    seq          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id TEXT COLLATE "C" NOT NULL,
    at           BIGINT NOT NULL         -- µs since the epoch
);
CREATE INDEX api_key_changes_at ON api_key_changes (at);

-- Keys are never deleted, only revoked. An identity column's sequence needs no grant (the
-- insert draws from it without a privilege check).
GRANT SELECT, INSERT, UPDATE ON api_keys, api_key_usage TO palisade_app;
GRANT SELECT, INSERT, DELETE ON api_key_changes TO palisade_app;

ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE api_keys FORCE ROW LEVEL SECURITY;

-- Every command on a tenant row needs the row's workspace set.
CREATE POLICY tenant_isolation ON api_keys
    USING (workspace_id = current_setting('app.workspace_id', true))
    WITH CHECK (workspace_id = current_setting('app.workspace_id', true));

-- A key's bearer presents only its secret: a SystemScope transaction looks it up by hash.
CREATE POLICY system_lookup ON api_keys FOR SELECT
    USING (current_setting('app.system', true) = 'on');
