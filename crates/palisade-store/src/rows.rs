//! Row types shared by both backends (sqlx's `FromRow` derive is generic over the database),
//! and their conversion into domain values.

use palisade_core::accounts::model::{
    AccountToken, Credentials, RefreshToken, ResetCode, Session, TokenPurpose, User,
};
use palisade_core::acl::Role;
use palisade_core::error::StoreError;
use palisade_core::ids::{MemberId, ResetCodeId, SessionId, UserId, WorkspaceId};
use palisade_core::store::{
    StoreResult, StoredAuditKey, StoredCheckpoint, StoredDataKey, StoredSigningKey,
};
use palisade_core::workspaces::model::{Branding, Membership, Module, Plan, Workspace};
use sqlx::types::Json;
use time::OffsetDateTime;

#[derive(Debug, thiserror::Error)]
#[error("corrupt row in {table}: {detail}")]
pub struct CorruptRow {
    pub table: &'static str,
    pub detail: String,
}

pub(crate) fn corrupt(table: &'static str, detail: impl Into<String>) -> StoreError {
    StoreError::Database(Box::new(CorruptRow {
        table,
        detail: detail.into(),
    }))
}

/// The columns every user read selects (`USER_COLUMNS`).
#[derive(sqlx::FromRow)]
pub(crate) struct UserRow {
    pub id: String,
    pub email: String,
    pub name: String,
    pub email_verified_at: Option<OffsetDateTime>,
    pub password_hash: String,
    pub failed_logins: i64,
    pub lock_count: i64,
    pub locked_until: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

fn count(table: &'static str, v: i64) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| corrupt(table, "count out of range"))
}

impl UserRow {
    pub fn into_user(self) -> Result<(User, Credentials), StoreError> {
        let credentials = Credentials {
            password_hash: self.password_hash,
            failed_logins: count("users", self.failed_logins)?,
            lock_count: count("users", self.lock_count)?,
            locked_until: self.locked_until,
        };
        let user = User {
            id: UserId::from_trusted(self.id),
            email: self.email,
            name: self.name,
            email_verified_at: self.email_verified_at,
            created_at: self.created_at,
            updated_at: self.updated_at,
        };
        Ok((user, credentials))
    }
}

/// The columns every session read selects (`SESSION_COLUMNS`).
#[derive(sqlx::FromRow)]
pub(crate) struct SessionRow {
    pub id: String,
    pub user_id: String,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
    pub revoked_reason: Option<String>,
    pub last_used_at: Option<OffsetDateTime>,
    pub user_agent: Option<String>,
    pub ip_prefix: Option<String>,
}

impl From<SessionRow> for Session {
    fn from(r: SessionRow) -> Self {
        Session {
            id: SessionId::from_trusted(r.id),
            user_id: UserId::from_trusted(r.user_id),
            created_at: r.created_at,
            expires_at: r.expires_at,
            revoked_at: r.revoked_at,
            revoked_reason: r.revoked_reason,
            last_used_at: r.last_used_at.unwrap_or(r.created_at),
            user_agent: r.user_agent,
            ip_prefix: r.ip_prefix,
        }
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct AccountTokenRow {
    pub token_hash: Vec<u8>,
    pub purpose: String,
    pub user_id: String,
    pub email: String,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub used_at: Option<OffsetDateTime>,
}

impl AccountTokenRow {
    pub fn into_token(self) -> Result<AccountToken, StoreError> {
        Ok(AccountToken {
            hash: hash32("account_tokens", self.token_hash)?,
            purpose: TokenPurpose::parse(&self.purpose)
                .ok_or_else(|| corrupt("account_tokens", "unknown purpose"))?,
            user_id: UserId::from_trusted(self.user_id),
            email: self.email,
            created_at: self.created_at,
            expires_at: self.expires_at,
            used_at: self.used_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct ResetCodeRow {
    pub id: String,
    pub user_id: String,
    pub code_hash: String,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub attempts: i64,
    pub closed_at: Option<OffsetDateTime>,
}

impl ResetCodeRow {
    pub fn into_code(self) -> Result<ResetCode, StoreError> {
        Ok(ResetCode {
            id: ResetCodeId::from_trusted(self.id),
            user_id: UserId::from_trusted(self.user_id),
            code_hash: self.code_hash,
            created_at: self.created_at,
            expires_at: self.expires_at,
            attempts: count("password_reset_codes", self.attempts)?,
            closed_at: self.closed_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct RefreshRow {
    pub token_hash: Vec<u8>,
    pub session_id: String,
    pub user_id: String,
    pub issued_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub used_at: Option<OffsetDateTime>,
}

impl RefreshRow {
    pub fn into_token(self) -> Result<RefreshToken, StoreError> {
        Ok(RefreshToken {
            hash: hash32("refresh_tokens", self.token_hash)?,
            session_id: SessionId::from_trusted(self.session_id),
            user_id: UserId::from_trusted(self.user_id),
            issued_at: self.issued_at,
            expires_at: self.expires_at,
            used_at: self.used_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct WorkspaceRow {
    pub id: String,
    pub slug: String,
    pub name: String,
    pub branding: Json<Branding>,
    pub region: String,
    pub timezone: String,
    pub currency: String,
    pub plan: String,
    pub modules: Json<Vec<Module>>,
    pub parent_id: Option<String>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

impl WorkspaceRow {
    pub fn into_workspace(self) -> Result<Workspace, StoreError> {
        Ok(Workspace {
            plan: Plan::parse(&self.plan).ok_or_else(|| corrupt("workspaces", "plan"))?,
            id: WorkspaceId::from_trusted(self.id),
            slug: self.slug,
            name: self.name,
            branding: self.branding.0,
            region: self.region,
            timezone: self.timezone,
            currency: self.currency,
            modules: self.modules.0,
            parent_id: self.parent_id.map(WorkspaceId::from_trusted),
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct MembershipRow {
    #[sqlx(flatten)]
    pub workspace: WorkspaceRow,
    pub member_id: String,
    pub role: String,
}

impl MembershipRow {
    pub fn into_membership(self) -> Result<Membership, StoreError> {
        Ok(Membership {
            role: Role::parse(&self.role).ok_or_else(|| corrupt("members", "role"))?,
            member_id: MemberId::from_trusted(self.member_id),
            workspace: self.workspace.into_workspace()?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct CheckpointRow {
    pub kind: String,
    pub day: Option<String>,
    pub size: i64,
    pub root: Vec<u8>,
    pub body: String,
    pub jws: String,
    pub note: String,
    pub kid: String,
    pub signed_at: OffsetDateTime,
}

impl CheckpointRow {
    pub fn into_checkpoint(self) -> StoreResult<StoredCheckpoint> {
        Ok(StoredCheckpoint {
            kind: self.kind,
            day: self.day,
            size: u64::try_from(self.size)
                .map_err(|_| corrupt("audit_checkpoints", "negative size"))?,
            root: hash32("audit_checkpoints", self.root)?,
            body: self.body,
            jws: self.jws,
            note: self.note,
            kid: self.kid,
            signed_at: self.signed_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct AuditKeyRow {
    pub kid: String,
    pub public_key: Vec<u8>,
    pub sealed_seed: Vec<u8>,
    pub created_at: OffsetDateTime,
}

impl AuditKeyRow {
    pub fn into_key(self) -> StoreResult<StoredAuditKey> {
        Ok(StoredAuditKey {
            kid: self.kid,
            public_key: hash32("audit_keys", self.public_key)?,
            sealed_seed: self.sealed_seed,
            created_at: self.created_at,
        })
    }
}

/// A stored 32-byte value (hash or public key).
pub(crate) fn hash32(table: &'static str, bytes: Vec<u8>) -> StoreResult<[u8; 32]> {
    bytes
        .try_into()
        .map_err(|_| corrupt(table, "value is not 32 bytes"))
}

#[derive(sqlx::FromRow)]
pub(crate) struct DataKeyRow {
    pub id: String,
    pub owner: String,
    pub version: i64,
    pub wrapped: Vec<u8>,
    pub created_at: OffsetDateTime,
}

impl From<DataKeyRow> for StoredDataKey {
    fn from(r: DataKeyRow) -> Self {
        StoredDataKey {
            id: palisade_core::ids::DataKeyId::from_trusted(r.id),
            owner: r.owner,
            version: r.version,
            wrapped: r.wrapped,
            created_at: r.created_at,
        }
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct SigningKeyRow {
    pub kid: String,
    pub purpose: String,
    pub sealed_seed: Vec<u8>,
    pub created_at: OffsetDateTime,
}

impl From<SigningKeyRow> for StoredSigningKey {
    fn from(r: SigningKeyRow) -> Self {
        StoredSigningKey {
            kid: r.kid,
            purpose: r.purpose,
            sealed_seed: r.sealed_seed,
            created_at: r.created_at,
        }
    }
}
