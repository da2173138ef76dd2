//! The store traits of `palisade-core`, implemented on SQLite (embedded default) and PostgreSQL
//! (row-level security enforced), with embedded migrations per backend. Only this crate knows SQL.

pub mod backup;
mod postgres;
mod rows;
mod sql;
mod sql_api_keys;
mod sql_collections;
mod sql_keys;
mod sql_members;
mod sql_record_query;
mod sql_records;
mod sql_webhooks;
mod sqlite;
#[cfg(feature = "test-support")]
pub mod testing;

use std::sync::Arc;

use palisade_core::store::Store;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// Every table that holds tenant rows. On PostgreSQL each has RLS enabled and forced; the
/// server checks this at start and the conformance suite checks that each hides foreign rows.
pub const TENANT_TABLES: &[&str] = &[
    "workspaces",
    "members",
    "teams",
    "team_members",
    "custom_roles",
    "invitations",
    "api_keys",
    "collections",
    "records",
    "record_uniques",
    "audit_heads",
    "audit_entries",
    "audit_tree",
    "audit_openings",
    "audit_checkpoints",
    "audit_keys",
    "webhooks",
    "webhook_events",
    "webhook_deliveries",
    "webhook_attempts",
];

/// The role every pooled PostgreSQL connection assumes (created by the migrations).
pub const APP_ROLE: &str = "palisade_app";

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("unsupported database URL (expected sqlite:… or postgres://…)")]
    UnsupportedUrl,
    #[error("could not connect to the database")]
    Connect(#[source] sqlx::Error),
    #[error("could not apply migrations")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    #[error(
        "refusing to run as PostgreSQL role {role:?}: it {reason}. Row-level security would not isolate tenants; \
         connect as an owner role that is neither superuser nor BYPASSRLS"
    )]
    UnsafeRole { role: String, reason: &'static str },
    #[error("row-level security is not enabled and forced on table {0}; refusing to start")]
    RlsNotForced(String),
    #[error("could not create the data directory {path}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
}

/// Whether to apply pending migrations on open (`serve` and `migrate` do).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Migrations {
    Apply,
    Skip,
}

/// Opens the store a URL names: `sqlite:<path>` or `postgres://…`.
pub async fn open(url: &str, migrations: Migrations) -> Result<Arc<dyn Store>, OpenError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PgStore::open(url, migrations).await?))
    } else if let Some(path) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        Ok(Arc::new(
            SqliteStore::open(std::path::Path::new(path), migrations).await?,
        ))
    } else {
        Err(OpenError::UnsupportedUrl)
    }
}
