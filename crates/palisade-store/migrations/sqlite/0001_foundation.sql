-- Foundation: accounts, sessions, workspaces, members, the audit sink, keys.
-- SQLite has no row-level security: every tenant statement filters by workspace_id in the
-- store, and the conformance suite proves it.

CREATE TABLE users (
    id            TEXT NOT NULL PRIMARY KEY,
    email         TEXT NOT NULL,
    name          TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
) STRICT;
CREATE UNIQUE INDEX users_email ON users (email);

CREATE TABLE sessions (
    id             TEXT NOT NULL PRIMARY KEY,
    user_id        TEXT NOT NULL REFERENCES users (id),
    created_at     TEXT NOT NULL,
    expires_at     TEXT NOT NULL,
    revoked_at     TEXT,
    revoked_reason TEXT
) STRICT;
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE refresh_tokens (
    token_hash BLOB NOT NULL PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions (id),
    user_id    TEXT NOT NULL REFERENCES users (id),
    issued_at  TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at    TEXT
) STRICT;
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);

CREATE TABLE workspaces (
    id         TEXT NOT NULL PRIMARY KEY,
    slug       TEXT NOT NULL,
    name       TEXT NOT NULL,
    branding   TEXT NOT NULL,
    region     TEXT NOT NULL,
    timezone   TEXT NOT NULL,
    currency   TEXT NOT NULL,
    plan       TEXT NOT NULL,
    modules    TEXT NOT NULL,
    parent_id  TEXT REFERENCES workspaces (id),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
) STRICT;
CREATE UNIQUE INDEX workspaces_slug ON workspaces (slug);

CREATE TABLE members (
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    id           TEXT NOT NULL,
    user_id      TEXT NOT NULL REFERENCES users (id),
    role         TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    PRIMARY KEY (workspace_id, id)
) STRICT;
CREATE UNIQUE INDEX members_workspace_user ON members (workspace_id, user_id);
CREATE INDEX members_user ON members (user_id);

-- The audit sink. Append-only: the triggers below abort any UPDATE or DELETE.
CREATE TABLE audit_events (
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    id           TEXT NOT NULL,
    at           TEXT NOT NULL,
    action       TEXT NOT NULL,
    result       TEXT NOT NULL,
    actor_type   TEXT NOT NULL,
    actor_id     TEXT NOT NULL,
    target_type  TEXT NOT NULL,
    target_id    TEXT NOT NULL,
    request_id   TEXT,
    diff         TEXT NOT NULL,
    pii          TEXT NOT NULL,
    PRIMARY KEY (workspace_id, id)
) STRICT;

-- Openings of personal-value commitments: beside the log, not in it (erasable).
CREATE TABLE audit_pii_openings (
    workspace_id TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    pointer      TEXT NOT NULL,
    salt         BLOB NOT NULL,
    value        TEXT NOT NULL,
    PRIMARY KEY (workspace_id, event_id, pointer),
    FOREIGN KEY (workspace_id, event_id) REFERENCES audit_events (workspace_id, id)
) STRICT;

CREATE TABLE instance_audit_events (
    id          TEXT NOT NULL PRIMARY KEY,
    at          TEXT NOT NULL,
    action      TEXT NOT NULL,
    result      TEXT NOT NULL,
    actor_type  TEXT NOT NULL,
    actor_id    TEXT NOT NULL,
    target_type TEXT NOT NULL,
    target_id   TEXT NOT NULL,
    request_id  TEXT,
    diff        TEXT NOT NULL,
    pii         TEXT NOT NULL
) STRICT;
CREATE INDEX instance_audit_events_target ON instance_audit_events (target_id);
CREATE INDEX instance_audit_events_actor ON instance_audit_events (actor_id);

CREATE TABLE instance_audit_pii_openings (
    event_id TEXT NOT NULL REFERENCES instance_audit_events (id),
    pointer  TEXT NOT NULL,
    salt     BLOB NOT NULL,
    value    TEXT NOT NULL,
    PRIMARY KEY (event_id, pointer)
) STRICT;

CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
CREATE TRIGGER instance_audit_events_no_update BEFORE UPDATE ON instance_audit_events
BEGIN SELECT RAISE(ABORT, 'instance_audit_events is append-only'); END;
CREATE TRIGGER instance_audit_events_no_delete BEFORE DELETE ON instance_audit_events
BEGIN SELECT RAISE(ABORT, 'instance_audit_events is append-only'); END;

-- Data keys, only ever stored wrapped by a master key; signing keys sealed by a data key.
CREATE TABLE data_keys (
    id         TEXT NOT NULL PRIMARY KEY,
    owner      TEXT NOT NULL,
    version    INTEGER NOT NULL,
    wrapped    BLOB NOT NULL,
    created_at TEXT NOT NULL
) STRICT;
CREATE UNIQUE INDEX data_keys_owner_version ON data_keys (owner, version, id);

CREATE TABLE signing_keys (
    kid         TEXT NOT NULL PRIMARY KEY,
    purpose     TEXT NOT NULL,
    sealed_seed BLOB NOT NULL,
    created_at  TEXT NOT NULL
) STRICT;
