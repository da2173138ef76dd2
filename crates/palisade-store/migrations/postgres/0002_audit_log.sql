-- Audit log v1 (AUDIT-SPEC.md): one hash-chained, Merkle-checkpointed log per workspace plus the
-- instance log ('instance') for account events. Replaces the Foundation's plain audit tables,
-- which held no chain; Palisade had no release with them, so they are dropped, not converted.

DROP TABLE audit_pii_openings;
DROP TABLE audit_events;
DROP TABLE instance_audit_pii_openings;
DROP TABLE instance_audit_events;

-- One row per log: where the next entry goes. The only audit row the application updates.
CREATE TABLE audit_heads (
    log_id     TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    origin     TEXT NOT NULL,
    size       BIGINT NOT NULL,
    last_leaf  BYTEA NOT NULL,   -- the next entry's prev (the genesis value while empty)
    frontier   BYTEA NOT NULL,   -- compact range of [0, size): one 32-byte hash per set bit
    created_at TIMESTAMPTZ NOT NULL
);

-- The entries: exact canonical bytes and leaf hash. The other columns are read-only indexes
-- into the bytes, which stay the truth.
CREATE TABLE audit_entries (
    log_id      TEXT COLLATE "C" NOT NULL,
    seq         BIGINT NOT NULL,
    entry       BYTEA NOT NULL,
    leaf        BYTEA NOT NULL,
    ts          TEXT COLLATE "C" NOT NULL,   -- the entry's ts: fixed width, sorts as time
    action      TEXT COLLATE "C" NOT NULL,
    result      TEXT NOT NULL,
    actor_type  TEXT NOT NULL,
    actor_id    TEXT COLLATE "C" NOT NULL,
    target_type TEXT COLLATE "C" NOT NULL,
    target_id   TEXT COLLATE "C" NOT NULL,
    gdpr        BOOLEAN NOT NULL,
    PRIMARY KEY (log_id, seq)
);
CREATE INDEX audit_entries_action ON audit_entries (log_id, action, seq);
CREATE INDEX audit_entries_actor ON audit_entries (log_id, actor_id, seq);
CREATE INDEX audit_entries_target ON audit_entries (log_id, target_id, seq);
CREATE INDEX audit_entries_ts ON audit_entries (log_id, ts);

-- Every complete aligned subtree hash: (level, index) covers leaves [index·2^level, (index+1)·2^level).
CREATE TABLE audit_tree (
    log_id TEXT COLLATE "C" NOT NULL,
    level  SMALLINT NOT NULL,
    idx    BIGINT NOT NULL,
    hash   BYTEA NOT NULL,
    PRIMARY KEY (log_id, level, idx)
);

-- Openings of personal-value commitments: beside the log, not in it (erasure deletes them).
CREATE TABLE audit_openings (
    log_id  TEXT COLLATE "C" NOT NULL,
    seq     BIGINT NOT NULL,
    pointer TEXT NOT NULL,
    salt    BYTEA NOT NULL,
    value   JSONB NOT NULL,
    subject TEXT COLLATE "C",
    PRIMARY KEY (log_id, seq, pointer)
);
CREATE INDEX audit_openings_subject ON audit_openings (subject);

-- Signed checkpoints: 'latest' ones (at most one a minute) and one 'daily' per UTC date.
CREATE TABLE audit_checkpoints (
    log_id    TEXT COLLATE "C" NOT NULL,
    kind      TEXT NOT NULL,
    day       TEXT,
    size      BIGINT NOT NULL,
    root      BYTEA NOT NULL,
    body      TEXT NOT NULL,
    jws       TEXT NOT NULL,
    note      TEXT NOT NULL,
    kid       TEXT NOT NULL,
    signed_at TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX audit_checkpoints_latest ON audit_checkpoints (log_id, size) WHERE kind = 'latest';
CREATE UNIQUE INDEX audit_checkpoints_day ON audit_checkpoints (log_id, day) WHERE day IS NOT NULL;
CREATE INDEX audit_checkpoints_signed ON audit_checkpoints (log_id, signed_at);

-- Each log's Ed25519 key: the seed sealed under a data key, used for nothing else.
CREATE TABLE audit_keys (
    log_id      TEXT COLLATE "C" NOT NULL,
    kid         TEXT COLLATE "C" NOT NULL,
    public_key  BYTEA NOT NULL,
    sealed_seed BYTEA NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (log_id, kid)
);

-- Append-only for the application: no UPDATE or DELETE on entries, tree hashes, openings,
-- checkpoints or keys. Only the head moves.
GRANT SELECT, INSERT ON audit_entries, audit_tree, audit_openings, audit_checkpoints, audit_keys TO palisade_app;
GRANT SELECT, INSERT, UPDATE ON audit_heads TO palisade_app;

-- A tenant transaction sees its workspace's log; a transaction with no workspace (accounts,
-- system) sees the instance log; a system transaction may also list heads and checkpoints.
DO $$
DECLARE t TEXT;
BEGIN
    FOREACH t IN ARRAY ARRAY['audit_heads', 'audit_entries', 'audit_tree', 'audit_openings',
                             'audit_checkpoints', 'audit_keys'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format($p$CREATE POLICY tenant_isolation ON %I
            USING (log_id = current_setting('app.workspace_id', true)
                   OR (log_id = 'instance' AND coalesce(current_setting('app.workspace_id', true), '') = ''))
            WITH CHECK (log_id = current_setting('app.workspace_id', true)
                   OR (log_id = 'instance' AND coalesce(current_setting('app.workspace_id', true), '') = ''))$p$, t);
    END LOOP;
END
$$;
CREATE POLICY system_lookup ON audit_heads FOR SELECT
    USING (current_setting('app.system', true) = 'on');
CREATE POLICY system_lookup ON audit_checkpoints FOR SELECT
    USING (current_setting('app.system', true) = 'on');

-- The head only moves forward.
CREATE FUNCTION audit_heads_forward() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.size < OLD.size OR NEW.log_id <> OLD.log_id OR NEW.origin <> OLD.origin THEN
        RAISE EXCEPTION 'audit_heads only moves forward';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER audit_heads_forward BEFORE UPDATE ON audit_heads
    FOR EACH ROW EXECUTE FUNCTION audit_heads_forward();
