//! The store traits: what services need from a database, implemented once per backend in
//! `palisade-store`. A transaction is a boxed trait object; dropping it without `commit` rolls
//! back. Tenant transactions are bound to one workspace at `begin`, so a tenant statement cannot
//! reach another workspace's rows.

use std::collections::HashMap;

use palisade_audit::Hash;
use palisade_audit::merkle::NodeId;
use time::OffsetDateTime;

use crate::accounts::model::{
    AccountToken, Credentials, RefreshToken, ResetCode, Session, TokenPurpose, User,
};
use crate::api_keys::model::ApiKey;
use crate::audit::AuditRecord;
use crate::collections::model::{Collection, Record};
use crate::error::StoreError;
use crate::ids::{
    ApiKeyId, CollectionId, CustomRoleId, DataKeyId, DeliveryId, InvitationId, MemberId, RecordId,
    ResetCodeId, SessionId, TeamId, UserId, WebhookEventId, WebhookId, WorkspaceId,
};
use crate::tenancy::{SystemScope, TenantScope};
use crate::webhooks::model::{
    Attempt, ClaimedDelivery, Delivery, DeliveryOutcome, DeliveryStatus, Endpoint, OutboxEvent,
};
use crate::workspaces::model::{
    CustomRole, Invitation, Member, MemberAccess, MemberView, Membership, Team, Workspace,
};

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

    /// Background work on one audit log (checkpoint signing): a workspace id or `instance`.
    async fn audit_log(
        &self,
        scope: &SystemScope,
        log_id: &str,
        access: Access,
    ) -> StoreResult<Box<dyn AuditLogTx>>;

    /// Key maintenance for one owner (a workspace id or `instance`): its data keys, its
    /// rotation job, the sealed values it owns and its audit log, in one transaction.
    async fn keys(
        &self,
        scope: &SystemScope,
        owner: &str,
        access: Access,
    ) -> StoreResult<Box<dyn KeysTx>>;

    /// Palisade's own work inside one workspace (disabling a failing webhook endpoint): bound
    /// to the workspace like a tenant transaction, with no member behind it.
    async fn workspace_system(
        &self,
        scope: &SystemScope,
        workspace: &WorkspaceId,
        access: Access,
    ) -> StoreResult<Box<dyn WorkspaceSystemTx>>;
}

#[async_trait::async_trait]
pub trait AccountTx: LimitTx {
    /// Fails with `StoreError::Conflict("users_email")` when the email is taken.
    async fn user_insert(&mut self, user: &User, password_hash: &str) -> StoreResult<()>;
    /// The user and what sign-in checks.
    async fn user_by_email(&mut self, email: &str) -> StoreResult<Option<(User, Credentials)>>;
    async fn user_by_id(&mut self, id: &UserId) -> StoreResult<Option<User>>;
    /// The user and what sign-in checks, by id.
    async fn user_with_credentials(
        &mut self,
        id: &UserId,
    ) -> StoreResult<Option<(User, Credentials)>>;
    /// Sets a new password hash and ends any lockout (the owner proved themselves).
    async fn user_set_password(
        &mut self,
        id: &UserId,
        password_hash: &str,
        at: OffsetDateTime,
    ) -> StoreResult<()>;
    /// Marks `email` verified if it is still the user's address and not yet verified; false
    /// otherwise.
    async fn user_verify_email(
        &mut self,
        id: &UserId,
        email: &str,
        at: OffsetDateTime,
    ) -> StoreResult<bool>;
    /// Counts one more failed sign-in, atomically; returns the new count.
    async fn user_sign_in_failed(&mut self, id: &UserId) -> StoreResult<u32>;
    /// Locks the account until `until`: the failure count restarts, the lock count grows.
    async fn user_lock(&mut self, id: &UserId, until: OffsetDateTime) -> StoreResult<()>;
    /// A successful sign-in: failures and locks are forgotten.
    async fn user_sign_in_succeeded(&mut self, id: &UserId) -> StoreResult<()>;

    async fn session_insert(&mut self, session: &Session) -> StoreResult<()>;
    async fn session_get(&mut self, id: &SessionId) -> StoreResult<Option<Session>>;
    /// Records a use (refresh) with the client's current user agent and network.
    async fn session_touch(
        &mut self,
        id: &SessionId,
        at: OffsetDateTime,
        user_agent: Option<&str>,
        ip_prefix: Option<&str>,
    ) -> StoreResult<()>;
    /// The user's unrevoked sessions (expired ones included: times are compared in the
    /// service), newest first, older than `before` (a cursor), at most `limit`.
    async fn sessions_unrevoked(
        &mut self,
        user: &UserId,
        before: Option<&SessionId>,
        limit: u32,
    ) -> StoreResult<Vec<Session>>;
    /// Revokes a live session; false when it was already revoked or does not exist.
    async fn session_revoke(
        &mut self,
        id: &SessionId,
        at: OffsetDateTime,
        reason: &str,
    ) -> StoreResult<bool>;
    /// Revokes every live session of `user` but `except`; returns the ids revoked.
    async fn sessions_revoke_all(
        &mut self,
        user: &UserId,
        except: Option<&SessionId>,
        at: OffsetDateTime,
        reason: &str,
    ) -> StoreResult<Vec<SessionId>>;

    async fn refresh_insert(&mut self, token: &RefreshToken) -> StoreResult<()>;
    async fn refresh_get(&mut self, hash: &[u8; 32]) -> StoreResult<Option<RefreshToken>>;
    /// Marks a token used, atomically: false when another request used it first.
    async fn refresh_mark_used(&mut self, hash: &[u8; 32], at: OffsetDateTime)
    -> StoreResult<bool>;

    async fn account_token_insert(&mut self, token: &AccountToken) -> StoreResult<()>;
    /// Uses an unused token of `purpose`, atomically (one caller wins); none when unknown,
    /// used, or expired at `now`.
    async fn account_token_use(
        &mut self,
        hash: &[u8; 32],
        purpose: TokenPurpose,
        now: OffsetDateTime,
    ) -> StoreResult<Option<AccountToken>>;

    /// Stores a new code and closes the user's older open codes (only the newest works).
    async fn reset_code_insert(&mut self, code: &ResetCode) -> StoreResult<()>;
    /// The user's newest open, unexpired code.
    async fn reset_code_live(
        &mut self,
        user: &UserId,
        now: OffsetDateTime,
    ) -> StoreResult<Option<ResetCode>>;
    /// Takes one attempt of an open code, atomically, if fewer than `max` were taken; returns
    /// the attempt's number, or none when the code is spent or closed.
    async fn reset_code_attempt(&mut self, id: &ResetCodeId, max: u32) -> StoreResult<Option<u32>>;
    /// Closes an open code; false when it was closed first (single use).
    async fn reset_code_close(&mut self, id: &ResetCodeId, at: OffsetDateTime)
    -> StoreResult<bool>;

    /// The acting user's active memberships of workspaces not deleted, in workspace id order,
    /// after `after`, at most `limit`.
    async fn memberships(
        &mut self,
        user: &UserId,
        after: Option<&WorkspaceId>,
        limit: u32,
    ) -> StoreResult<Vec<Membership>>;
    /// The acting user's membership (active or not) in the workspace, not deleted, whose id or
    /// slug is `key`, with their custom role and their teams' grants: what the membership
    /// check resolves.
    async fn member_access(
        &mut self,
        user: &UserId,
        key: &str,
    ) -> StoreResult<Option<MemberAccess>>;
}

#[async_trait::async_trait]
pub trait TenantTx:
    LimitTx + MembersTx + ApiKeysTx + CollectionsTx + RecordsTx + WebhooksTx
{
    /// Fails with `StoreError::Conflict("workspaces_slug")` when the slug is taken.
    async fn workspace_insert(&mut self, workspace: &Workspace) -> StoreResult<()>;
    /// The scope's workspace (deleted or not); in a write transaction its row is locked until
    /// commit, which serializes every membership change of the workspace (ACL-5).
    async fn workspace_get(&mut self) -> StoreResult<Option<Workspace>>;
    /// Writes every column but `id`, `created_at` and `parent_id`.
    async fn workspace_update(&mut self, workspace: &Workspace) -> StoreResult<()>;

    /// Fails with `StoreError::Conflict("members_workspace_user")` for a second membership.
    async fn member_insert(&mut self, member: &Member) -> StoreResult<()>;
}

/// Members, invitations, teams, custom roles and children of the transaction's workspace.
#[async_trait::async_trait]
pub trait MembersTx: Send {
    async fn member_get(&mut self, id: &MemberId) -> StoreResult<Option<MemberView>>;
    async fn member_of_user(&mut self, user: &UserId) -> StoreResult<Option<Member>>;
    /// In member id order, after `after`, at most `limit`.
    async fn members_list(
        &mut self,
        after: Option<&MemberId>,
        limit: u32,
    ) -> StoreResult<Vec<MemberView>>;
    /// Writes role, custom role, active and `updated_at`.
    async fn member_update(&mut self, member: &Member) -> StoreResult<()>;
    /// Deletes the member and their team memberships; false when there was none.
    async fn member_delete(&mut self, id: &MemberId) -> StoreResult<bool>;
    /// Active owners. Callers hold the workspace row lock, so the count cannot go stale.
    async fn owners_active(&mut self) -> StoreResult<u64>;
    /// Members holding the custom role.
    async fn members_with_custom_role(&mut self, id: &CustomRoleId) -> StoreResult<u64>;

    async fn invitation_insert(&mut self, invitation: &Invitation) -> StoreResult<()>;
    async fn invitation_get(&mut self, id: &InvitationId) -> StoreResult<Option<Invitation>>;
    /// Newest first, before `before`, at most `limit`.
    async fn invitations_list(
        &mut self,
        before: Option<&InvitationId>,
        limit: u32,
    ) -> StoreResult<Vec<Invitation>>;
    /// Revokes the open (neither accepted nor revoked) invitations to `email`; returns their ids.
    async fn invitations_revoke_open(
        &mut self,
        email: &str,
        at: OffsetDateTime,
    ) -> StoreResult<Vec<InvitationId>>;
    /// Revokes an open invitation; false when it was accepted or revoked first.
    async fn invitation_revoke(
        &mut self,
        id: &InvitationId,
        at: OffsetDateTime,
    ) -> StoreResult<bool>;
    /// Marks an open invitation accepted by `user`, atomically: false when it was accepted or
    /// revoked first (single use).
    async fn invitation_accept(
        &mut self,
        id: &InvitationId,
        user: &UserId,
        at: OffsetDateTime,
    ) -> StoreResult<bool>;
    /// Open invitations naming the custom role.
    async fn invitations_with_custom_role(&mut self, id: &CustomRoleId) -> StoreResult<u64>;

    /// Fails with `StoreError::Conflict("teams_name")` when the name is taken.
    async fn team_insert(&mut self, team: &Team) -> StoreResult<()>;
    async fn team_get(&mut self, id: &TeamId) -> StoreResult<Option<Team>>;
    /// In id order, after `after`, at most `limit`.
    async fn teams_list(&mut self, after: Option<&TeamId>, limit: u32) -> StoreResult<Vec<Team>>;
    /// Writes name, description, grants and `updated_at`; conflicts like `team_insert`.
    async fn team_update(&mut self, team: &Team) -> StoreResult<()>;
    /// Deletes the team and its memberships; false when there was none.
    async fn team_delete(&mut self, id: &TeamId) -> StoreResult<bool>;
    /// False when the member was in the team already.
    async fn team_member_add(
        &mut self,
        team: &TeamId,
        member: &Member,
        at: OffsetDateTime,
    ) -> StoreResult<bool>;
    /// False when the member was not in the team.
    async fn team_member_remove(&mut self, team: &TeamId, member: &MemberId) -> StoreResult<bool>;
    /// The team's members in member id order, after `after`, at most `limit`.
    async fn team_members(
        &mut self,
        team: &TeamId,
        after: Option<&MemberId>,
        limit: u32,
    ) -> StoreResult<Vec<MemberView>>;

    /// Fails with `StoreError::Conflict("custom_roles_name")` when the name is taken.
    async fn custom_role_insert(&mut self, role: &CustomRole) -> StoreResult<()>;
    async fn custom_role_get(&mut self, id: &CustomRoleId) -> StoreResult<Option<CustomRole>>;
    /// In id order, after `after`, at most `limit`.
    async fn custom_roles_list(
        &mut self,
        after: Option<&CustomRoleId>,
        limit: u32,
    ) -> StoreResult<Vec<CustomRole>>;
    /// Writes name, description, base role, permissions, fields and `updated_at`.
    async fn custom_role_update(&mut self, role: &CustomRole) -> StoreResult<()>;
    /// Nothing in the database stops deleting a role someone holds: callers check
    /// `members_with_custom_role` and `invitations_with_custom_role` first.
    async fn custom_role_delete(&mut self, id: &CustomRoleId) -> StoreResult<bool>;

    /// This workspace's children that are not deleted, in id order, after `after`.
    async fn children_list(
        &mut self,
        after: Option<&WorkspaceId>,
        limit: u32,
    ) -> StoreResult<Vec<Workspace>>;
    /// A child of this workspace, not deleted, by id or slug.
    async fn child_get(&mut self, key: &str) -> StoreResult<Option<Workspace>>;
    /// Children of this workspace that are not deleted.
    async fn children_count(&mut self) -> StoreResult<u64>;
}

#[async_trait::async_trait]
pub trait SystemTx: Send {
    /// The id of the workspace, not deleted, whose id or slug is `key`, whoever its members are.
    async fn workspace_resolve(&mut self, key: &str) -> StoreResult<Option<WorkspaceId>>;
    /// The invitation whose token hashes to `hash`, in whichever workspace (the token is the
    /// only thing its bearer knows).
    async fn invitation_by_token(&mut self, hash: &[u8; 32]) -> StoreResult<Option<Invitation>>;

    async fn data_keys(&mut self, owner: &str) -> StoreResult<Vec<StoredDataKey>>;
    /// Fails with `StoreError::Conflict("data_keys_owner_version")` if the owner has that
    /// version already (another node created it first).
    async fn data_key_insert(&mut self, key: &StoredDataKey) -> StoreResult<()>;
    /// Every data key of every owner, with the owner's region (none for `instance` or a
    /// workspace row that is gone), by owner and version.
    async fn data_keys_all(&mut self) -> StoreResult<Vec<(StoredDataKey, Option<String>)>>;
    /// Replaces a data key's wrapped form if it is still `old`; false if it changed meanwhile.
    async fn data_key_rewrap(
        &mut self,
        id: &DataKeyId,
        old: &[u8],
        new: &[u8],
    ) -> StoreResult<bool>;
    /// A workspace's region, deleted or not.
    async fn workspace_region(&mut self, id: &str) -> StoreResult<Option<String>>;
    /// Every re-encryption job, newest first, at most `limit`.
    async fn key_rotations(&mut self, limit: u32) -> StoreResult<Vec<KeyRotation>>;
    async fn signing_keys(&mut self, purpose: &str) -> StoreResult<Vec<StoredSigningKey>>;
    async fn signing_key_insert(&mut self, key: &StoredSigningKey) -> StoreResult<()>;

    /// Logs whose head has grown past their newest `latest` checkpoint.
    async fn audit_logs_grown(&mut self) -> StoreResult<Vec<String>>;
    /// Every audit log's id (`instance` and each workspace's), in order.
    async fn audit_log_ids(&mut self) -> StoreResult<Vec<String>>;
    /// Logs created before `before` with no daily checkpoint for `day`.
    async fn audit_logs_without_daily(
        &mut self,
        day: &str,
        before: OffsetDateTime,
    ) -> StoreResult<Vec<String>>;

    /// The live or revoked key whose secret hashes to `hash`, with its workspace (deleted or
    /// not), in whichever workspace: the secret is all its bearer presents.
    async fn api_key_by_hash(
        &mut self,
        hash: &[u8; 32],
    ) -> StoreResult<Option<(ApiKey, Workspace)>>;
    /// Key-cache invalidations recorded at or after `since`, oldest first: `(seq, workspace)`.
    async fn api_key_changes_since(
        &mut self,
        since: OffsetDateTime,
    ) -> StoreResult<Vec<(i64, WorkspaceId)>>;
    /// Deletes invalidations recorded before `before`.
    async fn api_key_changes_prune(&mut self, before: OffsetDateTime) -> StoreResult<u64>;
    /// Records when keys were last used; an older time never replaces a newer one.
    async fn api_key_usage_record(
        &mut self,
        usage: &[(ApiKeyId, OffsetDateTime)],
    ) -> StoreResult<()>;

    /// Claims up to `limit` due deliveries of any workspace (WHK-4): pending, due by `now`,
    /// their endpoint enabled, and not claimed by another dispatcher whose claim still runs.
    /// Each gets `claim` until `lease_until`, oldest due first. On PostgreSQL the rows are
    /// picked `FOR UPDATE SKIP LOCKED`, so dispatchers on several nodes never wait on or take
    /// each other's.
    async fn webhook_deliveries_claim(
        &mut self,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
        claim: &str,
        limit: u32,
    ) -> StoreResult<Vec<ClaimedDelivery>>;
    /// Records attempts: for each outcome whose delivery still holds `outcome.claim`, inserts
    /// the attempt, updates the delivery (status, attempts, schedule step, next attempt, claim
    /// released) and sets the endpoint's `failing_since` (kept if already set, cleared on
    /// success). Returns how many were recorded.
    async fn webhook_outcomes_record(
        &mut self,
        outcomes: &[DeliveryOutcome],
        at: OffsetDateTime,
    ) -> StoreResult<u64>;
    /// When the next pending delivery of an enabled endpoint is due (claims aside).
    async fn webhook_next_due(&mut self) -> StoreResult<Option<OffsetDateTime>>;
    /// Enabled endpoints failing without a success since `before` or earlier.
    async fn webhooks_failing_since(
        &mut self,
        before: OffsetDateTime,
    ) -> StoreResult<Vec<(WorkspaceId, WebhookId)>>;
    /// Deletes events created before `before` with no pending delivery, with their deliveries
    /// and attempts. Returns the events deleted.
    async fn webhook_events_prune(&mut self, before: OffsetDateTime) -> StoreResult<u64>;

    async fn commit(self: Box<Self>) -> StoreResult<()>;
}

/// A workspace's webhook endpoints, outbox and delivery history (WHK-1 … WHK-4), bound to the
/// transaction's workspace.
#[async_trait::async_trait]
pub trait WebhooksTx: Send {
    async fn webhook_insert(&mut self, endpoint: &Endpoint) -> StoreResult<()>;
    async fn webhook_get(&mut self, id: &WebhookId) -> StoreResult<Option<Endpoint>>;
    /// The endpoint, locked until commit (`FOR UPDATE` on PostgreSQL; SQLite has one writer),
    /// for a read-modify-write: concurrent changes (a patch and a secret rotation, two nodes'
    /// failure sweeps) then apply one after the other.
    async fn webhook_lock(&mut self, id: &WebhookId) -> StoreResult<Option<Endpoint>>;
    /// By id, after `after`.
    async fn webhooks_list(
        &mut self,
        after: Option<&WebhookId>,
        limit: u32,
    ) -> StoreResult<Vec<Endpoint>>;
    /// Every enabled endpoint: the candidates for an event (fan-out).
    async fn webhooks_enabled(&mut self) -> StoreResult<Vec<Endpoint>>;
    /// Writes every column but `id`, `workspace_id`, `created_by` and `created_at`.
    async fn webhook_update(&mut self, endpoint: &Endpoint) -> StoreResult<bool>;
    /// Deletes the endpoint with its deliveries and their attempts.
    async fn webhook_delete(&mut self, id: &WebhookId) -> StoreResult<bool>;
    /// Writes an event and its deliveries, in the transaction of the change it describes.
    async fn webhook_event_insert(
        &mut self,
        event: &OutboxEvent,
        deliveries: &[Delivery],
    ) -> StoreResult<()>;
    async fn webhook_event_get(&mut self, id: &WebhookEventId) -> StoreResult<Option<OutboxEvent>>;
    /// One endpoint's deliveries, newest first (by id descending), before `before`, of one
    /// status if given.
    async fn webhook_deliveries_list(
        &mut self,
        webhook: &WebhookId,
        status: Option<DeliveryStatus>,
        before: Option<&DeliveryId>,
        limit: u32,
    ) -> StoreResult<Vec<Delivery>>;
    async fn webhook_delivery_get(&mut self, id: &DeliveryId) -> StoreResult<Option<Delivery>>;
    /// A delivery's attempts by number.
    async fn webhook_attempts(&mut self, delivery: &DeliveryId) -> StoreResult<Vec<Attempt>>;
    /// Pauses an endpoint's pending deliveries that no dispatcher holds (it was disabled):
    /// `paused`, due never, until [`webhook_deliveries_resume`](Self::webhook_deliveries_resume).
    /// Returns how many.
    async fn webhook_deliveries_pause(
        &mut self,
        webhook: &WebhookId,
        at: OffsetDateTime,
    ) -> StoreResult<u64>;
    /// Makes an endpoint's paused deliveries pending and due at `at` (it was enabled again).
    async fn webhook_deliveries_resume(
        &mut self,
        webhook: &WebhookId,
        at: OffsetDateTime,
    ) -> StoreResult<u64>;
    /// Makes a delivery that is not pending due at `at` again, with `schedule_step`, claim
    /// cleared. `false` if it is pending (or absent).
    async fn webhook_delivery_redeliver(
        &mut self,
        id: &DeliveryId,
        at: OffsetDateTime,
        schedule_step: i64,
    ) -> StoreResult<bool>;
}

/// See [`Store::workspace_system`].
#[async_trait::async_trait]
pub trait WorkspaceSystemTx: AuditLogTx + MembersTx + WebhooksTx {}

/// A workspace's collections (DAT-1), bound to the transaction's workspace.
#[async_trait::async_trait]
pub trait CollectionsTx: Send {
    /// Refused with `Conflict` if the workspace has a collection of that name.
    async fn collection_insert(&mut self, collection: &Collection) -> StoreResult<()>;
    async fn collection_get(&mut self, id: &CollectionId) -> StoreResult<Option<Collection>>;
    async fn collection_by_name(&mut self, name: &str) -> StoreResult<Option<Collection>>;
    /// [`CollectionsTx::collection_by_name`] in a write transaction, its row locked until
    /// commit: shared by record writes, exclusive for schema changes, so a schema change and the
    /// record writes it must see never interleave (PostgreSQL `FOR SHARE` / `FOR UPDATE`;
    /// SQLite's one writer does the same).
    async fn collection_lock(
        &mut self,
        name: &str,
        exclusive: bool,
    ) -> StoreResult<Option<Collection>>;
    /// By id, after the cursor.
    async fn collections_list(
        &mut self,
        after: Option<&CollectionId>,
        limit: u32,
    ) -> StoreResult<Vec<Collection>>;
    /// Every collection of the workspace, by id (relation checks, names of relation targets).
    async fn collections_all(&mut self) -> StoreResult<Vec<Collection>>;
    /// Writes name, fields, version and `updated_at`; `Conflict` if the new name is taken.
    /// False if the collection is gone.
    async fn collection_update(&mut self, collection: &Collection) -> StoreResult<bool>;
    /// False if the collection is gone.
    async fn collection_delete(&mut self, id: &CollectionId) -> StoreResult<bool>;
}

/// A workspace's records (DAT-2), bound to the transaction's workspace.
#[async_trait::async_trait]
pub trait RecordsTx: Send {
    async fn record_insert(&mut self, record: &Record) -> StoreResult<()>;
    /// A record of any collection of the workspace.
    async fn record_get(&mut self, id: &RecordId) -> StoreResult<Option<Record>>;
    /// One collection's records by id after the cursor; drafts only when `drafts`.
    async fn records_list(
        &mut self,
        collection: &CollectionId,
        after: Option<&RecordId>,
        limit: u32,
        drafts: bool,
    ) -> StoreResult<Vec<Record>>;
    /// The collection named `collection` and, if it holds it, record `id`, in one statement;
    /// `None` if there is no such collection.
    async fn record_in_collection(
        &mut self,
        collection: &str,
        id: &RecordId,
    ) -> StoreResult<Option<(Collection, Option<Record>)>>;
    /// One page of a collection's records as `query` asks: filtered, sorted (ties by id),
    /// after its cursor, at most `query.limit` rows.
    async fn records_query(
        &mut self,
        collection: &CollectionId,
        query: &crate::collections::query::RecordQuery,
    ) -> StoreResult<Vec<Record>>;
    /// Writes status, data, version, `updated_at`, `published_at`, `updated_by` if the stored
    /// version is `expected_version`; false otherwise (changed meanwhile, or gone).
    async fn record_update(&mut self, record: &Record, expected_version: i64) -> StoreResult<bool>;
    /// Deletes a record and its unique claims; false if it is gone.
    async fn record_delete(&mut self, id: &RecordId) -> StoreResult<bool>;
    /// Deletes every record of a collection and their unique claims; how many.
    async fn records_delete_collection(&mut self, collection: &CollectionId) -> StoreResult<u64>;
    /// Records of a collection (any status).
    async fn records_count(&mut self, collection: &CollectionId) -> StoreResult<u64>;
    /// Claims `value` of a unique `field` for `record`: true if it was free or already this
    /// record's, false if another record holds it.
    async fn record_unique_claim(
        &mut self,
        collection: &CollectionId,
        field: &str,
        value: &str,
        record: &RecordId,
    ) -> StoreResult<bool>;
    /// Moves every unique claim of `field` to the name `to` (a field rename).
    async fn record_uniques_rename(
        &mut self,
        collection: &CollectionId,
        field: &str,
        to: &str,
    ) -> StoreResult<()>;
    /// Gives up `record`'s claim on `value` of `field` (no-op if it held none).
    async fn record_unique_release(
        &mut self,
        collection: &CollectionId,
        field: &str,
        value: &str,
        record: &RecordId,
    ) -> StoreResult<()>;
}

/// A workspace's API keys (KEY-1, KEY-2), bound to the transaction's workspace.
#[async_trait::async_trait]
pub trait ApiKeysTx: Send {
    /// Stores a new key with the SHA-256 of its secret.
    async fn api_key_insert(&mut self, key: &ApiKey, hash: &[u8; 32]) -> StoreResult<()>;
    /// A key, revoked or not, with its `last_used_at`.
    async fn api_key_get(&mut self, id: &ApiKeyId) -> StoreResult<Option<ApiKey>>;
    /// Keys not revoked, by id, after the cursor.
    async fn api_keys_list(
        &mut self,
        after: Option<&ApiKeyId>,
        limit: u32,
    ) -> StoreResult<Vec<ApiKey>>;
    /// Replaces a live key's secret hash and prefix; false if it is unknown or revoked.
    async fn api_key_rotate(
        &mut self,
        id: &ApiKeyId,
        hash: &[u8; 32],
        prefix: &str,
        at: OffsetDateTime,
    ) -> StoreResult<bool>;
    /// Marks a live key revoked; false if it is unknown or already revoked.
    async fn api_key_revoke(&mut self, id: &ApiKeyId, at: OffsetDateTime) -> StoreResult<bool>;
    /// Records that cached keys of this workspace are stale (revoke, rotate, workspace change),
    /// so every node drops them; committed with the change itself.
    async fn api_keys_changed(&mut self, at: OffsetDateTime) -> StoreResult<()>;
}

/// A data key as stored: only wrapped by a master key.
#[derive(Debug, Clone)]
pub struct StoredDataKey {
    pub id: DataKeyId,
    pub owner: String,
    pub version: i64,
    pub wrapped: Vec<u8>,
    pub created_at: OffsetDateTime,
    /// It seals nothing before this (every node has loaded it by then); it opens at once.
    pub activates_at: OffsetDateTime,
    /// Set once no stored value is sealed under it; it still opens stragglers.
    pub retired_at: Option<OffsetDateTime>,
}

/// A re-encryption job (KMS-3): the owner's sealed values move to `to_version`, in passes over
/// every sealed column, until a whole pass finds none under an older version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRotation {
    pub id: String,
    pub owner: String,
    pub to_version: i64,
    /// `operator` or `schedule`.
    pub reason: String,
    /// `pending`, `running` or `done`.
    pub state: String,
    pub pass: i64,
    /// The sealed column the pass is in, and the last row it finished there.
    pub phase: String,
    pub cursor: String,
    /// Values found under an older version in this pass, and re-sealed in this pass.
    pub found: i64,
    pub resealed: i64,
    /// Sealed values looked at, over every pass.
    pub scanned: i64,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub finished_at: Option<OffsetDateTime>,
}

/// One owner's key maintenance (see [`Store::keys`]): a transaction bound to the owner's
/// workspace (none for `instance`), so its statements and audit log are the owner's. It reaches
/// only what re-encryption needs (collections, records, the log), not members or API keys.
#[async_trait::async_trait]
pub trait KeysTx: AuditLogTx + CollectionsTx + RecordsTx {
    /// The owner's data keys by version.
    async fn owner_data_keys(&mut self) -> StoreResult<Vec<StoredDataKey>>;
    /// Fails with `StoreError::Conflict("data_keys_owner_version")` if the version exists.
    async fn owner_data_key_insert(&mut self, key: &StoredDataKey) -> StoreResult<()>;
    async fn data_key_retire(&mut self, id: &DataKeyId, at: OffsetDateTime) -> StoreResult<()>;
    /// Fails with `StoreError::Conflict("key_rotations_owner_version")` if one exists.
    async fn key_rotation_insert(&mut self, job: &KeyRotation) -> StoreResult<()>;
    /// The owner's unfinished job, locked until commit.
    async fn key_rotation_open(&mut self) -> StoreResult<Option<KeyRotation>>;
    async fn key_rotation_update(&mut self, job: &KeyRotation) -> StoreResult<()>;
    /// Replaces an audit key's sealed seed of the owner's log if it is still `old`.
    async fn audit_key_reseal(&mut self, kid: &str, old: &[u8], new: &[u8]) -> StoreResult<bool>;
    /// Every instance signing key (any purpose).
    async fn signing_keys_all(&mut self) -> StoreResult<Vec<StoredSigningKey>>;
    /// Replaces a signing key's sealed seed if it is still `old`.
    async fn signing_key_reseal(&mut self, kid: &str, old: &[u8], new: &[u8]) -> StoreResult<bool>;
    /// Writes a record's `data` (the same values, sealed anew) if its version is still
    /// `version`; the version and times do not change, so no client's `If-Match` breaks.
    async fn record_reseal(
        &mut self,
        id: &RecordId,
        version: i64,
        data: &serde_json::Map<String, serde_json::Value>,
    ) -> StoreResult<bool>;
    /// The owner's webhook endpoints after `after` by id: `(id, secret, previous_secret)`.
    async fn webhook_secrets(
        &mut self,
        after: &str,
        limit: u32,
    ) -> StoreResult<Vec<(WebhookId, Vec<u8>, Option<Vec<u8>>)>>;
    /// Replaces an endpoint's `secret` or `previous_secret` (`field`) if it is still `old`.
    async fn webhook_secret_reseal(
        &mut self,
        id: &WebhookId,
        field: &str,
        old: &[u8],
        new: &[u8],
    ) -> StoreResult<bool>;
    /// The owner's outbox events after `after` by id: `(id, payload)`.
    async fn webhook_payloads(
        &mut self,
        after: &str,
        limit: u32,
    ) -> StoreResult<Vec<(WebhookEventId, Vec<u8>)>>;
    /// Replaces an event's payload if it is still `old`.
    async fn webhook_payload_reseal(
        &mut self,
        id: &WebhookEventId,
        old: &[u8],
        new: &[u8],
    ) -> StoreResult<bool>;
}

/// A signing key as stored: the seed sealed under a data key.
#[derive(Debug, Clone)]
pub struct StoredSigningKey {
    pub kid: String,
    pub purpose: String,
    pub sealed_seed: Vec<u8>,
    pub created_at: OffsetDateTime,
}

/// One log's statements (AUDIT-SPEC). A tenant transaction works on its workspace's log; an
/// account transaction on the instance log. Entries, tree hashes, openings, checkpoints and keys
/// are insert-only; only the head moves.
#[async_trait::async_trait]
pub trait AuditLogTx: Send {
    /// Creates this transaction's log, empty, with its first signing key.
    async fn audit_log_create(
        &mut self,
        origin: &str,
        key: &StoredAuditKey,
        at: OffsetDateTime,
    ) -> StoreResult<()>;
    /// The audit sink: appends one entry (bytes, leaf, tree hashes, openings) and moves the
    /// head, inside the caller's transaction. Entries of one log are serialized by the head.
    async fn audit_append(&mut self, record: &AuditRecord) -> StoreResult<AppendedEntry>;
    /// Appends `records` in order, as consecutive entries, with one head read and update and
    /// multi-row inserts: what one request's several entries should use.
    async fn audit_append_all(
        &mut self,
        records: &[AuditRecord],
    ) -> StoreResult<Vec<AppendedEntry>>;
    /// The head; `lock` holds it until commit (no append or signing meanwhile).
    async fn audit_head(&mut self, lock: bool) -> StoreResult<Option<AuditHead>>;
    /// Entries `[start, end)` with their openings, in order.
    async fn audit_entries(&mut self, start: u64, end: u64) -> StoreResult<Vec<StoredEntry>>;
    /// Entries matching `query`, newest first, with their openings.
    async fn audit_query(&mut self, query: &AuditQuery) -> StoreResult<Vec<StoredEntry>>;
    /// The stored subtree hashes `ids` (missing ones are absent from the map).
    async fn audit_nodes(&mut self, ids: &[NodeId]) -> StoreResult<HashMap<NodeId, Hash>>;
    /// Number of entries stamped before `at`.
    async fn audit_size_before(&mut self, at: OffsetDateTime) -> StoreResult<u64>;

    async fn audit_keys(&mut self) -> StoreResult<Vec<StoredAuditKey>>;
    async fn audit_checkpoint_insert(&mut self, checkpoint: &StoredCheckpoint) -> StoreResult<()>;
    /// The largest signed checkpoint of any kind.
    async fn audit_checkpoint_latest(&mut self) -> StoreResult<Option<StoredCheckpoint>>;
    /// The newest `latest`-kind checkpoint by signing time.
    async fn audit_checkpoint_last_signed(&mut self) -> StoreResult<Option<StoredCheckpoint>>;
    async fn audit_checkpoint_day(&mut self, day: &str) -> StoreResult<Option<StoredCheckpoint>>;
    /// The newest daily checkpoints, newest first.
    async fn audit_checkpoints_daily(&mut self, limit: u32) -> StoreResult<Vec<StoredCheckpoint>>;

    /// Commits (for account and tenant transactions too, which extend this trait).
    async fn commit(self: Box<Self>) -> StoreResult<()>;
}

/// Rate-limit state (RTL-4): one row per key, shared by every node. Reachable from account and
/// tenant transactions, so a breach's audit entry commits with the state that recorded it.
#[async_trait::async_trait]
pub trait LimitTx: AuditLogTx {
    /// The state of `keys`, each locked until commit (absent keys are created fresh, TAT 0, so
    /// two nodes cannot both miss a row). Locks are taken in the order given: callers sort.
    async fn limits_lock(&mut self, keys: &[String]) -> StoreResult<Vec<LimitState>>;
    async fn limits_put(&mut self, state: &LimitState) -> StoreResult<()>;
    /// Gives back unused leased budget: moves the key's TAT back by `us`.
    async fn limits_give_back(&mut self, key: &str, us: i64) -> StoreResult<()>;
    /// Deletes keys idle since before `before` (a full budget reads the same as no row).
    async fn limits_prune(&mut self, before: i64) -> StoreResult<u64>;
}

/// One key's GCRA state, in µs since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitState {
    pub key: String,
    /// The theoretical arrival time: the budget is full again at this instant.
    pub tat: i64,
    /// A breach of this key was audited; the next is audited only after this instant.
    pub logged_until: i64,
}

/// Where a log stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditHead {
    pub origin: String,
    pub size: u64,
    pub last_leaf: Hash,
    /// Compact range of `[0, size)`, largest subtree first.
    pub frontier: Vec<Hash>,
}

/// What an append produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendedEntry {
    pub seq: u64,
    pub leaf: Hash,
}

/// A stored entry: exact bytes plus the openings still held for it.
#[derive(Debug, Clone)]
pub struct StoredEntry {
    pub seq: u64,
    pub bytes: Vec<u8>,
    pub openings: Vec<StoredOpening>,
}

#[derive(Clone)]
pub struct StoredOpening {
    pub pointer: String,
    pub salt: Vec<u8>,
    pub value: serde_json::Value,
}

impl std::fmt::Debug for StoredOpening {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredOpening")
            .field("pointer", &self.pointer)
            .finish_non_exhaustive()
    }
}

/// The filters of `GET …/audit/events`, as the caller gives them.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub since: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
    pub gdpr: Option<bool>,
}

/// One page of a log query: the caller's filters plus what the service adds.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub filter: AuditFilter,
    /// Entries whose actor id or target id is this (a user's own events).
    pub subject: Option<String>,
    /// Entries with `seq` below this (the cursor).
    pub before_seq: Option<u64>,
    pub limit: u32,
}

/// A log signing key as stored: the seed sealed under a data key.
#[derive(Debug, Clone)]
pub struct StoredAuditKey {
    pub kid: String,
    pub public_key: [u8; 32],
    pub sealed_seed: Vec<u8>,
    pub created_at: OffsetDateTime,
}

/// A signed checkpoint as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    /// `latest` or `daily`.
    pub kind: String,
    /// The UTC date of a daily checkpoint.
    pub day: Option<String>,
    pub size: u64,
    pub root: Hash,
    pub body: String,
    pub jws: String,
    pub note: String,
    pub kid: String,
    pub signed_at: OffsetDateTime,
}
