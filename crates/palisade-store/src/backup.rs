//! The SQL of `palisade backup`: a consistent snapshot of a live SQLite database (`VACUUM
//! INTO`), a PostgreSQL snapshot exported for `pg_dump` from a transaction held open meanwhile
//! (by a role that reads every row), and what restoring and verifying need on PostgreSQL (an
//! empty target, the application role, a temporary database). The binary keeps the rest:
//! encryption, the archive and the PostgreSQL client programs.
//!
//! Errors name a PostgreSQL URL only with its password masked.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use sqlx::Connection as _;
use sqlx::postgres::PgConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode};

/// The application role, created as the first migration creates it (so that a restored dump's
/// grants to it apply) and granted to the connecting role.
const APP_ROLE_SQL: &str = "DO $$
BEGIN
    CREATE ROLE palisade_app NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOINHERIT;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$;
GRANT palisade_app TO CURRENT_USER;";
const DATA_KEYS_WRAPPED: &str = "SELECT wrapped FROM data_keys";
const ROLE_ATTRIBUTES: &str =
    "SELECT rolsuper, rolbypassrls FROM pg_catalog.pg_roles WHERE rolname = current_user";
const PUBLIC_TABLE_COUNT: &str =
    "SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname = 'public'";
/// How long a snapshot waits for the SQLite writer before giving up.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a backup's database work failed. No variant shows a password: URLs are masked.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The SQLite database could not be opened.
    #[error("opening {path}")]
    Open {
        /// The database file.
        path: String,
        /// What SQLite said.
        #[source]
        source: sqlx::Error,
    },
    /// The PostgreSQL server could not be reached, or refused the login.
    #[error("connecting to {url}")]
    Connect {
        /// The URL, its password masked.
        url: String,
        /// What the connection said.
        #[source]
        source: sqlx::Error,
    },
    /// `VACUUM INTO` takes the snapshot's path as text, and it is not UTF-8.
    #[error("the snapshot's path {0} is not UTF-8")]
    PathNotUtf8(String),
    /// `VACUUM INTO` failed.
    #[error("snapshotting {path} (VACUUM INTO)")]
    Vacuum {
        /// The database file.
        path: String,
        /// What SQLite said.
        #[source]
        source: sqlx::Error,
    },
    /// The SQLite snapshot could not be opened after it was written.
    #[error("opening the snapshot")]
    OpenSnapshot(#[source] sqlx::Error),
    /// The snapshot's `data_keys` could not be read (on PostgreSQL: row-level security refused
    /// the role).
    #[error("reading the snapshot's data keys")]
    DataKeys(#[source] sqlx::Error),
    /// The backup role's attributes could not be read.
    #[error("reading the backup role's attributes")]
    RoleAttributes(#[source] sqlx::Error),
    /// The backup role is neither a superuser nor BYPASSRLS: row-level security would hide
    /// tenant rows from `pg_dump`.
    #[error(
        "cannot back up as the role of {url}: it is neither a superuser nor BYPASSRLS, so row-level \
         security would hide rows from pg_dump"
    )]
    RoleBoundByRls {
        /// The backup role's URL, its password masked.
        url: String,
    },
    /// The snapshot's transaction could not begin or end.
    #[error("{0} the snapshot's transaction")]
    Transaction(&'static str, #[source] sqlx::Error),
    /// `pg_export_snapshot()` failed.
    #[error("exporting a snapshot for pg_dump")]
    ExportSnapshot(#[source] sqlx::Error),
    /// The tables of schema `public` could not be counted.
    #[error("listing the database's tables")]
    ListTables(#[source] sqlx::Error),
    /// `palisade_app` could not be created or granted.
    #[error(
        "creating role palisade_app and granting it to the connecting role (as the migrations do; \
         it needs CREATEROLE)"
    )]
    AppRole(#[source] sqlx::Error),
    /// A database name this module would have to quote: only `[a-z0-9_]`, 1 to 63 bytes.
    #[error("{0:?} is not a database name of 1 to 63 lowercase letters, digits and underscores")]
    DatabaseName(String),
    /// `CREATE DATABASE` failed.
    #[error("creating database {name} (the connecting role needs CREATEDB)")]
    CreateDatabase {
        /// The database.
        name: String,
        /// What PostgreSQL said.
        #[source]
        source: sqlx::Error,
    },
    /// `DROP DATABASE` failed.
    #[error("dropping database {name}")]
    DropDatabase {
        /// The database.
        name: String,
        /// What PostgreSQL said.
        #[source]
        source: sqlx::Error,
    },
    /// Closing a connection failed.
    #[error("closing the database connection")]
    Close(#[source] sqlx::Error),
}

/// The master keys that wrap a snapshot's data keys: their ids, never key material.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MasterKeyIds {
    /// Each master key's id, once, in order.
    pub ids: BTreeSet<String>,
    /// Data keys whose wrapped form is malformed, so that it names no master key.
    pub malformed: usize,
}

impl MasterKeyIds {
    fn of(wrapped: &[Vec<u8>]) -> Self {
        let mut ids = Self::default();
        for w in wrapped {
            match palisade_core::crypto::envelope::key_id_of(w) {
                Ok(id) => {
                    ids.ids.insert(id.to_owned());
                }
                Err(_) => ids.malformed += 1,
            }
        }
        ids
    }
}

/// A URL as it may be printed: its password masked (`****`); not a URL at all, a placeholder.
pub fn masked_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("****"));
            }
            u.to_string()
        }
        Err(_) => "the database URL".to_owned(),
    }
}

/// Writes a consistent snapshot of the live SQLite database `db` (WAL: writers go on
/// meanwhile) to the new file `to`, and reads which master keys wrap its data keys. The
/// snapshot leaves WAL mode on the way, so it stays one self-contained file.
pub async fn sqlite_snapshot(db: &Path, to: &Path) -> Result<MasterKeyIds, BackupError> {
    let options = SqliteConnectOptions::new()
        .filename(db)
        .create_if_missing(false)
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(SQLITE_BUSY_TIMEOUT);
    let mut conn = SqliteConnection::connect_with(&options)
        .await
        .map_err(|source| BackupError::Open {
            path: db.display().to_string(),
            source,
        })?;
    let to_text = to
        .to_str()
        .ok_or_else(|| BackupError::PathNotUtf8(to.display().to_string()))?;
    sqlx::query("VACUUM INTO $1")
        .bind(to_text)
        .execute(&mut conn)
        .await
        .map_err(|source| BackupError::Vacuum {
            path: db.display().to_string(),
            source,
        })?;
    conn.close().await.map_err(BackupError::Close)?;

    let options = SqliteConnectOptions::new()
        .filename(to)
        .create_if_missing(false)
        .journal_mode(SqliteJournalMode::Delete);
    let mut conn = SqliteConnection::connect_with(&options)
        .await
        .map_err(BackupError::OpenSnapshot)?;
    let wrapped: Vec<Vec<u8>> = sqlx::query_scalar(DATA_KEYS_WRAPPED)
        .fetch_all(&mut conn)
        .await
        .map_err(BackupError::DataKeys)?;
    conn.close().await.map_err(BackupError::Close)?;
    Ok(MasterKeyIds::of(&wrapped))
}

async fn pg_connect(url: &str) -> Result<PgConnection, BackupError> {
    PgConnection::connect(url)
        .await
        .map_err(|source| BackupError::Connect {
            url: masked_url(url),
            source,
        })
}

/// A PostgreSQL snapshot exported for `pg_dump --snapshot`, valid while this value lives: its
/// read-only repeatable-read transaction stays open until [`PgSnapshot::release`] (or the
/// connection closes when it is dropped).
#[derive(Debug)]
pub struct PgSnapshot {
    conn: PgConnection,
    snapshot_id: String,
    master_key_ids: MasterKeyIds,
}

impl PgSnapshot {
    /// Connects to `url` as the backup role, which must read every row (a superuser or
    /// BYPASSRLS: every tenant table forces row-level security), exports a snapshot and reads
    /// the master-key ids of its data keys in it.
    pub async fn export(url: &str) -> Result<Self, BackupError> {
        let mut conn = pg_connect(url).await?;
        let (superuser, bypass): (bool, bool) = sqlx::query_as(ROLE_ATTRIBUTES)
            .fetch_one(&mut conn)
            .await
            .map_err(BackupError::RoleAttributes)?;
        if !superuser && !bypass {
            return Err(BackupError::RoleBoundByRls {
                url: masked_url(url),
            });
        }
        // Begun by hand, so that the transaction can live in this value beside its connection.
        sqlx::raw_sql("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .execute(&mut conn)
            .await
            .map_err(|e| BackupError::Transaction("beginning", e))?;
        let snapshot_id: String = sqlx::query_scalar("SELECT pg_export_snapshot()")
            .fetch_one(&mut conn)
            .await
            .map_err(BackupError::ExportSnapshot)?;
        let wrapped: Vec<Vec<u8>> = sqlx::query_scalar(DATA_KEYS_WRAPPED)
            .fetch_all(&mut conn)
            .await
            .map_err(BackupError::DataKeys)?;
        Ok(Self {
            conn,
            snapshot_id,
            master_key_ids: MasterKeyIds::of(&wrapped),
        })
    }

    /// The id to give `pg_dump --snapshot=…`.
    pub fn snapshot_id(&self) -> &str {
        &self.snapshot_id
    }

    /// The master keys that wrap the snapshot's data keys.
    pub fn master_key_ids(&self) -> &MasterKeyIds {
        &self.master_key_ids
    }

    /// Ends the exporting transaction (once `pg_dump` has taken its snapshot) and closes the
    /// connection.
    pub async fn release(mut self) -> Result<(), BackupError> {
        sqlx::raw_sql("ROLLBACK")
            .execute(&mut self.conn)
            .await
            .map_err(|e| BackupError::Transaction("ending", e))?;
        self.conn.close().await.map_err(BackupError::Close)
    }
}

/// A connection to a PostgreSQL database for what a restore needs around `pg_restore`.
#[derive(Debug)]
pub struct PgAdmin {
    conn: PgConnection,
}

impl PgAdmin {
    /// Connects to the database at `url`.
    pub async fn connect(url: &str) -> Result<Self, BackupError> {
        Ok(Self {
            conn: pg_connect(url).await?,
        })
    }

    /// How many tables schema `public` holds (a restore goes only into an empty database).
    pub async fn public_table_count(&mut self) -> Result<u64, BackupError> {
        let n: i64 = sqlx::query_scalar(PUBLIC_TABLE_COUNT)
            .fetch_one(&mut self.conn)
            .await
            .map_err(BackupError::ListTables)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Creates `palisade_app` if the cluster lacks it, as the first migration does, and grants
    /// it to the connecting role, so that a dump's grants to it restore. Needs CREATEROLE.
    pub async fn ensure_app_role(&mut self) -> Result<(), BackupError> {
        sqlx::raw_sql(APP_ROLE_SQL)
            .execute(&mut self.conn)
            .await
            .map_err(BackupError::AppRole)?;
        Ok(())
    }

    /// `CREATE DATABASE name`, owned by the connecting role. Needs CREATEDB.
    pub async fn create_database(&mut self, name: &str) -> Result<(), BackupError> {
        check_database_name(name)?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut self.conn)
            .await
            .map_err(|source| BackupError::CreateDatabase {
                name: name.to_owned(),
                source,
            })?;
        Ok(())
    }

    /// `DROP DATABASE IF EXISTS name WITH (FORCE)`: its sessions are ended.
    pub async fn drop_database(&mut self, name: &str) -> Result<(), BackupError> {
        check_database_name(name)?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
        )))
        .execute(&mut self.conn)
        .await
        .map_err(|source| BackupError::DropDatabase {
            name: name.to_owned(),
            source,
        })?;
        Ok(())
    }

    /// Closes the connection.
    pub async fn close(self) -> Result<(), BackupError> {
        self.conn.close().await.map_err(BackupError::Close)
    }
}

/// Only names that need no escaping inside a quoted identifier reach SQL.
fn check_database_name(name: &str) -> Result<(), BackupError> {
    let valid = (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(BackupError::DatabaseName(name.to_owned()))
    }
}

#[cfg(all(test, feature = "test-support"))]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn database_names_are_checked_before_they_reach_sql() {
        assert!(check_database_name("palisade_verify_0123456789abcdef").is_ok());
        for bad in ["", "Upper", "a\"b", "a b", "a;drop", &"a".repeat(64)] {
            assert!(check_database_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn urls_are_shown_without_their_password() {
        let shown = masked_url("postgres://backup:s3cret@db.example:5432/palisade");
        assert_eq!(shown, "postgres://backup:****@db.example:5432/palisade");
        assert_eq!(
            masked_url("postgres://backup@db/palisade"),
            "postgres://backup@db/palisade"
        );
        assert_eq!(masked_url("not a url"), "the database URL");
        let e = BackupError::RoleBoundByRls {
            url: masked_url("postgres://u:s3cret@h/d"),
        };
        assert!(!e.to_string().contains("s3cret"), "{e}");
    }

    #[tokio::test]
    async fn a_sqlite_snapshot_is_one_self_contained_file() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("palisade.db");
        let store = crate::SqliteStore::open(&db, crate::Migrations::Apply)
            .await
            .unwrap();
        let to = dir.path().join("snapshot.sqlite");
        let ids = sqlite_snapshot(&db, &to).await.unwrap();
        drop(store);
        assert_eq!(ids, MasterKeyIds::default(), "no data key yet");
        assert!(to.is_file());
        let wal = dir.path().join("snapshot.sqlite-wal");
        assert!(!wal.exists(), "the snapshot is not in WAL mode");

        let again = sqlite_snapshot(&db, &to).await;
        assert!(
            matches!(again, Err(BackupError::Vacuum { .. })),
            "never over an existing file: {again:?}"
        );
        let missing = sqlite_snapshot(&dir.path().join("none.db"), &dir.path().join("x")).await;
        assert!(
            matches!(missing, Err(BackupError::Open { .. })),
            "{missing:?}"
        );
    }
}
