-- Account security (IDN-1 … IDN-5): email verification, lockout, emailed tokens, reset codes,
-- session details. Accounts created before this migration count as verified: they were made
-- when no verification existed, and locking them out would be a surprise.

ALTER TABLE users ADD COLUMN email_verified_at TEXT;
ALTER TABLE users ADD COLUMN failed_logins INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN lock_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN locked_until TEXT;
UPDATE users SET email_verified_at = created_at;

ALTER TABLE sessions ADD COLUMN last_used_at TEXT;
ALTER TABLE sessions ADD COLUMN user_agent TEXT;
ALTER TABLE sessions ADD COLUMN ip_prefix TEXT;
UPDATE sessions SET last_used_at = created_at;
CREATE INDEX sessions_user_id ON sessions (user_id, id);

-- Verification and magic-link tokens: only their SHA-256.
CREATE TABLE account_tokens (
    token_hash BLOB NOT NULL PRIMARY KEY,
    purpose    TEXT NOT NULL,
    user_id    TEXT NOT NULL REFERENCES users (id),
    email      TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at    TEXT
) STRICT;
CREATE INDEX account_tokens_user ON account_tokens (user_id);

-- Password-reset codes: only Argon2id.
CREATE TABLE password_reset_codes (
    id         TEXT NOT NULL PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id),
    code_hash  TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    closed_at  TEXT
) STRICT;
CREATE INDEX password_reset_codes_user ON password_reset_codes (user_id, id);
