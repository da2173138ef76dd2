//! `CollectionsTx`, written once for both backends like `sql.rs`. Every statement filters by
//! the transaction's workspace id (the application layer of TEN-2); on PostgreSQL RLS filters
//! again underneath.
//!
//! A collection's `fields` are one JSON value (JSONB on PostgreSQL, TEXT on SQLite), written and
//! read whole through `sqlx::types::Json`: a schema change rewrites the list and bumps `version`.

/// Collection reads: the columns `CollectionRow` maps, then the condition `$where`.
macro_rules! collection_select {
    ($where:literal) => {
        concat!(
            "SELECT workspace_id, id, name, fields, version, created_at, updated_at FROM collections WHERE ",
            $where
        )
    };
}

pub(crate) const COLLECTION_GET: &str = collection_select!("workspace_id = $1 AND id = $2");
pub(crate) const COLLECTION_BY_NAME: &str = collection_select!("workspace_id = $1 AND name = $2");
/// `$2` is the cursor (the empty string sorts before every id).
pub(crate) const COLLECTIONS_LIST: &str =
    collection_select!("workspace_id = $1 AND id > $2 ORDER BY id LIMIT $3");
pub(crate) const COLLECTIONS_ALL: &str = collection_select!("workspace_id = $1 ORDER BY id");

/// Implements `CollectionsTx` for `SqlTx<$db>`. Invoke it beside `impl_members_tx!`, whose
/// helpers it uses.
macro_rules! impl_collections_tx {
    ($db:ty) => {
        mod collections_tx {
        use palisade_core::collections::model::Collection;
        use palisade_core::ids::CollectionId;
        use palisade_core::store::{CollectionsTx, StoreResult};
        use sqlx::types::Json;

        use super::members_tx::{in_scope, one, page};
        use crate::rows::CollectionRow;
        use crate::sql::{SqlTx, map_err};
        use crate::sql_collections as q;

        #[async_trait::async_trait]
        impl CollectionsTx for SqlTx<$db> {
            async fn collection_insert(&mut self, c: &Collection) -> StoreResult<()> {
                let ws = in_scope(self, "collections", &c.workspace_id)?;
                sqlx::query(
                    "INSERT INTO collections (workspace_id, id, name, fields, version, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(ws)
                .bind(c.id.as_str())
                .bind(&c.name)
                .bind(Json(&c.fields))
                .bind(c.version)
                .bind(c.created_at)
                .bind(c.updated_at)
                .execute(&mut *self.tx)
                .await
                .map_err(map_err)?;
                Ok(())
            }

            async fn collection_get(&mut self, id: &CollectionId) -> StoreResult<Option<Collection>> {
                let row: Option<CollectionRow> = one(self, q::COLLECTION_GET, id.as_str()).await?;
                Ok(row.map(Collection::from))
            }

            async fn collection_by_name(&mut self, name: &str) -> StoreResult<Option<Collection>> {
                let row: Option<CollectionRow> = one(self, q::COLLECTION_BY_NAME, name).await?;
                Ok(row.map(Collection::from))
            }

            async fn collection_lock(&mut self, name: &str, exclusive: bool) -> StoreResult<Option<Collection>> {
                let sql = match (self.write, exclusive) {
                    (false, _) => q::COLLECTION_BY_NAME,
                    (true, false) => super::statements::COLLECTION_BY_NAME_SHARED,
                    (true, true) => super::statements::COLLECTION_BY_NAME_EXCLUSIVE,
                };
                let row: Option<CollectionRow> = one(self, sql, name).await?;
                Ok(row.map(Collection::from))
            }

            async fn collections_list(&mut self, after: Option<&CollectionId>, limit: u32) -> StoreResult<Vec<Collection>> {
                let rows: Vec<CollectionRow> =
                    page(self, q::COLLECTIONS_LIST, after.map_or("", CollectionId::as_str), limit).await?;
                Ok(rows.into_iter().map(Collection::from).collect())
            }

            async fn collections_all(&mut self) -> StoreResult<Vec<Collection>> {
                let ws = self.workspace()?.to_owned();
                let rows: Vec<CollectionRow> = sqlx::query_as(q::COLLECTIONS_ALL)
                    .bind(ws)
                    .fetch_all(&mut *self.tx)
                    .await
                    .map_err(map_err)?;
                Ok(rows.into_iter().map(Collection::from).collect())
            }

            async fn collection_update(&mut self, c: &Collection) -> StoreResult<bool> {
                let ws = in_scope(self, "collections", &c.workspace_id)?;
                let done = sqlx::query(
                    "UPDATE collections SET name = $3, fields = $4, version = $5, updated_at = $6 \
                     WHERE workspace_id = $1 AND id = $2",
                )
                .bind(ws)
                .bind(c.id.as_str())
                .bind(&c.name)
                .bind(Json(&c.fields))
                .bind(c.version)
                .bind(c.updated_at)
                .execute(&mut *self.tx)
                .await
                .map_err(map_err)?;
                Ok(done.rows_affected() == 1)
            }

            async fn collection_delete(&mut self, id: &CollectionId) -> StoreResult<bool> {
                let ws = self.workspace()?.to_owned();
                let done = sqlx::query("DELETE FROM collections WHERE workspace_id = $1 AND id = $2")
                    .bind(ws)
                    .bind(id.as_str())
                    .execute(&mut *self.tx)
                    .await
                    .map_err(map_err)?;
                Ok(done.rows_affected() == 1)
            }
        }
        }
    };
}

pub(crate) use impl_collections_tx;
