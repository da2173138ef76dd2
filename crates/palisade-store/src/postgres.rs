//! PostgreSQL: migrations as the connecting owner, then every pooled connection `SET ROLE
//! palisade_app` (owns nothing, NOBYPASSRLS). Each transaction sets `app.workspace_id`,
//! `app.user_id` and `app.system` transaction-locally, so nothing leaks through the pool.

use palisade_core::ids::WorkspaceId;
use palisade_core::store::{
    Access, AccountTx, AuditLogTx, KeysTx, Store, StoreResult, SystemTx, TenantTx,
    WorkspaceSystemTx,
};
use palisade_core::tenancy::{SystemScope, TenantScope};
use sqlx::Executor as _;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};

use crate::sql::{Conn, SqlTx, map_err};
use crate::{APP_ROLE, Migrations, OpenError, TENANT_TABLES};

mod statements {
    /// Whether several statements with parameters may share one command (else an append is
    /// one statement of data-modifying CTEs).
    pub const MERGE_STATEMENTS: bool = false;
    pub const LIMIT_LOCKED: &str =
        "SELECT tat, logged_until FROM rate_limits WHERE key = $1 FOR UPDATE";
    pub const AUDIT_HEAD_LOCKED: &str =
        "SELECT origin, size, last_leaf, frontier FROM audit_heads WHERE log_id = $1 FOR UPDATE";
    pub const COLLECTION_BY_NAME_SHARED: &str = concat!(
        "SELECT workspace_id, id, name, fields, version, created_at, updated_at FROM collections ",
        "WHERE workspace_id = $1 AND name = $2 FOR SHARE"
    );
    pub const COLLECTION_BY_NAME_EXCLUSIVE: &str = concat!(
        "SELECT workspace_id, id, name, fields, version, created_at, updated_at FROM collections ",
        "WHERE workspace_id = $1 AND name = $2 FOR UPDATE"
    );
    pub const WORKSPACE_GET_LOCKED: &str =
        crate::sql::workspace_select!("WHERE w.id = $1 FOR UPDATE");
}

crate::sql::impl_transactions!(sqlx::Postgres, statements);
crate::sql_members::impl_members_tx!(sqlx::Postgres);
crate::sql_api_keys::impl_api_keys_tx!(sqlx::Postgres);
crate::sql_collections::impl_collections_tx!(sqlx::Postgres);
crate::sql_records::impl_records_tx!(sqlx::Postgres, crate::sql_record_query::Dialect::Postgres);
crate::sql_keys::impl_keys_tx!(sqlx::Postgres, "FOR UPDATE");
crate::sql_webhooks::impl_webhooks_tx!(
    sqlx::Postgres,
    crate::sql_webhooks::CLAIM_POSTGRES,
    crate::sql_webhooks::WEBHOOK_GET_FOR_UPDATE
);

#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

/// Refuses a role that would make RLS meaningless: a superuser or a BYPASSRLS role. Checks both
/// the login role (a `RESET ROLE` returns to it) and the effective one.
async fn check_roles(conn: &mut PgConnection) -> Result<(), OpenError> {
    let rows: Vec<(String, bool, bool)> = sqlx::query_as(
        "SELECT r.rolname::text, r.rolsuper, r.rolbypassrls FROM pg_roles r WHERE r.rolname IN (session_user, current_user)",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(OpenError::Connect)?;
    for (role, is_super, bypass) in rows {
        if is_super {
            return Err(OpenError::UnsafeRole {
                role,
                reason: "is a superuser",
            });
        }
        if bypass {
            return Err(OpenError::UnsafeRole {
                role,
                reason: "has BYPASSRLS",
            });
        }
    }
    Ok(())
}

async fn check_rls(conn: &mut PgConnection) -> Result<(), OpenError> {
    for table in TENANT_TABLES {
        let forced: Option<bool> = sqlx::query_scalar(
            "SELECT c.relrowsecurity AND c.relforcerowsecurity FROM pg_class c \
             WHERE c.oid = to_regclass($1)",
        )
        .bind(format!("public.{table}"))
        .fetch_optional(&mut *conn)
        .await
        .map_err(OpenError::Connect)?;
        if forced != Some(true) {
            return Err(OpenError::RlsNotForced((*table).to_owned()));
        }
    }
    Ok(())
}

impl PgStore {
    pub async fn open(url: &str, migrations: Migrations) -> Result<Self, OpenError> {
        let options: PgConnectOptions = url.parse().map_err(OpenError::Connect)?;
        // One owner connection for the checks and the migrations, closed before serving.
        let owner = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await
            .map_err(OpenError::Connect)?;
        {
            let mut conn = owner.acquire().await.map_err(OpenError::Connect)?;
            check_roles(&mut conn).await?;
        }
        if migrations == Migrations::Apply {
            sqlx::migrate!("migrations/postgres")
                .run(&owner)
                .await
                .map_err(OpenError::Migrate)?;
        }
        owner.close().await;

        let pool = PgPoolOptions::new()
            .max_connections(32)
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute("SET ROLE palisade_app").await?;
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(OpenError::Connect)?;
        let mut conn = pool.acquire().await.map_err(OpenError::Connect)?;
        let effective: String = sqlx::query_scalar("SELECT current_user::text")
            .fetch_one(&mut *conn)
            .await
            .map_err(OpenError::Connect)?;
        if effective != APP_ROLE {
            return Err(OpenError::UnsafeRole {
                role: effective,
                reason: "is not the application role palisade_app",
            });
        }
        check_roles(&mut conn).await?;
        check_rls(&mut conn).await?;
        drop(conn);
        Ok(Self { pool })
    }

    async fn begin(
        &self,
        access: Access,
        workspace: Option<String>,
        user: Option<&str>,
        system: bool,
    ) -> StoreResult<SqlTx<sqlx::Postgres>> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        sqlx::query(
            "SELECT set_config('app.workspace_id', $1, true), set_config('app.user_id', $2, true), set_config('app.system', $3, true)",
        )
        .bind(workspace.as_deref().unwrap_or(""))
        .bind(user.unwrap_or(""))
        .bind(if system { "on" } else { "" })
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        Ok(SqlTx {
            tx: Conn::Tx(tx),
            workspace,
            write: access == Access::Write,
        })
    }
}

#[async_trait::async_trait]
impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn accounts(
        &self,
        acting: Option<&palisade_core::ids::UserId>,
        access: Access,
    ) -> StoreResult<Box<dyn AccountTx>> {
        Ok(Box::new(
            self.begin(access, None, acting.map(|u| u.as_str()), false)
                .await?,
        ))
    }

    async fn tenant(&self, scope: &TenantScope, access: Access) -> StoreResult<Box<dyn TenantTx>> {
        Ok(Box::new(
            self.begin(access, Some(scope.workspace_id().to_string()), None, false)
                .await?,
        ))
    }

    async fn system(&self, _scope: &SystemScope, access: Access) -> StoreResult<Box<dyn SystemTx>> {
        Ok(Box::new(self.begin(access, None, None, true).await?))
    }

    async fn audit_log(
        &self,
        _scope: &SystemScope,
        log_id: &str,
        access: Access,
    ) -> StoreResult<Box<dyn AuditLogTx>> {
        let workspace = (log_id != palisade_audit::entry::INSTANCE_LOG).then(|| log_id.to_owned());
        Ok(Box::new(self.begin(access, workspace, None, true).await?))
    }

    async fn keys(
        &self,
        _scope: &SystemScope,
        owner: &str,
        access: Access,
    ) -> StoreResult<Box<dyn KeysTx>> {
        let workspace = (owner != palisade_audit::entry::INSTANCE_LOG).then(|| owner.to_owned());
        Ok(Box::new(self.begin(access, workspace, None, true).await?))
    }

    // Bound to the workspace like a tenant transaction; `app.system` stays off, since nothing
    // it does needs a system policy, so RLS shows it this workspace's rows alone.
    async fn workspace_system(
        &self,
        _scope: &SystemScope,
        workspace: &WorkspaceId,
        access: Access,
    ) -> StoreResult<Box<dyn WorkspaceSystemTx>> {
        Ok(Box::new(
            self.begin(access, Some(workspace.to_string()), None, false)
                .await?,
        ))
    }
}
