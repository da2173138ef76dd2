//! Append cost through the real write path: the same business write (lock and update a
//! workspace row, commit) with and without one audit append (entry bytes, leaf, tree hashes,
//! IP and user-agent openings, head update), on SQLite and, when PALISADE_TEST_PG_URL is set,
//! on PostgreSQL. Reports mean microseconds per transaction and the append's share.
//!
//! Usage: cargo run --release -p palisade-store --features test-support --example audit_append -- [N]

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::time::Instant;

use palisade_core::acl::Role;
use palisade_core::audit::{Actor, AuditEvent, AuditLog, Target};
use palisade_core::ids::{SessionId, UserId, WorkspaceId};
use palisade_core::principal::{Principal, RequestMeta, SignInMethod};
use palisade_core::store::{Access, Store, StoredAuditKey};
use palisade_core::tenancy::TenantScope;
use palisade_core::workspaces::model::{AuthPolicy, Branding, Plan, Workspace};
use palisade_store::testing::databases;
use palisade_store::{Migrations, open};
use time::OffsetDateTime;

async fn run(
    store: &dyn Store,
    n: u32,
    audit: bool,
    scope: &TenantScope,
    meta: &RequestMeta,
) -> f64 {
    let started = Instant::now();
    for i in 0..n {
        let mut tx = store.tenant(scope, Access::Write).await.unwrap();
        let mut w = tx.workspace_get().await.unwrap().unwrap();
        w.name = format!("Bench {i}");
        tx.workspace_update(&w).await.unwrap();
        if audit {
            let mut event = AuditEvent::new(
                AuditLog::Workspace(scope.workspace_id().clone()),
                "workspace.update",
                Actor::of(scope.principal()),
                Target {
                    kind: "workspace".into(),
                    id: scope.workspace_id().to_string(),
                },
            );
            event.diff_field(
                "/name",
                format!("Bench {}", i.wrapping_sub(1)).into(),
                w.name.clone().into(),
            );
            tx.audit_append(&event.seal(meta, OffsetDateTime::now_utc()).unwrap())
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();
    }
    started.elapsed().as_secs_f64() * 1e6 / f64::from(n)
}

#[tokio::main]
async fn main() {
    let n: u32 = std::env::args().nth(1).map_or(2000, |v| v.parse().unwrap());
    for db in databases().await {
        let store = open(&db.url, Migrations::Apply).await.unwrap();
        let now = OffsetDateTime::now_utc();
        let ws = Workspace {
            id: WorkspaceId::generate(),
            slug: "bench".into(),
            name: "Bench".into(),
            branding: Branding::default(),
            region: "eu".into(),
            timezone: "UTC".into(),
            currency: "EUR".into(),
            plan: Plan::Starter,
            modules: vec![],
            parent_id: None,
            auth_policy: AuthPolicy::default(),
            suspended_at: None,
            deleted_at: None,
            created_at: now,
            updated_at: now,
        };
        let principal = Principal::User {
            user_id: UserId::generate(),
            session_id: SessionId::generate(),
            method: SignInMethod::Password,
            signed_in_at: now,
        };
        let scope = TenantScope::for_tests(ws.id.clone(), principal, Role::Owner);
        let mut tx = store.tenant(&scope, Access::Write).await.unwrap();
        tx.workspace_insert(&ws).await.unwrap();
        let key = StoredAuditKey {
            kid: "bench".into(),
            public_key: [1; 32],
            sealed_seed: vec![0; 60],
            created_at: now,
        };
        tx.audit_log_create("bench.example.com/ws/bench", &key, now)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let meta = RequestMeta {
            request_id: Some("req_0000000000000000000000000".into()),
            ip: Some("203.0.113.7".parse().unwrap()),
            user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) bench".into()),
            ..RequestMeta::default()
        };
        run(&*store, n / 10, true, &scope, &meta).await; // warm up
        let plain = run(&*store, n, false, &scope, &meta).await;
        let audited = run(&*store, n, true, &scope, &meta).await;
        println!(
            "{}: business write {plain:.0} µs/tx; with audit append {audited:.0} µs/tx; append adds {:.0} µs ({:.1}% of the audited transaction)",
            db.backend,
            audited - plain,
            (audited - plain) / audited * 100.0
        );
    }
}
