//! `RecordsTx`, written once for both backends like `sql.rs`. Every statement filters by the
//! transaction's workspace id (the application layer of TEN-2); on PostgreSQL RLS filters again
//! underneath.
//!
//! A record's `data` is one JSON object (JSONB on PostgreSQL, TEXT on SQLite), written and read
//! whole through `sqlx::types::Json`; updates are conditional on the stored `version`. Unique
//! field values are claimed in `record_uniques`, whose primary key lets one record per
//! collection and field hold a value; a value is keyed by its SHA-256, since a text value may be
//! longer than a PostgreSQL B-tree entry holds.

/// Record reads: the columns `RecordRow` maps, then the condition `$where`.
macro_rules! record_select {
    ($where:literal) => {
        concat!("SELECT ", record_columns!(), " FROM records WHERE ", $where)
    };
}

/// The columns `RecordRow` maps.
macro_rules! record_columns {
    () => {
        "workspace_id, id, collection_id, status, data, version, created_at, updated_at, \
         published_at, created_by, updated_by"
    };
}

pub(crate) const RECORD_COLUMNS: &str = record_columns!();

pub(crate) const RECORD_GET: &str = record_select!("workspace_id = $1 AND id = $2");
/// `$2` the collection, `$3` the cursor (the empty string sorts before every id), `$4` whether
/// drafts are included, `$5` the limit. Served by `records_collection`.
pub(crate) const RECORDS_LIST: &str = record_select!(
    "workspace_id = $1 AND collection_id = $2 AND id > $3 AND ($4 OR status = 'published') \
     ORDER BY id LIMIT $5"
);
/// The collection named `$2` and, if it holds it, record `$3`: one statement for a read of
/// one record (served by `collections (workspace_id, name)` and the records primary key).
pub(crate) const RECORD_IN_COLLECTION: &str = "SELECT c.workspace_id, c.id, c.name, c.fields, c.version, c.created_at, \
     c.updated_at, r.id AS r_id, r.status AS r_status, r.data AS r_data, r.version AS r_version, \
     r.created_at AS r_created_at, r.updated_at AS r_updated_at, r.published_at AS r_published_at, \
     r.created_by AS r_created_by, r.updated_by AS r_updated_by \
     FROM collections c LEFT JOIN records r \
     ON r.workspace_id = c.workspace_id AND r.collection_id = c.id AND r.id = $3 \
     WHERE c.workspace_id = $1 AND c.name = $2";
pub(crate) const RECORD_INSERT: &str = "INSERT INTO records (workspace_id, id, collection_id, status, data, version, \
     created_at, updated_at, published_at, created_by, updated_by) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";
/// `$3` the expected version; never writes the collection, `created_at` or `created_by`.
pub(crate) const RECORD_UPDATE: &str = "UPDATE records SET status = $4, data = $5, version = $6, updated_at = $7, \
     published_at = $8, updated_by = $9 WHERE workspace_id = $1 AND id = $2 AND version = $3";
pub(crate) const RECORD_DELETE: &str = "DELETE FROM records WHERE workspace_id = $1 AND id = $2";
pub(crate) const RECORD_UNIQUES_DELETE: &str =
    "DELETE FROM record_uniques WHERE workspace_id = $1 AND record_id = $2";
pub(crate) const COLLECTION_RECORDS_DELETE: &str =
    "DELETE FROM records WHERE workspace_id = $1 AND collection_id = $2";
pub(crate) const COLLECTION_UNIQUES_DELETE: &str =
    "DELETE FROM record_uniques WHERE workspace_id = $1 AND collection_id = $2";
pub(crate) const RECORDS_COUNT: &str =
    "SELECT COUNT(*) FROM records WHERE workspace_id = $1 AND collection_id = $2";
/// Takes a free value; a held one (or one another transaction is inserting, which PostgreSQL
/// waits for) is left alone, and `UNIQUE_HOLDER` then tells whose it is.
pub(crate) const UNIQUE_CLAIM: &str = "INSERT INTO record_uniques (workspace_id, collection_id, field, value_hash, record_id) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING";
pub(crate) const UNIQUE_HOLDER: &str = "SELECT record_id FROM record_uniques \
     WHERE workspace_id = $1 AND collection_id = $2 AND field = $3 AND value_hash = $4";
pub(crate) const UNIQUES_RENAME: &str = "UPDATE record_uniques SET field = $4 \
     WHERE workspace_id = $1 AND collection_id = $2 AND field = $3";
pub(crate) const UNIQUE_RELEASE: &str = "DELETE FROM record_uniques \
     WHERE workspace_id = $1 AND collection_id = $2 AND field = $3 AND value_hash = $4 AND record_id = $5";

/// How often a claim retries when the holder it lost to is gone by the time it looks (its
/// claim released and committed between the two statements, possible only on PostgreSQL).
pub(crate) const CLAIM_ATTEMPTS: usize = 3;

/// Implements `RecordsTx` for `SqlTx<$db>`, whose list queries are written in `$dialect`.
/// Invoke it beside `impl_members_tx!`, whose helpers it uses.
macro_rules! impl_records_tx {
    ($db:ty, $dialect:expr) => {
        mod records_tx {
            use palisade_core::collections::model::{Collection, Record};
            use palisade_core::collections::query::RecordQuery;
            use palisade_core::crypto::sha256;
            use palisade_core::ids::{CollectionId, RecordId};
            use palisade_core::store::{RecordsTx, StoreResult};
            use sqlx::types::Json;

            use super::members_tx::{in_scope, one};
            use crate::rows::{CollectionRecordRow, RecordRow, corrupt};
            use crate::sql::{SqlTx, map_err};
            use crate::sql_record_query::{Bind, build};
            use crate::sql_records as q;

            /// A statement of this workspace keyed by `$2` alone; how many rows it changed.
            async fn execute_keyed(
                tx: &mut SqlTx<$db>,
                sql: &'static str,
                key: &str,
            ) -> StoreResult<u64> {
                let ws = tx.workspace()?.to_owned();
                let done = sqlx::query(sql)
                    .bind(ws)
                    .bind(key.to_owned())
                    .execute(&mut *tx.tx)
                    .await
                    .map_err(map_err)?;
                Ok(done.rows_affected())
            }

            #[async_trait::async_trait]
            impl RecordsTx for SqlTx<$db> {
                async fn record_insert(&mut self, r: &Record) -> StoreResult<()> {
                    let ws = in_scope(self, "records", &r.workspace_id)?;
                    sqlx::query(q::RECORD_INSERT)
                        .bind(ws)
                        .bind(r.id.as_str())
                        .bind(r.collection_id.as_str())
                        .bind(r.status.as_str())
                        .bind(Json(&r.data))
                        .bind(r.version)
                        .bind(r.created_at)
                        .bind(r.updated_at)
                        .bind(r.published_at)
                        .bind(&r.created_by)
                        .bind(&r.updated_by)
                        .execute(&mut *self.tx)
                        .await
                        .map_err(map_err)?;
                    Ok(())
                }

                async fn record_get(&mut self, id: &RecordId) -> StoreResult<Option<Record>> {
                    let row: Option<RecordRow> = one(self, q::RECORD_GET, id.as_str()).await?;
                    row.map(RecordRow::into_record).transpose()
                }

                async fn records_list(
                    &mut self,
                    collection: &CollectionId,
                    after: Option<&RecordId>,
                    limit: u32,
                    drafts: bool,
                ) -> StoreResult<Vec<Record>> {
                    let ws = self.workspace()?.to_owned();
                    let rows: Vec<RecordRow> = sqlx::query_as(q::RECORDS_LIST)
                        .bind(ws)
                        .bind(collection.as_str())
                        .bind(after.map_or("", RecordId::as_str))
                        .bind(drafts)
                        .bind(i64::from(limit))
                        .fetch_all(&mut *self.tx)
                        .await
                        .map_err(map_err)?;
                    rows.into_iter().map(RecordRow::into_record).collect()
                }

                async fn record_in_collection(
                    &mut self,
                    collection: &str,
                    id: &RecordId,
                ) -> StoreResult<Option<(Collection, Option<Record>)>> {
                    let ws = self.workspace()?.to_owned();
                    let row: Option<CollectionRecordRow> = sqlx::query_as(q::RECORD_IN_COLLECTION)
                        .bind(ws)
                        .bind(collection)
                        .bind(id.as_str())
                        .fetch_optional(&mut *self.tx)
                        .await
                        .map_err(map_err)?;
                    row.map(CollectionRecordRow::into_pair).transpose()
                }

                async fn records_query(
                    &mut self,
                    collection: &CollectionId,
                    query: &RecordQuery,
                ) -> StoreResult<Vec<Record>> {
                    let ws = self.workspace()?.to_owned();
                    let built = build($dialect, q::RECORD_COLUMNS, query)?;
                    // Safe: field names are checked by `build`, every value is a parameter.
                    let sql = sqlx::AssertSqlSafe(built.sql);
                    let mut statement = sqlx::query_as::<_, RecordRow>(sql)
                        .bind(ws)
                        .bind(collection.as_str())
                        .bind(query.drafts);
                    for bind in built.binds {
                        statement = match bind {
                            Bind::Text(s) => statement.bind(s),
                            Bind::Int(n) => statement.bind(n),
                            Bind::Bool(b) => statement.bind(b),
                        };
                    }
                    let rows = statement.fetch_all(&mut *self.tx).await.map_err(map_err)?;
                    rows.into_iter().map(RecordRow::into_record).collect()
                }

                async fn record_update(
                    &mut self,
                    r: &Record,
                    expected_version: i64,
                ) -> StoreResult<bool> {
                    let ws = in_scope(self, "records", &r.workspace_id)?;
                    let done = sqlx::query(q::RECORD_UPDATE)
                        .bind(ws)
                        .bind(r.id.as_str())
                        .bind(expected_version)
                        .bind(r.status.as_str())
                        .bind(Json(&r.data))
                        .bind(r.version)
                        .bind(r.updated_at)
                        .bind(r.published_at)
                        .bind(&r.updated_by)
                        .execute(&mut *self.tx)
                        .await
                        .map_err(map_err)?;
                    Ok(done.rows_affected() == 1)
                }

                async fn record_delete(&mut self, id: &RecordId) -> StoreResult<bool> {
                    execute_keyed(self, q::RECORD_UNIQUES_DELETE, id.as_str()).await?;
                    Ok(execute_keyed(self, q::RECORD_DELETE, id.as_str()).await? == 1)
                }

                async fn records_delete_collection(
                    &mut self,
                    collection: &CollectionId,
                ) -> StoreResult<u64> {
                    execute_keyed(self, q::COLLECTION_UNIQUES_DELETE, collection.as_str()).await?;
                    execute_keyed(self, q::COLLECTION_RECORDS_DELETE, collection.as_str()).await
                }

                async fn records_count(&mut self, collection: &CollectionId) -> StoreResult<u64> {
                    let ws = self.workspace()?.to_owned();
                    let n: i64 = sqlx::query_scalar(q::RECORDS_COUNT)
                        .bind(ws)
                        .bind(collection.as_str())
                        .fetch_one(&mut *self.tx)
                        .await
                        .map_err(map_err)?;
                    u64::try_from(n).map_err(|_| corrupt("records", "negative count"))
                }

                async fn record_unique_claim(
                    &mut self,
                    collection: &CollectionId,
                    field: &str,
                    value: &str,
                    record: &RecordId,
                ) -> StoreResult<bool> {
                    let ws = self.workspace()?.to_owned();
                    let hash = sha256(value.as_bytes()).to_vec();
                    for _ in 0..q::CLAIM_ATTEMPTS {
                        let done = sqlx::query(q::UNIQUE_CLAIM)
                            .bind(&ws)
                            .bind(collection.as_str())
                            .bind(field)
                            .bind(&hash)
                            .bind(record.as_str())
                            .execute(&mut *self.tx)
                            .await
                            .map_err(map_err)?;
                        if done.rows_affected() == 1 {
                            return Ok(true);
                        }
                        // A separate statement: on PostgreSQL (read committed) it sees the holder
                        // the insert waited for, even one committed after the insert began.
                        let holder: Option<String> = sqlx::query_scalar(q::UNIQUE_HOLDER)
                            .bind(&ws)
                            .bind(collection.as_str())
                            .bind(field)
                            .bind(&hash)
                            .fetch_optional(&mut *self.tx)
                            .await
                            .map_err(map_err)?;
                        if let Some(holder) = holder {
                            return Ok(holder == record.as_str());
                        }
                    }
                    // The value kept changing hands: report it as held, never as ours.
                    Ok(false)
                }

                async fn record_uniques_rename(
                    &mut self,
                    collection: &CollectionId,
                    field: &str,
                    to: &str,
                ) -> StoreResult<()> {
                    let ws = self.workspace()?.to_owned();
                    sqlx::query(q::UNIQUES_RENAME)
                        .bind(ws)
                        .bind(collection.as_str())
                        .bind(field)
                        .bind(to)
                        .execute(&mut *self.tx)
                        .await
                        .map_err(map_err)?;
                    Ok(())
                }

                async fn record_unique_release(
                    &mut self,
                    collection: &CollectionId,
                    field: &str,
                    value: &str,
                    record: &RecordId,
                ) -> StoreResult<()> {
                    let ws = self.workspace()?.to_owned();
                    sqlx::query(q::UNIQUE_RELEASE)
                        .bind(ws)
                        .bind(collection.as_str())
                        .bind(field)
                        .bind(sha256(value.as_bytes()).to_vec())
                        .bind(record.as_str())
                        .execute(&mut *self.tx)
                        .await
                        .map_err(map_err)?;
                    Ok(())
                }
            }
        }
    };
}

pub(crate) use impl_records_tx;
