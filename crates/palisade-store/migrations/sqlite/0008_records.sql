-- Records (DAT-2): the entries of a workspace's collections. SQLite has no row-level
-- security: every tenant statement filters by workspace_id in the store, and the conformance
-- suite proves it.

-- data is the record's JSON object as text, as the application stores it (each field's stored
-- form, encrypted fields as sealed text). status is draft or published. version starts at 1
-- and grows by one with every change (the ETag); updates are conditional on it. created_by and
-- updated_by are actor ids (a user or an API key). The primary key serves get-by-id;
-- records_collection serves list-by-collection in id order.
CREATE TABLE records (
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id),
    id            TEXT NOT NULL,
    collection_id TEXT NOT NULL,
    status        TEXT NOT NULL,
    data          TEXT NOT NULL,
    version       INTEGER NOT NULL,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    published_at  TEXT,
    created_by    TEXT NOT NULL,
    updated_by    TEXT NOT NULL,
    PRIMARY KEY (workspace_id, id),
    FOREIGN KEY (workspace_id, collection_id) REFERENCES collections (workspace_id, id)
) STRICT;
CREATE INDEX records_collection ON records (workspace_id, collection_id, id);

-- One row per claimed value of a unique field: the primary key makes a value one record's per
-- collection and field. A value is keyed by its SHA-256 (value_hash), not its text: a text
-- field holds up to 10,000 characters, more than a PostgreSQL B-tree entry may hold, and the
-- plain value is in the record already. A claim may precede its record's row (no foreign key
-- to records); deleting a record or a collection deletes its claims in the same transaction.
CREATE TABLE record_uniques (
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id),
    collection_id TEXT NOT NULL,
    field         TEXT NOT NULL,
    value_hash    BLOB NOT NULL,
    record_id     TEXT NOT NULL,
    PRIMARY KEY (workspace_id, collection_id, field, value_hash)
) STRICT;
CREATE INDEX record_uniques_record ON record_uniques (workspace_id, record_id);
