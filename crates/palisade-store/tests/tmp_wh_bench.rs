#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use palisade_core::acl::{Grants, Role};
use palisade_core::ids::*;
use palisade_core::store::Access;
use palisade_core::tenancy::{SystemScope, TenantScope};
use palisade_core::webhooks::model::*;
use palisade_core::workspaces::model::*;
use palisade_core::principal::{Principal, SignInMethod};
use palisade_store::testing::databases;
use palisade_store::{Migrations, open};
use time::OffsetDateTime;

#[tokio::test]
async fn bench() {
    for db in databases().await {
        let store = open(&db.url, Migrations::Apply).await.unwrap();
        let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let ws = Workspace { id: WorkspaceId::generate(), slug: "s".into(), name: "s".into(), branding: Branding::default(), region: "eu".into(), timezone: "UTC".into(), currency: "EUR".into(), plan: Plan::Starter, modules: vec![], parent_id: None, auth_policy: AuthPolicy::default(), suspended_at: None, deleted_at: None, created_at: t0, updated_at: t0 };
        let p = Principal::User { user_id: UserId::generate(), session_id: SessionId::generate(), method: SignInMethod::Password, signed_in_at: t0 };
        let scope = TenantScope::for_tests(ws.id.clone(), p, Role::Owner);
        let mut tx = store.tenant(&scope, Access::Write).await.unwrap();
        tx.workspace_insert(&ws).await.unwrap();
        let eps: Vec<Endpoint> = (0..10).map(|i| Endpoint { id: WebhookId::generate(), workspace_id: ws.id.clone(), url: format!("u{i}"), description: "d".into(), events: vec![], enabled: true, disabled_reason: None, grants: Grants::resolve(Role::Admin, None, &[]), created_by: "x".into(), created_at: t0, updated_at: t0, secret: vec![1; 60], previous_secret: None, previous_secret_expires_at: None, failing_since: None }).collect();
        for e in &eps { tx.webhook_insert(e).await.unwrap(); }
        for i in 0..1000 {
            let ev = OutboxEvent { id: WebhookEventId::generate(), workspace_id: ws.id.clone(), event_type: "record.created".into(), collection: None, payload: vec![2; 300], created_at: t0 };
            let ds: Vec<Delivery> = eps.iter().map(|e| Delivery { id: DeliveryId::generate(), workspace_id: ws.id.clone(), webhook_id: e.id.clone(), event_id: ev.id.clone(), event_type: ev.event_type.clone(), status: DeliveryStatus::Pending, attempts: 0, schedule_step: 0, next_attempt_at: Some(t0 + time::Duration::microseconds(i)), created_at: t0, updated_at: t0 }).collect();
            tx.webhook_event_insert(&ev, &ds).await.unwrap();
        }
        tx.commit().await.unwrap();
        let start = std::time::Instant::now();
        let mut n = 0;
        let mut round = 0;
        loop {
            round += 1;
            let mut s = store.system(&SystemScope::new("b"), Access::Write).await.unwrap();
            let c = s.webhook_deliveries_claim(t0 + time::Duration::seconds(1), t0 + time::Duration::seconds(30), &format!("c{round}"), 200).await.unwrap();
            s.commit().await.unwrap();
            if c.is_empty() { break; }
            let outs: Vec<DeliveryOutcome> = c.iter().enumerate().map(|(i, c)| DeliveryOutcome { attempt: Attempt { delivery_id: c.delivery.id.clone(), number: 1, attempted_at: t0, status_code: Some(200), latency_ms: 3, response_body: "ok".into(), error: None, trigger: "schedule".into() }, workspace_id: c.delivery.workspace_id.clone(), claim: c.claim.clone(), status: if i % 3 == 0 { DeliveryStatus::Pending } else { DeliveryStatus::Succeeded }, schedule_step: 1, next_attempt_at: Some(t0 + time::Duration::hours(1)), webhook_id: c.delivery.webhook_id.clone(), failing_since: if i % 3 == 0 { Some(t0) } else { None } }).collect();
            let mut s = store.system(&SystemScope::new("b"), Access::Write).await.unwrap();
            n += s.webhook_outcomes_record(&outs, t0).await.unwrap();
            s.commit().await.unwrap();
        }
        let el = start.elapsed();
        println!("{}: {n} deliveries in {:?} = {:.0}/s", db.backend, el, n as f64 / el.as_secs_f64());
    }
}
