-- Audit log v1 (AUDIT-SPEC.md): one hash-chained, Merkle-checkpointed log per workspace plus the
-- instance log ('instance') for account events. Replaces the Foundation's plain audit tables,
-- which held no chain; Palisade had no release with them, so they are dropped, not converted.

DROP TABLE audit_pii_openings;
DROP TABLE audit_events;
DROP TABLE instance_audit_pii_openings;
DROP TABLE instance_audit_events;

-- One row per log: where the next entry goes. The only audit row the application updates.
CREATE TABLE audit_heads (
    log_id     TEXT NOT NULL PRIMARY KEY,
    origin     TEXT NOT NULL,
    size       INTEGER NOT NULL,
    last_leaf  BLOB NOT NULL,
    frontier   BLOB NOT NULL,
    created_at TEXT NOT NULL
) STRICT;

CREATE TABLE audit_entries (
    log_id      TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    entry       BLOB NOT NULL,
    leaf        BLOB NOT NULL,
    ts          TEXT NOT NULL,
    action      TEXT NOT NULL,
    result      TEXT NOT NULL,
    actor_type  TEXT NOT NULL,
    actor_id    TEXT NOT NULL,
    target_type TEXT NOT NULL,
    target_id   TEXT NOT NULL,
    gdpr        INTEGER NOT NULL,
    PRIMARY KEY (log_id, seq)
) STRICT;
CREATE INDEX audit_entries_action ON audit_entries (log_id, action, seq);
CREATE INDEX audit_entries_actor ON audit_entries (log_id, actor_id, seq);
CREATE INDEX audit_entries_target ON audit_entries (log_id, target_id, seq);
CREATE INDEX audit_entries_ts ON audit_entries (log_id, ts);

CREATE TABLE audit_tree (
    log_id TEXT NOT NULL,
    level  INTEGER NOT NULL,
    idx    INTEGER NOT NULL,
    hash   BLOB NOT NULL,
    PRIMARY KEY (log_id, level, idx)
) STRICT;

CREATE TABLE audit_openings (
    log_id  TEXT NOT NULL,
    seq     INTEGER NOT NULL,
    pointer TEXT NOT NULL,
    salt    BLOB NOT NULL,
    value   TEXT NOT NULL,
    subject TEXT,
    PRIMARY KEY (log_id, seq, pointer)
) STRICT;
CREATE INDEX audit_openings_subject ON audit_openings (subject);

CREATE TABLE audit_checkpoints (
    log_id    TEXT NOT NULL,
    kind      TEXT NOT NULL,
    day       TEXT,
    size      INTEGER NOT NULL,
    root      BLOB NOT NULL,
    body      TEXT NOT NULL,
    jws       TEXT NOT NULL,
    note      TEXT NOT NULL,
    kid       TEXT NOT NULL,
    signed_at TEXT NOT NULL
) STRICT;
CREATE UNIQUE INDEX audit_checkpoints_latest ON audit_checkpoints (log_id, size) WHERE kind = 'latest';
CREATE UNIQUE INDEX audit_checkpoints_day ON audit_checkpoints (log_id, day) WHERE day IS NOT NULL;
CREATE INDEX audit_checkpoints_signed ON audit_checkpoints (log_id, signed_at);

CREATE TABLE audit_keys (
    log_id      TEXT NOT NULL,
    kid         TEXT NOT NULL,
    public_key  BLOB NOT NULL,
    sealed_seed BLOB NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (log_id, kid)
) STRICT;

-- Append-only: the database aborts any UPDATE or DELETE of entries, tree hashes, checkpoints
-- and keys, and any UPDATE of openings (erasure, a later separate path, deletes them).
CREATE TRIGGER audit_entries_no_update BEFORE UPDATE ON audit_entries
BEGIN SELECT RAISE(ABORT, 'audit_entries is append-only'); END;
CREATE TRIGGER audit_entries_no_delete BEFORE DELETE ON audit_entries
BEGIN SELECT RAISE(ABORT, 'audit_entries is append-only'); END;
CREATE TRIGGER audit_tree_no_update BEFORE UPDATE ON audit_tree
BEGIN SELECT RAISE(ABORT, 'audit_tree is append-only'); END;
CREATE TRIGGER audit_tree_no_delete BEFORE DELETE ON audit_tree
BEGIN SELECT RAISE(ABORT, 'audit_tree is append-only'); END;
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only'); END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only'); END;
CREATE TRIGGER audit_keys_no_update BEFORE UPDATE ON audit_keys
BEGIN SELECT RAISE(ABORT, 'audit_keys is append-only'); END;
CREATE TRIGGER audit_keys_no_delete BEFORE DELETE ON audit_keys
BEGIN SELECT RAISE(ABORT, 'audit_keys is append-only'); END;
CREATE TRIGGER audit_openings_no_update BEFORE UPDATE ON audit_openings
BEGIN SELECT RAISE(ABORT, 'audit_openings is append-only'); END;
-- The head only moves forward.
CREATE TRIGGER audit_heads_forward BEFORE UPDATE ON audit_heads
WHEN NEW.size < OLD.size OR NEW.log_id <> OLD.log_id OR NEW.origin <> OLD.origin
BEGIN SELECT RAISE(ABORT, 'audit_heads only moves forward'); END;
CREATE TRIGGER audit_heads_no_delete BEFORE DELETE ON audit_heads
BEGIN SELECT RAISE(ABORT, 'audit_heads is append-only'); END;
