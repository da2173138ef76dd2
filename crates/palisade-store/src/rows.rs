//! Row types shared by both backends (sqlx's `FromRow` derive is generic over the database),
//! and their conversion into domain values.

use palisade_core::accounts::model::{
    AccountToken, Credentials, RefreshToken, ResetCode, Session, TokenPurpose, User,
};
use palisade_core::acl::{FieldGrant, Grants, PermissionSet, Role, TeamGrant};
use palisade_core::api_keys::model::{ApiKey, Creator, Scope};
use palisade_core::collections::model::{Collection, Field, Record, RecordStatus};
use palisade_core::error::StoreError;
use palisade_core::ids::{
    ApiKeyId, CollectionId, CustomRoleId, DeliveryId, InvitationId, MemberId, RecordId,
    ResetCodeId, SessionId, TeamId, UserId, WebhookEventId, WebhookId, WorkspaceId,
};
use palisade_core::principal::SignInMethod;
use palisade_core::store::{
    StoreResult, StoredAuditKey, StoredCheckpoint, StoredDataKey, StoredSigningKey,
};
use palisade_core::webhooks::model::{Attempt, Delivery, DeliveryStatus, Endpoint, OutboxEvent};
use palisade_core::workspaces::model::{
    AuthPolicy, Branding, CustomRole, Invitation, Member, MemberView, Membership, Module, Plan,
    Team, Workspace,
};
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
    pub method: String,
}

impl SessionRow {
    pub fn into_session(self) -> StoreResult<Session> {
        Ok(Session {
            method: SignInMethod::parse(&self.method)
                .ok_or_else(|| corrupt("sessions", "unknown sign-in method"))?,
            id: SessionId::from_trusted(self.id),
            user_id: UserId::from_trusted(self.user_id),
            created_at: self.created_at,
            expires_at: self.expires_at,
            revoked_at: self.revoked_at,
            revoked_reason: self.revoked_reason,
            last_used_at: self.last_used_at.unwrap_or(self.created_at),
            user_agent: self.user_agent,
            ip_prefix: self.ip_prefix,
        })
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
    pub auth_policy: Json<AuthPolicy>,
    pub suspended_at: Option<OffsetDateTime>,
    pub deleted_at: Option<OffsetDateTime>,
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
            auth_policy: self.auth_policy.0,
            suspended_at: self.suspended_at,
            deleted_at: self.deleted_at,
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
    pub active: bool,
}

impl MembershipRow {
    pub fn into_membership(self) -> Result<Membership, StoreError> {
        Ok(Membership {
            role: role("members", &self.role)?,
            member_id: MemberId::from_trusted(self.member_id),
            active: self.active,
            workspace: self.workspace.into_workspace()?,
        })
    }
}

/// A membership with the custom role it names, if any (`MEMBER_ACCESS`).
#[derive(sqlx::FromRow)]
pub(crate) struct MemberAccessRow {
    #[sqlx(flatten)]
    pub membership: MembershipRow,
    pub custom_role_id: Option<String>,
}

fn role(table: &'static str, text: &str) -> StoreResult<Role> {
    Role::parse(text).ok_or_else(|| corrupt(table, "unknown role"))
}

/// The columns every member read selects (`MEMBER_COLUMNS`).
#[derive(sqlx::FromRow)]
pub(crate) struct MemberRow {
    pub workspace_id: String,
    pub id: String,
    pub user_id: String,
    pub role: String,
    pub custom_role_id: Option<String>,
    pub active: bool,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

impl MemberRow {
    pub fn into_member(self) -> StoreResult<Member> {
        Ok(Member {
            role: role("members", &self.role)?,
            id: MemberId::from_trusted(self.id),
            workspace_id: WorkspaceId::from_trusted(self.workspace_id),
            user_id: UserId::from_trusted(self.user_id),
            custom_role_id: self.custom_role_id.map(CustomRoleId::from_trusted),
            active: self.active,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// A member joined with their user (`MEMBER_VIEW_COLUMNS`).
#[derive(sqlx::FromRow)]
pub(crate) struct MemberViewRow {
    #[sqlx(flatten)]
    pub member: MemberRow,
    pub email: String,
    pub name: String,
}

impl MemberViewRow {
    pub fn into_view(self) -> StoreResult<MemberView> {
        Ok(MemberView {
            member: self.member.into_member()?,
            email: self.email,
            name: self.name,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct CustomRoleRow {
    pub workspace_id: String,
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub base_role: String,
    pub permissions: Json<PermissionSet>,
    pub fields: Json<Vec<FieldGrant>>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

impl CustomRoleRow {
    pub fn into_role(self) -> StoreResult<CustomRole> {
        Ok(CustomRole {
            base_role: role("custom_roles", &self.base_role)?,
            id: CustomRoleId::from_trusted(self.id),
            workspace_id: WorkspaceId::from_trusted(self.workspace_id),
            name: self.name,
            description: self.description,
            permissions: self.permissions.0,
            fields: self.fields.0,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct TeamRow {
    pub workspace_id: String,
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub grants: Json<Vec<TeamGrant>>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

impl From<TeamRow> for Team {
    fn from(r: TeamRow) -> Self {
        Team {
            id: TeamId::from_trusted(r.id),
            workspace_id: WorkspaceId::from_trusted(r.workspace_id),
            name: r.name,
            description: r.description,
            grants: r.grants.0,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct InvitationRow {
    pub workspace_id: String,
    pub id: String,
    pub email: String,
    pub role: String,
    pub custom_role_id: Option<String>,
    pub token_hash: Vec<u8>,
    pub invited_by: String,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub accepted_at: Option<OffsetDateTime>,
    pub accepted_by: Option<String>,
    pub revoked_at: Option<OffsetDateTime>,
}

impl InvitationRow {
    pub fn into_invitation(self) -> StoreResult<Invitation> {
        Ok(Invitation {
            role: role("invitations", &self.role)?,
            token_hash: hash32("invitations", self.token_hash)?,
            id: InvitationId::from_trusted(self.id),
            workspace_id: WorkspaceId::from_trusted(self.workspace_id),
            email: self.email,
            custom_role_id: self.custom_role_id.map(CustomRoleId::from_trusted),
            invited_by: UserId::from_trusted(self.invited_by),
            created_at: self.created_at,
            expires_at: self.expires_at,
            accepted_at: self.accepted_at,
            accepted_by: self.accepted_by.map(UserId::from_trusted),
            revoked_at: self.revoked_at,
        })
    }
}

/// An API key with its last use (`api_key_columns!`). The columns a workspace also has are
/// aliased, so the row can sit beside a `WorkspaceRow` in one join.
#[derive(sqlx::FromRow)]
pub(crate) struct ApiKeyRow {
    pub workspace_id: String,
    pub key_id: String,
    pub key_name: String,
    pub prefix: String,
    pub scopes: Json<Vec<Scope>>,
    pub grants: Json<Grants>,
    pub created_by: String,
    pub on_behalf_of: String,
    pub key_created_at: OffsetDateTime,
    pub expires_at: Option<OffsetDateTime>,
    pub rotated_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
    /// µs since the epoch, from `api_key_usage`.
    pub last_used_at: Option<i64>,
}

impl ApiKeyRow {
    pub fn into_key(self) -> StoreResult<ApiKey> {
        Ok(ApiKey {
            last_used_at: self
                .last_used_at
                .map(|us| from_micros("api_key_usage", us))
                .transpose()?,
            id: ApiKeyId::from_trusted(self.key_id),
            workspace_id: WorkspaceId::from_trusted(self.workspace_id),
            name: self.key_name,
            prefix: self.prefix,
            scopes: self.scopes.0,
            grants: self.grants.0,
            created_by: Creator::from_stored(self.created_by),
            on_behalf_of: UserId::from_trusted(self.on_behalf_of),
            created_at: self.key_created_at,
            expires_at: self.expires_at,
            rotated_at: self.rotated_at,
            revoked_at: self.revoked_at,
        })
    }
}

/// A key found by its hash, with its workspace (`SystemTx::api_key_by_hash`).
#[derive(sqlx::FromRow)]
pub(crate) struct ApiKeyWorkspaceRow {
    #[sqlx(flatten)]
    pub key: ApiKeyRow,
    #[sqlx(flatten)]
    pub workspace: WorkspaceRow,
}

/// A collection (the columns of `sql_collections::collection_select!`).
#[derive(sqlx::FromRow)]
pub(crate) struct CollectionRow {
    pub workspace_id: String,
    pub id: String,
    pub name: String,
    pub fields: Json<Vec<Field>>,
    pub version: i64,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

impl From<CollectionRow> for Collection {
    fn from(r: CollectionRow) -> Self {
        Collection {
            id: CollectionId::from_trusted(r.id),
            workspace_id: WorkspaceId::from_trusted(r.workspace_id),
            name: r.name,
            fields: r.fields.0,
            version: r.version,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// A record (the columns of `sql_records::record_select!`).
#[derive(sqlx::FromRow)]
pub(crate) struct RecordRow {
    pub workspace_id: String,
    pub id: String,
    pub collection_id: String,
    pub status: String,
    pub data: Json<serde_json::Map<String, serde_json::Value>>,
    pub version: i64,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub published_at: Option<OffsetDateTime>,
    pub created_by: String,
    pub updated_by: String,
}

impl RecordRow {
    pub fn into_record(self) -> StoreResult<Record> {
        Ok(Record {
            status: RecordStatus::parse(&self.status)
                .ok_or_else(|| corrupt("records", "unknown status"))?,
            id: RecordId::from_trusted(self.id),
            workspace_id: WorkspaceId::from_trusted(self.workspace_id),
            collection_id: CollectionId::from_trusted(self.collection_id),
            data: self.data.0,
            version: self.version,
            created_at: self.created_at,
            updated_at: self.updated_at,
            published_at: self.published_at,
            created_by: self.created_by,
            updated_by: self.updated_by,
        })
    }
}

/// A collection and, if it holds it, one record (`sql_records::RECORD_IN_COLLECTION`): the
/// collection's columns as `CollectionRow`, the record's prefixed `r_` and null when absent.
#[derive(sqlx::FromRow)]
pub(crate) struct CollectionRecordRow {
    #[sqlx(flatten)]
    pub collection: CollectionRow,
    pub r_id: Option<String>,
    pub r_status: Option<String>,
    pub r_data: Option<Json<serde_json::Map<String, serde_json::Value>>>,
    pub r_version: Option<i64>,
    pub r_created_at: Option<OffsetDateTime>,
    pub r_updated_at: Option<OffsetDateTime>,
    pub r_published_at: Option<OffsetDateTime>,
    pub r_created_by: Option<String>,
    pub r_updated_by: Option<String>,
}

impl CollectionRecordRow {
    pub fn into_pair(self) -> StoreResult<(Collection, Option<Record>)> {
        let collection = Collection::from(self.collection);
        let Some(id) = self.r_id else {
            return Ok((collection, None));
        };
        let missing = || corrupt("records", "a record column is null");
        let row = RecordRow {
            workspace_id: collection.workspace_id.to_string(),
            id,
            collection_id: collection.id.to_string(),
            status: self.r_status.ok_or_else(missing)?,
            data: self.r_data.ok_or_else(missing)?,
            version: self.r_version.ok_or_else(missing)?,
            created_at: self.r_created_at.ok_or_else(missing)?,
            updated_at: self.r_updated_at.ok_or_else(missing)?,
            published_at: self.r_published_at,
            created_by: self.r_created_by.ok_or_else(missing)?,
            updated_by: self.r_updated_by.ok_or_else(missing)?,
        };
        Ok((collection, Some(row.into_record()?)))
    }
}

/// A time as the instance tables `api_key_usage` and `api_key_changes` store it: µs since the
/// Unix epoch (sub-µs digits dropped, the precision both backends keep elsewhere).
pub(crate) fn micros(at: OffsetDateTime) -> StoreResult<i64> {
    i64::try_from(at.unix_timestamp_nanos().div_euclid(1_000))
        .map_err(|_| StoreError::Invalid(format!("time out of range: {at}")))
}

pub(crate) fn from_micros(table: &'static str, us: i64) -> StoreResult<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1_000)
        .map_err(|_| corrupt(table, "time out of range"))
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
    /// NULL only in SQLite rows from before migration 0009 (which filled it), never written.
    pub activates_at: Option<OffsetDateTime>,
    pub retired_at: Option<OffsetDateTime>,
}

impl From<DataKeyRow> for StoredDataKey {
    fn from(r: DataKeyRow) -> Self {
        StoredDataKey {
            id: palisade_core::ids::DataKeyId::from_trusted(r.id),
            owner: r.owner,
            version: r.version,
            wrapped: r.wrapped,
            created_at: r.created_at,
            activates_at: r.activates_at.unwrap_or(r.created_at),
            retired_at: r.retired_at,
        }
    }
}

/// A data key with its owner's region (`SystemTx::data_keys_all`).
#[derive(sqlx::FromRow)]
pub(crate) struct RegionalDataKeyRow {
    #[sqlx(flatten)]
    pub key: DataKeyRow,
    pub region: Option<String>,
}

#[derive(sqlx::FromRow)]
pub(crate) struct KeyRotationRow {
    pub id: String,
    pub owner: String,
    pub to_version: i64,
    pub reason: String,
    pub state: String,
    pub pass: i64,
    pub phase: String,
    pub cursor: String,
    pub found: i64,
    pub resealed: i64,
    pub scanned: i64,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub finished_at: Option<OffsetDateTime>,
}

impl From<KeyRotationRow> for palisade_core::store::KeyRotation {
    fn from(r: KeyRotationRow) -> Self {
        Self {
            id: r.id,
            owner: r.owner,
            to_version: r.to_version,
            reason: r.reason,
            state: r.state,
            pass: r.pass,
            phase: r.phase,
            cursor: r.cursor,
            found: r.found,
            resealed: r.resealed,
            scanned: r.scanned,
            created_at: r.created_at,
            updated_at: r.updated_at,
            finished_at: r.finished_at,
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

/// A webhook endpoint (the columns of `sql_webhooks::webhook_columns!`, from `webhooks w`).
/// Identity and times are aliased: deliveries and events have columns of those names too.
#[derive(sqlx::FromRow)]
pub(crate) struct WebhookRow {
    pub w_workspace_id: String,
    pub w_id: String,
    pub url: String,
    pub description: String,
    pub events: Json<Vec<String>>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub grants: Json<Grants>,
    pub created_by: String,
    pub w_created_at: OffsetDateTime,
    pub w_updated_at: OffsetDateTime,
    pub secret: Vec<u8>,
    pub previous_secret: Option<Vec<u8>>,
    pub previous_secret_expires_at: Option<OffsetDateTime>,
    /// µs since the epoch.
    pub failing_since_us: Option<i64>,
}

impl WebhookRow {
    pub fn into_endpoint(self) -> StoreResult<Endpoint> {
        Ok(Endpoint {
            failing_since: self
                .failing_since_us
                .map(|us| from_micros("webhooks", us))
                .transpose()?,
            id: WebhookId::from_trusted(self.w_id),
            workspace_id: WorkspaceId::from_trusted(self.w_workspace_id),
            url: self.url,
            description: self.description,
            events: self.events.0,
            enabled: self.enabled,
            disabled_reason: self.disabled_reason,
            grants: self.grants.0,
            created_by: self.created_by,
            created_at: self.w_created_at,
            updated_at: self.w_updated_at,
            secret: self.secret,
            previous_secret: self.previous_secret,
            previous_secret_expires_at: self.previous_secret_expires_at,
        })
    }
}

/// An outbox event (the columns of `sql_webhooks::event_columns!`, from `webhook_events e`).
#[derive(sqlx::FromRow)]
pub(crate) struct OutboxEventRow {
    pub e_workspace_id: String,
    pub e_id: String,
    pub e_event_type: String,
    pub collection: Option<String>,
    pub payload: Vec<u8>,
    pub draft: bool,
    /// µs since the epoch.
    pub created_us: i64,
}

impl OutboxEventRow {
    pub fn into_event(self) -> StoreResult<OutboxEvent> {
        Ok(OutboxEvent {
            created_at: from_micros("webhook_events", self.created_us)?,
            id: WebhookEventId::from_trusted(self.e_id),
            workspace_id: WorkspaceId::from_trusted(self.e_workspace_id),
            event_type: self.e_event_type,
            collection: self.collection,
            draft: self.draft,
            payload: self.payload,
        })
    }
}

/// A delivery (the columns of `sql_webhooks::delivery_columns!`, from `webhook_deliveries d`).
#[derive(sqlx::FromRow)]
pub(crate) struct DeliveryRow {
    pub workspace_id: String,
    pub id: String,
    pub webhook_id: String,
    pub event_id: String,
    pub event_type: String,
    pub status: String,
    pub attempts: i64,
    pub schedule_step: i64,
    /// µs since the epoch.
    pub next_attempt_us: Option<i64>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

impl DeliveryRow {
    pub fn into_delivery(self) -> StoreResult<Delivery> {
        Ok(Delivery {
            status: DeliveryStatus::parse(&self.status)
                .ok_or_else(|| corrupt("webhook_deliveries", "unknown status"))?,
            next_attempt_at: self
                .next_attempt_us
                .map(|us| from_micros("webhook_deliveries", us))
                .transpose()?,
            id: DeliveryId::from_trusted(self.id),
            workspace_id: WorkspaceId::from_trusted(self.workspace_id),
            webhook_id: WebhookId::from_trusted(self.webhook_id),
            event_id: WebhookEventId::from_trusted(self.event_id),
            event_type: self.event_type,
            attempts: self.attempts,
            schedule_step: self.schedule_step,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// A claimed delivery with its event and endpoint (`sql_webhooks::CLAIMED`).
#[derive(sqlx::FromRow)]
pub(crate) struct ClaimedRow {
    #[sqlx(flatten)]
    pub delivery: DeliveryRow,
    #[sqlx(flatten)]
    pub event: OutboxEventRow,
    #[sqlx(flatten)]
    pub webhook: WebhookRow,
}

#[derive(sqlx::FromRow)]
pub(crate) struct AttemptRow {
    pub delivery_id: String,
    pub number: i64,
    pub attempted_at: OffsetDateTime,
    pub status_code: Option<i64>,
    pub latency_ms: i64,
    pub response_body: String,
    pub error: Option<String>,
    pub trigger: String,
}

impl From<AttemptRow> for Attempt {
    fn from(r: AttemptRow) -> Self {
        Attempt {
            delivery_id: DeliveryId::from_trusted(r.delivery_id),
            number: r.number,
            attempted_at: r.attempted_at,
            status_code: r.status_code,
            latency_ms: r.latency_ms,
            response_body: r.response_body,
            error: r.error,
            trigger: r.trigger,
        }
    }
}
