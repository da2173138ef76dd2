//! Test support: a fresh database per test on every available backend. SQLite always; PostgreSQL
//! when `PALISADE_TEST_PG_URL` names an owner role on a throwaway cluster (scripts/pg.sh). With
//! `PALISADE_REQUIRE_POSTGRES=1` a missing PostgreSQL is a failure, not a skip.

#![allow(clippy::panic, clippy::expect_used)]

use sqlx::Connection as _;

/// A fresh, empty database; the SQLite file lives as long as this value.
#[derive(Debug)]
pub struct TestDb {
    pub backend: &'static str,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

/// The base URL of the throwaway PostgreSQL, if the run has one.
pub fn postgres_base() -> Option<String> {
    match std::env::var("PALISADE_TEST_PG_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            if std::env::var("PALISADE_REQUIRE_POSTGRES").as_deref() == Ok("1") {
                panic!(
                    "PALISADE_REQUIRE_POSTGRES=1 but PALISADE_TEST_PG_URL is not set: run the tests with scripts/test.sh"
                );
            }
            None
        }
    }
}

impl TestDb {
    /// Another handle on the same database (a second node); the first keeps it alive.
    pub fn shared(&self) -> TestDb {
        TestDb {
            backend: self.backend,
            url: self.url.clone(),
            _dir: None,
        }
    }
}

pub fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite:{}", dir.path().join("palisade.db").display());
    TestDb {
        backend: "sqlite",
        url,
        _dir: Some(dir),
    }
}

/// Creates an empty database on the cluster at `base` (owned by the connecting role) and
/// returns a URL to it.
pub async fn postgres_database(base: &str) -> String {
    let name = format!(
        "t_{}",
        palisade_core::ids::EventId::generate()
            .as_str()
            .replace('_', "")
    );
    let mut conn = sqlx::PgConnection::connect(base)
        .await
        .expect("connect to test PostgreSQL");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut conn)
        .await
        .expect("create test database");
    let mut url = url::Url::parse(base).expect("PALISADE_TEST_PG_URL is a URL");
    url.set_path(&name);
    url.to_string()
}

/// One fresh database per available backend.
pub async fn databases() -> Vec<TestDb> {
    let mut dbs = vec![sqlite()];
    if let Some(base) = postgres_base() {
        dbs.push(TestDb {
            backend: "postgres",
            url: postgres_database(&base).await,
            _dir: None,
        });
    }
    dbs
}
