-- Collections (DAT-1): a workspace's typed schemas for records. collections is a tenant table:
-- RLS enabled and forced, keys and indexes leading with workspace_id.

-- fields is the list of field definitions as serde writes palisade_core's Field (a relation
-- field names its target by collection id, so renaming a collection rewrites no other row).
-- version grows by one with every schema change. Names are unique per workspace.
CREATE TABLE collections (
    workspace_id TEXT COLLATE "C" NOT NULL REFERENCES workspaces (id),
    id           TEXT COLLATE "C" NOT NULL,
    name         TEXT NOT NULL,
    fields       JSONB NOT NULL,
    version      BIGINT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (workspace_id, id)
);
CREATE UNIQUE INDEX collections_name ON collections (workspace_id, name);

GRANT SELECT, INSERT, UPDATE, DELETE ON collections TO palisade_app;

ALTER TABLE collections ENABLE ROW LEVEL SECURITY;
ALTER TABLE collections FORCE ROW LEVEL SECURITY;

-- Every command on a tenant row needs the row's workspace set. No other policy: collections
-- are read only in their workspace's transactions.
CREATE POLICY tenant_isolation ON collections
    USING (workspace_id = current_setting('app.workspace_id', true))
    WITH CHECK (workspace_id = current_setting('app.workspace_id', true));
