-- Records (DAT-2): the entries of a workspace's collections. records and record_uniques are
-- tenant tables: RLS enabled and forced, keys and indexes leading with workspace_id.

-- data is the record's JSON object as the application stores it (each field's stored form,
-- encrypted fields as sealed text). status is draft or published. version starts at 1 and grows
-- by one with every change (the ETag); updates are conditional on it. created_by and
-- updated_by are actor ids (a user or an API key). The primary key serves get-by-id;
-- records_collection serves list-by-collection in id order.
CREATE TABLE records (
    workspace_id  TEXT COLLATE "C" NOT NULL REFERENCES workspaces (id),
    id            TEXT COLLATE "C" NOT NULL,
    collection_id TEXT COLLATE "C" NOT NULL,
    status        TEXT NOT NULL,
    data          JSONB NOT NULL,
    version       BIGINT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL,
    published_at  TIMESTAMPTZ,
    created_by    TEXT NOT NULL,
    updated_by    TEXT NOT NULL,
    PRIMARY KEY (workspace_id, id),
    FOREIGN KEY (workspace_id, collection_id) REFERENCES collections (workspace_id, id)
);
CREATE INDEX records_collection ON records (workspace_id, collection_id, id);

-- One row per claimed value of a unique field: the primary key makes a value one record's per
-- collection and field. A value is keyed by its SHA-256 (value_hash), not its text: a text
-- field holds up to 10,000 characters, more than a PostgreSQL B-tree entry may hold, and the
-- plain value is in the record already. A claim may precede its record's row (no foreign key
-- to records); deleting a record or a collection deletes its claims in the same transaction.
CREATE TABLE record_uniques (
    workspace_id  TEXT COLLATE "C" NOT NULL REFERENCES workspaces (id),
    collection_id TEXT COLLATE "C" NOT NULL,
    field         TEXT COLLATE "C" NOT NULL,
    value_hash    BYTEA NOT NULL,
    record_id     TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (workspace_id, collection_id, field, value_hash)
);
CREATE INDEX record_uniques_record ON record_uniques (workspace_id, record_id);

GRANT SELECT, INSERT, UPDATE, DELETE ON records, record_uniques TO palisade_app;

ALTER TABLE records ENABLE ROW LEVEL SECURITY;
ALTER TABLE records FORCE ROW LEVEL SECURITY;
ALTER TABLE record_uniques ENABLE ROW LEVEL SECURITY;
ALTER TABLE record_uniques FORCE ROW LEVEL SECURITY;

-- Every command on a tenant row needs the row's workspace set. No other policy: records and
-- their claims are read only in their workspace's transactions.
CREATE POLICY tenant_isolation ON records
    USING (workspace_id = current_setting('app.workspace_id', true))
    WITH CHECK (workspace_id = current_setting('app.workspace_id', true));
CREATE POLICY tenant_isolation ON record_uniques
    USING (workspace_id = current_setting('app.workspace_id', true))
    WITH CHECK (workspace_id = current_setting('app.workspace_id', true));
