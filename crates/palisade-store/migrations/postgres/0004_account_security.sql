-- Account security (IDN-1 … IDN-5): email verification, lockout, emailed tokens, reset codes,
-- session details. Accounts created before this migration count as verified: they were made
-- when no verification existed, and locking them out would be a surprise. Instance tables, like
-- users and sessions: not tenant data, no RLS.

ALTER TABLE users ADD COLUMN email_verified_at TIMESTAMPTZ;
ALTER TABLE users ADD COLUMN failed_logins BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN lock_count BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN locked_until TIMESTAMPTZ;
UPDATE users SET email_verified_at = created_at;

ALTER TABLE sessions ADD COLUMN last_used_at TIMESTAMPTZ;
ALTER TABLE sessions ADD COLUMN user_agent TEXT;
ALTER TABLE sessions ADD COLUMN ip_prefix TEXT;
UPDATE sessions SET last_used_at = created_at;
CREATE INDEX sessions_user_id ON sessions (user_id, id);

-- Verification and magic-link tokens: only their SHA-256.
CREATE TABLE account_tokens (
    token_hash BYTEA NOT NULL PRIMARY KEY,
    purpose    TEXT NOT NULL,
    user_id    TEXT COLLATE "C" NOT NULL REFERENCES users (id),
    email      TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    used_at    TIMESTAMPTZ
);
CREATE INDEX account_tokens_user ON account_tokens (user_id);

-- Password-reset codes: only Argon2id.
CREATE TABLE password_reset_codes (
    id         TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    user_id    TEXT COLLATE "C" NOT NULL REFERENCES users (id),
    code_hash  TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    attempts   BIGINT NOT NULL DEFAULT 0,
    closed_at  TIMESTAMPTZ
);
CREATE INDEX password_reset_codes_user ON password_reset_codes (user_id, id);

GRANT SELECT, INSERT, UPDATE ON account_tokens, password_reset_codes TO palisade_app;
