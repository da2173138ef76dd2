-- Foundation: accounts, sessions, workspaces, members, the audit sink, keys.
-- Run as the connecting owner. The application then works as palisade_app: a role that owns
-- nothing and cannot bypass row-level security. Every tenant table has RLS enabled and forced,
-- filtering on the transaction-local setting app.workspace_id.

DO $$
BEGIN
    CREATE ROLE palisade_app NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOINHERIT;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL; -- created by an earlier database on this cluster, or by the operator
END
$$;
GRANT palisade_app TO CURRENT_USER;
GRANT USAGE ON SCHEMA public TO palisade_app;

CREATE TABLE users (
    id            TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    email         TEXT NOT NULL,
    name          TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX users_email ON users (email);

CREATE TABLE sessions (
    id             TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    user_id        TEXT COLLATE "C" NOT NULL REFERENCES users (id),
    created_at     TIMESTAMPTZ NOT NULL,
    expires_at     TIMESTAMPTZ NOT NULL,
    revoked_at     TIMESTAMPTZ,
    revoked_reason TEXT
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE refresh_tokens (
    token_hash BYTEA NOT NULL PRIMARY KEY,
    session_id TEXT COLLATE "C" NOT NULL REFERENCES sessions (id),
    user_id    TEXT COLLATE "C" NOT NULL REFERENCES users (id),
    issued_at  TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    used_at    TIMESTAMPTZ
);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);

CREATE TABLE workspaces (
    id         TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    slug       TEXT COLLATE "C" NOT NULL,
    name       TEXT NOT NULL,
    branding   JSONB NOT NULL,
    region     TEXT NOT NULL,
    timezone   TEXT NOT NULL,
    currency   TEXT NOT NULL,
    plan       TEXT NOT NULL,
    modules    JSONB NOT NULL,
    parent_id  TEXT COLLATE "C" REFERENCES workspaces (id),
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX workspaces_slug ON workspaces (slug);

CREATE TABLE members (
    workspace_id TEXT COLLATE "C" NOT NULL REFERENCES workspaces (id),
    id           TEXT COLLATE "C" NOT NULL,
    user_id      TEXT COLLATE "C" NOT NULL REFERENCES users (id),
    role         TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (workspace_id, id)
);
CREATE UNIQUE INDEX members_workspace_user ON members (workspace_id, user_id);
CREATE INDEX members_user ON members (user_id);

CREATE TABLE audit_events (
    workspace_id TEXT COLLATE "C" NOT NULL REFERENCES workspaces (id),
    id           TEXT COLLATE "C" NOT NULL,
    at           TIMESTAMPTZ NOT NULL,
    action       TEXT NOT NULL,
    result       TEXT NOT NULL,
    actor_type   TEXT NOT NULL,
    actor_id     TEXT NOT NULL,
    target_type  TEXT NOT NULL,
    target_id    TEXT NOT NULL,
    request_id   TEXT,
    diff         JSONB NOT NULL,
    pii          JSONB NOT NULL,
    PRIMARY KEY (workspace_id, id)
);

CREATE TABLE audit_pii_openings (
    workspace_id TEXT COLLATE "C" NOT NULL,
    event_id     TEXT COLLATE "C" NOT NULL,
    pointer      TEXT NOT NULL,
    salt         BYTEA NOT NULL,
    value        JSONB NOT NULL,
    PRIMARY KEY (workspace_id, event_id, pointer),
    FOREIGN KEY (workspace_id, event_id) REFERENCES audit_events (workspace_id, id)
);

CREATE TABLE instance_audit_events (
    id          TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    at          TIMESTAMPTZ NOT NULL,
    action      TEXT NOT NULL,
    result      TEXT NOT NULL,
    actor_type  TEXT NOT NULL,
    actor_id    TEXT NOT NULL,
    target_type TEXT NOT NULL,
    target_id   TEXT NOT NULL,
    request_id  TEXT,
    diff        JSONB NOT NULL,
    pii         JSONB NOT NULL
);
CREATE INDEX instance_audit_events_target ON instance_audit_events (target_id);
CREATE INDEX instance_audit_events_actor ON instance_audit_events (actor_id);

CREATE TABLE instance_audit_pii_openings (
    event_id TEXT COLLATE "C" NOT NULL REFERENCES instance_audit_events (id),
    pointer  TEXT NOT NULL,
    salt     BYTEA NOT NULL,
    value    JSONB NOT NULL,
    PRIMARY KEY (event_id, pointer)
);

CREATE TABLE data_keys (
    id         TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    owner      TEXT NOT NULL,
    version    BIGINT NOT NULL,
    wrapped    BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX data_keys_owner_version ON data_keys (owner, version, id);

CREATE TABLE signing_keys (
    kid         TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    purpose     TEXT NOT NULL,
    sealed_seed BYTEA NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);

-- Privileges: the audit sink and keys are insert-only for the application.
GRANT SELECT, INSERT, UPDATE ON users, sessions, refresh_tokens, workspaces, members TO palisade_app;
GRANT SELECT, INSERT ON audit_events, audit_pii_openings, instance_audit_events,
    instance_audit_pii_openings, data_keys, signing_keys TO palisade_app;

-- Row-level security on every tenant table.
ALTER TABLE workspaces ENABLE ROW LEVEL SECURITY;
ALTER TABLE workspaces FORCE ROW LEVEL SECURITY;
ALTER TABLE members ENABLE ROW LEVEL SECURITY;
ALTER TABLE members FORCE ROW LEVEL SECURITY;
ALTER TABLE audit_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_events FORCE ROW LEVEL SECURITY;
ALTER TABLE audit_pii_openings ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_pii_openings FORCE ROW LEVEL SECURITY;

-- A member's own membership rows are visible when app.user_id names them, so "my workspaces"
-- and the membership check work without a workspace set; nothing else is.
CREATE POLICY tenant_isolation ON members
    USING (workspace_id = current_setting('app.workspace_id', true)
           OR user_id = current_setting('app.user_id', true))
    WITH CHECK (workspace_id = current_setting('app.workspace_id', true));

CREATE POLICY tenant_isolation ON workspaces
    USING (id = current_setting('app.workspace_id', true)
           OR id IN (SELECT m.workspace_id FROM members m
                     WHERE m.user_id = current_setting('app.user_id', true)))
    WITH CHECK (id = current_setting('app.workspace_id', true));

-- A SystemScope transaction (app.system = 'on') may look workspaces up by id or slug, e.g.
-- for the instance administrator; it reads, it never writes through this policy.
CREATE POLICY system_lookup ON workspaces FOR SELECT
    USING (current_setting('app.system', true) = 'on');

CREATE POLICY tenant_isolation ON audit_events
    USING (workspace_id = current_setting('app.workspace_id', true))
    WITH CHECK (workspace_id = current_setting('app.workspace_id', true));

CREATE POLICY tenant_isolation ON audit_pii_openings
    USING (workspace_id = current_setting('app.workspace_id', true))
    WITH CHECK (workspace_id = current_setting('app.workspace_id', true));
