//! SQLite: WAL, `synchronous=FULL`, foreign keys on, one writer connection and a pool of
//! readers. There is no RLS: the scope filter in every tenant statement is the only layer.

use std::os::unix::fs::DirBuilderExt as _;
use std::path::Path;
use std::time::Duration;

use palisade_core::ids::WorkspaceId;
use palisade_core::store::{
    Access, AccountTx, AuditLogTx, KeysTx, Store, StoreResult, SystemTx, TenantTx,
    WorkspaceSystemTx,
};
use palisade_core::tenancy::{SystemScope, TenantScope};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::sql::{Conn, SqlTx, map_err};
use crate::{Migrations, OpenError};

mod statements {
    /// Whether several statements with parameters may share one command (else an append is
    /// one statement of data-modifying CTEs).
    pub const MERGE_STATEMENTS: bool = true;
    pub const AUDIT_HEAD_LOCKED: &str = crate::sql::AUDIT_HEAD;
    // One writer connection serialises writes, so a plain read suffices as a row lock.
    pub const LIMIT_LOCKED: &str = "SELECT tat, logged_until FROM rate_limits WHERE key = $1";
    pub const WORKSPACE_GET_LOCKED: &str = crate::sql::WORKSPACE_GET;
    // One writer: a write transaction already excludes every other.
    pub const COLLECTION_BY_NAME_SHARED: &str = crate::sql_collections::COLLECTION_BY_NAME;
    pub const COLLECTION_BY_NAME_EXCLUSIVE: &str = crate::sql_collections::COLLECTION_BY_NAME;
}

crate::sql::impl_transactions!(sqlx::Sqlite, statements);
crate::sql_members::impl_members_tx!(sqlx::Sqlite);
crate::sql_api_keys::impl_api_keys_tx!(sqlx::Sqlite);
crate::sql_collections::impl_collections_tx!(sqlx::Sqlite);
crate::sql_records::impl_records_tx!(sqlx::Sqlite, crate::sql_record_query::Dialect::Sqlite);
crate::sql_keys::impl_keys_tx!(sqlx::Sqlite, "");
// One writer: a claiming transaction already excludes every other.
// One writer: a write transaction already holds every row.
crate::sql_webhooks::impl_webhooks_tx!(
    sqlx::Sqlite,
    crate::sql_webhooks::CLAIM_SQLITE,
    crate::sql_webhooks::WEBHOOK_GET
);

#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
}

impl SqliteStore {
    pub async fn open(path: &Path, migrations: Migrations) -> Result<Self, OpenError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // Owner-only: the database holds password hashes and wrapped keys.
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|source| OpenError::DataDir {
                    path: dir.display().to_string(),
                    source,
                })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            .collation(
                crate::sql_record_query::DECIMAL_COLLATION,
                palisade_core::collections::values::decimal_cmp,
            );
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await
            .map_err(OpenError::Connect)?;
        if migrations == Migrations::Apply {
            sqlx::migrate!("migrations/sqlite")
                .run(&writer)
                .await
                .map_err(OpenError::Migrate)?;
        }
        let readers = std::thread::available_parallelism().map_or(4, |n| n.get() * 2) as u32;
        let reader = SqlitePoolOptions::new()
            .max_connections(readers)
            .connect_with(options.read_only(true))
            .await
            .map_err(OpenError::Connect)?;
        Ok(Self { writer, reader })
    }

    async fn begin(
        &self,
        access: Access,
        workspace: Option<String>,
    ) -> StoreResult<SqlTx<sqlx::Sqlite>> {
        let tx = match access {
            Access::Write => Conn::Tx(
                self.writer
                    .begin_with("BEGIN IMMEDIATE")
                    .await
                    .map_err(map_err)?,
            ),
            // Read-only connections; see `Conn` for why no transaction.
            Access::Read => Conn::Autocommit(self.reader.acquire().await.map_err(map_err)?),
        };
        Ok(SqlTx {
            tx,
            workspace,
            write: access == Access::Write,
        })
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.reader)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn accounts(
        &self,
        _acting: Option<&palisade_core::ids::UserId>,
        access: Access,
    ) -> StoreResult<Box<dyn AccountTx>> {
        Ok(Box::new(self.begin(access, None).await?))
    }

    async fn tenant(&self, scope: &TenantScope, access: Access) -> StoreResult<Box<dyn TenantTx>> {
        Ok(Box::new(
            self.begin(access, Some(scope.workspace_id().to_string()))
                .await?,
        ))
    }

    async fn system(&self, _scope: &SystemScope, access: Access) -> StoreResult<Box<dyn SystemTx>> {
        Ok(Box::new(self.begin(access, None).await?))
    }

    async fn audit_log(
        &self,
        _scope: &SystemScope,
        log_id: &str,
        access: Access,
    ) -> StoreResult<Box<dyn AuditLogTx>> {
        let workspace = (log_id != palisade_audit::entry::INSTANCE_LOG).then(|| log_id.to_owned());
        Ok(Box::new(self.begin(access, workspace).await?))
    }

    async fn keys(
        &self,
        _scope: &SystemScope,
        owner: &str,
        access: Access,
    ) -> StoreResult<Box<dyn KeysTx>> {
        let workspace = (owner != palisade_audit::entry::INSTANCE_LOG).then(|| owner.to_owned());
        Ok(Box::new(self.begin(access, workspace).await?))
    }

    async fn workspace_system(
        &self,
        _scope: &SystemScope,
        workspace: &WorkspaceId,
        access: Access,
    ) -> StoreResult<Box<dyn WorkspaceSystemTx>> {
        Ok(Box::new(
            self.begin(access, Some(workspace.to_string())).await?,
        ))
    }
}
