//! `ApiKeysTx` and the API-key statements of `SystemTx`, written once for both backends like
//! `sql.rs`. Every tenant statement filters by the transaction's workspace id (the application
//! layer of TEN-2); on PostgreSQL RLS filters again underneath.
//!
//! `api_key_usage` and `api_key_changes` keep their times as µs since the Unix epoch on both
//! backends (`rows::micros`), because these statements compare times in SQL: SQLite stores an
//! `OffsetDateTime` as RFC 3339 text whose fraction has a varying width (`…:00Z` sorts after
//! `…:00.5Z`), so a text comparison would be wrong there.

/// The columns `ApiKeyRow` maps, from `api_keys k LEFT JOIN api_key_usage u`. `id`, `name` and
/// `created_at` are aliased: a workspace has columns of those names too (`API_KEY_BY_HASH`).
macro_rules! api_key_columns {
    () => {
        "k.workspace_id, k.id AS key_id, k.name AS key_name, k.prefix, k.scopes, k.grants, k.created_by, \
         k.on_behalf_of, k.created_at AS key_created_at, k.expires_at, k.rotated_at, k.revoked_at, u.last_used_at"
    };
}

/// Key reads with their last use: `ApiKeyRow`'s columns, then the condition `$where`.
macro_rules! api_key_select {
    ($where:literal) => {
        concat!(
            "SELECT ",
            api_key_columns!(),
            " FROM api_keys k LEFT JOIN api_key_usage u ON u.key_id = k.id WHERE ",
            $where
        )
    };
}

pub(crate) const API_KEY_GET: &str = api_key_select!("k.workspace_id = $1 AND k.id = $2");
/// Live (not revoked) keys; expired ones are listed (the service shows them as expired).
pub(crate) const API_KEYS_LIST: &str = api_key_select!(
    "k.workspace_id = $1 AND k.revoked_at IS NULL AND k.id > $2 ORDER BY k.id LIMIT $3"
);
/// Any workspace's key (revoked or not) with its workspace (deleted or not): for
/// `SystemTx::api_key_by_hash`.
pub(crate) const API_KEY_BY_HASH: &str = concat!(
    "SELECT ",
    api_key_columns!(),
    ", ",
    crate::sql::workspace_columns!(),
    " FROM api_keys k JOIN workspaces w ON w.id = k.workspace_id \
     LEFT JOIN api_key_usage u ON u.key_id = k.id WHERE k.key_hash = $1"
);

/// Rows per usage upsert: far below either backend's limit on bound values.
pub(crate) const USAGE_BATCH: usize = 500;

/// Implements `ApiKeysTx` for `SqlTx<$db>`, and the functions `SystemTx`'s API-key methods
/// (in `sql.rs`) call. Invoke it beside `impl_transactions!` and `impl_members_tx!`, whose
/// helpers it uses.
macro_rules! impl_api_keys_tx {
    ($db:ty) => {
        mod api_keys_tx {
        use std::collections::BTreeMap;

        use palisade_core::api_keys::model::ApiKey;
        use palisade_core::ids::{ApiKeyId, WorkspaceId};
        use palisade_core::store::{ApiKeysTx, StoreResult};
        use palisade_core::workspaces::model::Workspace;
        use sqlx::types::Json;
        use time::OffsetDateTime;

        use super::members_tx::{in_scope, one, page};
        use crate::rows::{ApiKeyRow, ApiKeyWorkspaceRow, micros};
        use crate::sql::{SqlTx, map_err};
        use crate::sql_api_keys as q;

        /// `SystemTx::api_key_by_hash`.
        pub(crate) async fn by_hash(tx: &mut SqlTx<$db>, hash: &[u8; 32]) -> StoreResult<Option<(ApiKey, Workspace)>> {
            let row = sqlx::query_as::<_, ApiKeyWorkspaceRow>(q::API_KEY_BY_HASH)
                .bind(&hash[..])
                .fetch_optional(&mut *tx.tx)
                .await
                .map_err(map_err)?;
            row.map(|r| Ok((r.key.into_key()?, r.workspace.into_workspace()?))).transpose()
        }

        /// `SystemTx::api_key_changes_since`.
        pub(crate) async fn changes_since(tx: &mut SqlTx<$db>, since: OffsetDateTime) -> StoreResult<Vec<(i64, WorkspaceId)>> {
            let rows: Vec<(i64, String)> =
                sqlx::query_as("SELECT seq, workspace_id FROM api_key_changes WHERE at >= $1 ORDER BY seq")
                    .bind(micros(since)?)
                    .fetch_all(&mut *tx.tx)
                    .await
                    .map_err(map_err)?;
            Ok(rows.into_iter().map(|(seq, ws)| (seq, WorkspaceId::from_trusted(ws))).collect())
        }

        /// `SystemTx::api_key_changes_prune`.
        pub(crate) async fn changes_prune(tx: &mut SqlTx<$db>, before: OffsetDateTime) -> StoreResult<u64> {
            let done = sqlx::query("DELETE FROM api_key_changes WHERE at < $1")
                .bind(micros(before)?)
                .execute(&mut *tx.tx)
                .await
                .map_err(map_err)?;
            Ok(done.rows_affected())
        }

        /// `SystemTx::api_key_usage_record`. The newest time per key is kept in Rust first (one
        /// upsert may not touch a row twice on PostgreSQL), keys go in id order (two nodes
        /// flushing at once lock rows in the same order), and the upsert's `WHERE` keeps a newer
        /// stored time: µs integers compare as times do on both backends.
        pub(crate) async fn usage_record(tx: &mut SqlTx<$db>, usage: &[(ApiKeyId, OffsetDateTime)]) -> StoreResult<()> {
            let mut newest: BTreeMap<&str, i64> = BTreeMap::new();
            for (id, at) in usage {
                let us = micros(*at)?;
                let slot = newest.entry(id.as_str()).or_insert(us);
                *slot = (*slot).max(us);
            }
            let rows: Vec<(&str, i64)> = newest.into_iter().collect();
            for chunk in rows.chunks(q::USAGE_BATCH) {
                let mut b = sqlx::QueryBuilder::<$db>::new("INSERT INTO api_key_usage (key_id, last_used_at) ");
                b.push_values(chunk, |mut row, (id, us)| {
                    row.push_bind((*id).to_owned()).push_bind(*us);
                });
                b.push(
                    " ON CONFLICT (key_id) DO UPDATE SET last_used_at = excluded.last_used_at \
                     WHERE excluded.last_used_at > api_key_usage.last_used_at",
                );
                b.build().execute(&mut *tx.tx).await.map_err(map_err)?;
            }
            Ok(())
        }

        #[async_trait::async_trait]
        impl ApiKeysTx for SqlTx<$db> {
            async fn api_key_insert(&mut self, k: &ApiKey, hash: &[u8; 32]) -> StoreResult<()> {
                let ws = in_scope(self, "api_keys", &k.workspace_id)?;
                sqlx::query(
                    "INSERT INTO api_keys (workspace_id, id, name, key_hash, prefix, scopes, grants, created_by, on_behalf_of, \
                     created_at, expires_at, rotated_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                )
                .bind(ws)
                .bind(k.id.as_str())
                .bind(&k.name)
                .bind(&hash[..])
                .bind(&k.prefix)
                .bind(Json(&k.scopes))
                .bind(Json(&k.grants))
                .bind(k.created_by.as_str())
                .bind(k.on_behalf_of.as_str())
                .bind(k.created_at)
                .bind(k.expires_at)
                .bind(k.rotated_at)
                .bind(k.revoked_at)
                .execute(&mut *self.tx)
                .await
                .map_err(map_err)?;
                Ok(())
            }

            async fn api_key_get(&mut self, id: &ApiKeyId) -> StoreResult<Option<ApiKey>> {
                let row: Option<ApiKeyRow> = one(self, q::API_KEY_GET, id.as_str()).await?;
                row.map(ApiKeyRow::into_key).transpose()
            }

            async fn api_keys_list(&mut self, after: Option<&ApiKeyId>, limit: u32) -> StoreResult<Vec<ApiKey>> {
                let rows: Vec<ApiKeyRow> = page(self, q::API_KEYS_LIST, after.map_or("", ApiKeyId::as_str), limit).await?;
                rows.into_iter().map(ApiKeyRow::into_key).collect()
            }

            async fn api_key_rotate(&mut self, id: &ApiKeyId, hash: &[u8; 32], prefix: &str, at: OffsetDateTime) -> StoreResult<bool> {
                let ws = self.workspace()?.to_owned();
                let done = sqlx::query(
                    "UPDATE api_keys SET key_hash = $3, prefix = $4, rotated_at = $5 \
                     WHERE workspace_id = $1 AND id = $2 AND revoked_at IS NULL",
                )
                .bind(ws)
                .bind(id.as_str())
                .bind(&hash[..])
                .bind(prefix)
                .bind(at)
                .execute(&mut *self.tx)
                .await
                .map_err(map_err)?;
                Ok(done.rows_affected() == 1)
            }

            async fn api_key_revoke(&mut self, id: &ApiKeyId, at: OffsetDateTime) -> StoreResult<bool> {
                let ws = self.workspace()?.to_owned();
                let done = sqlx::query(
                    "UPDATE api_keys SET revoked_at = $3 WHERE workspace_id = $1 AND id = $2 AND revoked_at IS NULL",
                )
                .bind(ws)
                .bind(id.as_str())
                .bind(at)
                .execute(&mut *self.tx)
                .await
                .map_err(map_err)?;
                Ok(done.rows_affected() == 1)
            }

            async fn api_keys_changed(&mut self, at: OffsetDateTime) -> StoreResult<()> {
                let ws = self.workspace()?.to_owned();
                sqlx::query("INSERT INTO api_key_changes (workspace_id, at) VALUES ($1, $2)")
                    .bind(ws)
                    .bind(micros(at)?)
                    .execute(&mut *self.tx)
                    .await
                    .map_err(map_err)?;
                Ok(())
            }
        }
        }
    };
}

pub(crate) use impl_api_keys_tx;
