-- Collections (DAT-1): a workspace's typed schemas for records. SQLite has no row-level
-- security: every tenant statement filters by workspace_id in the store, and the conformance
-- suite proves it.

-- fields is the JSON list of field definitions as serde writes palisade_core's Field (a
-- relation field names its target by collection id, so renaming a collection rewrites no other
-- row). version grows by one with every schema change. Names are unique per workspace.
CREATE TABLE collections (
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    id           TEXT NOT NULL,
    name         TEXT NOT NULL,
    fields       TEXT NOT NULL,
    version      INTEGER NOT NULL,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    PRIMARY KEY (workspace_id, id)
) STRICT;
CREATE UNIQUE INDEX collections_name ON collections (workspace_id, name);
