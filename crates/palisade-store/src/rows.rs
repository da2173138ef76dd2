//! Row types shared by both backends (sqlx's `FromRow` derive is generic over the database),
//! and their conversion into domain values.

use palisade_core::accounts::model::{RefreshToken, Session, User};
use palisade_core::acl::Role;
use palisade_core::error::StoreError;
use palisade_core::ids::{MemberId, SessionId, UserId, WorkspaceId};
use palisade_core::store::{StoredAuditEvent, StoredDataKey, StoredSigningKey};
use palisade_core::workspaces::model::{Branding, Membership, Module, Plan, Workspace};
use serde_json::Value;
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

#[derive(sqlx::FromRow)]
pub(crate) struct UserRow {
    pub id: String,
    pub email: String,
    pub name: String,
    pub password_hash: String,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

impl UserRow {
    pub fn into_user(self) -> (User, String) {
        let user = User {
            id: UserId::from_trusted(self.id),
            email: self.email,
            name: self.name,
            created_at: self.created_at,
            updated_at: self.updated_at,
        };
        (user, self.password_hash)
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct SessionRow {
    pub id: String,
    pub user_id: String,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
    pub revoked_reason: Option<String>,
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
        }
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
        let hash: [u8; 32] = self
            .token_hash
            .try_into()
            .map_err(|_| corrupt("refresh_tokens", "hash length"))?;
        Ok(RefreshToken {
            hash,
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
pub(crate) struct AuditRow {
    pub id: String,
    pub at: OffsetDateTime,
    pub action: String,
    pub result: String,
    pub actor_type: String,
    pub actor_id: String,
    pub target_type: String,
    pub target_id: String,
    pub request_id: Option<String>,
    pub diff: Json<Value>,
    pub pii: Json<Value>,
}

impl From<AuditRow> for StoredAuditEvent {
    fn from(r: AuditRow) -> Self {
        StoredAuditEvent {
            id: r.id,
            at: r.at,
            action: r.action,
            result: r.result,
            actor_type: r.actor_type,
            actor_id: r.actor_id,
            target_type: r.target_type,
            target_id: r.target_id,
            request_id: r.request_id,
            diff: r.diff.0,
            pii: r.pii.0,
        }
    }
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
