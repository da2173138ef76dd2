-- Rate limits (RTL-4): one GCRA state per key. Keys name a policy and an id (workspace,
-- principal) or the SHA-256 of a personal value (IP, email); never a personal value in clear.
CREATE TABLE rate_limits (
    key          TEXT NOT NULL PRIMARY KEY,
    tat          INTEGER NOT NULL,       -- µs since the epoch: the budget is full again then
    logged_until INTEGER NOT NULL        -- µs: the next breach of this key is audited after this
) STRICT;
CREATE INDEX rate_limits_tat ON rate_limits (tat);
