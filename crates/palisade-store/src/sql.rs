//! The statements both backends share, written once. `$n` placeholders work on SQLite and
//! PostgreSQL alike; where a backend needs different SQL it lives in its own module. Every
//! tenant statement filters by the transaction's workspace id (the application layer of TEN-2);
//! on PostgreSQL RLS filters again underneath.

use palisade_core::error::StoreError;

/// A transaction of one backend, bound at `begin` to the workspace of its scope (if any).
pub(crate) struct SqlTx<DB: sqlx::Database> {
    pub tx: sqlx::Transaction<'static, DB>,
    pub workspace: Option<String>,
    pub write: bool,
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
        return StoreError::Conflict(db.constraint().unwrap_or("unique").to_owned());
    }
    StoreError::Database(Box::new(e))
}

pub(crate) const WORKSPACE_GET: &str = "SELECT w.id, w.slug, w.name, w.branding, w.region, w.timezone, w.currency, w.plan, \
     w.modules, w.parent_id, w.created_at, w.updated_at FROM workspaces w WHERE w.id = $1";

/// The audit sink's statements: workspace logs carry `workspace_id` as `$1`, the instance log
/// has none; the event columns follow in the same order.
pub(crate) const AUDIT_INSERT: &str = "INSERT INTO audit_events (workspace_id, id, at, action, result, actor_type, actor_id, \
     target_type, target_id, request_id, diff, pii) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";
pub(crate) const INSTANCE_AUDIT_INSERT: &str = "INSERT INTO instance_audit_events (id, at, action, result, actor_type, actor_id, \
     target_type, target_id, request_id, diff, pii) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";
pub(crate) const AUDIT_OPENING_INSERT: &str = "INSERT INTO audit_pii_openings (workspace_id, event_id, pointer, salt, value) VALUES ($1, $2, $3, $4, $5)";
pub(crate) const INSTANCE_AUDIT_OPENING_INSERT: &str = "INSERT INTO instance_audit_pii_openings (event_id, pointer, salt, value) VALUES ($1, $2, $3, $4)";

pub(crate) const MEMBERSHIP: &str = "SELECT w.id, w.slug, w.name, w.branding, w.region, w.timezone, w.currency, w.plan, \
     w.modules, w.parent_id, w.created_at, w.updated_at, m.id AS member_id, m.role \
     FROM members m JOIN workspaces w ON w.id = m.workspace_id \
     WHERE m.user_id = $1 AND (w.id = $2 OR w.slug = $2)";

pub(crate) const MEMBERSHIPS: &str = "SELECT w.id, w.slug, w.name, w.branding, w.region, w.timezone, w.currency, w.plan, \
     w.modules, w.parent_id, w.created_at, w.updated_at, m.id AS member_id, m.role \
     FROM members m JOIN workspaces w ON w.id = m.workspace_id \
     WHERE m.user_id = $1 AND w.id > $2 ORDER BY w.id LIMIT $3";

/// Implements the store traits for `SqlTx<$db>`; `$backend` is the module with the SQL that
/// differs per backend (`WORKSPACE_GET_LOCKED`).
macro_rules! impl_transactions {
    ($db:ty, $backend:ident) => {
        mod transactions {
        use super::$backend;
        use palisade_core::accounts::model::{RefreshToken, Session, User};
        use palisade_core::audit::{AuditLog, AuditRecord};
        use palisade_core::ids::{SessionId, UserId, WorkspaceId};
        use palisade_core::store::{
            AccountTx, StoreResult, StoredAuditEvent, StoredDataKey, StoredSigningKey, SystemTx, TenantTx,
        };
        use palisade_core::workspaces::model::{Member, Membership, Workspace};
        use sqlx::types::Json;
        use time::OffsetDateTime;

        use crate::rows::{
            AuditRow, DataKeyRow, MembershipRow, RefreshRow, SessionRow, SigningKeyRow, UserRow, WorkspaceRow, corrupt,
        };
        use crate::sql::{SqlTx, map_err};

        type Q<'q> = sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments>;

        fn bind_event<'q>(q: Q<'q>, r: &'q AuditRecord) -> Q<'q> {
            q.bind(r.id.as_str())
                .bind(r.at)
                .bind(r.action)
                .bind(r.result.as_str())
                .bind(r.actor.kind)
                .bind(r.actor.id.as_str())
                .bind(r.target.kind)
                .bind(r.target.id.as_str())
                .bind(r.request_id.as_deref())
                .bind(Json(&r.diff))
                .bind(Json(r.pii_commitments()))
        }

        /// The one audit sink: the event, then the openings of its personal values beside it.
        /// `workspace` picks the workspace's log; `None` the instance log.
        async fn append_audit(
            conn: &mut <$db as sqlx::Database>::Connection,
            workspace: Option<&str>,
            record: &AuditRecord,
        ) -> StoreResult<()> {
            let event = match workspace {
                Some(ws) => bind_event(sqlx::query(crate::sql::AUDIT_INSERT).bind(ws), record),
                None => bind_event(sqlx::query(crate::sql::INSTANCE_AUDIT_INSERT), record),
            };
            event.execute(&mut *conn).await.map_err(map_err)?;
            for o in &record.openings {
                let opening = match workspace {
                    Some(ws) => sqlx::query(crate::sql::AUDIT_OPENING_INSERT).bind(ws),
                    None => sqlx::query(crate::sql::INSTANCE_AUDIT_OPENING_INSERT),
                };
                opening
                    .bind(record.id.as_str())
                    .bind(o.pointer)
                    .bind(&o.salt[..])
                    .bind(Json(&o.value))
                    .execute(&mut *conn)
                    .await
                    .map_err(map_err)?;
            }
            Ok(())
        }

        #[async_trait::async_trait]
        impl AccountTx for SqlTx<$db> {
            async fn user_insert(&mut self, user: &User, password_hash: &str) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO users (id, email, name, password_hash, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(user.id.as_str())
                .bind(&user.email)
                .bind(&user.name)
                .bind(password_hash)
                .bind(user.created_at)
                .bind(user.updated_at)
                .execute(&mut *self.tx)
                .await
                .map_err(map_err)?;
                Ok(())
            }

            async fn user_by_email(&mut self, email: &str) -> StoreResult<Option<(User, String)>> {
                let row = sqlx::query_as::<_, UserRow>(
                    "SELECT id, email, name, password_hash, created_at, updated_at FROM users WHERE email = $1",
                )
                .bind(email)
                .fetch_optional(&mut *self.tx)
                .await
                .map_err(map_err)?;
                Ok(row.map(UserRow::into_user))
            }

            async fn user_by_id(&mut self, id: &UserId) -> StoreResult<Option<User>> {
                let row = sqlx::query_as::<_, UserRow>(
                    "SELECT id, email, name, password_hash, created_at, updated_at FROM users WHERE id = $1",
                )
                .bind(id.as_str())
                .fetch_optional(&mut *self.tx)
                .await
                .map_err(map_err)?;
                Ok(row.map(|r| r.into_user().0))
            }

            async fn session_insert(&mut self, s: &Session) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO sessions (id, user_id, created_at, expires_at, revoked_at, revoked_reason) VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(s.id.as_str())
                .bind(s.user_id.as_str())
                .bind(s.created_at)
                .bind(s.expires_at)
                .bind(s.revoked_at)
                .bind(s.revoked_reason.as_deref())
                .execute(&mut *self.tx)
                .await
                .map_err(map_err)?;
                Ok(())
            }

            async fn session_get(&mut self, id: &SessionId) -> StoreResult<Option<Session>> {
                let row = sqlx::query_as::<_, SessionRow>(
                    "SELECT id, user_id, created_at, expires_at, revoked_at, revoked_reason FROM sessions WHERE id = $1",
                )
                .bind(id.as_str())
                .fetch_optional(&mut *self.tx)
                .await
                .map_err(map_err)?;
                Ok(row.map(Session::from))
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

            async fn membership(&mut self, user: &UserId, key: &str) -> StoreResult<Option<Membership>> {
                let row = sqlx::query_as::<_, MembershipRow>(crate::sql::MEMBERSHIP)
                    .bind(user.as_str())
                    .bind(key)
                    .fetch_optional(&mut *self.tx)
                    .await
                    .map_err(map_err)?;
                row.map(MembershipRow::into_membership).transpose()
            }

            async fn audit_append(&mut self, record: &AuditRecord) -> StoreResult<()> {
                if record.log != AuditLog::Instance {
                    return Err(corrupt("instance_audit_events", "workspace event in the instance log"));
                }
                append_audit(&mut self.tx, None, record).await
            }

            async fn audit_recent_for(&mut self, target_id: &str, limit: u32) -> StoreResult<Vec<StoredAuditEvent>> {
                let rows = sqlx::query_as::<_, AuditRow>(
                    "SELECT id, at, action, result, actor_type, actor_id, target_type, target_id, request_id, diff, pii \
                     FROM instance_audit_events WHERE target_id = $1 OR actor_id = $1 ORDER BY id DESC LIMIT $2",
                )
                .bind(target_id)
                .bind(i64::from(limit))
                .fetch_all(&mut *self.tx)
                .await
                .map_err(map_err)?;
                Ok(rows.into_iter().map(StoredAuditEvent::from).collect())
            }

            async fn commit(self: Box<Self>) -> StoreResult<()> {
                self.tx.commit().await.map_err(map_err)
            }
        }

        #[async_trait::async_trait]
        impl TenantTx for SqlTx<$db> {
            async fn workspace_insert(&mut self, w: &Workspace) -> StoreResult<()> {
                if w.id.as_str() != self.workspace()? {
                    return Err(corrupt("workspaces", "insert outside the scope's workspace"));
                }
                sqlx::query(
                    "INSERT INTO workspaces (id, slug, name, branding, region, timezone, currency, plan, modules, parent_id, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
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

            async fn workspace_update(&mut self, w: &Workspace) -> StoreResult<()> {
                let id = self.workspace()?.to_owned();
                let done = sqlx::query(
                    "UPDATE workspaces SET slug = $2, name = $3, branding = $4, region = $5, timezone = $6, currency = $7, \
                     plan = $8, modules = $9, updated_at = $10 WHERE id = $1",
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
                sqlx::query("INSERT INTO members (workspace_id, id, user_id, role, created_at) VALUES ($1, $2, $3, $4, $5)")
                    .bind(ws)
                    .bind(m.id.as_str())
                    .bind(m.user_id.as_str())
                    .bind(m.role.as_str())
                    .bind(m.created_at)
                    .execute(&mut *self.tx)
                    .await
                    .map_err(map_err)?;
                Ok(())
            }

            async fn audit_append(&mut self, record: &AuditRecord) -> StoreResult<()> {
                let ws = self.workspace()?.to_owned();
                if !matches!(&record.log, AuditLog::Workspace(id) if id.as_str() == ws) {
                    return Err(corrupt("audit_events", "event for another log"));
                }
                append_audit(&mut self.tx, Some(&ws), record).await
            }

            async fn audit_recent(&mut self, limit: u32) -> StoreResult<Vec<StoredAuditEvent>> {
                let ws = self.workspace()?.to_owned();
                let rows = sqlx::query_as::<_, AuditRow>(
                    "SELECT id, at, action, result, actor_type, actor_id, target_type, target_id, request_id, diff, pii \
                     FROM audit_events WHERE workspace_id = $1 ORDER BY id DESC LIMIT $2",
                )
                .bind(ws)
                .bind(i64::from(limit))
                .fetch_all(&mut *self.tx)
                .await
                .map_err(map_err)?;
                Ok(rows.into_iter().map(StoredAuditEvent::from).collect())
            }

            async fn commit(self: Box<Self>) -> StoreResult<()> {
                self.tx.commit().await.map_err(map_err)
            }
        }

        #[async_trait::async_trait]
        impl SystemTx for SqlTx<$db> {
            async fn workspace_resolve(&mut self, key: &str) -> StoreResult<Option<WorkspaceId>> {
                let id: Option<String> = sqlx::query_scalar("SELECT id FROM workspaces WHERE id = $1 OR slug = $1")
                    .bind(key)
                    .fetch_optional(&mut *self.tx)
                    .await
                    .map_err(map_err)?;
                Ok(id.map(WorkspaceId::from_trusted))
            }

            async fn data_keys(&mut self, owner: &str) -> StoreResult<Vec<StoredDataKey>> {
                let rows = sqlx::query_as::<_, DataKeyRow>(
                    "SELECT id, owner, version, wrapped, created_at FROM data_keys WHERE owner = $1 ORDER BY version, id",
                )
                .bind(owner)
                .fetch_all(&mut *self.tx)
                .await
                .map_err(map_err)?;
                Ok(rows.into_iter().map(StoredDataKey::from).collect())
            }

            async fn data_key_insert(&mut self, k: &StoredDataKey) -> StoreResult<()> {
                sqlx::query("INSERT INTO data_keys (id, owner, version, wrapped, created_at) VALUES ($1, $2, $3, $4, $5)")
                    .bind(k.id.as_str())
                    .bind(&k.owner)
                    .bind(k.version)
                    .bind(&k.wrapped)
                    .bind(k.created_at)
                    .execute(&mut *self.tx)
                    .await
                    .map_err(map_err)?;
                Ok(())
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

            async fn commit(self: Box<Self>) -> StoreResult<()> {
                self.tx.commit().await.map_err(map_err)
            }
        }
        }
    };
}

pub(crate) use impl_transactions;
