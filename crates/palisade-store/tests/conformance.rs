//! The store conformance suite: every case runs on SQLite and on PostgreSQL, each in a fresh
//! database, including cross-tenant cases for every tenant table.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use palisade_core::accounts::model::{
    AccountToken, RefreshToken, ResetCode, Session, TokenPurpose, User,
};
use palisade_core::acl::Role;
use palisade_core::audit::{Actor, AuditEvent, AuditLog, Target};
use palisade_core::error::StoreError;
use palisade_core::ids::{MemberId, ResetCodeId, SessionId, UserId, WorkspaceId};
use palisade_core::principal::{Principal, RequestMeta};
use palisade_core::store::{
    Access, AuditLogTx, AuditQuery, Store, StoredAuditKey, StoredCheckpoint,
};
use palisade_core::tenancy::{SystemScope, TenantScope};
use palisade_core::workspaces::model::{Branding, Member, Plan, Workspace};
use palisade_store::testing::{TestDb, databases, postgres_base, postgres_database};
use palisade_store::{Migrations, OpenError, TENANT_TABLES, open};
use sqlx::Connection as _;
use time::OffsetDateTime;

fn t0() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
}

async fn stores() -> Vec<(TestDb, Arc<dyn Store>)> {
    let mut out = Vec::new();
    for db in databases().await {
        let store = open(&db.url, Migrations::Apply)
            .await
            .unwrap_or_else(|e| panic!("{}: {e:?}", db.backend));
        out.push((db, store));
    }
    out
}

fn user(email: &str) -> User {
    User {
        id: UserId::generate(),
        email: email.into(),
        name: "Test".into(),
        email_verified_at: None,
        created_at: t0(),
        updated_at: t0(),
    }
}

fn principal(u: &User) -> Principal {
    Principal::User {
        user_id: u.id.clone(),
        session_id: SessionId::generate(),
    }
}

fn workspace(slug: &str) -> Workspace {
    Workspace {
        id: WorkspaceId::generate(),
        slug: slug.into(),
        name: slug.into(),
        branding: Branding::default(),
        region: "eu".into(),
        timezone: "Europe/Brussels".into(),
        currency: "EUR".into(),
        plan: Plan::Starter,
        modules: vec![],
        parent_id: None,
        created_at: t0(),
        updated_at: t0(),
    }
}

async fn add_user(store: &dyn Store, email: &str) -> User {
    let u = user(email);
    let mut tx = store.accounts(Some(&u.id), Access::Write).await.unwrap();
    tx.user_insert(&u, "$argon2id$fake").await.unwrap();
    tx.commit().await.unwrap();
    u
}

/// A key row for a test log (the store never opens it).
fn test_key() -> StoredAuditKey {
    StoredAuditKey {
        kid: "kid_test".into(),
        public_key: [7; 32],
        sealed_seed: vec![1, 2, 3],
        created_at: t0(),
    }
}

/// Stores a (fake) signed checkpoint in the scope's log.
async fn add_checkpoint(store: &dyn Store, scope: &TenantScope) {
    let mut tx = store.tenant(scope, Access::Write).await.unwrap();
    tx.audit_checkpoint_insert(&StoredCheckpoint {
        kind: "latest".into(),
        day: None,
        size: 1,
        root: [3; 32],
        body: "b".into(),
        jws: "j".into(),
        note: "n".into(),
        kid: "kid_test".into(),
        signed_at: t0(),
    })
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

/// The log's entries decoded, newest first.
async fn entries(tx: &mut dyn AuditLogTx) -> Vec<serde_json::Value> {
    let q = AuditQuery {
        limit: 100,
        ..AuditQuery::default()
    };
    tx.audit_query(&q)
        .await
        .unwrap()
        .into_iter()
        .map(|e| serde_json::from_slice(&e.bytes).unwrap())
        .collect()
}

/// Creates a workspace owned by `owner`, with one audit event carrying an IP commitment.
async fn add_workspace(store: &dyn Store, owner: &User, slug: &str) -> (Workspace, TenantScope) {
    let ws = workspace(slug);
    let scope = TenantScope::for_tests(ws.id.clone(), principal(owner), Role::Owner);
    let mut tx = store.tenant(&scope, Access::Write).await.unwrap();
    tx.workspace_insert(&ws).await.unwrap();
    tx.audit_log_create(&format!("test.example/ws/{}", ws.id), &test_key(), t0())
        .await
        .unwrap();
    tx.member_insert(&Member {
        id: MemberId::generate(),
        workspace_id: ws.id.clone(),
        user_id: owner.id.clone(),
        role: Role::Owner,
        created_at: t0(),
    })
    .await
    .unwrap();
    let meta = RequestMeta {
        request_id: Some("req_1".into()),
        ip: Some("203.0.113.7".parse().unwrap()),
        user_agent: None,
        ..RequestMeta::default()
    };
    let event = AuditEvent::new(
        AuditLog::Workspace(ws.id.clone()),
        "workspace.create",
        Actor::of(scope.principal()),
        Target {
            kind: "workspace".into(),
            id: ws.id.to_string(),
        },
    );
    tx.audit_append(&event.seal(&meta, t0()).unwrap())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    (ws, scope)
}

#[tokio::test]
async fn users_round_trip_and_duplicate_email_is_a_conflict() {
    for (db, store) in stores().await {
        let u = add_user(&*store, "ada@example.com").await;
        let mut tx = store.accounts(None, Access::Write).await.unwrap();
        let (found, hash) = tx
            .user_by_email("ada@example.com")
            .await
            .unwrap()
            .expect(db.backend);
        assert_eq!(
            (found, hash.password_hash.as_str(), hash.failed_logins),
            (u.clone(), "$argon2id$fake", 0),
            "{}",
            db.backend
        );
        assert_eq!(tx.user_by_id(&u.id).await.unwrap(), Some(u.clone()));
        let again = user("ada@example.com");
        assert!(
            matches!(
                tx.user_insert(&again, "x").await,
                Err(StoreError::Conflict(_))
            ),
            "{}",
            db.backend
        );
    }
}

#[tokio::test]
async fn refresh_token_can_be_used_once_and_sessions_revoke_once() {
    for (db, store) in stores().await {
        let u = add_user(&*store, "grace@example.com").await;
        let session = Session {
            id: SessionId::generate(),
            user_id: u.id.clone(),
            created_at: t0(),
            expires_at: t0() + time::Duration::days(30),
            revoked_at: None,
            revoked_reason: None,
            last_used_at: t0(),
            user_agent: Some("test-agent/1".into()),
            ip_prefix: Some("192.0.2.0/24".into()),
        };
        let token = RefreshToken {
            hash: [7; 32],
            session_id: session.id.clone(),
            user_id: u.id.clone(),
            issued_at: t0(),
            expires_at: session.expires_at,
            used_at: None,
        };
        let mut tx = store.accounts(Some(&u.id), Access::Write).await.unwrap();
        tx.session_insert(&session).await.unwrap();
        tx.refresh_insert(&token).await.unwrap();
        tx.commit().await.unwrap();

        let mut tx = store.accounts(Some(&u.id), Access::Write).await.unwrap();
        assert_eq!(
            tx.refresh_get(&[7; 32]).await.unwrap(),
            Some(token.clone()),
            "{}",
            db.backend
        );
        assert!(tx.refresh_mark_used(&[7; 32], t0()).await.unwrap());
        assert!(
            !tx.refresh_mark_used(&[7; 32], t0()).await.unwrap(),
            "{}: second use must fail",
            db.backend
        );
        assert!(
            tx.session_revoke(&session.id, t0(), "logout")
                .await
                .unwrap()
        );
        assert!(
            !tx.session_revoke(&session.id, t0(), "logout")
                .await
                .unwrap()
        );
        tx.commit().await.unwrap();
        let mut tx = store.accounts(Some(&u.id), Access::Read).await.unwrap();
        let s = tx.session_get(&session.id).await.unwrap().unwrap();
        assert_eq!(
            (s.user_agent.as_deref(), s.ip_prefix.as_deref()),
            (Some("test-agent/1"), Some("192.0.2.0/24")),
            "{}",
            db.backend
        );
        assert_eq!(
            (s.revoked_at, s.revoked_reason.as_deref()),
            (Some(t0()), Some("logout")),
            "{}",
            db.backend
        );
    }
}

fn session_of(u: &User, created: OffsetDateTime) -> Session {
    Session {
        id: SessionId::generate(),
        user_id: u.id.clone(),
        created_at: created,
        expires_at: created + time::Duration::days(30),
        revoked_at: None,
        revoked_reason: None,
        last_used_at: created,
        user_agent: None,
        ip_prefix: None,
    }
}

#[tokio::test]
async fn failed_sign_ins_count_atomically_and_a_lock_restarts_the_count() {
    for (db, store) in stores().await {
        let u = add_user(&*store, "lock@example.com").await;
        let mut tx = store.accounts(None, Access::Write).await.unwrap();
        for n in 1..=3 {
            assert_eq!(
                tx.user_sign_in_failed(&u.id).await.unwrap(),
                n,
                "{}",
                db.backend
            );
        }
        let until = t0() + time::Duration::minutes(15);
        tx.user_lock(&u.id, until).await.unwrap();
        let (_, c) = tx.user_with_credentials(&u.id).await.unwrap().unwrap();
        assert_eq!(
            (c.failed_logins, c.lock_count, c.locked_until),
            (0, 1, Some(until)),
            "{}",
            db.backend
        );
        assert!(c.locked_at(t0()) && !c.locked_at(until), "{}", db.backend);
        tx.user_set_password(&u.id, "$argon2id$new", t0())
            .await
            .unwrap();
        let (_, c) = tx.user_with_credentials(&u.id).await.unwrap().unwrap();
        assert_eq!(
            (c.password_hash.as_str(), c.lock_count, c.locked_until),
            ("$argon2id$new", 0, None),
            "{}",
            db.backend
        );
        assert!(
            tx.user_verify_email(&u.id, "lock@example.com", t0())
                .await
                .unwrap()
        );
        assert!(
            !tx.user_verify_email(&u.id, "lock@example.com", t0())
                .await
                .unwrap(),
            "{}: once",
            db.backend
        );
        assert!(
            !tx.user_verify_email(&u.id, "other@example.com", t0())
                .await
                .unwrap()
        );
        tx.commit().await.unwrap();
    }
}

#[tokio::test]
async fn account_tokens_are_single_use_per_purpose_and_expire() {
    for (db, store) in stores().await {
        let u = add_user(&*store, "tok@example.com").await;
        let token = |hash: u8, purpose: TokenPurpose| AccountToken {
            hash: [hash; 32],
            purpose,
            user_id: u.id.clone(),
            email: u.email.clone(),
            created_at: t0(),
            expires_at: t0() + time::Duration::minutes(15),
            used_at: None,
        };
        let mut tx = store.accounts(None, Access::Write).await.unwrap();
        tx.account_token_insert(&token(1, TokenPurpose::MagicLink))
            .await
            .unwrap();
        tx.account_token_insert(&token(2, TokenPurpose::VerifyEmail))
            .await
            .unwrap();
        assert_eq!(
            tx.account_token_use(&[1; 32], TokenPurpose::VerifyEmail, t0())
                .await
                .unwrap(),
            None,
            "{}: wrong purpose",
            db.backend
        );
        let late = t0() + time::Duration::minutes(15);
        assert_eq!(
            tx.account_token_use(&[2; 32], TokenPurpose::VerifyEmail, late)
                .await
                .unwrap(),
            None,
            "{}: expired",
            db.backend
        );
        let used = tx
            .account_token_use(&[1; 32], TokenPurpose::MagicLink, t0())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (used.user_id, used.used_at),
            (u.id.clone(), Some(t0())),
            "{}",
            db.backend
        );
        assert_eq!(
            tx.account_token_use(&[1; 32], TokenPurpose::MagicLink, t0())
                .await
                .unwrap(),
            None,
            "{}: second use",
            db.backend
        );
        tx.commit().await.unwrap();
    }
}

#[tokio::test]
async fn reset_codes_allow_a_bounded_number_of_attempts_and_only_the_newest_is_open() {
    for (db, store) in stores().await {
        let u = add_user(&*store, "reset@example.com").await;
        let code = |minutes: i64| ResetCode {
            id: ResetCodeId::generate(),
            user_id: u.id.clone(),
            code_hash: "$argon2id$code".into(),
            created_at: t0() + time::Duration::minutes(minutes),
            expires_at: t0() + time::Duration::minutes(minutes + 15),
            attempts: 0,
            closed_at: None,
        };
        let (first, second) = (code(0), code(1));
        let mut tx = store.accounts(None, Access::Write).await.unwrap();
        tx.reset_code_insert(&first).await.unwrap();
        tx.reset_code_insert(&second).await.unwrap();
        let open = tx.reset_code_live(&u.id, t0()).await.unwrap().unwrap();
        assert_eq!(
            open.id, second.id,
            "{}: the newer code replaces the older",
            db.backend
        );
        assert_eq!(
            tx.reset_code_attempt(&first.id, 5).await.unwrap(),
            None,
            "{}: replaced code",
            db.backend
        );
        let attempts: Vec<Option<u32>> = {
            let mut v = Vec::new();
            for _ in 0..6 {
                v.push(tx.reset_code_attempt(&second.id, 5).await.unwrap());
            }
            v
        };
        assert_eq!(
            attempts,
            [Some(1), Some(2), Some(3), Some(4), Some(5), None],
            "{}",
            db.backend
        );
        let late = t0() + time::Duration::minutes(16);
        assert_eq!(
            tx.reset_code_live(&u.id, late).await.unwrap(),
            None,
            "{}: expired",
            db.backend
        );
        assert!(tx.reset_code_close(&second.id, t0()).await.unwrap());
        assert!(
            !tx.reset_code_close(&second.id, t0()).await.unwrap(),
            "{}: single use",
            db.backend
        );
        assert_eq!(tx.reset_code_live(&u.id, t0()).await.unwrap(), None);
        tx.commit().await.unwrap();
    }
}

#[tokio::test]
async fn sessions_list_newest_first_and_revoke_all_but_one() {
    for (db, store) in stores().await {
        let u = add_user(&*store, "sess@example.com").await;
        let other = add_user(&*store, "other@example.com").await;
        let mut tx = store.accounts(Some(&u.id), Access::Write).await.unwrap();
        let mut mine = Vec::new();
        for i in 0..3 {
            let s = session_of(&u, t0() + time::Duration::seconds(i));
            tx.session_insert(&s).await.unwrap();
            mine.push(s.id);
        }
        tx.session_insert(&session_of(&other, t0())).await.unwrap();
        let page = tx.sessions_unrevoked(&u.id, None, 2).await.unwrap();
        let ids: Vec<_> = page.iter().map(|s| s.id.clone()).collect();
        assert_eq!(ids, [mine[2].clone(), mine[1].clone()], "{}", db.backend);
        let rest = tx
            .sessions_unrevoked(&u.id, Some(&mine[1]), 2)
            .await
            .unwrap();
        assert_eq!(rest.len(), 1, "{}", db.backend);
        let revoked = tx
            .sessions_revoke_all(&u.id, Some(&mine[0]), t0(), "test")
            .await
            .unwrap();
        let mut expected = vec![mine[1].clone(), mine[2].clone()];
        expected.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        assert_eq!(revoked, expected, "{}", db.backend);
        let left = tx.sessions_unrevoked(&u.id, None, 10).await.unwrap();
        assert_eq!(left.len(), 1, "{}", db.backend);
        assert_eq!(left[0].id, mine[0], "{}", db.backend);
        assert_eq!(
            tx.sessions_unrevoked(&other.id, None, 10)
                .await
                .unwrap()
                .len(),
            1,
            "{}: other users untouched",
            db.backend
        );
        tx.commit().await.unwrap();
    }
}

#[tokio::test]
async fn uncommitted_transaction_writes_nothing() {
    for (db, store) in stores().await {
        let u = user("rolled@example.com");
        {
            let mut tx = store.accounts(None, Access::Write).await.unwrap();
            tx.user_insert(&u, "x").await.unwrap();
            // dropped without commit
        }
        let mut tx = store.accounts(None, Access::Read).await.unwrap();
        assert_eq!(tx.user_by_id(&u.id).await.unwrap(), None, "{}", db.backend);
    }
}

#[tokio::test]
async fn slug_is_unique_across_workspaces() {
    for (db, store) in stores().await {
        let a = add_user(&*store, "a@example.com").await;
        add_workspace(&*store, &a, "acme").await;
        let ws = workspace("acme");
        let scope = TenantScope::for_tests(ws.id.clone(), principal(&a), Role::Owner);
        let mut tx = store.tenant(&scope, Access::Write).await.unwrap();
        assert!(
            matches!(tx.workspace_insert(&ws).await, Err(StoreError::Conflict(_))),
            "{}",
            db.backend
        );
    }
}

#[tokio::test]
async fn memberships_show_only_the_users_own_workspaces() {
    for (db, store) in stores().await {
        let a = add_user(&*store, "a@example.com").await;
        let b = add_user(&*store, "b@example.com").await;
        let (wa, _) = add_workspace(&*store, &a, "alpha").await;
        let (wb, _) = add_workspace(&*store, &b, "beta").await;
        let (wa2, _) = add_workspace(&*store, &a, "alpha-two").await;

        let mut tx = store.accounts(Some(&a.id), Access::Read).await.unwrap();
        let mine: Vec<_> = tx
            .memberships(&a.id, None, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.workspace.id)
            .collect();
        assert_eq!(
            mine,
            vec![wa.id.clone(), wa2.id.clone()],
            "{}: id order, only A's",
            db.backend
        );
        let page2: Vec<_> = tx
            .memberships(&a.id, Some(&wa.id), 10)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.workspace.id)
            .collect();
        assert_eq!(page2, vec![wa2.id.clone()], "{}", db.backend);
        let m = tx
            .membership(&a.id, "alpha")
            .await
            .unwrap()
            .expect("by slug");
        assert_eq!(
            (m.workspace.id.clone(), m.role),
            (wa.id.clone(), Role::Owner)
        );
        assert!(
            tx.membership(&a.id, wa.id.as_str())
                .await
                .unwrap()
                .is_some(),
            "by id"
        );
        // Cross-tenant: B's workspace does not exist for A, by id or by slug.
        assert!(
            tx.membership(&a.id, "beta").await.unwrap().is_none(),
            "{}",
            db.backend
        );
        assert!(
            tx.membership(&a.id, wb.id.as_str())
                .await
                .unwrap()
                .is_none(),
            "{}",
            db.backend
        );
    }
}

#[tokio::test]
async fn tenant_transactions_see_only_their_workspace_rows() {
    for (db, store) in stores().await {
        let a = add_user(&*store, "a@example.com").await;
        let b = add_user(&*store, "b@example.com").await;
        let (wa, sa) = add_workspace(&*store, &a, "alpha").await;
        let (wb, sb) = add_workspace(&*store, &b, "beta").await;

        let mut tx = store.tenant(&sa, Access::Read).await.unwrap();
        assert_eq!(
            tx.workspace_get().await.unwrap().map(|w| w.id),
            Some(wa.id.clone())
        );
        let events = entries(&mut *tx).await;
        assert_eq!(events.len(), 1, "{}", db.backend);
        assert_eq!(events[0]["target"]["id"], wa.id.as_str());
        assert_eq!(events[0]["ws"], wa.id.as_str());
        drop(tx);

        // Writing another workspace's row through A's scope is refused before any SQL runs.
        let mut tx = store.tenant(&sa, Access::Write).await.unwrap();
        let foreign = Member {
            id: MemberId::generate(),
            workspace_id: wb.id.clone(),
            user_id: a.id.clone(),
            role: Role::Owner,
            created_at: t0(),
        };
        assert!(tx.member_insert(&foreign).await.is_err(), "{}", db.backend);
        let event = AuditEvent::new(
            AuditLog::Workspace(wb.id.clone()),
            "x.y",
            Actor::anonymous(),
            Target {
                kind: "x".into(),
                id: "1".into(),
            },
        );
        assert!(
            tx.audit_append(&event.seal(&RequestMeta::default(), t0()).unwrap())
                .await
                .is_err(),
            "{}",
            db.backend
        );
        drop(tx);

        let mut tx = store.tenant(&sb, Access::Read).await.unwrap();
        let events = entries(&mut *tx).await;
        assert!(
            !events.is_empty() && events.iter().all(|e| e["ws"] == wb.id.as_str()),
            "{}",
            db.backend
        );
    }
}

#[tokio::test]
async fn audit_events_hold_commitments_never_the_ip() {
    for (db, store) in stores().await {
        let a = add_user(&*store, "a@example.com").await;
        let (_, sa) = add_workspace(&*store, &a, "alpha").await;
        let mut tx = store.tenant(&sa, Access::Read).await.unwrap();
        let stored = tx.audit_entries(0, 1).await.unwrap();
        let e: serde_json::Value = serde_json::from_slice(&stored[0].bytes).unwrap();
        assert_eq!(e["request_id"], "req_1");
        assert_eq!(e["gdpr"], true);
        let commitment = e["pii"]["/ip"].as_str().expect("ip commitment");
        assert_eq!(commitment.len(), 43, "{}: base64url SHA-256", db.backend);
        let raw = String::from_utf8(stored[0].bytes.clone()).unwrap();
        assert!(!raw.contains("203.0.113.7"), "{}", db.backend);
        // The opening sits beside the entry, and opens the commitment.
        let o = &stored[0].openings[0];
        assert_eq!(
            (o.pointer.as_str(), &o.value),
            ("/ip", &serde_json::json!("203.0.113.7"))
        );
        let salt: [u8; 32] = o.salt.clone().try_into().unwrap();
        assert_eq!(
            palisade_audit::b64url(&palisade_audit::pii_commitment(&salt, b"\"203.0.113.7\"")),
            commitment
        );
    }
}

#[tokio::test]
async fn system_scope_resolves_any_workspace_by_id_or_slug() {
    for (db, store) in stores().await {
        let a = add_user(&*store, "a@example.com").await;
        let (wa, _) = add_workspace(&*store, &a, "alpha").await;
        let mut tx = store
            .system(&SystemScope::new("test"), Access::Read)
            .await
            .unwrap();
        assert_eq!(
            tx.workspace_resolve("alpha").await.unwrap(),
            Some(wa.id.clone()),
            "{}",
            db.backend
        );
        assert_eq!(
            tx.workspace_resolve(wa.id.as_str()).await.unwrap(),
            Some(wa.id.clone())
        );
        assert_eq!(tx.workspace_resolve("nope").await.unwrap(), None);
    }
}

/// Raw SQL against the test database, as the database's owner or as `palisade_app`.
async fn raw_pg(url: &str, as_app: bool) -> sqlx::PgConnection {
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    if as_app {
        sqlx::query("SET ROLE palisade_app")
            .execute(&mut conn)
            .await
            .unwrap();
    }
    conn
}

/// What the application role must never do to the log, on either backend.
const APPEND_ONLY_VIOLATIONS: [&str; 10] = [
    "UPDATE audit_entries SET entry = leaf",
    "UPDATE audit_entries SET action = 'forged'",
    "DELETE FROM audit_entries",
    "UPDATE audit_tree SET hash = hash",
    "DELETE FROM audit_tree",
    "UPDATE audit_openings SET value = '\"x\"'",
    "UPDATE audit_checkpoints SET jws = 'x'",
    "DELETE FROM audit_checkpoints",
    "UPDATE audit_keys SET public_key = sealed_seed",
    "DELETE FROM audit_keys",
];

#[tokio::test]
async fn audit_log_is_append_only_in_the_database() {
    for (db, store) in stores().await {
        let a = add_user(&*store, "a@example.com").await;
        let (wa, sa) = add_workspace(&*store, &a, "alpha").await;
        add_checkpoint(&*store, &sa).await;
        let mut tx = store.accounts(Some(&a.id), Access::Write).await.unwrap();
        tx.audit_log_create("test.example/instance", &test_key(), t0())
            .await
            .unwrap();
        let event = AuditEvent::new(
            AuditLog::Instance,
            "user.sign_up",
            Actor::anonymous(),
            Target {
                kind: "user".into(),
                id: a.id.to_string(),
            },
        );
        tx.audit_append(&event.seal(&RequestMeta::default(), t0()).unwrap())
            .await
            .unwrap();
        tx.commit().await.unwrap();
        if db.backend == "sqlite" {
            let path = db.url.strip_prefix("sqlite:").unwrap();
            let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{path}"))
                .await
                .unwrap();
            for sql in APPEND_ONLY_VIOLATIONS {
                let err = sqlx::query(sql).execute(&mut conn).await.expect_err(sql);
                assert!(err.to_string().contains("append-only"), "{sql}: {err}");
            }
        } else {
            let mut conn = raw_pg(&db.url, true).await;
            let mut tx = conn.begin().await.unwrap();
            sqlx::query("SELECT set_config('app.workspace_id', $1, true)")
                .bind(wa.id.as_str())
                .execute(&mut *tx)
                .await
                .unwrap();
            for sql in APPEND_ONLY_VIOLATIONS {
                let mut sp = tx.begin().await.unwrap();
                let err = sqlx::query(sql).execute(&mut *sp).await.expect_err(sql);
                assert!(
                    err.to_string().contains("permission denied"),
                    "{sql}: {err}"
                );
                sp.rollback().await.unwrap();
            }
        }
    }
}

/// RLS alone (no application filter): as `palisade_app` with no workspace set, every tenant
/// table looks empty although rows exist; with one workspace set, only its rows are visible.
#[tokio::test]
async fn postgres_rls_hides_every_tenant_row_without_the_application_filter() {
    let Some(base) = postgres_base() else { return };
    let url = postgres_database(&base).await;
    let store = open(&url, Migrations::Apply).await.unwrap();
    let a = add_user(&*store, "a@example.com").await;
    let b = add_user(&*store, "b@example.com").await;
    let (wa, sa) = add_workspace(&*store, &a, "alpha").await;
    let (_, sb) = add_workspace(&*store, &b, "beta").await;
    add_checkpoint(&*store, &sa).await;
    add_checkpoint(&*store, &sb).await;

    let mut owner = raw_pg(&url, false).await;
    let mut app = raw_pg(&url, true).await;
    for table in TENANT_TABLES {
        let sql = format!("SELECT count(*) FROM {table}");
        // The owner is subject to FORCE ROW LEVEL SECURITY too.
        let as_app: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.clone()))
            .fetch_one(&mut app)
            .await
            .unwrap();
        assert_eq!(
            as_app, 0,
            "{table} visible to palisade_app without app.workspace_id"
        );
        let as_owner: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.clone()))
            .fetch_one(&mut owner)
            .await
            .unwrap();
        assert_eq!(
            as_owner, 0,
            "{table} visible to the owner without app.workspace_id"
        );

        let mut tx = app.begin().await.unwrap();
        sqlx::query("SELECT set_config('app.workspace_id', $1, true)")
            .bind(wa.id.as_str())
            .execute(&mut *tx)
            .await
            .unwrap();
        let scoped: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.clone()))
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        assert!(
            scoped >= 1,
            "{table}: rows of the set workspace are visible"
        );
        let column = match *table {
            "workspaces" => "id",
            t if t.starts_with("audit_") => "log_id",
            _ => "workspace_id",
        };
        let foreign: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {table} WHERE {column} <> $1"
        )))
        .bind(wa.id.as_str())
        .fetch_one(&mut *tx)
        .await
        .unwrap();
        assert_eq!(foreign, 0, "{table}: another workspace's rows leak");
        tx.rollback().await.unwrap();
    }
    // The setting is transaction-local: after the transaction, nothing is visible again.
    let after: i64 = sqlx::query_scalar("SELECT count(*) FROM workspaces")
        .fetch_one(&mut app)
        .await
        .unwrap();
    assert_eq!(after, 0);
    // And WITH CHECK refuses writing a row for another workspace.
    let mut tx = app.begin().await.unwrap();
    sqlx::query("SELECT set_config('app.workspace_id', $1, true)")
        .bind(wa.id.as_str())
        .execute(&mut *tx)
        .await
        .unwrap();
    let err = sqlx::query("INSERT INTO members (workspace_id, id, user_id, role, created_at) SELECT id, 'mem_x', $1, 'owner', now() FROM workspaces")
        .bind(b.id.as_str())
        .execute(&mut *tx)
        .await;
    assert!(err.is_ok(), "own workspace insert allowed: {err:?}");
    let err = sqlx::query("UPDATE members SET workspace_id = 'ws_other' WHERE id = 'mem_x'")
        .execute(&mut *tx)
        .await
        .expect_err("re-homing a row");
    assert!(err.to_string().contains("row-level security"), "{err}");
}

#[tokio::test]
async fn postgres_refuses_bypassrls_and_superuser_roles() {
    let Some(_) = postgres_base() else { return };
    for var in [
        "PALISADE_TEST_PG_BYPASS_URL",
        "PALISADE_TEST_PG_SUPERUSER_URL",
    ] {
        let base = std::env::var(var).unwrap_or_else(|_| panic!("{var} is set by scripts/pg.sh"));
        let url = postgres_database(&base).await;
        match open(&url, Migrations::Apply).await {
            Err(OpenError::UnsafeRole { role, reason }) => {
                assert!(
                    reason.contains("BYPASSRLS") || reason.contains("superuser"),
                    "{role}: {reason}"
                );
            }
            other => panic!(
                "{var}: expected UnsafeRole, got {:?}",
                other.map(|s| s.backend())
            ),
        }
    }
}

#[tokio::test]
async fn postgres_refuses_to_start_when_rls_is_not_forced() {
    let Some(base) = postgres_base() else { return };
    let Ok(superuser) = std::env::var("PALISADE_TEST_PG_SUPERUSER_URL") else {
        panic!("PALISADE_TEST_PG_SUPERUSER_URL is set by scripts/pg.sh")
    };
    let url = postgres_database(&base).await;
    open(&url, Migrations::Apply).await.unwrap();
    let mut su_url = url::Url::parse(&superuser).unwrap();
    su_url.set_path(url::Url::parse(&url).unwrap().path());
    let mut su = sqlx::PgConnection::connect(su_url.as_str()).await.unwrap();
    sqlx::query("ALTER TABLE members NO FORCE ROW LEVEL SECURITY")
        .execute(&mut su)
        .await
        .unwrap();
    match open(&url, Migrations::Apply).await {
        Err(OpenError::RlsNotForced(table)) => assert_eq!(table, "members"),
        other => panic!(
            "expected RlsNotForced, got {:?}",
            other.map(|s| s.backend())
        ),
    }
}
