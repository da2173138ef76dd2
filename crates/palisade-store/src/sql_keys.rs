//! `KeysTx` (one owner's data keys, rotation job and sealed values) and the key statements of
//! `SystemTx`, written once for both backends like `sql.rs`. The owner is the transaction's
//! workspace, or `instance` when it has none. Re-sealing statements are compare-and-swap: they
//! change a value only if it is still what the caller read, so a concurrent write always wins.

pub(crate) const DATA_KEY_COLUMNS: &str =
    "id, owner, version, wrapped, created_at, activates_at, retired_at";
pub(crate) const DATA_KEY_INSERT: &str = "INSERT INTO data_keys (id, owner, version, wrapped, created_at, activates_at, retired_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7)";
pub(crate) const KEY_ROTATION_COLUMNS: &str = "id, owner, to_version, reason, state, pass, phase, cursor, found, resealed, \
     scanned, created_at, updated_at, finished_at";

/// Implements `KeysTx` for `SqlTx<$db>`; `$lock` ends the statement that reads an owner's open
/// job (`FOR UPDATE` on PostgreSQL; SQLite's one writer needs nothing). Invoke it beside
/// `impl_records_tx!` and `impl_webhooks_tx!`, whose re-sealing statements it calls.
macro_rules! impl_keys_tx {
    ($db:ty, $lock:literal) => {
        mod keys_tx {
            use palisade_core::ids::{DataKeyId, RecordId, WebhookEventId, WebhookId};
            use palisade_core::store::{
                KeyRotation, KeysTx, StoreResult, StoredDataKey, StoredSigningKey, SystemTx,
            };
            use sqlx::types::Json;
            use time::OffsetDateTime;

            use crate::rows::{KeyRotationRow, SigningKeyRow};
            use crate::sql::{SqlTx, map_err};
            use crate::sql_keys as q;

            fn owner(tx: &SqlTx<$db>) -> String {
                tx.workspace
                    .clone()
                    .unwrap_or_else(|| palisade_audit::entry::INSTANCE_LOG.to_owned())
            }

            #[async_trait::async_trait]
            impl KeysTx for SqlTx<$db> {
                async fn owner_data_keys(&mut self) -> StoreResult<Vec<StoredDataKey>> {
                    let owner = owner(self);
                    SystemTx::data_keys(self, &owner).await
                }

                async fn owner_data_key_insert(&mut self, k: &StoredDataKey) -> StoreResult<()> {
                    if k.owner != owner(self) {
                        return Err(crate::rows::corrupt("data_keys", "key of another owner"));
                    }
                    SystemTx::data_key_insert(self, k).await
                }

                async fn data_key_retire(
                    &mut self,
                    id: &DataKeyId,
                    at: OffsetDateTime,
                ) -> StoreResult<()> {
                    sqlx::query(
                        "UPDATE data_keys SET retired_at = $3 WHERE owner = $1 AND id = $2 AND retired_at IS NULL",
                    )
                    .bind(owner(self))
                    .bind(id.as_str())
                    .bind(at)
                    .execute(&mut *self.tx)
                    .await
                    .map_err(map_err)?;
                    Ok(())
                }

                async fn key_rotation_insert(&mut self, j: &KeyRotation) -> StoreResult<()> {
                    if j.owner != owner(self) {
                        return Err(crate::rows::corrupt("key_rotations", "job of another owner"));
                    }
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "INSERT INTO key_rotations ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
                        q::KEY_ROTATION_COLUMNS
                    )))
                    .bind(&j.id)
                    .bind(&j.owner)
                    .bind(j.to_version)
                    .bind(&j.reason)
                    .bind(&j.state)
                    .bind(j.pass)
                    .bind(&j.phase)
                    .bind(&j.cursor)
                    .bind(j.found)
                    .bind(j.resealed)
                    .bind(j.scanned)
                    .bind(j.created_at)
                    .bind(j.updated_at)
                    .bind(j.finished_at)
                    .execute(&mut *self.tx)
                    .await
                    .map_err(map_err)?;
                    Ok(())
                }

                async fn key_rotation_open(&mut self) -> StoreResult<Option<KeyRotation>> {
                    let row = sqlx::query_as::<_, KeyRotationRow>(sqlx::AssertSqlSafe(format!(
                        "SELECT {} FROM key_rotations WHERE owner = $1 AND state <> 'done' ORDER BY to_version DESC LIMIT 1 {}",
                        q::KEY_ROTATION_COLUMNS, $lock
                    )))
                    .bind(owner(self))
                    .fetch_optional(&mut *self.tx)
                    .await
                    .map_err(map_err)?;
                    Ok(row.map(KeyRotation::from))
                }

                async fn key_rotation_update(&mut self, j: &KeyRotation) -> StoreResult<()> {
                    sqlx::query(
                        "UPDATE key_rotations SET state = $3, pass = $4, phase = $5, cursor = $6, found = $7, \
                         resealed = $8, scanned = $9, updated_at = $10, finished_at = $11 \
                         WHERE owner = $1 AND id = $2",
                    )
                    .bind(owner(self))
                    .bind(&j.id)
                    .bind(&j.state)
                    .bind(j.pass)
                    .bind(&j.phase)
                    .bind(&j.cursor)
                    .bind(j.found)
                    .bind(j.resealed)
                    .bind(j.scanned)
                    .bind(j.updated_at)
                    .bind(j.finished_at)
                    .execute(&mut *self.tx)
                    .await
                    .map_err(map_err)?;
                    Ok(())
                }

                async fn audit_key_reseal(
                    &mut self,
                    kid: &str,
                    old: &[u8],
                    new: &[u8],
                ) -> StoreResult<bool> {
                    let done = sqlx::query(
                        "UPDATE audit_keys SET sealed_seed = $4 WHERE log_id = $1 AND kid = $2 AND sealed_seed = $3",
                    )
                    .bind(owner(self))
                    .bind(kid)
                    .bind(old)
                    .bind(new)
                    .execute(&mut *self.tx)
                    .await
                    .map_err(map_err)?;
                    Ok(done.rows_affected() == 1)
                }

                async fn signing_keys_all(&mut self) -> StoreResult<Vec<StoredSigningKey>> {
                    let rows = sqlx::query_as::<_, SigningKeyRow>(
                        "SELECT kid, purpose, sealed_seed, created_at FROM signing_keys ORDER BY kid",
                    )
                    .fetch_all(&mut *self.tx)
                    .await
                    .map_err(map_err)?;
                    Ok(rows.into_iter().map(StoredSigningKey::from).collect())
                }

                async fn signing_key_reseal(
                    &mut self,
                    kid: &str,
                    old: &[u8],
                    new: &[u8],
                ) -> StoreResult<bool> {
                    let done = sqlx::query(
                        "UPDATE signing_keys SET sealed_seed = $3 WHERE kid = $1 AND sealed_seed = $2",
                    )
                    .bind(kid)
                    .bind(old)
                    .bind(new)
                    .execute(&mut *self.tx)
                    .await
                    .map_err(map_err)?;
                    Ok(done.rows_affected() == 1)
                }

                async fn record_reseal(
                    &mut self,
                    id: &RecordId,
                    version: i64,
                    data: &serde_json::Map<String, serde_json::Value>,
                ) -> StoreResult<bool> {
                    let ws = self.workspace()?.to_owned();
                    let done = sqlx::query(
                        "UPDATE records SET data = $4 WHERE workspace_id = $1 AND id = $2 AND version = $3",
                    )
                    .bind(ws)
                    .bind(id.as_str())
                    .bind(version)
                    .bind(Json(data))
                    .execute(&mut *self.tx)
                    .await
                    .map_err(map_err)?;
                    Ok(done.rows_affected() == 1)
                }

                async fn webhook_secrets(
                    &mut self,
                    after: &str,
                    limit: u32,
                ) -> StoreResult<Vec<(WebhookId, Vec<u8>, Option<Vec<u8>>)>> {
                    super::webhooks_tx::secrets(self, after, limit).await
                }

                async fn webhook_secret_reseal(
                    &mut self,
                    id: &WebhookId,
                    field: &str,
                    old: &[u8],
                    new: &[u8],
                ) -> StoreResult<bool> {
                    super::webhooks_tx::secret_reseal(self, id, field, old, new).await
                }

                async fn webhook_payloads(
                    &mut self,
                    after: &str,
                    limit: u32,
                ) -> StoreResult<Vec<(WebhookEventId, Vec<u8>)>> {
                    super::webhooks_tx::payloads(self, after, limit).await
                }

                async fn webhook_payload_reseal(
                    &mut self,
                    id: &WebhookEventId,
                    old: &[u8],
                    new: &[u8],
                ) -> StoreResult<bool> {
                    super::webhooks_tx::payload_reseal(self, id, old, new).await
                }
            }
        }
    };
}
pub(crate) use impl_keys_tx;
