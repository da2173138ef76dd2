//! Checkpoint cadence with a driven clock (AUDIT-SPEC §4): the daily checkpoint covers
//! everything appended before 00:00 UTC and is signed once; a `latest` checkpoint is signed at
//! most once per interval, only when the log grew. Both backends.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::{Arc, Mutex};

use palisade_core::accounts::model::SignUp;
use palisade_core::clock::Clock;
use palisade_core::ids::SessionId;
use palisade_core::principal::{Principal, RequestMeta};
use palisade_core::workspaces::model::{NewWorkspace, WorkspacePatch};
use palisade_store::testing::databases;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

#[derive(Debug)]
struct TestClock(Mutex<OffsetDateTime>);

impl Clock for TestClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap()
    }
}

impl TestClock {
    fn set(&self, t: OffsetDateTime) {
        *self.0.lock().unwrap() = t;
    }
}

#[tokio::test]
async fn daily_and_latest_checkpoints_follow_the_clock() {
    for db in databases().await {
        let b = db.backend;
        let data = tempfile::tempdir().unwrap();
        let mut config = common::config_for(&db, data.path());
        config.public_url = Some("https://audit.example.com/".parse().unwrap());
        let clock = Arc::new(TestClock(Mutex::new(datetime!(2026-11-20 23:00:00 UTC))));
        let state = palisade::build_with_clock(&config, clock.clone())
            .await
            .unwrap();
        let services = &state.services;
        let meta = RequestMeta::default();
        let user = services
            .sign_up(
                SignUp {
                    email: "c@example.com".into(),
                    password: "correct horse battery".to_owned().into(),
                    name: "C".into(),
                    invitation_token: None,
                },
                &meta,
            )
            .await
            .unwrap();
        let principal = Principal::User {
            user_id: user.id.clone(),
            session_id: SessionId::generate(),
            method: palisade_core::principal::SignInMethod::Password,
            signed_in_at: OffsetDateTime::now_utc(),
        };
        let ws = services
            .create_workspace(
                &principal,
                NewWorkspace {
                    name: "Clocked".into(),
                    slug: Some("clocked".into()),
                },
                &meta,
            )
            .await
            .unwrap();
        let scope = services
            .tenant_scope(&principal, "clocked", &Default::default())
            .await
            .unwrap();
        let rename = |name: &str| WorkspacePatch {
            name: palisade_core::workspaces::model::Patch::Value(name.to_owned()),
            ..WorkspacePatch::default()
        };

        // 23:00: the first latest checkpoints are signed at once (none before): the
        // workspace's log (2 entries) and the instance log (the sign-up).
        assert_eq!(services.sign_latest_checkpoints().await.unwrap(), 2, "{b}");
        let first = services.audit_checkpoint(&scope).await.unwrap();
        assert_eq!((first.tree_size, first.kind.as_str()), (2, "latest"), "{b}");
        assert_eq!(
            first.origin,
            format!("audit.example.com/ws/{}", ws.id),
            "{b}"
        );
        // No daily checkpoint for a day whose midnight the log did not exist before.
        assert_eq!(services.sign_daily_checkpoints().await.unwrap(), 0, "{b}");

        // 23:00:30: the log grew, but the interval (60 s) has not passed.
        clock.set(datetime!(2026-11-20 23:00:30 UTC));
        services
            .update_workspace(&scope, rename("Clocked 2"), &meta)
            .await
            .unwrap();
        assert_eq!(
            services.sign_latest_checkpoints().await.unwrap(),
            0,
            "{b}: at most once a minute"
        );
        // 23:01:01: now it is signed.
        clock.set(datetime!(2026-11-20 23:01:01 UTC));
        assert_eq!(services.sign_latest_checkpoints().await.unwrap(), 1, "{b}");
        assert_eq!(
            services.audit_checkpoint(&scope).await.unwrap().tree_size,
            3,
            "{b}"
        );
        // Not grown: nothing to sign, however long it waits.
        clock.set(datetime!(2026-11-20 23:30:00 UTC));
        assert_eq!(services.sign_latest_checkpoints().await.unwrap(), 0, "{b}");

        // After midnight: one entry stamped after 00:00 is not in the daily checkpoint.
        clock.set(datetime!(2026-11-21 00:00:02 UTC));
        services
            .update_workspace(&scope, rename("Clocked 3"), &meta)
            .await
            .unwrap();
        assert!(
            services.sign_daily_checkpoints().await.unwrap() >= 1,
            "{b}: the workspace log"
        );
        let daily = services
            .audit_checkpoint_day(&scope, "2026-11-21")
            .await
            .unwrap();
        assert_eq!(
            (daily.tree_size, daily.kind.as_str(), daily.date.as_deref()),
            (3, "daily", Some("2026-11-21")),
            "{b}"
        );
        assert_eq!(
            services.sign_daily_checkpoints().await.unwrap(),
            0,
            "{b}: once a day"
        );
        let jwks = services.audit_jwks(&scope).await.unwrap();
        let listed = &jwks.audit_log.unwrap().daily;
        assert_eq!((listed.len(), listed[0].tree_size), (1, 3), "{b}");
        let missing = services
            .audit_checkpoint_day(&scope, "2026-11-19")
            .await
            .unwrap_err();
        assert_eq!(missing.code(), "checkpoint_not_found", "{b}");
        clock.set(
            OffsetDateTime::now_utc().max(datetime!(2026-11-21 00:00:02 UTC))
                + Duration::minutes(2),
        );
        assert_eq!(
            services.sign_latest_checkpoints().await.unwrap(),
            1,
            "{b}: the entry after midnight"
        );
        assert_eq!(
            services.audit_checkpoint(&scope).await.unwrap().tree_size,
            4,
            "{b}"
        );
    }
}
