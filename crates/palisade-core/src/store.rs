//! The store traits: what services need from a database, implemented once per backend in
//! `palisade-store`. A transaction is a boxed trait object; dropping it without `commit` rolls
//! back. Tenant transactions are bound to one workspace at `begin`, so a tenant statement cannot
//! reach another workspace's rows.

use time::OffsetDateTime;

use crate::accounts::model::{RefreshToken, Session, User};
use crate::audit::AuditRecord;
use crate::error::StoreError;
use crate::ids::{DataKeyId, SessionId, UserId, WorkspaceId};
use crate::tenancy::{SystemScope, TenantScope};
use crate::workspaces::model::{Member, Membership, Workspace};

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

#[async_trait::async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;

    /// Succeeds when the database answers (`/readyz`).
    async fn ping(&self) -> StoreResult<()>;

    /// Instance-wide tables (users, sessions, refresh tokens, the instance audit log) and the
    /// caller's own memberships. `acting` is the user whose memberships may be read.
    async fn accounts(
        &self,
        acting: Option<&UserId>,
        access: Access,
    ) -> StoreResult<Box<dyn AccountTx>>;

    /// One workspace's rows, for a scope that passed the membership check.
    async fn tenant(&self, scope: &TenantScope, access: Access) -> StoreResult<Box<dyn TenantTx>>;

    /// Cross-tenant or instance work (key loading, admin lookups).
    async fn system(&self, scope: &SystemScope, access: Access) -> StoreResult<Box<dyn SystemTx>>;
}

#[async_trait::async_trait]
pub trait AccountTx: Send {
    /// Fails with `StoreError::Conflict("users_email")` when the email is taken.
    async fn user_insert(&mut self, user: &User, password_hash: &str) -> StoreResult<()>;
    /// The user and their password hash.
    async fn user_by_email(&mut self, email: &str) -> StoreResult<Option<(User, String)>>;
    async fn user_by_id(&mut self, id: &UserId) -> StoreResult<Option<User>>;

    async fn session_insert(&mut self, session: &Session) -> StoreResult<()>;
    async fn session_get(&mut self, id: &SessionId) -> StoreResult<Option<Session>>;
    /// Revokes a live session; false when it was already revoked or does not exist.
    async fn session_revoke(
        &mut self,
        id: &SessionId,
        at: OffsetDateTime,
        reason: &str,
    ) -> StoreResult<bool>;

    async fn refresh_insert(&mut self, token: &RefreshToken) -> StoreResult<()>;
    async fn refresh_get(&mut self, hash: &[u8; 32]) -> StoreResult<Option<RefreshToken>>;
    /// Marks a token used, atomically: false when another request used it first.
    async fn refresh_mark_used(&mut self, hash: &[u8; 32], at: OffsetDateTime)
    -> StoreResult<bool>;

    /// The acting user's workspaces in id order, after `after`, at most `limit`.
    async fn memberships(
        &mut self,
        user: &UserId,
        after: Option<&WorkspaceId>,
        limit: u32,
    ) -> StoreResult<Vec<Membership>>;
    /// The acting user's membership in the workspace whose id or slug is `key`.
    async fn membership(&mut self, user: &UserId, key: &str) -> StoreResult<Option<Membership>>;

    /// The audit sink for the instance log (account events).
    async fn audit_append(&mut self, record: &AuditRecord) -> StoreResult<()>;
    /// The newest instance-log events concerning `target_id`, newest first.
    async fn audit_recent_for(
        &mut self,
        target_id: &str,
        limit: u32,
    ) -> StoreResult<Vec<StoredAuditEvent>>;

    async fn commit(self: Box<Self>) -> StoreResult<()>;
}

#[async_trait::async_trait]
pub trait TenantTx: Send {
    /// Fails with `StoreError::Conflict("workspaces_slug")` when the slug is taken.
    async fn workspace_insert(&mut self, workspace: &Workspace) -> StoreResult<()>;
    /// The scope's workspace; in a write transaction its row is locked until commit.
    async fn workspace_get(&mut self) -> StoreResult<Option<Workspace>>;
    async fn workspace_update(&mut self, workspace: &Workspace) -> StoreResult<()>;

    async fn member_insert(&mut self, member: &Member) -> StoreResult<()>;

    /// The audit sink for this workspace's log.
    async fn audit_append(&mut self, record: &AuditRecord) -> StoreResult<()>;
    /// The newest events of this workspace's log, newest first.
    async fn audit_recent(&mut self, limit: u32) -> StoreResult<Vec<StoredAuditEvent>>;

    async fn commit(self: Box<Self>) -> StoreResult<()>;
}

#[async_trait::async_trait]
pub trait SystemTx: Send {
    /// The id of the workspace whose id or slug is `key`, whoever its members are.
    async fn workspace_resolve(&mut self, key: &str) -> StoreResult<Option<WorkspaceId>>;

    async fn data_keys(&mut self, owner: &str) -> StoreResult<Vec<StoredDataKey>>;
    async fn data_key_insert(&mut self, key: &StoredDataKey) -> StoreResult<()>;
    async fn signing_keys(&mut self, purpose: &str) -> StoreResult<Vec<StoredSigningKey>>;
    async fn signing_key_insert(&mut self, key: &StoredSigningKey) -> StoreResult<()>;

    async fn commit(self: Box<Self>) -> StoreResult<()>;
}

/// A data key as stored: only wrapped by a master key.
#[derive(Debug, Clone)]
pub struct StoredDataKey {
    pub id: DataKeyId,
    pub owner: String,
    pub version: i64,
    pub wrapped: Vec<u8>,
    pub created_at: OffsetDateTime,
}

/// A signing key as stored: the seed sealed under a data key.
#[derive(Debug, Clone)]
pub struct StoredSigningKey {
    pub kid: String,
    pub purpose: String,
    pub sealed_seed: Vec<u8>,
    pub created_at: OffsetDateTime,
}

/// An audit event read back (the sink's storage until the hash-chained log lands).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAuditEvent {
    pub id: String,
    pub at: OffsetDateTime,
    pub action: String,
    pub result: String,
    pub actor_type: String,
    pub actor_id: String,
    pub target_type: String,
    pub target_id: String,
    pub request_id: Option<String>,
    pub diff: serde_json::Value,
    pub pii: serde_json::Value,
}
