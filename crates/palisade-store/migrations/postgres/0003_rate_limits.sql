-- Rate limits (RTL-4): one GCRA state per key, shared by every node on this database. Keys
-- name a policy and an id (workspace, principal) or the SHA-256 of a personal value (IP, email);
-- never a personal value in clear. Not tenant data: counters only, like sessions.
CREATE TABLE rate_limits (
    key          TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    tat          BIGINT NOT NULL,        -- µs since the epoch: the budget is full again then
    logged_until BIGINT NOT NULL         -- µs: the next breach of this key is audited after this
);
CREATE INDEX rate_limits_tat ON rate_limits (tat);

GRANT SELECT, INSERT, UPDATE, DELETE ON rate_limits TO palisade_app;
