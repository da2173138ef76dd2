-- Encryption at rest (KMS-1 … KMS-3): data keys per owner (a workspace id, or `instance`), each
-- with a version; rotation jobs that re-encrypt an owner's sealed values under a new version.
-- Times are RFC 3339 text; they are compared in Rust, never in SQL.

DROP INDEX data_keys_owner_version;
CREATE UNIQUE INDEX data_keys_owner_version ON data_keys (owner, version);
ALTER TABLE data_keys ADD COLUMN activates_at TEXT;
ALTER TABLE data_keys ADD COLUMN retired_at TEXT;
UPDATE data_keys SET activates_at = created_at;

CREATE TABLE key_rotations (
    id           TEXT NOT NULL PRIMARY KEY,
    owner        TEXT NOT NULL,
    to_version   INTEGER NOT NULL,
    reason       TEXT NOT NULL,
    state        TEXT NOT NULL,
    pass         INTEGER NOT NULL,
    phase        TEXT NOT NULL,
    cursor       TEXT NOT NULL,
    found        INTEGER NOT NULL,
    resealed     INTEGER NOT NULL,
    scanned      INTEGER NOT NULL,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    finished_at  TEXT
) STRICT;
CREATE UNIQUE INDEX key_rotations_owner_version ON key_rotations (owner, to_version);

-- An audit key's seed may be sealed again under a newer data key; nothing else of it changes.
DROP TRIGGER audit_keys_no_update;
CREATE TRIGGER audit_keys_no_update BEFORE UPDATE ON audit_keys
WHEN NEW.log_id IS NOT OLD.log_id OR NEW.kid IS NOT OLD.kid OR NEW.public_key IS NOT OLD.public_key
     OR NEW.created_at IS NOT OLD.created_at
BEGIN SELECT RAISE(ABORT, 'audit_keys is append-only (only a sealed seed may be sealed anew)'); END;
