//! The statements both backends share, written once. `$n` placeholders work on SQLite and
//! PostgreSQL alike; where a backend needs different SQL it lives in its own module. Every
//! tenant statement filters by the transaction's workspace id (the application layer of TEN-2);
//! on PostgreSQL RLS filters again underneath.

use palisade_core::error::StoreError;

/// A transaction of one backend, bound at `begin` to the workspace of its scope (if any).
pub(crate) struct SqlTx<DB: sqlx::Database> {
    pub tx: Conn<DB>,
    pub workspace: Option<String>,
    pub write: bool,
}

/// The connection a `SqlTx` runs on: a database transaction, or (SQLite reads) a read-only
/// connection in autocommit mode, where each statement sees the latest commit — what
/// PostgreSQL's default read committed gives a read transaction too — without the two extra
/// round trips of `BEGIN` and `COMMIT` to SQLite's connection thread.
pub(crate) enum Conn<DB: sqlx::Database> {
    Tx(sqlx::Transaction<'static, DB>),
    Autocommit(sqlx::pool::PoolConnection<DB>),
}

impl<DB: sqlx::Database> Conn<DB> {
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Conn::Tx(tx) => tx.commit().await,
            Conn::Autocommit(_) => Ok(()),
        }
    }
}

impl<DB: sqlx::Database> std::ops::Deref for Conn<DB> {
    type Target = DB::Connection;

    fn deref(&self) -> &DB::Connection {
        match self {
            Conn::Tx(tx) => tx,
            Conn::Autocommit(conn) => conn,
        }
    }
}

impl<DB: sqlx::Database> std::ops::DerefMut for Conn<DB> {
    fn deref_mut(&mut self) -> &mut DB::Connection {
        match self {
            Conn::Tx(tx) => tx,
            Conn::Autocommit(conn) => conn,
        }
    }
}

impl<DB: sqlx::Database> SqlTx<DB> {
    pub fn workspace(&self) -> Result<&str, StoreError> {
        self.workspace.as_deref().ok_or_else(|| {
            crate::rows::corrupt("scope", "tenant statement outside a tenant transaction")
        })
    }
}

pub(crate) fn map_err(e: sqlx::Error) -> StoreError {
    if let Some(db) = e.as_database_error()
        && db.is_unique_violation()
    {
        let name = db
            .constraint()
            .or_else(|| sqlite_unique_index(db.message()))
            .unwrap_or("unique");
        return StoreError::Conflict(name.to_owned());
    }
    StoreError::Database(Box::new(e))
}

/// PostgreSQL names the violated unique index; SQLite names only its columns ("UNIQUE constraint
/// failed: teams.workspace_id, teams.name"). The unique indexes by those columns, so a conflict
/// carries the same name on both backends.
const SQLITE_UNIQUE_INDEXES: &[(&str, &str)] = &[
    ("users.email", "users_email"),
    ("workspaces.slug", "workspaces_slug"),
    (
        "members.workspace_id, members.user_id",
        "members_workspace_user",
    ),
    ("teams.workspace_id, teams.name", "teams_name"),
    (
        "custom_roles.workspace_id, custom_roles.name",
        "custom_roles_name",
    ),
    ("invitations.token_hash", "invitations_token"),
    ("api_keys.key_hash", "api_keys_hash"),
    (
        "collections.workspace_id, collections.name",
        "collections_name",
    ),
    (
        "data_keys.owner, data_keys.version",
        "data_keys_owner_version",
    ),
    (
        "key_rotations.owner, key_rotations.to_version",
        "key_rotations_owner_version",
    ),
    (
        "audit_checkpoints.log_id, audit_checkpoints.size",
        "audit_checkpoints_latest",
    ),
    (
        "audit_checkpoints.log_id, audit_checkpoints.day",
        "audit_checkpoints_day",
    ),
];

fn sqlite_unique_index(message: &str) -> Option<&'static str> {
    let columns = message.strip_prefix("UNIQUE constraint failed: ")?;
    SQLITE_UNIQUE_INDEXES
        .iter()
        .find(|(c, _)| *c == columns)
        .map(|(_, name)| *name)
}

/// The columns `WorkspaceRow` maps, from `workspaces w` (joins add their own).
macro_rules! workspace_columns {
    () => {
        "w.id, w.slug, w.name, w.branding, w.region, w.timezone, w.currency, w.plan, w.modules, w.parent_id, \
         w.auth_policy, w.suspended_at, w.deleted_at, w.created_at, w.updated_at"
    };
}
pub(crate) use workspace_columns;

/// Workspace reads: `WorkspaceRow`'s columns from `workspaces w`, then `$tail`.
macro_rules! workspace_select {
    ($tail:literal) => {
        concat!(
            "SELECT ",
            crate::sql::workspace_columns!(),
            " FROM workspaces w ",
            $tail
        )
    };
}
pub(crate) use workspace_select;

pub(crate) const WORKSPACE_GET: &str = workspace_select!("WHERE w.id = $1");

/// The audit log's shared statements; `$backend::AUDIT_HEAD_LOCKED` differs per backend.
pub(crate) const AUDIT_HEAD: &str =
    "SELECT origin, size, last_leaf, frontier FROM audit_heads WHERE log_id = $1";
/// The head of a multi-row entry insert; `QueryBuilder::push_values` adds the rows.
pub(crate) const AUDIT_ENTRY_INSERT_ROWS: &str = "INSERT INTO audit_entries (log_id, seq, entry, leaf, ts, action, result, actor_type, actor_id, \
     target_type, target_id, gdpr) ";
/// Rows per multi-row insert of an append: well under both backends' parameter limits.
pub(crate) const APPEND_CHUNK: usize = 256;
/// Checkpoint reads: every one selects the same columns for one log (`$1`).
macro_rules! checkpoint_select {
    ($tail:literal) => {
        concat!(
            "SELECT kind, day, size, root, body, jws, note, kid, signed_at FROM audit_checkpoints WHERE log_id = $1 ",
            $tail
        )
    };
}
pub(crate) const AUDIT_CHECKPOINT_LATEST: &str =
    checkpoint_select!("ORDER BY size DESC, signed_at DESC LIMIT 1");
pub(crate) const AUDIT_CHECKPOINT_LAST_SIGNED: &str =
    checkpoint_select!("AND kind = 'latest' ORDER BY signed_at DESC, size DESC LIMIT 1");
pub(crate) const AUDIT_CHECKPOINT_DAY: &str = checkpoint_select!("AND day = $2 LIMIT 1");
pub(crate) const AUDIT_CHECKPOINTS_DAILY: &str =
    checkpoint_select!("AND kind = 'daily' ORDER BY day DESC LIMIT $2");

/// User reads: the columns `UserRow` maps.
macro_rules! user_select {
    ($where:literal) => {
        concat!(
            "SELECT id, email, name, email_verified_at, password_hash, failed_logins, lock_count, locked_until, \
             created_at, updated_at FROM users WHERE ",
            $where
        )
    };
}
pub(crate) const USER_BY_EMAIL: &str = user_select!("email = $1");
pub(crate) const USER_BY_ID: &str = user_select!("id = $1");

/// Session reads: the columns `SessionRow` maps.
macro_rules! session_select {
    ($tail:literal) => {
        concat!(
            "SELECT id, user_id, created_at, expires_at, revoked_at, revoked_reason, last_used_at, user_agent, ip_prefix, \
             method FROM sessions WHERE ",
            $tail
        )
    };
}
pub(crate) const SESSION_GET: &str = session_select!("id = $1");
/// `$2` is the cursor (`~` sorts after every id).
pub(crate) const SESSIONS_UNREVOKED: &str =
    session_select!("user_id = $1 AND revoked_at IS NULL AND id < $2 ORDER BY id DESC LIMIT $3");

/// Memberships: `MembershipRow`'s columns, the user's (`$1`) rows of workspaces not deleted.
macro_rules! membership_select {
    ($extra:literal, $tail:literal) => {
        concat!(
            "SELECT ",
            workspace_columns!(),
            ", m.id AS member_id, m.role, m.active",
            $extra,
            " FROM members m JOIN workspaces w ON w.id = m.workspace_id \
             WHERE m.user_id = $1 AND w.deleted_at IS NULL ",
            $tail
        )
    };
}

/// `$2` is the workspace's id or slug; active or not (the check decides what inactive means).
pub(crate) const MEMBER_ACCESS: &str =
    membership_select!(", m.custom_role_id", "AND (w.id = $2 OR w.slug = $2)");
pub(crate) const MEMBERSHIPS: &str =
    membership_select!("", "AND m.active AND w.id > $2 ORDER BY w.id LIMIT $3");

/// The grants of every team a member (`$1` workspace, `$2` member) belongs to, in team id order.
pub(crate) const MEMBER_TEAM_GRANTS: &str = "SELECT t.grants FROM team_members tm \
     JOIN teams t ON t.workspace_id = tm.workspace_id AND t.id = tm.team_id \
     WHERE tm.workspace_id = $1 AND tm.member_id = $2 ORDER BY t.id";

/// Implements the store traits for `SqlTx<$db>`; `$backend` is the module with the SQL that
/// differs per backend (`WORKSPACE_GET_LOCKED`). `SystemTx`'s API-key and webhook methods call
/// the functions `impl_api_keys_tx!` and `impl_webhooks_tx!` define beside it.
macro_rules! impl_transactions {
    ($db:ty, $backend:ident) => {
        mod transactions {
        use super::$backend;
        use palisade_core::accounts::model::{AccountToken, Credentials, RefreshToken, ResetCode, Session, TokenPurpose, User};
        use palisade_core::audit::AuditRecord;
        use palisade_core::error::StoreError;
        use palisade_core::api_keys::model::ApiKey;
        use palisade_core::ids::{ApiKeyId, ResetCodeId, SessionId, UserId, WorkspaceId};
        use palisade_core::store::{
            AccountTx, AppendedEntry, AuditHead, AuditLogTx, AuditQuery, LimitState, LimitTx, StoreResult, StoredAuditKey, StoredCheckpoint,
            StoredDataKey, StoredEntry, StoredOpening, StoredSigningKey, SystemTx, TenantTx,
        };
        use palisade_audit::merkle::{Frontier, NodeId};
        use palisade_audit::Hash;
        use std::collections::HashMap;
        use palisade_core::workspaces::model::{Invitation, Member, MemberAccess, Membership, Workspace};
        use palisade_core::acl::TeamGrant;
        use sqlx::types::Json;
        use time::OffsetDateTime;

        use crate::rows::{
            AccountTokenRow, AuditKeyRow, CheckpointRow, CustomRoleRow, hash32, DataKeyRow, InvitationRow, ResetCodeRow, MemberAccessRow, MembershipRow, RefreshRow,
            SessionRow, SigningKeyRow, UserRow, WorkspaceRow, corrupt,
        };
        use crate::sql::{SqlTx, map_err};

        fn log_of(tx: &SqlTx<$db>) -> String {
            tx.workspace.clone().unwrap_or_else(|| palisade_audit::entry::INSTANCE_LOG.to_owned())
        }

        fn to_u64(table: &'static str, v: i64) -> StoreResult<u64> {
            u64::try_from(v).map_err(|_| corrupt(table, "negative position"))
        }

        fn to_i64(v: u64) -> StoreResult<i64> {
            i64::try_from(v).map_err(|_| corrupt("audit_entries", "position out of range"))
        }

        /// Entries with their openings, for the `seq`s the rows name.
        async fn with_openings(
            tx: &mut SqlTx<$db>,
            log: &str,
            rows: Vec<(i64, Vec<u8>)>,
        ) -> StoreResult<Vec<StoredEntry>> {
            let (Some(lo), Some(hi)) = (rows.iter().map(|r| r.0).min(), rows.iter().map(|r| r.0).max()) else {
                return Ok(Vec::new());
            };
            let openings: Vec<(i64, String, Vec<u8>, Json<serde_json::Value>)> = sqlx::query_as(
                "SELECT seq, pointer, salt, value FROM audit_openings WHERE log_id = $1 AND seq >= $2 AND seq <= $3 ORDER BY seq, pointer",
            )
            .bind(log)
            .bind(lo)
            .bind(hi)
            .fetch_all(&mut *tx.tx)
            .await
            .map_err(map_err)?;
            let mut by_seq: HashMap<i64, Vec<StoredOpening>> = HashMap::new();
            for (seq, pointer, salt, value) in openings {
                by_seq.entry(seq).or_default().push(StoredOpening { pointer, salt, value: value.0 });
            }
            rows.into_iter()
                .map(|(seq, bytes)| {
                    Ok(StoredEntry {
                        openings: by_seq.remove(&seq).unwrap_or_default(),
                        seq: to_u64("audit_entries", seq)?,
                        bytes,
                    })
                })
                .collect()
        }

        async fn user_row(tx: &mut SqlTx<$db>, id: &UserId) -> StoreResult<Option<(User, Credentials)>> {
            let row = sqlx::query_as::<_, UserRow>(crate::sql::USER_BY_ID)
                .bind(id.as_str())
                .fetch_optional(&mut *tx.tx)
                .await
                .map_err(map_err)?;
            row.map(UserRow::into_user).transpose()
        }

        #[async_trait::async_trait]
        impl AuditLogTx for SqlTx<$db> {
            async fn audit_log_create(&mut self, origin: &str, key: &StoredAuditKey, at: OffsetDateTime) -> StoreResult<()> {
                let log = log_of(self);
                sqlx::query(
                    "INSERT INTO audit_heads (log_id, origin, size, last_leaf, frontier, created_at) VALUES ($1, $2, 0, $3, $4, $5)",
                )
                .bind(&log)
                .bind(origin)
                .bind(&palisade_audit::genesis(&log)[..])
                .bind(&[][..] as &[u8])
                .bind(at)
                .execute(&mut *self.tx)
                .await
                .map_err(map_err)?;
                sqlx::query("INSERT INTO audit_keys (log_id, kid, public_key, sealed_seed, created_at) VALUES ($1, $2, $3, $4, $5)")
                    .bind(&log)
                    .bind(&key.kid)
                    .bind(&key.public_key[..])
                    .bind(&key.sealed_seed)
                    .bind(key.created_at)
                    .execute(&mut *self.tx)
                    .await
                    .map_err(map_err)?;
                Ok(())
            }

            async fn audit_append(&mut self, record: &AuditRecord) -> StoreResult<AppendedEntry> {
                let appended = self.audit_append_all(std::slice::from_ref(record)).await?;
                appended.first().copied().ok_or_else(|| corrupt("audit_entries", "nothing appended"))
            }

            async fn audit_append_all(&mut self, records: &[AuditRecord]) -> StoreResult<Vec<AppendedEntry>> {
                if records.is_empty() {
                    return Ok(Vec::new());
                }
                let log = log_of(self);
                if records.iter().any(|r| r.log_id() != log) {
                    return Err(corrupt("audit_entries", "event for another log"));
                }
                // The head serializes this log's appends (a row lock on PostgreSQL; SQLite has one writer).
                let head = self.audit_head(true).await?.ok_or_else(|| corrupt("audit_heads", "log does not exist"))?;
                let mut frontier = Frontier::from_hashes(head.size, head.frontier)
                    .ok_or_else(|| corrupt("audit_heads", "frontier does not match size"))?;
                // Chain every entry in memory, then write them with a few multi-row statements.
                let (mut size, mut last_leaf) = (head.size, head.last_leaf);
                let mut entries = Vec::with_capacity(records.len());
                let mut nodes = Vec::with_capacity(records.len() * 2);
                let mut openings = Vec::new();
                let mut appended = Vec::with_capacity(records.len());
                for record in records {
                    let bytes = record.entry_bytes(size, last_leaf).map_err(|e| StoreError::Invalid(e.to_string()))?;
                    let leaf = palisade_audit::leaf_hash(&bytes);
                    let seq = to_i64(size)?;
                    frontier.push_with(leaf, |id, h| nodes.push((id, *h)));
                    if !record.openings.is_empty() {
                        let subject = record.subject.clone().or_else(|| (record.actor.kind == "user").then(|| record.actor.id.clone()));
                        for o in &record.openings {
                            openings.push((seq, o, subject.clone()));
                        }
                    }
                    entries.push((seq, bytes, leaf, palisade_core::audit::format_ts(record.at), record));
                    appended.push(AppendedEntry { seq: size, leaf });
                    last_leaf = leaf;
                    size += 1;
                }
                // One command for every insert and the head update: SQLite takes them as
                // statements separated by `;` (each counts its rows); PostgreSQL as one statement,
                // the inserts as data-modifying CTEs and the head update last (only it counts).
                // Either way the head lock is held for one round trip, not one per statement.
                let merge = $backend::MERGE_STATEMENTS;
                let mut b = sqlx::QueryBuilder::<$db>::new(if merge { "" } else { "WITH " });
                let mut expected = 0u64;
                let mut ctes = 0usize;
                macro_rules! begin_statement {
                    () => {
                        if !merge {
                            if ctes > 0 {
                                b.push(", ");
                            }
                            b.push(format!("s{ctes} AS ("));
                        }
                    };
                }
                macro_rules! end_statement {
                    ($rows:expr) => {
                        if merge {
                            b.push("; ");
                            expected += $rows as u64;
                        } else {
                            b.push(" RETURNING 1)");
                            ctes += 1;
                        }
                    };
                }
                for chunk in entries.chunks(crate::sql::APPEND_CHUNK) {
                    begin_statement!();
                    b.push(crate::sql::AUDIT_ENTRY_INSERT_ROWS);
                    b.push_values(chunk, |mut row, (seq, bytes, leaf, ts, r)| {
                        row.push_bind(log.clone())
                            .push_bind(*seq)
                            .push_bind(bytes.clone())
                            .push_bind(leaf.to_vec())
                            .push_bind(ts.clone())
                            .push_bind(r.action.to_string())
                            .push_bind(r.result.as_str())
                            .push_bind(r.actor.kind)
                            .push_bind(r.actor.id.clone())
                            .push_bind(r.target.kind.to_string())
                            .push_bind(r.target.id.clone())
                            .push_bind(r.gdpr());
                    });
                    end_statement!(chunk.len());
                }
                let mut rows = Vec::with_capacity(nodes.len());
                for (id, hash) in &nodes {
                    rows.push((i16::from(id.level), to_i64(id.index)?, hash.to_vec()));
                }
                for chunk in rows.chunks(crate::sql::APPEND_CHUNK) {
                    begin_statement!();
                    b.push("INSERT INTO audit_tree (log_id, level, idx, hash) ");
                    b.push_values(chunk, |mut row, (level, idx, hash)| {
                        row.push_bind(log.clone()).push_bind(*level).push_bind(*idx).push_bind(hash.clone());
                    });
                    end_statement!(chunk.len());
                }
                for chunk in openings.chunks(crate::sql::APPEND_CHUNK) {
                    begin_statement!();
                    b.push("INSERT INTO audit_openings (log_id, seq, pointer, salt, value, subject) ");
                    b.push_values(chunk, |mut row, (seq, o, subject)| {
                        row.push_bind(log.clone())
                            .push_bind(*seq)
                            .push_bind(o.pointer.clone())
                            .push_bind(o.salt.to_vec())
                            .push_bind(Json(o.value.clone()))
                            .push_bind(subject.clone());
                    });
                    end_statement!(chunk.len());
                }
                // Conditional on the size read above: a moved head changes no row, and the
                // count below catches it.
                let frontier_bytes: Vec<u8> = frontier.hashes().flat_map(|h| h.iter().copied()).collect();
                b.push(" UPDATE audit_heads SET size = ");
                b.push_bind(to_i64(size)?);
                b.push(", last_leaf = ");
                b.push_bind(last_leaf.to_vec());
                b.push(", frontier = ");
                b.push_bind(frontier_bytes);
                b.push(" WHERE log_id = ");
                b.push_bind(log.clone());
                b.push(" AND size = ");
                b.push_bind(to_i64(head.size)?);
                expected += 1;
                let rows_written = b.build().execute(&mut *self.tx).await.map_err(map_err)?.rows_affected();
                if rows_written != expected {
                    return Err(corrupt("audit_heads", "head moved during an append"));
                }
                Ok(appended)
            }

            async fn audit_head(&mut self, lock: bool) -> StoreResult<Option<AuditHead>> {
                let log = log_of(self);
                let sql = if lock && self.write { $backend::AUDIT_HEAD_LOCKED } else { crate::sql::AUDIT_HEAD };
                let row: Option<(String, i64, Vec<u8>, Vec<u8>)> = sqlx::query_as(sql)
                    .bind(&log)
                    .fetch_optional(&mut *self.tx)
                    .await
                    .map_err(map_err)?;
                let Some((origin, size, last_leaf, frontier)) = row else {
                    return Ok(None);
                };
                if frontier.len() % 32 != 0 {
                    return Err(corrupt("audit_heads", "frontier is not a list of hashes"));
                }
                let frontier = frontier
                    .chunks_exact(32)
                    .map(|c| hash32("audit_heads", c.to_vec()))
                    .collect::<StoreResult<Vec<Hash>>>()?;
                Ok(Some(AuditHead {
                    origin,
                    size: to_u64("audit_heads", size)?,
                    last_leaf: hash32("audit_heads", last_leaf)?,
                    frontier,
                }))
            }

            async fn audit_entries(&mut self, start: u64, end: u64) -> StoreResult<Vec<StoredEntry>> {
                let log = log_of(self);
                let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(
                    "SELECT seq, entry FROM audit_entries WHERE log_id = $1 AND seq >= $2 AND seq < $3 ORDER BY seq",
                )
                .bind(&log)
                .bind(to_i64(start)?)
                .bind(to_i64(end)?)
                .fetch_all(&mut *self.tx)
                .await
                .map_err(map_err)?;
                with_openings(self, &log, rows).await
            }

            async fn audit_query(&mut self, q: &AuditQuery) -> StoreResult<Vec<StoredEntry>> {
                let log = log_of(self);
                let mut b = sqlx::QueryBuilder::<$db>::new("SELECT seq, entry FROM audit_entries WHERE log_id = ");
                b.push_bind(log.clone());
                if let Some(subject) = &q.subject {
                    b.push(" AND (actor_id = ").push_bind(subject.clone()).push(" OR target_id = ").push_bind(subject.clone()).push(")");
                }
                if let Some(v) = &q.filter.actor {
                    b.push(" AND actor_id = ").push_bind(v.clone());
                }
                if let Some(v) = &q.filter.action {
                    b.push(" AND action = ").push_bind(v.clone());
                }
                if let Some(v) = &q.filter.target_type {
                    b.push(" AND target_type = ").push_bind(v.clone());
                }
                if let Some(v) = &q.filter.target_id {
                    b.push(" AND target_id = ").push_bind(v.clone());
                }
                if let Some(v) = q.filter.since {
                    b.push(" AND ts >= ").push_bind(palisade_core::audit::format_ts(v));
                }
                if let Some(v) = q.filter.until {
                    b.push(" AND ts < ").push_bind(palisade_core::audit::format_ts(v));
                }
                if let Some(v) = q.filter.gdpr {
                    b.push(" AND gdpr = ").push_bind(v);
                }
                if let Some(v) = q.before_seq {
                    b.push(" AND seq < ").push_bind(to_i64(v)?);
                }
                b.push(" ORDER BY seq DESC LIMIT ").push_bind(i64::from(q.limit));
                let rows: Vec<(i64, Vec<u8>)> = b.build_query_as().fetch_all(&mut *self.tx).await.map_err(map_err)?;
                with_openings(self, &log, rows).await
            }

            async fn audit_nodes(&mut self, ids: &[NodeId]) -> StoreResult<HashMap<NodeId, Hash>> {
                let mut out = HashMap::with_capacity(ids.len());
                if ids.is_empty() {
                    return Ok(out);
                }
                let log = log_of(self);
                for chunk in ids.chunks(200) {
                    let mut b = sqlx::QueryBuilder::<$db>::new("SELECT level, idx, hash FROM audit_tree WHERE log_id = ");
                    b.push_bind(log.clone()).push(" AND (");
                    for (i, id) in chunk.iter().enumerate() {
                        if i > 0 {
                            b.push(" OR ");
                        }
                        b.push("(level = ").push_bind(i16::from(id.level)).push(" AND idx = ").push_bind(to_i64(id.index)?).push(")");
                    }
                    b.push(")");
                    let rows: Vec<(i16, i64, Vec<u8>)> = b.build_query_as().fetch_all(&mut *self.tx).await.map_err(map_err)?;
                    for (level, idx, hash) in rows {
                        let level = u8::try_from(level).map_err(|_| corrupt("audit_tree", "bad level"))?;
                        out.insert(NodeId::new(level, to_u64("audit_tree", idx)?), hash32("audit_tree", hash)?);
                    }
                }
                Ok(out)
            }

            async fn audit_size_before(&mut self, at: OffsetDateTime) -> StoreResult<u64> {
                let log = log_of(self);
                let n: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) + 1 FROM audit_entries WHERE log_id = $1 AND ts < $2")
                    .bind(&log)
                    .bind(palisade_core::audit::format_ts(at))
                    .fetch_one(&mut *self.tx)
                    .await
                    .map_err(map_err)?;
                to_u64("audit_entries", n.unwrap_or(0))
            }

            async fn audit_keys(&mut self) -> StoreResult<Vec<StoredAuditKey>> {
                let log = log_of(self);
                let rows = sqlx::query_as::<_, AuditKeyRow>(
                    "SELECT kid, public_key, sealed_seed, created_at FROM audit_keys WHERE log_id = $1 ORDER BY created_at, kid",
                )
                .bind(&log)
                .fetch_all(&mut *self.tx)
                .await
                .map_err(map_err)?;
                rows.into_iter().map(AuditKeyRow::into_key).collect()
            }

            async fn audit_checkpoint_insert(&mut self, c: &StoredCheckpoint) -> StoreResult<()> {
                let log = log_of(self);
                sqlx::query(
                    "INSERT INTO audit_checkpoints (log_id, kind, day, size, root, body, jws, note, kid, signed_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .bind(&log)
                .bind(&c.kind)
                .bind(c.day.as_deref())
                .bind(to_i64(c.size)?)
                .bind(&c.root[..])
                .bind(&c.body)
                .bind(&c.jws)
                .bind(&c.note)
                .bind(&c.kid)
                .bind(c.signed_at)
                .execute(&mut *self.tx)
                .await
                .map_err(map_err)?;
                Ok(())
            }

            async fn audit_checkpoint_latest(&mut self) -> StoreResult<Option<StoredCheckpoint>> {
                checkpoint_where(self, crate::sql::AUDIT_CHECKPOINT_LATEST, None).await
            }

            async fn audit_checkpoint_last_signed(&mut self) -> StoreResult<Option<StoredCheckpoint>> {
                checkpoint_where(self, crate::sql::AUDIT_CHECKPOINT_LAST_SIGNED, None).await
            }

            async fn audit_checkpoint_day(&mut self, day: &str) -> StoreResult<Option<StoredCheckpoint>> {
                checkpoint_where(self, crate::sql::AUDIT_CHECKPOINT_DAY, Some(day)).await
            }

            async fn audit_checkpoints_daily(&mut self, limit: u32) -> StoreResult<Vec<StoredCheckpoint>> {
                let log = log_of(self);
                let rows = sqlx::query_as::<_, CheckpointRow>(crate::sql::AUDIT_CHECKPOINTS_DAILY)
                    .bind(&log)
                    .bind(i64::from(limit))
                    .fetch_all(&mut *self.tx)
                    .await
                    .map_err(map_err)?;
                rows.into_iter().map(CheckpointRow::into_checkpoint).collect()
            }

            async fn commit(self: Box<Self>) -> StoreResult<()> {
                self.tx.commit().await.map_err(map_err)
            }
        }

        async fn checkpoint_where(tx: &mut SqlTx<$db>, sql: &'static str, day: Option<&str>) -> StoreResult<Option<StoredCheckpoint>> {
            let log = log_of(tx);
            let mut q = sqlx::query_as::<_, CheckpointRow>(sql).bind(log);
            if let Some(day) = day {
                q = q.bind(day.to_owned());
            }
            let row = q.fetch_optional(&mut *tx.tx).await.map_err(map_err)?;
            row.map(CheckpointRow::into_checkpoint).transpose()
        }
        #[async_trait::async_trait]
        impl LimitTx for SqlTx<$db> {
            async fn limits_lock(&mut self, keys: &[String]) -> StoreResult<Vec<LimitState>> {
                let mut states = Vec::with_capacity(keys.len());
                for key in keys {
                    sqlx::query("INSERT INTO rate_limits (key, tat, logged_until) VALUES ($1, 0, 0) ON CONFLICT (key) DO NOTHING")
                        .bind(key)
                        .execute(&mut *self.tx)
                        .await
                        .map_err(map_err)?;
                    let (tat, logged_until): (i64, i64) = sqlx::query_as($backend::LIMIT_LOCKED)
                        .bind(key)
                        .fetch_one(&mut *self.tx)
                        .await
                        .map_err(map_err)?;
                    states.push(LimitState { key: key.clone(), tat, logged_until });
                }
                Ok(states)
            }

            async fn limits_put(&mut self, state: &LimitState) -> StoreResult<()> {
                sqlx::query("UPDATE rate_limits SET tat = $2, logged_until = $3 WHERE key = $1")
                    .bind(&state.key)
                    .bind(state.tat)
                    .bind(state.logged_until)
                    .execute(&mut *self.tx)
                    .await
                    .map_err(map_err)?;
                Ok(())
            }

            async fn limits_give_back(&mut self, key: &str, us: i64) -> StoreResult<()> {
                sqlx::query("UPDATE rate_limits SET tat = tat - $2 WHERE key = $1")
                    .bind(key)
                    .bind(us)
                    .execute(&mut *self.tx)
                    .await
                    .map_err(map_err)?;
                Ok(())
            }

            async fn limits_prune(&mut self, before: i64) -> StoreResult<u64> {
                let done = sqlx::query("DELETE FROM rate_limits WHERE tat < $1 AND logged_until < $1")
                    .bind(before)
                    .execute(&mut *self.tx)
                    .await
                    .map_err(map_err)?;
                Ok(done.rows_affected())
            }
        }

        #[async_trait::async_trait]
        impl AccountTx for SqlTx<$db> {
            async fn user_insert(&mut self, user: &User, password_hash: &str) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO users (id, email, name, password_hash, email_verified_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(user.id.as_str())
                .bind(&user.email)
                .bind(&user.name)
                .bind(password_hash)
                .bind(user.email_verified_at)
                .bind(user.created_at)
                .bind(user.updated_at)
                .execute(&mut *self.tx)
                .await
                .map_err(map_err)?;
                Ok(())
            }

            async fn user_by_email(&mut self, email: &str) -> StoreResult<Option<(User, Credentials)>> {
                let row = sqlx::query_as::<_, UserRow>(crate::sql::USER_BY_EMAIL)
                    .bind(email)
                    .fetch_optional(&mut *self.tx)
                    .await
                    .map_err(map_err)?;
                row.map(UserRow::into_user).transpose()
            }

            async fn user_by_id(&mut self, id: &UserId) -> StoreResult<Option<User>> {
                Ok(user_row(self, id).await?.map(|(u, _)| u))
            }

            async fn user_with_credentials(&mut self, id: &UserId) -> StoreResult<Option<(User, Credentials)>> {
                user_row(self, id).await
            }

            async fn user_set_password(&mut self, id: &UserId, password_hash: &str, at: OffsetDateTime) -> StoreResult<()> {
                sqlx::query(
                    "UPDATE users SET password_hash = $2, updated_at = $3, failed_logins = 0, lock_count = 0, locked_until = NULL WHERE id = $1",
                )
                .bind(id.as_str())
                .bind(password_hash)
                .bind(at)
                .execute(&mut *self.tx)
                .await
                .map_err(map_err)?;
                Ok(())
            }

            async fn user_verify_email(&mut self, id: &UserId, email: &str, at: OffsetDateTime) -> StoreResult<bool> {
                let done = sqlx::query(
                    "UPDATE users SET email_verified_at = $3, updated_at = $3 WHERE id = $1 AND email = $2 AND email_verified_at IS NULL",
                )
                .bind(id.as_str())
                .bind(email)
                .bind(at)
                .execute(&mut *self.tx)
                .await
                .map_err(map_err)?;
                Ok(done.rows_affected() == 1)
            }

            async fn user_sign_in_failed(&mut self, id: &UserId) -> StoreResult<u32> {
                let n: i64 = sqlx::query_scalar(
                    "UPDATE users SET failed_logins = failed_logins + 1 WHERE id = $1 RETURNING failed_logins",
                )
                .bind(id.as_str())
                .fetch_one(&mut *self.tx)
                .await
                .map_err(map_err)?;
                u32::try_from(n).map_err(|_| corrupt("users", "failed_logins out of range"))
            }

            async fn user_lock(&mut self, id: &UserId, until: OffsetDateTime) -> StoreResult<()> {
                sqlx::query(
                    "UPDATE users SET failed_logins = 0, lock_count = lock_count + 1, locked_until = $2 WHERE id = $1",
                )
                .bind(id.as_str())
                .bind(until)
                .execute(&mut *self.tx)
                .await
                .map_err(map_err)?;
                Ok(())
            }

            async fn user_sign_in_succeeded(&mut self, id: &UserId) -> StoreResult<()> {
                sqlx::query(
                    "UPDATE users SET failed_logins = 0, lock_count = 0, locked_until = NULL WHERE id = $1 AND (failed_logins <> 0 OR lock_count <> 0 OR locked_until IS NOT NULL)",
                )
                .bind(id.as_str())
                .execute(&mut *self.tx)
                .await
                .map_err(map_err)?;
                Ok(())
            }

            async fn session_insert(&mut self, s: &Session) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO sessions (id, user_id, created_at, expires_at, revoked_at, revoked_reason, last_used_at, user_agent, ip_prefix, method) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .bind(s.id.as_str())
                .bind(s.user_id.as_str())
                .bind(s.created_at)
                .bind(s.expires_at)
                .bind(s.revoked_at)
                .bind(s.revoked_reason.as_deref())
                .bind(s.last_used_at)
                .bind(s.user_agent.as_deref())
                .bind(s.ip_prefix.as_deref())
                .bind(s.method.as_str())
                .execute(&mut *self.tx)
                .await
                .map_err(map_err)?;
                Ok(())
            }

            async fn session_get(&mut self, id: &SessionId) -> StoreResult<Option<Session>> {
                let row = sqlx::query_as::<_, SessionRow>(crate::sql::SESSION_GET)
                    .bind(id.as_str())
                    .fetch_optional(&mut *self.tx)
                    .await
                    .map_err(map_err)?;
                row.map(SessionRow::into_session).transpose()
            }

            async fn session_touch(&mut self, id: &SessionId, at: OffsetDateTime, user_agent: Option<&str>, ip_prefix: Option<&str>) -> StoreResult<()> {
                sqlx::query("UPDATE sessions SET last_used_at = $2, user_agent = $3, ip_prefix = $4 WHERE id = $1")
                    .bind(id.as_str())
                    .bind(at)
                    .bind(user_agent)
                    .bind(ip_prefix)
                    .execute(&mut *self.tx)
                    .await
                    .map_err(map_err)?;
                Ok(())
            }

            async fn sessions_unrevoked(&mut self, user: &UserId, before: Option<&SessionId>, limit: u32) -> StoreResult<Vec<Session>> {
                let rows = sqlx::query_as::<_, SessionRow>(crate::sql::SESSIONS_UNREVOKED)
                    .bind(user.as_str())
                    .bind(before.map_or("~", SessionId::as_str))
                    .bind(i64::from(limit))
                    .fetch_all(&mut *self.tx)
                    .await
                    .map_err(map_err)?;
                rows.into_iter().map(SessionRow::into_session).collect()
            }

            async fn session_revoke(&mut self, id: &SessionId, at: OffsetDateTime, reason: &str) -> StoreResult<bool> {
                let done = sqlx::query(
                    "UPDATE sessions SET revoked_at = $2, revoked_reason = $3 WHERE id = $1 AND revoked_at IS NULL",
                )
                .bind(id.as_str())
                .bind(at)
                .bind(reason)
                .execute(&mut *self.tx)
                .await
                .map_err(map_err)?;
                Ok(done.rows_affected() == 1)
            }

            async fn sessions_revoke_all(&mut self, user: &UserId, except: Option<&SessionId>, at: OffsetDateTime, reason: &str) -> StoreResult<Vec<SessionId>> {
                let ids: Vec<String> = sqlx::query_scalar(
                    "UPDATE sessions SET revoked_at = $3, revoked_reason = $4 WHERE user_id = $1 AND id <> $2 AND revoked_at IS NULL RETURNING id",
                )
                .bind(user.as_str())
                .bind(except.map_or("", SessionId::as_str))
                .bind(at)
                .bind(reason)
                .fetch_all(&mut *self.tx)
                .await
                .map_err(map_err)?;
                let mut ids: Vec<SessionId> = ids.into_iter().map(SessionId::from_trusted).collect();
                ids.sort_by(|a, b| a.as_str().cmp(b.as_str()));
                Ok(ids)
            }

            async fn refresh_insert(&mut self, t: &RefreshToken) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO refresh_tokens (token_hash, session_id, user_id, issued_at, expires_at, used_at) VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&t.hash[..])
                .bind(t.session_id.as_str())
                .bind(t.user_id.as_str())
                .bind(t.issued_at)
                .bind(t.expires_at)
                .bind(t.used_at)
                .execute(&mut *self.tx)
                .await
                .map_err(map_err)?;
                Ok(())
            }

            async fn refresh_get(&mut self, hash: &[u8; 32]) -> StoreResult<Option<RefreshToken>> {
                let row = sqlx::query_as::<_, RefreshRow>(
                    "SELECT token_hash, session_id, user_id, issued_at, expires_at, used_at FROM refresh_tokens WHERE token_hash = $1",
                )
                .bind(&hash[..])
                .fetch_optional(&mut *self.tx)
                .await
                .map_err(map_err)?;
                row.map(RefreshRow::into_token).transpose()
            }

            async fn refresh_mark_used(&mut self, hash: &[u8; 32], at: OffsetDateTime) -> StoreResult<bool> {
                let done = sqlx::query("UPDATE refresh_tokens SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL")
                    .bind(&hash[..])
                    .bind(at)
                    .execute(&mut *self.tx)
                    .await
                    .map_err(map_err)?;
                Ok(done.rows_affected() == 1)
            }

            async fn account_token_insert(&mut self, t: &AccountToken) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO account_tokens (token_hash, purpose, user_id, email, created_at, expires_at, used_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(&t.hash[..])
                .bind(t.purpose.as_str())
                .bind(t.user_id.as_str())
                .bind(&t.email)
                .bind(t.created_at)
                .bind(t.expires_at)
                .bind(t.used_at)
                .execute(&mut *self.tx)
                .await
                .map_err(map_err)?;
                Ok(())
            }

            async fn account_token_use(&mut self, hash: &[u8; 32], purpose: TokenPurpose, now: OffsetDateTime) -> StoreResult<Option<AccountToken>> {
                let row = sqlx::query_as::<_, AccountTokenRow>(
                    "SELECT token_hash, purpose, user_id, email, created_at, expires_at, used_at FROM account_tokens WHERE token_hash = $1 AND purpose = $2",
                )
                .bind(&hash[..])
                .bind(purpose.as_str())
                .fetch_optional(&mut *self.tx)
                .await
                .map_err(map_err)?;
                let Some(token) = row.map(AccountTokenRow::into_token).transpose()? else {
                    return Ok(None);
                };
                if token.used_at.is_some() || token.expires_at <= now {
                    return Ok(None);
                }
                let done = sqlx::query("UPDATE account_tokens SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL")
                    .bind(&hash[..])
                    .bind(now)
                    .execute(&mut *self.tx)
                    .await
                    .map_err(map_err)?;
                Ok((done.rows_affected() == 1).then_some(AccountToken { used_at: Some(now), ..token }))
            }

            async fn reset_code_insert(&mut self, c: &ResetCode) -> StoreResult<()> {
                sqlx::query("UPDATE password_reset_codes SET closed_at = $2 WHERE user_id = $1 AND closed_at IS NULL")
                    .bind(c.user_id.as_str())
                    .bind(c.created_at)
                    .execute(&mut *self.tx)
                    .await
                    .map_err(map_err)?;
                sqlx::query(
                    "INSERT INTO password_reset_codes (id, user_id, code_hash, created_at, expires_at, attempts, closed_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(c.id.as_str())
                .bind(c.user_id.as_str())
                .bind(&c.code_hash)
                .bind(c.created_at)
                .bind(c.expires_at)
                .bind(i64::from(c.attempts))
                .bind(c.closed_at)
                .execute(&mut *self.tx)
                .await
                .map_err(map_err)?;
                Ok(())
            }

            async fn reset_code_live(&mut self, user: &UserId, now: OffsetDateTime) -> StoreResult<Option<ResetCode>> {
                let row = sqlx::query_as::<_, ResetCodeRow>(
                    "SELECT id, user_id, code_hash, created_at, expires_at, attempts, closed_at FROM password_reset_codes \
                     WHERE user_id = $1 AND closed_at IS NULL ORDER BY id DESC LIMIT 1",
                )
                .bind(user.as_str())
                .fetch_optional(&mut *self.tx)
                .await
                .map_err(map_err)?;
                Ok(row.map(ResetCodeRow::into_code).transpose()?.filter(|c| c.expires_at > now))
            }

            async fn reset_code_attempt(&mut self, id: &ResetCodeId, max: u32) -> StoreResult<Option<u32>> {
                let n: Option<i64> = sqlx::query_scalar(
                    "UPDATE password_reset_codes SET attempts = attempts + 1 WHERE id = $1 AND attempts < $2 AND closed_at IS NULL RETURNING attempts",
                )
                .bind(id.as_str())
                .bind(i64::from(max))
                .fetch_optional(&mut *self.tx)
                .await
                .map_err(map_err)?;
                n.map(|n| u32::try_from(n).map_err(|_| corrupt("password_reset_codes", "attempts out of range"))).transpose()
            }

            async fn reset_code_close(&mut self, id: &ResetCodeId, at: OffsetDateTime) -> StoreResult<bool> {
                let done = sqlx::query("UPDATE password_reset_codes SET closed_at = $2 WHERE id = $1 AND closed_at IS NULL")
                    .bind(id.as_str())
                    .bind(at)
                    .execute(&mut *self.tx)
                    .await
                    .map_err(map_err)?;
                Ok(done.rows_affected() == 1)
            }

            async fn memberships(&mut self, user: &UserId, after: Option<&WorkspaceId>, limit: u32) -> StoreResult<Vec<Membership>> {
                let rows = sqlx::query_as::<_, MembershipRow>(crate::sql::MEMBERSHIPS)
                    .bind(user.as_str())
                    .bind(after.map_or("", WorkspaceId::as_str))
                    .bind(i64::from(limit))
                    .fetch_all(&mut *self.tx)
                    .await
                    .map_err(map_err)?;
                rows.into_iter().map(MembershipRow::into_membership).collect()
            }

            async fn member_access(&mut self, user: &UserId, key: &str) -> StoreResult<Option<MemberAccess>> {
                let row = sqlx::query_as::<_, MemberAccessRow>(crate::sql::MEMBER_ACCESS)
                    .bind(user.as_str())
                    .bind(key)
                    .fetch_optional(&mut *self.tx)
                    .await
                    .map_err(map_err)?;
                let Some(MemberAccessRow { membership, custom_role_id }) = row else {
                    return Ok(None);
                };
                let membership = membership.into_membership()?;
                let ws = membership.workspace.id.as_str();
                // A role deleted since it was assigned grants nothing (there is no foreign key).
                let custom_role = match custom_role_id {
                    Some(id) => sqlx::query_as::<_, CustomRoleRow>(crate::sql_members::CUSTOM_ROLE_GET)
                        .bind(ws)
                        .bind(id)
                        .fetch_optional(&mut *self.tx)
                        .await
                        .map_err(map_err)?
                        .map(CustomRoleRow::into_role)
                        .transpose()?,
                    None => None,
                };
                let grants: Vec<Json<Vec<TeamGrant>>> = sqlx::query_scalar(crate::sql::MEMBER_TEAM_GRANTS)
                    .bind(ws)
                    .bind(membership.member_id.as_str())
                    .fetch_all(&mut *self.tx)
                    .await
                    .map_err(map_err)?;
                Ok(Some(MemberAccess {
                    membership,
                    custom_role,
                    team_grants: grants.into_iter().flat_map(|g| g.0).collect(),
                }))
            }
        }

        #[async_trait::async_trait]
        impl TenantTx for SqlTx<$db> {
            async fn workspace_insert(&mut self, w: &Workspace) -> StoreResult<()> {
                if w.id.as_str() != self.workspace()? {
                    return Err(corrupt("workspaces", "insert outside the scope's workspace"));
                }
                sqlx::query(
                    "INSERT INTO workspaces (id, slug, name, branding, region, timezone, currency, plan, modules, parent_id, auth_policy, \
                     suspended_at, deleted_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
                )
                .bind(w.id.as_str())
                .bind(&w.slug)
                .bind(&w.name)
                .bind(Json(&w.branding))
                .bind(&w.region)
                .bind(&w.timezone)
                .bind(&w.currency)
                .bind(w.plan.as_str())
                .bind(Json(&w.modules))
                .bind(w.parent_id.as_ref().map(WorkspaceId::as_str))
                .bind(Json(&w.auth_policy))
                .bind(w.suspended_at)
                .bind(w.deleted_at)
                .bind(w.created_at)
                .bind(w.updated_at)
                .execute(&mut *self.tx)
                .await
                .map_err(map_err)?;
                Ok(())
            }

            async fn workspace_get(&mut self) -> StoreResult<Option<Workspace>> {
                let id = self.workspace()?.to_owned();
                let sql = if self.write { $backend::WORKSPACE_GET_LOCKED } else { crate::sql::WORKSPACE_GET };
                let row = sqlx::query_as::<_, WorkspaceRow>(sql)
                    .bind(id)
                    .fetch_optional(&mut *self.tx)
                    .await
                    .map_err(map_err)?;
                row.map(WorkspaceRow::into_workspace).transpose()
            }

            // parent_id is not written: a workspace cannot move itself under another parent.
            async fn workspace_update(&mut self, w: &Workspace) -> StoreResult<()> {
                let id = self.workspace()?.to_owned();
                if w.id.as_str() != id {
                    return Err(corrupt("workspaces", "update outside the scope's workspace"));
                }
                let done = sqlx::query(
                    "UPDATE workspaces SET slug = $2, name = $3, branding = $4, region = $5, timezone = $6, currency = $7, \
                     plan = $8, modules = $9, auth_policy = $10, suspended_at = $11, deleted_at = $12, updated_at = $13 WHERE id = $1",
                )
                .bind(id)
                .bind(&w.slug)
                .bind(&w.name)
                .bind(Json(&w.branding))
                .bind(&w.region)
                .bind(&w.timezone)
                .bind(&w.currency)
                .bind(w.plan.as_str())
                .bind(Json(&w.modules))
                .bind(Json(&w.auth_policy))
                .bind(w.suspended_at)
                .bind(w.deleted_at)
                .bind(w.updated_at)
                .execute(&mut *self.tx)
                .await
                .map_err(map_err)?;
                if done.rows_affected() != 1 {
                    return Err(corrupt("workspaces", "update matched no row in scope"));
                }
                Ok(())
            }

            async fn member_insert(&mut self, m: &Member) -> StoreResult<()> {
                let ws = self.workspace()?.to_owned();
                if m.workspace_id.as_str() != ws {
                    return Err(corrupt("members", "insert outside the scope's workspace"));
                }
                sqlx::query(
                    "INSERT INTO members (workspace_id, id, user_id, role, custom_role_id, active, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(ws)
                .bind(m.id.as_str())
                .bind(m.user_id.as_str())
                .bind(m.role.as_str())
                .bind(m.custom_role_id.as_ref().map(|r| r.as_str()))
                .bind(m.active)
                .bind(m.created_at)
                .bind(m.updated_at)
                .execute(&mut *self.tx)
                .await
                .map_err(map_err)?;
                Ok(())
            }

        }

        #[async_trait::async_trait]
        impl SystemTx for SqlTx<$db> {
            async fn workspace_resolve(&mut self, key: &str) -> StoreResult<Option<WorkspaceId>> {
                let id: Option<String> =
                    sqlx::query_scalar("SELECT id FROM workspaces WHERE (id = $1 OR slug = $1) AND deleted_at IS NULL")
                        .bind(key)
                        .fetch_optional(&mut *self.tx)
                        .await
                        .map_err(map_err)?;
                Ok(id.map(WorkspaceId::from_trusted))
            }

            async fn invitation_by_token(&mut self, hash: &[u8; 32]) -> StoreResult<Option<Invitation>> {
                let row = sqlx::query_as::<_, InvitationRow>(crate::sql_members::INVITATION_BY_TOKEN)
                    .bind(&hash[..])
                    .fetch_optional(&mut *self.tx)
                    .await
                    .map_err(map_err)?;
                row.map(InvitationRow::into_invitation).transpose()
            }

            async fn data_keys(&mut self, owner: &str) -> StoreResult<Vec<StoredDataKey>> {
                let rows = sqlx::query_as::<_, DataKeyRow>(sqlx::AssertSqlSafe(format!(
                    "SELECT {} FROM data_keys WHERE owner = $1 ORDER BY version",
                    crate::sql_keys::DATA_KEY_COLUMNS
                )))
                .bind(owner)
                .fetch_all(&mut *self.tx)
                .await
                .map_err(map_err)?;
                Ok(rows.into_iter().map(StoredDataKey::from).collect())
            }

            async fn data_key_insert(&mut self, k: &StoredDataKey) -> StoreResult<()> {
                sqlx::query(crate::sql_keys::DATA_KEY_INSERT)
                    .bind(k.id.as_str())
                    .bind(&k.owner)
                    .bind(k.version)
                    .bind(&k.wrapped)
                    .bind(k.created_at)
                    .bind(k.activates_at)
                    .bind(k.retired_at)
                    .execute(&mut *self.tx)
                    .await
                    .map_err(map_err)?;
                Ok(())
            }

            async fn data_keys_all(&mut self) -> StoreResult<Vec<(StoredDataKey, Option<String>)>> {
                let rows = sqlx::query_as::<_, crate::rows::RegionalDataKeyRow>(
                    "SELECT k.id, k.owner, k.version, k.wrapped, k.created_at, k.activates_at, k.retired_at, w.region \
                     FROM data_keys k LEFT JOIN workspaces w ON w.id = k.owner ORDER BY k.owner, k.version",
                )
                .fetch_all(&mut *self.tx)
                .await
                .map_err(map_err)?;
                Ok(rows.into_iter().map(|r| (StoredDataKey::from(r.key), r.region)).collect())
            }

            async fn data_key_rewrap(&mut self, id: &palisade_core::ids::DataKeyId, old: &[u8], new: &[u8]) -> StoreResult<bool> {
                let done = sqlx::query("UPDATE data_keys SET wrapped = $3 WHERE id = $1 AND wrapped = $2")
                    .bind(id.as_str())
                    .bind(old)
                    .bind(new)
                    .execute(&mut *self.tx)
                    .await
                    .map_err(map_err)?;
                Ok(done.rows_affected() == 1)
            }

            async fn workspace_region(&mut self, id: &str) -> StoreResult<Option<String>> {
                sqlx::query_scalar("SELECT region FROM workspaces WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *self.tx)
                    .await
                    .map_err(map_err)
            }

            async fn key_rotations(&mut self, limit: u32) -> StoreResult<Vec<palisade_core::store::KeyRotation>> {
                let rows = sqlx::query_as::<_, crate::rows::KeyRotationRow>(sqlx::AssertSqlSafe(format!(
                    "SELECT {} FROM key_rotations ORDER BY created_at DESC, id DESC LIMIT $1",
                    crate::sql_keys::KEY_ROTATION_COLUMNS
                )))
                .bind(i64::from(limit))
                .fetch_all(&mut *self.tx)
                .await
                .map_err(map_err)?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn signing_keys(&mut self, purpose: &str) -> StoreResult<Vec<StoredSigningKey>> {
                let rows = sqlx::query_as::<_, SigningKeyRow>(
                    "SELECT kid, purpose, sealed_seed, created_at FROM signing_keys WHERE purpose = $1 ORDER BY created_at, kid",
                )
                .bind(purpose)
                .fetch_all(&mut *self.tx)
                .await
                .map_err(map_err)?;
                Ok(rows.into_iter().map(StoredSigningKey::from).collect())
            }

            async fn signing_key_insert(&mut self, k: &StoredSigningKey) -> StoreResult<()> {
                sqlx::query("INSERT INTO signing_keys (kid, purpose, sealed_seed, created_at) VALUES ($1, $2, $3, $4)")
                    .bind(&k.kid)
                    .bind(&k.purpose)
                    .bind(&k.sealed_seed)
                    .bind(k.created_at)
                    .execute(&mut *self.tx)
                    .await
                    .map_err(map_err)?;
                Ok(())
            }

            async fn audit_logs_grown(&mut self) -> StoreResult<Vec<String>> {
                sqlx::query_scalar(
                    "SELECT h.log_id FROM audit_heads h WHERE h.size > COALESCE((SELECT MAX(c.size) FROM audit_checkpoints c \
                     WHERE c.log_id = h.log_id AND c.kind = 'latest'), 0) ORDER BY h.log_id",
                )
                .fetch_all(&mut *self.tx)
                .await
                .map_err(map_err)
            }

            async fn audit_log_ids(&mut self) -> StoreResult<Vec<String>> {
                sqlx::query_scalar("SELECT log_id FROM audit_heads ORDER BY log_id")
                    .fetch_all(&mut *self.tx)
                    .await
                    .map_err(map_err)
            }

            async fn audit_logs_without_daily(&mut self, day: &str, before: OffsetDateTime) -> StoreResult<Vec<String>> {
                sqlx::query_scalar(
                    "SELECT h.log_id FROM audit_heads h WHERE h.size > 0 AND h.created_at < $2 AND NOT EXISTS \
                     (SELECT 1 FROM audit_checkpoints c WHERE c.log_id = h.log_id AND c.day = $1) ORDER BY h.log_id",
                )
                .bind(day)
                .bind(before)
                .fetch_all(&mut *self.tx)
                .await
                .map_err(map_err)
            }

            async fn api_key_by_hash(&mut self, hash: &[u8; 32]) -> StoreResult<Option<(ApiKey, Workspace)>> {
                super::api_keys_tx::by_hash(self, hash).await
            }

            async fn api_key_changes_since(&mut self, since: OffsetDateTime) -> StoreResult<Vec<(i64, WorkspaceId)>> {
                super::api_keys_tx::changes_since(self, since).await
            }

            async fn api_key_changes_prune(&mut self, before: OffsetDateTime) -> StoreResult<u64> {
                super::api_keys_tx::changes_prune(self, before).await
            }

            async fn api_key_usage_record(&mut self, usage: &[(ApiKeyId, OffsetDateTime)]) -> StoreResult<()> {
                super::api_keys_tx::usage_record(self, usage).await
            }

            async fn webhook_deliveries_claim(
                &mut self,
                now: OffsetDateTime,
                lease_until: OffsetDateTime,
                claim: &str,
                limit: u32,
            ) -> StoreResult<Vec<palisade_core::webhooks::model::ClaimedDelivery>> {
                super::webhooks_tx::claim(self, now, lease_until, claim, limit).await
            }

            async fn webhook_outcomes_record(
                &mut self,
                outcomes: &[palisade_core::webhooks::model::DeliveryOutcome],
                at: OffsetDateTime,
            ) -> StoreResult<u64> {
                super::webhooks_tx::outcomes_record(self, outcomes, at).await
            }

            async fn webhook_next_due(&mut self) -> StoreResult<Option<OffsetDateTime>> {
                super::webhooks_tx::next_due(self).await
            }

            async fn webhooks_failing_since(
                &mut self,
                before: OffsetDateTime,
            ) -> StoreResult<Vec<(WorkspaceId, palisade_core::ids::WebhookId)>> {
                super::webhooks_tx::failing_since(self, before).await
            }

            async fn webhook_events_prune(&mut self, before: OffsetDateTime) -> StoreResult<u64> {
                super::webhooks_tx::events_prune(self, before).await
            }

            async fn commit(self: Box<Self>) -> StoreResult<()> {
                self.tx.commit().await.map_err(map_err)
            }
        }
        }
    };
}

pub(crate) use impl_transactions;
