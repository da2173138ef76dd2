-- Workspace API keys (KEY-1, KEY-2). SQLite has no row-level security: every tenant statement
-- filters by workspace_id in the store, and the conformance suite proves it.

-- Only the SHA-256 of a key's secret, unique across the instance (a key is found by its secret
-- alone). scopes and grants are JSON; created_by is a user id or an API key id (no foreign
-- key, it names one or the other); keys are never deleted, only revoked.
CREATE TABLE api_keys (
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    id           TEXT NOT NULL,
    name         TEXT NOT NULL,
    key_hash     BLOB NOT NULL,
    prefix       TEXT NOT NULL,
    scopes       TEXT NOT NULL,
    grants       TEXT NOT NULL,
    created_by   TEXT NOT NULL,
    on_behalf_of TEXT NOT NULL REFERENCES users (id),
    created_at   TEXT NOT NULL,
    expires_at   TEXT,
    rotated_at   TEXT,
    revoked_at   TEXT,
    PRIMARY KEY (workspace_id, id)
) STRICT;
CREATE UNIQUE INDEX api_keys_hash ON api_keys (key_hash);

-- When each key was last used, flushed by the nodes in batches. Not tenant data (a time per key
-- id), like rate_limits. Times here are µs since the Unix epoch, not RFC 3339 text: the store
-- compares them in SQL (an older flush never replaces a newer one), and RFC 3339 text of
-- varying fraction width does not sort as time does.
CREATE TABLE api_key_usage (
    key_id       TEXT NOT NULL PRIMARY KEY,
    last_used_at INTEGER NOT NULL        -- µs since the epoch
) STRICT;

-- Key-cache invalidations: a row per revoke, rotate or workspace change, read by every node
-- and pruned once old. Not tenant data. `at` in µs since the epoch, compared in SQL.
CREATE TABLE api_key_changes (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    workspace_id TEXT NOT NULL,
    at           INTEGER NOT NULL        -- µs since the epoch
) STRICT;
CREATE INDEX api_key_changes_at ON api_key_changes (at);
