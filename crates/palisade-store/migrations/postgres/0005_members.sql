-- Members, invitations, teams, custom roles, child workspaces and auth policies (ACL-3, ACL-4,
-- ACL-7, TEN-3, TEN-4). The four new tables are tenant tables: RLS enabled and forced, keys and
-- indexes leading with workspace_id.

-- The default is AuthPolicy::default() as serde writes it: what every workspace had before.
ALTER TABLE workspaces ADD COLUMN auth_policy JSONB NOT NULL
    DEFAULT '{"sign_in_methods":["password","magic_link"],"session_max_secs":null,"password_min_length":null,"mfa_required":false}';
ALTER TABLE workspaces ADD COLUMN suspended_at TIMESTAMPTZ;
ALTER TABLE workspaces ADD COLUMN deleted_at TIMESTAMPTZ;
CREATE INDEX workspaces_parent ON workspaces (parent_id);

-- No foreign key on custom_role_id (as on SQLite, which cannot add one): the service refuses to
-- delete a role members hold (members_with_custom_role).
ALTER TABLE members ADD COLUMN custom_role_id TEXT COLLATE "C";
ALTER TABLE members ADD COLUMN active BOOLEAN NOT NULL DEFAULT true;
-- FORCE ROW LEVEL SECURITY binds the owner too, and no workspace is set here: the backfill
-- would see no row. Lifted for this one statement, inside the migration's transaction.
ALTER TABLE members ADD COLUMN updated_at TIMESTAMPTZ;
ALTER TABLE members NO FORCE ROW LEVEL SECURITY;
UPDATE members SET updated_at = created_at;
ALTER TABLE members FORCE ROW LEVEL SECURITY;
ALTER TABLE members ALTER COLUMN updated_at SET NOT NULL;

ALTER TABLE sessions ADD COLUMN method TEXT NOT NULL DEFAULT 'password';

CREATE TABLE custom_roles (
    workspace_id TEXT COLLATE "C" NOT NULL REFERENCES workspaces (id),
    id           TEXT COLLATE "C" NOT NULL,
    name         TEXT NOT NULL,
    description  TEXT,
    base_role    TEXT NOT NULL,
    permissions  JSONB NOT NULL,
    fields       JSONB NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (workspace_id, id)
);
CREATE UNIQUE INDEX custom_roles_name ON custom_roles (workspace_id, name);

CREATE TABLE teams (
    workspace_id TEXT COLLATE "C" NOT NULL REFERENCES workspaces (id),
    id           TEXT COLLATE "C" NOT NULL,
    name         TEXT NOT NULL,
    description  TEXT,
    grants       JSONB NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (workspace_id, id)
);
CREATE UNIQUE INDEX teams_name ON teams (workspace_id, name);

-- user_id repeats the member's user, so RLS can show a user their own team memberships in an
-- account transaction (the membership check), where no workspace is set.
CREATE TABLE team_members (
    workspace_id TEXT COLLATE "C" NOT NULL,
    team_id      TEXT COLLATE "C" NOT NULL,
    member_id    TEXT COLLATE "C" NOT NULL,
    user_id      TEXT COLLATE "C" NOT NULL REFERENCES users (id),
    added_at     TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (workspace_id, team_id, member_id),
    FOREIGN KEY (workspace_id, team_id) REFERENCES teams (workspace_id, id),
    FOREIGN KEY (workspace_id, member_id) REFERENCES members (workspace_id, id)
);
CREATE INDEX team_members_member ON team_members (workspace_id, member_id);
CREATE INDEX team_members_user ON team_members (user_id);

-- Only the SHA-256 of an invitation's token. custom_role_id has no foreign key: accepted and
-- revoked invitations keep naming a role after it is deleted.
CREATE TABLE invitations (
    workspace_id   TEXT COLLATE "C" NOT NULL REFERENCES workspaces (id),
    id             TEXT COLLATE "C" NOT NULL,
    email          TEXT NOT NULL,
    role           TEXT NOT NULL,
    custom_role_id TEXT COLLATE "C",
    token_hash     BYTEA NOT NULL,
    invited_by     TEXT COLLATE "C" NOT NULL REFERENCES users (id),
    created_at     TIMESTAMPTZ NOT NULL,
    expires_at     TIMESTAMPTZ NOT NULL,
    accepted_at    TIMESTAMPTZ,
    accepted_by    TEXT COLLATE "C" REFERENCES users (id),
    revoked_at     TIMESTAMPTZ,
    PRIMARY KEY (workspace_id, id)
);
CREATE UNIQUE INDEX invitations_token ON invitations (token_hash);
CREATE INDEX invitations_email ON invitations (workspace_id, email);

-- Invitations are never deleted (their history is the audit trail's context); members now are.
GRANT SELECT, INSERT, UPDATE, DELETE ON team_members, teams, custom_roles TO palisade_app;
GRANT SELECT, INSERT, UPDATE ON invitations TO palisade_app;
GRANT DELETE ON members TO palisade_app;

ALTER TABLE custom_roles ENABLE ROW LEVEL SECURITY;
ALTER TABLE custom_roles FORCE ROW LEVEL SECURITY;
ALTER TABLE teams ENABLE ROW LEVEL SECURITY;
ALTER TABLE teams FORCE ROW LEVEL SECURITY;
ALTER TABLE team_members ENABLE ROW LEVEL SECURITY;
ALTER TABLE team_members FORCE ROW LEVEL SECURITY;
ALTER TABLE invitations ENABLE ROW LEVEL SECURITY;
ALTER TABLE invitations FORCE ROW LEVEL SECURITY;

-- Every command on a tenant row needs the row's workspace set.
CREATE POLICY tenant_isolation ON custom_roles
    USING (workspace_id = current_setting('app.workspace_id', true))
    WITH CHECK (workspace_id = current_setting('app.workspace_id', true));
CREATE POLICY tenant_isolation ON teams
    USING (workspace_id = current_setting('app.workspace_id', true))
    WITH CHECK (workspace_id = current_setting('app.workspace_id', true));
CREATE POLICY tenant_isolation ON team_members
    USING (workspace_id = current_setting('app.workspace_id', true))
    WITH CHECK (workspace_id = current_setting('app.workspace_id', true));
CREATE POLICY tenant_isolation ON invitations
    USING (workspace_id = current_setting('app.workspace_id', true))
    WITH CHECK (workspace_id = current_setting('app.workspace_id', true));

-- The membership check runs in an account transaction (only app.user_id set): the user may
-- read their own team memberships, those teams, and the custom role they hold. Read only: these
-- policies are FOR SELECT, so no write reaches a row through them.
CREATE POLICY member_access ON team_members FOR SELECT
    USING (user_id = current_setting('app.user_id', true));
CREATE POLICY member_access ON teams FOR SELECT
    USING (EXISTS (SELECT 1 FROM team_members tm
                   WHERE tm.workspace_id = teams.workspace_id AND tm.team_id = teams.id
                     AND tm.user_id = current_setting('app.user_id', true)));
CREATE POLICY member_access ON custom_roles FOR SELECT
    USING (EXISTS (SELECT 1 FROM members m
                   WHERE m.workspace_id = custom_roles.workspace_id
                     AND m.custom_role_id = custom_roles.id
                     AND m.user_id = current_setting('app.user_id', true)));

-- Members may now be deleted. Until now a user's own membership rows were visible through
-- tenant_isolation, which covers every command; narrow that branch to SELECT so an account
-- transaction cannot delete its user's memberships.
DROP POLICY tenant_isolation ON members;
CREATE POLICY tenant_isolation ON members
    USING (workspace_id = current_setting('app.workspace_id', true))
    WITH CHECK (workspace_id = current_setting('app.workspace_id', true));
CREATE POLICY member_access ON members FOR SELECT
    USING (user_id = current_setting('app.user_id', true));

-- An invitation's bearer knows only its token: a SystemScope transaction looks it up.
CREATE POLICY system_lookup ON invitations FOR SELECT
    USING (current_setting('app.system', true) = 'on');

-- A parent's tenant transaction lists and reads its children's workspace rows (TEN-3:
-- lifecycle, never data): no policy on any other table follows parent_id.
CREATE POLICY parent_lifecycle ON workspaces FOR SELECT
    USING (parent_id = current_setting('app.workspace_id', true));
