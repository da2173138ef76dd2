-- Members, invitations, teams, custom roles, child workspaces and auth policies (ACL-3, ACL-4,
-- ACL-7, TEN-3, TEN-4). SQLite has no row-level security: every tenant statement filters by
-- workspace_id in the store, and the conformance suite proves it.

-- The default is AuthPolicy::default() as serde writes it: what every workspace had before.
ALTER TABLE workspaces ADD COLUMN auth_policy TEXT NOT NULL
    DEFAULT '{"sign_in_methods":["password","magic_link"],"session_max_secs":null,"password_min_length":null,"mfa_required":false}';
ALTER TABLE workspaces ADD COLUMN suspended_at TEXT;
ALTER TABLE workspaces ADD COLUMN deleted_at TEXT;
CREATE INDEX workspaces_parent ON workspaces (parent_id);

-- No foreign key on custom_role_id: SQLite cannot add a composite one to an existing table, and
-- the service refuses to delete a role members hold (members_with_custom_role).
ALTER TABLE members ADD COLUMN custom_role_id TEXT;
ALTER TABLE members ADD COLUMN active INTEGER NOT NULL DEFAULT 1;
-- SQLite cannot add a NOT NULL column without a constant default: the empty default is never
-- read (the store always writes updated_at; old rows take created_at just below).
ALTER TABLE members ADD COLUMN updated_at TEXT NOT NULL DEFAULT '';
UPDATE members SET updated_at = created_at;

ALTER TABLE sessions ADD COLUMN method TEXT NOT NULL DEFAULT 'password';

CREATE TABLE custom_roles (
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    id           TEXT NOT NULL,
    name         TEXT NOT NULL,
    description  TEXT,
    base_role    TEXT NOT NULL,
    permissions  TEXT NOT NULL,
    fields       TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    PRIMARY KEY (workspace_id, id)
) STRICT;
CREATE UNIQUE INDEX custom_roles_name ON custom_roles (workspace_id, name);

CREATE TABLE teams (
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    id           TEXT NOT NULL,
    name         TEXT NOT NULL,
    description  TEXT,
    grants       TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    PRIMARY KEY (workspace_id, id)
) STRICT;
CREATE UNIQUE INDEX teams_name ON teams (workspace_id, name);

-- user_id repeats the member's user, so a user's own team memberships can be found (and, on
-- PostgreSQL, seen under RLS) without a workspace.
CREATE TABLE team_members (
    workspace_id TEXT NOT NULL,
    team_id      TEXT NOT NULL,
    member_id    TEXT NOT NULL,
    user_id      TEXT NOT NULL REFERENCES users (id),
    added_at     TEXT NOT NULL,
    PRIMARY KEY (workspace_id, team_id, member_id),
    FOREIGN KEY (workspace_id, team_id) REFERENCES teams (workspace_id, id),
    FOREIGN KEY (workspace_id, member_id) REFERENCES members (workspace_id, id)
) STRICT;
CREATE INDEX team_members_member ON team_members (workspace_id, member_id);
CREATE INDEX team_members_user ON team_members (user_id);

-- Only the SHA-256 of an invitation's token. custom_role_id has no foreign key: accepted and
-- revoked invitations keep naming a role after it is deleted.
CREATE TABLE invitations (
    workspace_id   TEXT NOT NULL REFERENCES workspaces (id),
    id             TEXT NOT NULL,
    email          TEXT NOT NULL,
    role           TEXT NOT NULL,
    custom_role_id TEXT,
    token_hash     BLOB NOT NULL,
    invited_by     TEXT NOT NULL REFERENCES users (id),
    created_at     TEXT NOT NULL,
    expires_at     TEXT NOT NULL,
    accepted_at    TEXT,
    accepted_by    TEXT REFERENCES users (id),
    revoked_at     TEXT,
    PRIMARY KEY (workspace_id, id)
) STRICT;
CREATE UNIQUE INDEX invitations_token ON invitations (token_hash);
CREATE INDEX invitations_email ON invitations (workspace_id, email);
