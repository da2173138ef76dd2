//! The store conformance suite: every case runs on SQLite and on PostgreSQL, each in a fresh
//! database, including cross-tenant cases for every tenant table.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use palisade_audit::merkle::NodeId;
use palisade_core::accounts::model::{
    AccountToken, RefreshToken, ResetCode, Session, TokenPurpose, User,
};
use palisade_core::acl::{
    FieldGrant, Grants, Permission, PermissionSet, Role, RoleGrants, TeamGrant,
};
use palisade_core::api_keys::model::{ApiKey, Creator, Scope};
use palisade_core::audit::{Actor, AuditEvent, AuditLog, Target};
use palisade_core::collections::model::{
    Collection, Field, FieldOptions, FieldType, Record, RecordStatus,
};
use palisade_core::error::StoreError;
use palisade_core::ids::{
    ApiKeyId, CollectionId, CustomRoleId, DeliveryId, InvitationId, MemberId, RecordId,
    ResetCodeId, SessionId, TeamId, UserId, WebhookEventId, WebhookId, WorkspaceId,
};
use palisade_core::principal::{Principal, RequestMeta, SignInMethod};
use palisade_core::store::{
    Access, AuditLogTx, AuditQuery, Store, StoredAuditKey, StoredCheckpoint, StoredEntry, TenantTx,
};
use palisade_core::tenancy::{SystemScope, TenantScope};
use palisade_core::webhooks::model::{
    Attempt, ClaimedDelivery, Delivery, DeliveryOutcome, DeliveryStatus, Endpoint, OutboxEvent,
};
use palisade_core::workspaces::model::{
    AuthPolicy, Branding, CustomRole, Invitation, Member, Plan, Team, Workspace,
};
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
        method: SignInMethod::Password,
        signed_in_at: t0(),
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
        auth_policy: AuthPolicy::default(),
        suspended_at: None,
        deleted_at: None,
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

fn member(ws: &Workspace, u: &User, role: Role) -> Member {
    Member {
        id: MemberId::generate(),
        workspace_id: ws.id.clone(),
        user_id: u.id.clone(),
        role,
        custom_role_id: None,
        active: true,
        created_at: t0(),
        updated_at: t0(),
    }
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
    tx.member_insert(&member(&ws, owner, Role::Owner))
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
        assert_eq!(
            conflict_name(tx.user_insert(&again, "x").await),
            "users_email",
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
            method: SignInMethod::MagicLink,
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
            (s.user_agent.as_deref(), s.ip_prefix.as_deref(), s.method),
            (
                Some("test-agent/1"),
                Some("192.0.2.0/24"),
                SignInMethod::MagicLink
            ),
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
        method: SignInMethod::Password,
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
        assert_eq!(
            conflict_name(tx.workspace_insert(&ws).await),
            "workspaces_slug",
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
            .member_access(&a.id, "alpha")
            .await
            .unwrap()
            .expect("by slug")
            .membership;
        assert_eq!(
            (m.workspace.id.clone(), m.role, m.active),
            (wa.id.clone(), Role::Owner, true)
        );
        assert!(
            tx.member_access(&a.id, wa.id.as_str())
                .await
                .unwrap()
                .is_some(),
            "by id"
        );
        // Cross-tenant: B's workspace does not exist for A, by id or by slug.
        assert!(
            tx.member_access(&a.id, "beta").await.unwrap().is_none(),
            "{}",
            db.backend
        );
        assert!(
            tx.member_access(&a.id, wb.id.as_str())
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
            custom_role_id: None,
            active: true,
            created_at: t0(),
            updated_at: t0(),
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
async fn a_batched_append_stores_what_appending_one_by_one_stores() {
    for (db, store) in stores().await {
        let owner = add_user(&*store, "batch@example.com").await;
        let (ws, scope) = add_workspace(&*store, &owner, "batch").await;
        let events: Vec<_> = (0..5)
            .map(|i| {
                AuditEvent::new(
                    AuditLog::Workspace(ws.id.clone()),
                    "record.tag_added",
                    Actor::of(scope.principal()),
                    Target {
                        kind: "record".into(),
                        id: format!("rec_{i}"),
                    },
                )
                .seal(&RequestMeta::default(), t0())
                .unwrap()
            })
            .collect();
        // What a batch writes, read back, then rolled back.
        let mut tx = store.tenant(&scope, Access::Write).await.unwrap();
        let batch = tx.audit_append_all(&events).await.unwrap();
        let batch_head = tx.audit_head(false).await.unwrap().unwrap();
        let batch_entries = tx.audit_entries(0, 6).await.unwrap();
        let nodes: Vec<NodeId> = (0..6).map(|i| NodeId { level: 0, index: i }).collect();
        let batch_nodes = tx.audit_nodes(&nodes).await.unwrap();
        drop(tx);
        // The same events one by one.
        let mut tx = store.tenant(&scope, Access::Write).await.unwrap();
        assert_eq!(
            tx.audit_head(false).await.unwrap().unwrap().size,
            1,
            "{}",
            db.backend
        );
        let mut single = Vec::new();
        for e in &events {
            single.push(tx.audit_append(e).await.unwrap());
        }
        let head = tx.audit_head(false).await.unwrap().unwrap();
        let stored = tx.audit_entries(0, 6).await.unwrap();
        assert_eq!(batch, single, "{}", db.backend);
        assert_eq!(
            (batch_head.size, batch_head.last_leaf, batch_head.frontier),
            (head.size, head.last_leaf, head.frontier),
            "{}",
            db.backend
        );
        assert_eq!(head.size, 6);
        let bytes = |v: &[StoredEntry]| v.iter().map(|e| e.bytes.clone()).collect::<Vec<_>>();
        assert_eq!(bytes(&batch_entries), bytes(&stored), "{}", db.backend);
        assert_eq!(
            batch_nodes,
            tx.audit_nodes(&nodes).await.unwrap(),
            "{}",
            db.backend
        );
        assert_eq!(batch_nodes.len(), 6);
        tx.commit().await.unwrap();
        // An empty batch writes nothing.
        let mut tx = store.tenant(&scope, Access::Write).await.unwrap();
        assert!(tx.audit_append_all(&[]).await.unwrap().is_empty());
        assert_eq!(tx.audit_head(false).await.unwrap().unwrap().size, 6);
    }
}

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
    let (wb, sb) = add_workspace(&*store, &b, "beta").await;
    add_checkpoint(&*store, &sa).await;
    add_checkpoint(&*store, &sb).await;
    add_member_rows(&*store, &sa, &a, 1).await;
    add_member_rows(&*store, &sb, &b, 2).await;
    // A child of A's workspace, with rows of its own in every member table.
    let c = add_user(&*store, "c@example.com").await;
    let (wc, sc) = add_child(&*store, &c, "alpha-child", &wa).await;
    add_member_rows(&*store, &sc, &c, 3).await;

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
        // A parent reads its children's workspace rows (parent_lifecycle), nothing else of theirs.
        let other = match *table {
            "workspaces" => "id <> $1 AND parent_id IS DISTINCT FROM $1",
            t if t.starts_with("audit_") => "log_id <> $1",
            _ => "workspace_id <> $1",
        };
        let foreign: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {table} WHERE {other}"
        )))
        .bind(wa.id.as_str())
        .fetch_one(&mut *tx)
        .await
        .unwrap();
        assert_eq!(foreign, 0, "{table}: another workspace's rows leak");
        tx.rollback().await.unwrap();
    }

    // The parent's transaction lists its child's row but cannot write it.
    let mut tx = app.begin().await.unwrap();
    sqlx::query("SELECT set_config('app.workspace_id', $1, true)")
        .bind(wa.id.as_str())
        .execute(&mut *tx)
        .await
        .unwrap();
    let children: Vec<String> =
        sqlx::query_scalar("SELECT id FROM workspaces WHERE parent_id = $1")
            .bind(wa.id.as_str())
            .fetch_all(&mut *tx)
            .await
            .unwrap();
    assert_eq!(children, [wc.id.to_string()]);
    let done = sqlx::query("UPDATE workspaces SET name = 'taken' WHERE id = $1")
        .bind(wc.id.as_str())
        .execute(&mut *tx)
        .await
        .unwrap();
    assert_eq!(done.rows_affected(), 0, "parent_lifecycle is read-only");
    tx.rollback().await.unwrap();

    // An account transaction (only app.user_id set) sees the user's own team memberships, those
    // teams and the custom role they hold, and nothing else; it can change none of them.
    for (user, ws) in [(&a, &wa), (&b, &wb), (&c, &wc)] {
        let mut tx = app.begin().await.unwrap();
        sqlx::query("SELECT set_config('app.user_id', $1, true)")
            .bind(user.id.as_str())
            .execute(&mut *tx)
            .await
            .unwrap();
        for table in [
            "members",
            "teams",
            "team_members",
            "custom_roles",
            "invitations",
            "api_keys",
            "collections",
            "records",
            "record_uniques",
            "webhooks",
            "webhook_events",
            "webhook_deliveries",
            "webhook_attempts",
        ] {
            let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT workspace_id FROM {table}"
            )))
            .fetch_all(&mut *tx)
            .await
            .unwrap();
            let expected = if matches!(
                table,
                "invitations" | "api_keys" | "collections" | "records" | "record_uniques"
            ) || table.starts_with("webhook")
            {
                vec![]
            } else {
                vec![ws.id.to_string()]
            };
            assert_eq!(rows, expected, "{table} as {}", user.email);
        }
        for sql in [
            "DELETE FROM members",
            "DELETE FROM team_members",
            "DELETE FROM teams",
            "DELETE FROM custom_roles",
            "UPDATE teams SET name = 'x'",
            "UPDATE custom_roles SET name = 'x'",
            "UPDATE api_keys SET name = 'x'",
            "UPDATE collections SET name = 'x'",
            "DELETE FROM collections",
            "UPDATE records SET version = version + 1",
            "DELETE FROM records",
            "UPDATE record_uniques SET record_id = 'x'",
            "DELETE FROM record_uniques",
        ] {
            let done = sqlx::query(sql).execute(&mut *tx).await.unwrap();
            assert_eq!(done.rows_affected(), 0, "{sql} as {}", user.email);
        }
        tx.rollback().await.unwrap();
    }
    // Invitations and API keys are found by hash only in a system transaction.
    for table in ["invitations", "api_keys"] {
        let mut tx = app.begin().await.unwrap();
        sqlx::query("SELECT set_config('app.system', 'on', true)")
            .execute(&mut *tx)
            .await
            .unwrap();
        let n: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
                .fetch_one(&mut *tx)
                .await
                .unwrap();
        assert_eq!(n, 3, "{table}");
        let done = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE {table} SET revoked_at = now()"
        )))
        .execute(&mut *tx)
        .await
        .unwrap();
        assert_eq!(
            done.rows_affected(),
            0,
            "{table}: system_lookup is read-only"
        );
        tx.rollback().await.unwrap();
    }
    // Collections and records have no lookup outside their workspace: a system transaction
    // sees none.
    let mut tx = app.begin().await.unwrap();
    sqlx::query("SELECT set_config('app.system', 'on', true)")
        .execute(&mut *tx)
        .await
        .unwrap();
    for table in ["collections", "records", "record_uniques"] {
        let n: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
                .fetch_one(&mut *tx)
                .await
                .unwrap();
        assert_eq!(n, 0, "{table} in a system transaction");
    }
    tx.rollback().await.unwrap();
    // The dispatcher's system transaction reads every workspace's endpoints, events and
    // deliveries (it only writes attempts); one bound to a workspace (key rotation) sees its
    // own rows alone.
    for (workspace, visible) in [("", 3), (wa.id.as_str(), 1)] {
        let mut tx = app.begin().await.unwrap();
        sqlx::query(
            "SELECT set_config('app.system', 'on', true), set_config('app.workspace_id', $1, true)",
        )
        .bind(workspace)
        .execute(&mut *tx)
        .await
        .unwrap();
        for table in [
            "webhooks",
            "webhook_events",
            "webhook_deliveries",
            "webhook_attempts",
        ] {
            let n: i64 =
                sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
                    .fetch_one(&mut *tx)
                    .await
                    .unwrap();
            let visible = if table == "webhook_attempts" && workspace.is_empty() {
                0
            } else {
                visible
            };
            assert_eq!(
                n, visible,
                "{table} in a system transaction bound to {workspace:?}"
            );
        }
        tx.rollback().await.unwrap();
    }
    // What no application transaction may do to webhook rows: a system transaction changes no
    // event and deletes no endpoint or delivery (no policy); nobody rewrites an attempt, an
    // endpoint's creator or a delivery's endpoint (no privilege).
    for (sql, system, refused) in [
        ("UPDATE webhook_events SET payload = payload", true, false),
        ("DELETE FROM webhooks", true, false),
        ("DELETE FROM webhook_deliveries", true, true),
        ("UPDATE webhook_attempts SET error = 'x'", false, true),
        ("DELETE FROM webhook_attempts", false, true),
        ("UPDATE webhooks SET created_by = 'x'", false, true),
        (
            "UPDATE webhook_deliveries SET webhook_id = 'x'",
            false,
            true,
        ),
    ] {
        let mut tx = app.begin().await.unwrap();
        sqlx::query(
            "SELECT set_config('app.system', $1, true), set_config('app.workspace_id', $2, true)",
        )
        .bind(if system { "on" } else { "" })
        .bind(if system { "" } else { wa.id.as_str() })
        .execute(&mut *tx)
        .await
        .unwrap();
        let done = sqlx::query(sql).execute(&mut *tx).await;
        if refused {
            let err = done.expect_err(sql);
            assert!(
                err.to_string().contains("permission denied"),
                "{sql}: {err}"
            );
        } else {
            assert_eq!(done.unwrap().rows_affected(), 0, "{sql}");
        }
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
    let err = sqlx::query(
        "INSERT INTO members (workspace_id, id, user_id, role, created_at, updated_at) \
         SELECT id, 'mem_x', $1, 'owner', now(), now() FROM workspaces WHERE id = $2",
    )
    .bind(b.id.as_str())
    .bind(wa.id.as_str())
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

// ---- Members, invitations, teams, custom roles, children (MembersTx) ----

async fn tenant_write(store: &dyn Store, scope: &TenantScope) -> Box<dyn TenantTx> {
    store.tenant(scope, Access::Write).await.unwrap()
}

/// Adds `u` to the scope's workspace.
async fn add_member(store: &dyn Store, scope: &TenantScope, u: &User, role: Role) -> Member {
    let m = Member {
        workspace_id: scope.workspace_id().clone(),
        ..member(&workspace("unused"), u, role)
    };
    let mut tx = tenant_write(store, scope).await;
    tx.member_insert(&m).await.unwrap();
    tx.commit().await.unwrap();
    m
}

fn team(ws: &WorkspaceId, name: &str, grants: Vec<TeamGrant>) -> Team {
    Team {
        id: TeamId::generate(),
        workspace_id: ws.clone(),
        name: name.into(),
        description: Some(format!("{name} team")),
        grants,
        created_at: t0(),
        updated_at: t0(),
    }
}

fn grant(collection: Option<&str>, permissions: &[Permission]) -> TeamGrant {
    TeamGrant {
        collection: collection.map(str::to_owned),
        permissions: permissions.iter().copied().collect(),
    }
}

fn custom_role(ws: &WorkspaceId, name: &str) -> CustomRole {
    CustomRole {
        id: CustomRoleId::generate(),
        workspace_id: ws.clone(),
        name: name.into(),
        description: None,
        base_role: Role::Member,
        permissions: [Permission::RecordsRead, Permission::MembersRead]
            .into_iter()
            .collect(),
        fields: vec![FieldGrant {
            collection: "posts".into(),
            field: "body".into(),
            read: true,
            write: false,
        }],
        created_at: t0(),
        updated_at: t0(),
    }
}

fn invitation(ws: &WorkspaceId, email: &str, by: &User, token: u8) -> Invitation {
    Invitation {
        id: InvitationId::generate(),
        workspace_id: ws.clone(),
        email: email.into(),
        role: Role::Member,
        custom_role_id: None,
        token_hash: [token; 32],
        invited_by: by.id.clone(),
        created_at: t0(),
        expires_at: t0() + time::Duration::days(7),
        accepted_at: None,
        accepted_by: None,
        revoked_at: None,
    }
}

/// A child of `parent` owned by `owner`, created through the child's own scope.
async fn add_child(
    store: &dyn Store,
    owner: &User,
    slug: &str,
    parent: &Workspace,
) -> (Workspace, TenantScope) {
    let ws = Workspace {
        parent_id: Some(parent.id.clone()),
        ..workspace(slug)
    };
    let scope = TenantScope::for_tests(ws.id.clone(), principal(owner), Role::Owner);
    let mut tx = tenant_write(store, &scope).await;
    tx.workspace_insert(&ws).await.unwrap();
    tx.member_insert(&member(&ws, owner, Role::Owner))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    (ws, scope)
}

fn conflict_name<T: std::fmt::Debug>(r: Result<T, StoreError>) -> String {
    match r {
        Err(StoreError::Conflict(name)) => name,
        other => panic!("expected a conflict, got {other:?}"),
    }
}

#[tokio::test]
async fn members_read_with_their_user_update_and_delete() {
    for (db, store) in stores().await {
        let a = add_user(&*store, "a@example.com").await;
        let b = add_user(&*store, "b@example.com").await;
        let c = add_user(&*store, "c@example.com").await;
        let (ws, scope) = add_workspace(&*store, &a, "alpha").await;
        let mb = add_member(&*store, &scope, &b, Role::Member).await;
        let mc = add_member(&*store, &scope, &c, Role::Billing).await;

        let mut tx = tenant_write(&*store, &scope).await;
        let view = tx.member_get(&mb.id).await.unwrap().expect(db.backend);
        assert_eq!(
            (view.member.clone(), view.email.as_str(), view.name.as_str()),
            (mb.clone(), "b@example.com", "Test"),
            "{}",
            db.backend
        );
        assert_eq!(
            tx.member_of_user(&c.id).await.unwrap(),
            Some(mc.clone()),
            "{}",
            db.backend
        );

        let all = tx.members_list(None, 10).await.unwrap();
        let mut expected: Vec<MemberId> = all.iter().map(|v| v.member.id.clone()).collect();
        expected.sort_by(|x, y| x.as_str().cmp(y.as_str()));
        assert_eq!(
            all.iter().map(|v| v.member.id.clone()).collect::<Vec<_>>(),
            expected,
            "{}: id order",
            db.backend
        );
        let mut emails: Vec<&str> = all.iter().map(|v| v.email.as_str()).collect();
        emails.sort_unstable();
        assert_eq!(
            emails,
            ["a@example.com", "b@example.com", "c@example.com"],
            "{}",
            db.backend
        );
        let page = tx.members_list(Some(&expected[0]), 1).await.unwrap();
        assert_eq!(
            page.iter().map(|v| v.member.id.clone()).collect::<Vec<_>>(),
            [expected[1].clone()],
            "{}: after the cursor, at most limit",
            db.backend
        );

        let role = custom_role(&ws.id, "Editors");
        tx.custom_role_insert(&role).await.unwrap();
        let changed = Member {
            role: Role::Admin,
            custom_role_id: Some(role.id.clone()),
            active: false,
            updated_at: t0() + time::Duration::hours(1),
            ..mb.clone()
        };
        tx.member_update(&changed).await.unwrap();
        assert_eq!(
            tx.member_get(&mb.id).await.unwrap().map(|v| v.member),
            Some(changed.clone()),
            "{}",
            db.backend
        );

        assert!(tx.member_delete(&mc.id).await.unwrap(), "{}", db.backend);
        assert!(
            !tx.member_delete(&mc.id).await.unwrap(),
            "{}: already gone",
            db.backend
        );
        assert_eq!(tx.member_get(&mc.id).await.unwrap(), None, "{}", db.backend);
        assert_eq!(tx.member_of_user(&c.id).await.unwrap(), None);
        tx.commit().await.unwrap();

        // A deleted member may join again; a second membership may not.
        add_member(&*store, &scope, &c, Role::Member).await;
        let mut tx = tenant_write(&*store, &scope).await;
        let again = member(&ws, &b, Role::Member);
        assert_eq!(
            conflict_name(tx.member_insert(&again).await),
            "members_workspace_user",
            "{}",
            db.backend
        );
    }
}

#[tokio::test]
async fn owners_active_counts_only_active_owners() {
    for (db, store) in stores().await {
        let a = add_user(&*store, "a@example.com").await;
        let b = add_user(&*store, "b@example.com").await;
        let c = add_user(&*store, "c@example.com").await;
        let d = add_user(&*store, "d@example.com").await;
        let (_, scope) = add_workspace(&*store, &a, "alpha").await;
        let mb = add_member(&*store, &scope, &b, Role::Owner).await;
        let mc = add_member(&*store, &scope, &c, Role::Owner).await;
        add_member(&*store, &scope, &d, Role::Admin).await;
        let mut tx = tenant_write(&*store, &scope).await;
        tx.member_update(&Member {
            active: false,
            ..mc.clone()
        })
        .await
        .unwrap();
        assert_eq!(tx.owners_active().await.unwrap(), 2, "{}", db.backend);
        tx.member_update(&Member {
            active: false,
            ..mb.clone()
        })
        .await
        .unwrap();
        assert_eq!(tx.owners_active().await.unwrap(), 1, "{}", db.backend);
        tx.commit().await.unwrap();
        // Another workspace's owners do not count.
        let (_, other) = add_workspace(&*store, &b, "beta").await;
        let mut tx = tenant_write(&*store, &other).await;
        assert_eq!(tx.owners_active().await.unwrap(), 1, "{}", db.backend);
    }
}

#[tokio::test]
async fn invitations_list_newest_first_and_are_accepted_or_revoked_once() {
    for (db, store) in stores().await {
        let a = add_user(&*store, "a@example.com").await;
        let b = add_user(&*store, "b@example.com").await;
        let (ws, scope) = add_workspace(&*store, &a, "alpha").await;
        let role = custom_role(&ws.id, "Editors");
        let mut invites = vec![
            invitation(&ws.id, "x@example.com", &a, 1),
            invitation(&ws.id, "x@example.com", &a, 2),
            invitation(&ws.id, "y@example.com", &a, 3),
            Invitation {
                custom_role_id: Some(role.id.clone()),
                ..invitation(&ws.id, "z@example.com", &a, 4)
            },
        ];
        // Ids are time-ordered; within one millisecond, sort to know "newest".
        let mut ids: Vec<InvitationId> = invites.iter().map(|i| i.id.clone()).collect();
        ids.sort_by(|x, y| x.as_str().cmp(y.as_str()));
        for (i, id) in invites.iter_mut().zip(ids) {
            i.id = id;
        }
        let mut tx = tenant_write(&*store, &scope).await;
        tx.custom_role_insert(&role).await.unwrap();
        for i in &invites {
            tx.invitation_insert(i).await.unwrap();
        }
        assert_eq!(
            tx.invitation_get(&invites[2].id).await.unwrap(),
            Some(invites[2].clone()),
            "{}",
            db.backend
        );
        let page: Vec<_> = tx
            .invitations_list(None, 2)
            .await
            .unwrap()
            .into_iter()
            .map(|i| i.id)
            .collect();
        assert_eq!(
            page,
            [invites[3].id.clone(), invites[2].id.clone()],
            "{}: newest first",
            db.backend
        );
        let rest: Vec<_> = tx
            .invitations_list(Some(&invites[2].id), 10)
            .await
            .unwrap()
            .into_iter()
            .map(|i| i.id)
            .collect();
        assert_eq!(
            rest,
            [invites[1].id.clone(), invites[0].id.clone()],
            "{}: before the cursor",
            db.backend
        );
        assert_eq!(
            tx.invitations_with_custom_role(&role.id).await.unwrap(),
            1,
            "{}",
            db.backend
        );

        // Accept once; a second accept and a revoke after it fail.
        let later = t0() + time::Duration::minutes(5);
        assert!(
            tx.invitation_accept(&invites[0].id, &b.id, later)
                .await
                .unwrap()
        );
        assert!(
            !tx.invitation_accept(&invites[0].id, &b.id, later)
                .await
                .unwrap(),
            "{}: single use",
            db.backend
        );
        assert!(
            !tx.invitation_revoke(&invites[0].id, later).await.unwrap(),
            "{}: accepted cannot be revoked",
            db.backend
        );
        let accepted = tx.invitation_get(&invites[0].id).await.unwrap().unwrap();
        assert_eq!(
            (
                accepted.accepted_at,
                accepted.accepted_by,
                accepted.revoked_at
            ),
            (Some(later), Some(b.id.clone()), None),
            "{}",
            db.backend
        );

        // Revoking x@'s open invitations leaves the accepted one and y@'s alone.
        assert_eq!(
            tx.invitations_revoke_open("x@example.com", later)
                .await
                .unwrap(),
            [invites[1].id.clone()],
            "{}",
            db.backend
        );
        assert!(
            tx.invitations_revoke_open("x@example.com", later)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            !tx.invitation_accept(&invites[1].id, &b.id, later)
                .await
                .unwrap(),
            "{}: revoked cannot be accepted",
            db.backend
        );
        assert!(tx.invitation_revoke(&invites[3].id, later).await.unwrap());
        assert!(
            !tx.invitation_revoke(&invites[3].id, later).await.unwrap(),
            "{}: revoked once",
            db.backend
        );
        assert_eq!(
            tx.invitations_with_custom_role(&role.id).await.unwrap(),
            0,
            "{}: only open invitations hold a role",
            db.backend
        );
        assert_eq!(
            tx.invitation_get(&invites[2].id)
                .await
                .unwrap()
                .map(|i| i.revoked_at),
            Some(None),
            "{}",
            db.backend
        );
        tx.commit().await.unwrap();
        let mut tx = tenant_write(&*store, &scope).await;
        let dup = invitation(&ws.id, "w@example.com", &a, 3);
        assert_eq!(
            conflict_name(tx.invitation_insert(&dup).await),
            "invitations_token",
            "{}",
            db.backend
        );
        drop(tx);

        // The bearer's lookup: by token, in whichever workspace.
        let mut tx = store
            .system(&SystemScope::new("test"), Access::Read)
            .await
            .unwrap();
        assert_eq!(
            tx.invitation_by_token(&[3; 32]).await.unwrap(),
            Some(invites[2].clone()),
            "{}",
            db.backend
        );
        assert_eq!(tx.invitation_by_token(&[9; 32]).await.unwrap(), None);
    }
}

#[tokio::test]
async fn teams_have_unique_names_and_their_memberships_end_with_the_team_or_member() {
    for (db, store) in stores().await {
        let a = add_user(&*store, "a@example.com").await;
        let b = add_user(&*store, "b@example.com").await;
        let (ws, scope) = add_workspace(&*store, &a, "alpha").await;
        let (wb, sb) = add_workspace(&*store, &b, "beta").await;
        let mb = add_member(&*store, &scope, &b, Role::Member).await;
        let mut tx = tenant_write(&*store, &scope).await;
        let ma = tx.member_of_user(&a.id).await.unwrap().unwrap();
        let writers = team(
            &ws.id,
            "Writers",
            vec![grant(Some("posts"), &[Permission::RecordsWrite])],
        );
        let readers = team(&ws.id, "Readers", vec![]);
        tx.team_insert(&writers).await.unwrap();
        tx.team_insert(&readers).await.unwrap();
        tx.commit().await.unwrap();
        // A failed statement ends a PostgreSQL transaction: each conflict gets its own.
        let mut tx = tenant_write(&*store, &scope).await;
        assert_eq!(
            conflict_name(tx.team_insert(&team(&ws.id, "Writers", vec![])).await),
            "teams_name",
            "{}",
            db.backend
        );
        drop(tx);
        let mut tx = tenant_write(&*store, &scope).await;
        assert_eq!(
            tx.team_get(&writers.id).await.unwrap(),
            Some(writers.clone()),
            "{}",
            db.backend
        );
        let mut by_id = vec![writers.id.clone(), readers.id.clone()];
        by_id.sort_by(|x, y| x.as_str().cmp(y.as_str()));
        assert_eq!(
            tx.teams_list(None, 10)
                .await
                .unwrap()
                .into_iter()
                .map(|t| t.id)
                .collect::<Vec<_>>(),
            by_id,
            "{}",
            db.backend
        );
        assert_eq!(tx.teams_list(Some(&by_id[0]), 10).await.unwrap().len(), 1);
        let renamed = Team {
            name: "Editors".into(),
            description: None,
            grants: vec![grant(None, &[Permission::RecordsReadDraft])],
            updated_at: t0() + time::Duration::hours(1),
            ..readers.clone()
        };
        tx.team_update(&renamed).await.unwrap();
        assert_eq!(
            tx.team_get(&readers.id).await.unwrap(),
            Some(renamed.clone())
        );
        tx.commit().await.unwrap();
        let mut tx = tenant_write(&*store, &scope).await;
        assert_eq!(
            conflict_name(
                tx.team_update(&Team {
                    name: "Writers".into(),
                    ..renamed.clone()
                })
                .await
            ),
            "teams_name",
            "{}",
            db.backend
        );
        drop(tx);

        let mut tx = tenant_write(&*store, &scope).await;
        assert!(tx.team_member_add(&writers.id, &mb, t0()).await.unwrap());
        assert!(
            !tx.team_member_add(&writers.id, &mb, t0()).await.unwrap(),
            "{}: already in the team",
            db.backend
        );
        assert!(tx.team_member_add(&writers.id, &ma, t0()).await.unwrap());
        assert!(tx.team_member_add(&readers.id, &mb, t0()).await.unwrap());
        let listed = tx.team_members(&writers.id, None, 10).await.unwrap();
        let mut expected = vec![
            (ma.id.clone(), "a@example.com"),
            (mb.id.clone(), "b@example.com"),
        ];
        expected.sort_by(|x, y| x.0.as_str().cmp(y.0.as_str()));
        assert_eq!(
            listed
                .iter()
                .map(|v| (v.member.id.clone(), v.email.as_str()))
                .collect::<Vec<_>>(),
            expected,
            "{}",
            db.backend
        );
        assert_eq!(
            tx.team_members(&writers.id, Some(&expected[0].0), 10)
                .await
                .unwrap()
                .len(),
            1
        );
        assert!(tx.team_member_remove(&writers.id, &ma.id).await.unwrap());
        assert!(
            !tx.team_member_remove(&writers.id, &ma.id).await.unwrap(),
            "{}",
            db.backend
        );

        // Deleting the team ends its memberships; deleting a member ends theirs.
        assert!(tx.team_delete(&writers.id).await.unwrap(), "{}", db.backend);
        assert!(!tx.team_delete(&writers.id).await.unwrap());
        assert_eq!(tx.team_get(&writers.id).await.unwrap(), None);
        assert!(
            tx.team_members(&writers.id, None, 10)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(tx.member_delete(&mb.id).await.unwrap(), "{}", db.backend);
        assert!(
            tx.team_members(&readers.id, None, 10)
                .await
                .unwrap()
                .is_empty(),
            "{}",
            db.backend
        );
        tx.commit().await.unwrap();

        // Names are unique per workspace only.
        let mut tx = tenant_write(&*store, &sb).await;
        tx.team_insert(&team(&wb.id, "Editors", vec![]))
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
}

#[tokio::test]
async fn custom_roles_round_trip_permissions_and_fields_and_have_unique_names() {
    for (db, store) in stores().await {
        let a = add_user(&*store, "a@example.com").await;
        let b = add_user(&*store, "b@example.com").await;
        let (ws, scope) = add_workspace(&*store, &a, "alpha").await;
        let (wb, sb) = add_workspace(&*store, &b, "beta").await;
        let mut tx = tenant_write(&*store, &scope).await;
        let editors = custom_role(&ws.id, "Editors");
        let viewers = CustomRole {
            description: Some("Read only".into()),
            base_role: Role::Billing,
            permissions: PermissionSet::EMPTY,
            fields: vec![],
            ..custom_role(&ws.id, "Viewers")
        };
        tx.custom_role_insert(&editors).await.unwrap();
        tx.custom_role_insert(&viewers).await.unwrap();
        tx.commit().await.unwrap();
        let mut tx = tenant_write(&*store, &scope).await;
        assert_eq!(
            tx.custom_role_get(&editors.id).await.unwrap(),
            Some(editors.clone()),
            "{}",
            db.backend
        );
        assert_eq!(
            tx.custom_role_get(&viewers.id).await.unwrap(),
            Some(viewers.clone()),
            "{}",
            db.backend
        );
        drop(tx);
        let mut tx = tenant_write(&*store, &scope).await;
        assert_eq!(
            conflict_name(tx.custom_role_insert(&custom_role(&ws.id, "Editors")).await),
            "custom_roles_name",
            "{}",
            db.backend
        );
        drop(tx);
        let mut tx = tenant_write(&*store, &scope).await;
        let mut by_id = vec![editors.id.clone(), viewers.id.clone()];
        by_id.sort_by(|x, y| x.as_str().cmp(y.as_str()));
        assert_eq!(
            tx.custom_roles_list(None, 10)
                .await
                .unwrap()
                .into_iter()
                .map(|r| r.id)
                .collect::<Vec<_>>(),
            by_id,
            "{}",
            db.backend
        );
        assert_eq!(
            tx.custom_roles_list(Some(&by_id[0]), 10)
                .await
                .unwrap()
                .len(),
            1
        );

        let changed = CustomRole {
            name: "Writers".into(),
            base_role: Role::Admin,
            permissions: [Permission::RecordsWrite].into_iter().collect(),
            fields: vec![FieldGrant {
                collection: "posts".into(),
                field: "*".into(),
                read: true,
                write: true,
            }],
            updated_at: t0() + time::Duration::hours(1),
            ..editors.clone()
        };
        tx.custom_role_update(&changed).await.unwrap();
        assert_eq!(
            tx.custom_role_get(&editors.id).await.unwrap(),
            Some(changed.clone())
        );
        tx.commit().await.unwrap();
        let mut tx = tenant_write(&*store, &scope).await;
        assert_eq!(
            conflict_name(
                tx.custom_role_update(&CustomRole {
                    name: "Viewers".into(),
                    ..changed.clone()
                })
                .await
            ),
            "custom_roles_name",
            "{}",
            db.backend
        );
        drop(tx);

        let mb = add_member(&*store, &scope, &b, Role::Member).await;
        let mut tx = tenant_write(&*store, &scope).await;
        assert_eq!(tx.members_with_custom_role(&editors.id).await.unwrap(), 0);
        tx.member_update(&Member {
            custom_role_id: Some(editors.id.clone()),
            ..mb.clone()
        })
        .await
        .unwrap();
        assert_eq!(
            tx.members_with_custom_role(&editors.id).await.unwrap(),
            1,
            "{}",
            db.backend
        );
        assert!(tx.custom_role_delete(&viewers.id).await.unwrap());
        assert!(
            !tx.custom_role_delete(&viewers.id).await.unwrap(),
            "{}",
            db.backend
        );
        assert_eq!(tx.custom_role_get(&viewers.id).await.unwrap(), None);
        tx.commit().await.unwrap();

        let mut tx = tenant_write(&*store, &sb).await;
        tx.custom_role_insert(&custom_role(&wb.id, "Editors"))
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
}

#[tokio::test]
async fn member_access_resolves_the_custom_role_and_team_grants_of_that_user_only() {
    for (db, store) in stores().await {
        let a = add_user(&*store, "a@example.com").await;
        let b = add_user(&*store, "b@example.com").await;
        let c = add_user(&*store, "c@example.com").await;
        let (ws, scope) = add_workspace(&*store, &a, "alpha").await;
        let mb = add_member(&*store, &scope, &b, Role::Member).await;
        let mc = add_member(&*store, &scope, &c, Role::Member).await;
        let role = custom_role(&ws.id, "Editors");
        let mut teams = vec![
            team(
                &ws.id,
                "One",
                vec![grant(None, &[Permission::MembersManage])],
            ),
            team(
                &ws.id,
                "Two",
                vec![
                    grant(Some("posts"), &[Permission::RecordsWrite]),
                    grant(Some("pages"), &[Permission::RecordsRead]),
                ],
            ),
            team(&ws.id, "Three", vec![grant(None, &[Permission::AuditRead])]),
        ];
        teams.sort_by(|x, y| x.id.as_str().cmp(y.id.as_str()));
        let mut tx = tenant_write(&*store, &scope).await;
        tx.custom_role_insert(&role).await.unwrap();
        tx.member_update(&Member {
            custom_role_id: Some(role.id.clone()),
            ..mb.clone()
        })
        .await
        .unwrap();
        for t in &teams {
            tx.team_insert(t).await.unwrap();
        }
        // b is in the first two teams, c only in the third.
        tx.team_member_add(&teams[0].id, &mb, t0()).await.unwrap();
        tx.team_member_add(&teams[1].id, &mb, t0()).await.unwrap();
        tx.team_member_add(&teams[2].id, &mc, t0()).await.unwrap();
        tx.commit().await.unwrap();

        let mut tx = store.accounts(Some(&b.id), Access::Read).await.unwrap();
        let access = tx
            .member_access(&b.id, "alpha")
            .await
            .unwrap()
            .expect(db.backend);
        assert_eq!(
            (access.membership.member_id.clone(), access.membership.role),
            (mb.id.clone(), Role::Member),
            "{}",
            db.backend
        );
        assert_eq!(access.custom_role, Some(role.clone()), "{}", db.backend);
        let expected: Vec<TeamGrant> = teams[..2].iter().flat_map(|t| t.grants.clone()).collect();
        assert_eq!(access.team_grants, expected, "{}", db.backend);
        drop(tx);

        let mut tx = store.accounts(Some(&c.id), Access::Read).await.unwrap();
        let access = tx
            .member_access(&c.id, ws.id.as_str())
            .await
            .unwrap()
            .expect(db.backend);
        assert_eq!(access.custom_role, None, "{}", db.backend);
        assert_eq!(access.team_grants, teams[2].grants, "{}", db.backend);
        // On PostgreSQL RLS alone keeps b's membership from an account transaction acting as c.
        if db.backend == "postgres" {
            assert_eq!(
                tx.member_access(&b.id, "alpha").await.unwrap(),
                None,
                "RLS shows only the acting user's membership"
            );
        }
        drop(tx);

        // A role deleted behind the membership grants nothing; inactive members still resolve.
        let mut tx = tenant_write(&*store, &scope).await;
        tx.member_update(&Member {
            custom_role_id: None,
            active: false,
            ..mb.clone()
        })
        .await
        .unwrap();
        tx.custom_role_delete(&role.id).await.unwrap();
        tx.member_update(&Member {
            custom_role_id: Some(role.id.clone()),
            active: false,
            ..mb.clone()
        })
        .await
        .unwrap();
        tx.commit().await.unwrap();
        let mut tx = store.accounts(Some(&b.id), Access::Read).await.unwrap();
        let access = tx.member_access(&b.id, "alpha").await.unwrap().unwrap();
        assert_eq!(
            (access.membership.active, access.custom_role),
            (false, None),
            "{}",
            db.backend
        );
    }
}

#[tokio::test]
async fn memberships_list_only_active_memberships_of_workspaces_not_deleted() {
    for (db, store) in stores().await {
        let a = add_user(&*store, "a@example.com").await;
        let b = add_user(&*store, "b@example.com").await;
        let (w1, s1) = add_workspace(&*store, &a, "one").await;
        let (_, s2) = add_workspace(&*store, &a, "two").await;
        let (w3, s3) = add_workspace(&*store, &a, "three").await;
        let m = add_member(&*store, &s1, &b, Role::Member).await;
        add_member(&*store, &s2, &b, Role::Member).await;
        let m3 = add_member(&*store, &s3, &b, Role::Admin).await;

        let mut tx = tenant_write(&*store, &s1).await;
        tx.member_update(&Member {
            active: false,
            ..m.clone()
        })
        .await
        .unwrap();
        tx.commit().await.unwrap();
        let mut tx = tenant_write(&*store, &s3).await;
        let mut deleted = tx.workspace_get().await.unwrap().unwrap();
        deleted.deleted_at = Some(t0());
        tx.workspace_update(&deleted).await.unwrap();
        tx.commit().await.unwrap();

        let mut tx = store.accounts(Some(&b.id), Access::Read).await.unwrap();
        let listed: Vec<_> = tx
            .memberships(&b.id, None, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|m| (m.workspace.slug, m.active))
            .collect();
        assert_eq!(listed, [("two".to_owned(), true)], "{}", db.backend);
        assert!(
            tx.member_access(&b.id, w1.id.as_str())
                .await
                .unwrap()
                .is_some_and(|m| !m.membership.active),
            "{}: an inactive membership still resolves",
            db.backend
        );
        assert_eq!(
            tx.member_access(&b.id, "three").await.unwrap(),
            None,
            "{}: a deleted workspace does not",
            db.backend
        );
        assert_eq!(tx.member_access(&b.id, w3.id.as_str()).await.unwrap(), None);
        drop(tx);
        let mut tx = store
            .system(&SystemScope::new("test"), Access::Read)
            .await
            .unwrap();
        assert_eq!(
            tx.workspace_resolve("three").await.unwrap(),
            None,
            "{}",
            db.backend
        );
        // The row stays for the retention job, and its own scope still reads it.
        drop(tx);
        let mut tx = tenant_write(&*store, &s3).await;
        assert_eq!(
            tx.workspace_get().await.unwrap().map(|w| w.deleted_at),
            Some(Some(t0()))
        );
        assert_eq!(
            tx.member_of_user(&b.id).await.unwrap(),
            Some(m3.clone()),
            "{}",
            db.backend
        );
    }
}

#[tokio::test]
async fn workspace_update_writes_the_auth_policy_and_lifecycle_but_not_the_parent() {
    for (db, store) in stores().await {
        let a = add_user(&*store, "a@example.com").await;
        let (parent, _) = add_workspace(&*store, &a, "parent").await;
        let (child, scope) = add_child(&*store, &a, "child", &parent).await;
        assert_eq!(child.auth_policy, AuthPolicy::default());
        let mut tx = tenant_write(&*store, &scope).await;
        assert_eq!(tx.workspace_get().await.unwrap(), Some(child.clone()));
        let policy = AuthPolicy {
            sign_in_methods: vec![SignInMethod::MagicLink],
            session_max_secs: Some(3600),
            password_min_length: Some(16),
            mfa_required: true,
        };
        let changed = Workspace {
            auth_policy: policy.clone(),
            suspended_at: Some(t0() + time::Duration::hours(2)),
            parent_id: None,
            name: "Renamed".into(),
            updated_at: t0() + time::Duration::hours(2),
            ..child.clone()
        };
        tx.workspace_update(&changed).await.unwrap();
        tx.commit().await.unwrap();

        let mut tx = tenant_write(&*store, &scope).await;
        assert_eq!(
            tx.workspace_get().await.unwrap(),
            Some(Workspace {
                parent_id: Some(parent.id.clone()),
                ..changed.clone()
            }),
            "{}: every column but id, created_at and parent_id",
            db.backend
        );
        drop(tx);
        let mut tx = store.accounts(Some(&a.id), Access::Read).await.unwrap();
        let m = tx.member_access(&a.id, "child").await.unwrap().unwrap();
        assert_eq!(
            (
                m.membership.workspace.auth_policy,
                m.membership.workspace.suspended_at
            ),
            (policy, changed.suspended_at),
            "{}",
            db.backend
        );
    }
}

#[tokio::test]
async fn children_are_listed_only_for_their_parent_and_not_once_deleted() {
    for (db, store) in stores().await {
        let a = add_user(&*store, "a@example.com").await;
        let b = add_user(&*store, "b@example.com").await;
        let (parent, sp) = add_workspace(&*store, &a, "parent").await;
        let (other, so) = add_workspace(&*store, &b, "other").await;
        let (c1, _) = add_child(&*store, &a, "child-one", &parent).await;
        let (c2, sc2) = add_child(&*store, &b, "child-two", &parent).await;
        let (gone, sg) = add_child(&*store, &a, "child-gone", &parent).await;
        let (foreign, _) = add_child(&*store, &b, "other-child", &other).await;
        let mut tx = tenant_write(&*store, &sg).await;
        tx.workspace_update(&Workspace {
            deleted_at: Some(t0()),
            ..gone.clone()
        })
        .await
        .unwrap();
        tx.commit().await.unwrap();

        let mut tx = store.tenant(&sp, Access::Read).await.unwrap();
        let mut expected = vec![c1.clone(), c2.clone()];
        expected.sort_by(|x, y| x.id.as_str().cmp(y.id.as_str()));
        assert_eq!(
            tx.children_list(None, 10).await.unwrap(),
            expected,
            "{}",
            db.backend
        );
        assert_eq!(
            tx.children_list(Some(&expected[0].id), 10).await.unwrap(),
            [expected[1].clone()],
            "{}",
            db.backend
        );
        assert_eq!(tx.children_list(None, 1).await.unwrap().len(), 1);
        assert_eq!(tx.children_count().await.unwrap(), 2, "{}", db.backend);
        assert_eq!(
            tx.child_get("child-two").await.unwrap(),
            Some(c2.clone()),
            "{}: by slug",
            db.backend
        );
        assert_eq!(
            tx.child_get(c1.id.as_str()).await.unwrap(),
            Some(c1.clone())
        );
        for key in [
            "child-gone",
            gone.id.as_str(),
            "other-child",
            foreign.id.as_str(),
            "other",
            "parent",
        ] {
            assert_eq!(
                tx.child_get(key).await.unwrap(),
                None,
                "{}: {key}",
                db.backend
            );
        }
        // The parent sees its children's workspace rows, never their members.
        assert_eq!(
            tx.member_of_user(&b.id).await.unwrap(),
            None,
            "{}",
            db.backend
        );
        drop(tx);

        let mut tx = store.tenant(&so, Access::Read).await.unwrap();
        assert_eq!(tx.children_list(None, 10).await.unwrap(), [foreign]);
        assert_eq!(
            tx.child_get("child-one").await.unwrap(),
            None,
            "{}",
            db.backend
        );
        drop(tx);
        let mut tx = store.tenant(&sc2, Access::Read).await.unwrap();
        assert!(tx.children_list(None, 10).await.unwrap().is_empty());
        assert_eq!(tx.children_count().await.unwrap(), 0, "{}", db.backend);
    }
}

#[tokio::test]
async fn member_rows_of_another_workspace_are_invisible_and_untouchable() {
    for (db, store) in stores().await {
        let a = add_user(&*store, "a@example.com").await;
        let b = add_user(&*store, "b@example.com").await;
        let (_, sa) = add_workspace(&*store, &a, "alpha").await;
        let (wb, sb) = add_workspace(&*store, &b, "beta").await;
        let mut tx = tenant_write(&*store, &sb).await;
        let mb = tx.member_of_user(&b.id).await.unwrap().unwrap();
        let tb = team(&wb.id, "Beta team", vec![]);
        let rb = custom_role(&wb.id, "Beta role");
        let ib = Invitation {
            custom_role_id: Some(rb.id.clone()),
            ..invitation(&wb.id, "x@example.com", &b, 5)
        };
        tx.team_insert(&tb).await.unwrap();
        tx.custom_role_insert(&rb).await.unwrap();
        tx.invitation_insert(&ib).await.unwrap();
        tx.team_member_add(&tb.id, &mb, t0()).await.unwrap();
        tx.member_update(&Member {
            custom_role_id: Some(rb.id.clone()),
            ..mb.clone()
        })
        .await
        .unwrap();
        tx.commit().await.unwrap();

        let mut tx = tenant_write(&*store, &sa).await;
        let b = db.backend;
        assert_eq!(tx.member_get(&mb.id).await.unwrap(), None, "{b}");
        assert_eq!(tx.member_of_user(&mb.user_id).await.unwrap(), None, "{b}");
        assert!(
            tx.members_list(None, 10)
                .await
                .unwrap()
                .iter()
                .all(|v| v.member.workspace_id != wb.id),
            "{b}"
        );
        assert_eq!(tx.team_get(&tb.id).await.unwrap(), None, "{b}");
        assert!(tx.teams_list(None, 10).await.unwrap().is_empty(), "{b}");
        assert!(
            tx.team_members(&tb.id, None, 10).await.unwrap().is_empty(),
            "{b}"
        );
        assert_eq!(tx.custom_role_get(&rb.id).await.unwrap(), None, "{b}");
        assert!(
            tx.custom_roles_list(None, 10).await.unwrap().is_empty(),
            "{b}"
        );
        assert_eq!(tx.members_with_custom_role(&rb.id).await.unwrap(), 0, "{b}");
        assert_eq!(tx.invitation_get(&ib.id).await.unwrap(), None, "{b}");
        assert!(
            tx.invitations_list(None, 10).await.unwrap().is_empty(),
            "{b}"
        );
        assert_eq!(
            tx.invitations_with_custom_role(&rb.id).await.unwrap(),
            0,
            "{b}"
        );

        // Writes by id match nothing; writes of foreign values are refused before any SQL.
        assert!(
            !tx.invitation_accept(&ib.id, &a.id, t0()).await.unwrap(),
            "{b}"
        );
        assert!(!tx.invitation_revoke(&ib.id, t0()).await.unwrap(), "{b}");
        assert!(
            tx.invitations_revoke_open("x@example.com", t0())
                .await
                .unwrap()
                .is_empty(),
            "{b}"
        );
        assert!(!tx.team_member_remove(&tb.id, &mb.id).await.unwrap(), "{b}");
        assert!(tx.team_member_add(&tb.id, &mb, t0()).await.is_err(), "{b}");
        assert!(tx.team_update(&tb).await.is_err(), "{b}");
        assert!(tx.custom_role_update(&rb).await.is_err(), "{b}");
        assert!(tx.member_update(&mb).await.is_err(), "{b}");
        assert!(
            tx.team_insert(&team(&wb.id, "Sneaky", vec![]))
                .await
                .is_err(),
            "{b}"
        );
        assert!(
            tx.invitation_insert(&invitation(&wb.id, "y@example.com", &a, 6))
                .await
                .is_err(),
            "{b}"
        );
        assert!(!tx.team_delete(&tb.id).await.unwrap(), "{b}");
        assert!(!tx.custom_role_delete(&rb.id).await.unwrap(), "{b}");
        assert!(!tx.member_delete(&mb.id).await.unwrap(), "{b}");
        tx.commit().await.unwrap();

        // B's rows are intact.
        let mut tx = tenant_write(&*store, &sb).await;
        assert_eq!(
            tx.team_members(&tb.id, None, 10).await.unwrap().len(),
            1,
            "{b}"
        );
        assert_eq!(tx.members_with_custom_role(&rb.id).await.unwrap(), 1, "{b}");
        assert_eq!(
            tx.invitation_get(&ib.id).await.unwrap(),
            Some(ib.clone()),
            "{b}"
        );
    }
}

/// Rows of every new tenant table for the scope's workspace: a team the owner is in, a custom
/// role the owner holds, an invitation, an API key, a collection and a record, a webhook
/// endpoint with an event delivered once.
async fn add_member_rows(store: &dyn Store, scope: &TenantScope, owner: &User, token: u8) {
    let ws = scope.workspace_id();
    let mut tx = tenant_write(store, scope).await;
    let m = tx.member_of_user(&owner.id).await.unwrap().unwrap();
    let t = team(ws, "Team", vec![grant(None, &[Permission::AuditRead])]);
    let r = custom_role(ws, "Role");
    tx.team_insert(&t).await.unwrap();
    tx.custom_role_insert(&r).await.unwrap();
    tx.team_member_add(&t.id, &m, t0()).await.unwrap();
    tx.member_update(&Member {
        custom_role_id: Some(r.id.clone()),
        ..m
    })
    .await
    .unwrap();
    tx.invitation_insert(&invitation(ws, "invitee@example.com", owner, token))
        .await
        .unwrap();
    tx.api_key_insert(&api_key(ws, "Key", owner), &[token; 32])
        .await
        .unwrap();
    let c = collection(ws, "Collection");
    tx.collection_insert(&c).await.unwrap();
    let r = record(ws, &c.id, "Record");
    tx.record_insert(&r).await.unwrap();
    assert!(
        tx.record_unique_claim(&c.id, "title", "Record", &r.id)
            .await
            .unwrap()
    );
    let e = endpoint(ws, "https://hook.example", owner);
    tx.webhook_insert(&e).await.unwrap();
    let (event, deliveries) = outbox(ws, &[&e], t0(), t0());
    tx.webhook_event_insert(&event, &deliveries).await.unwrap();
    tx.commit().await.unwrap();
    // An attempt, recorded the dispatcher's way (any workspace's due deliveries).
    let claimed = claim(store, t0(), secs(30), &format!("rows-{token}"), 100).await;
    let outcomes: Vec<DeliveryOutcome> = claimed
        .iter()
        .map(|c| outcome(c, 1, DeliveryStatus::Succeeded, None, None))
        .collect();
    assert_eq!(
        record_outcomes(store, &outcomes).await,
        outcomes.len() as u64
    );
}

#[tokio::test]
async fn the_migrations_default_auth_policy_is_the_serde_default() {
    let default = serde_json::to_string(&AuthPolicy::default()).unwrap();
    for migration in [
        include_str!("../migrations/sqlite/0005_members.sql"),
        include_str!("../migrations/postgres/0005_members.sql"),
    ] {
        assert!(
            migration.contains(&format!("DEFAULT '{default}'")),
            "{default}"
        );
    }
}

/// Rows written before migration 0005 (members, sessions, workspaces) come through it whole:
/// `updated_at` from `created_at`, active, the default auth policy, password sessions. On
/// PostgreSQL the backfill runs under FORCE ROW LEVEL SECURITY with no workspace set.
#[tokio::test]
async fn migration_0005_carries_existing_rows_over() {
    const BEFORE: [&str; 4] = [
        "INSERT INTO users (id, email, name, password_hash, created_at, updated_at) \
         VALUES ('usr_old', 'old@example.com', 'Old', 'h', $1, $1)",
        "INSERT INTO workspaces (id, slug, name, branding, region, timezone, currency, plan, modules, parent_id, \
         created_at, updated_at) VALUES ('ws_old', 'old', 'Old', '{}', 'eu', 'UTC', 'EUR', 'starter', '[]', NULL, $1, $1)",
        "INSERT INTO members (workspace_id, id, user_id, role, created_at) VALUES ('ws_old', 'mem_old', 'usr_old', 'owner', $1)",
        "INSERT INTO sessions (id, user_id, created_at, expires_at) VALUES ('ses_old', 'usr_old', $1, $1)",
    ];
    for db in databases().await {
        if db.backend == "sqlite" {
            let path = db.url.strip_prefix("sqlite:").unwrap();
            let options = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(path)
                .create_if_missing(true);
            let mut conn = sqlx::SqliteConnection::connect_with(&options)
                .await
                .unwrap();
            sqlx::migrate!("migrations/sqlite")
                .run_to(4, &mut conn)
                .await
                .unwrap();
            for sql in BEFORE {
                sqlx::query(sql)
                    .bind(t0())
                    .execute(&mut conn)
                    .await
                    .unwrap();
            }
            conn.close().await.unwrap();
        } else {
            let mut conn = raw_pg(&db.url, false).await;
            sqlx::migrate!("migrations/postgres")
                .run_to(4, &mut conn)
                .await
                .unwrap();
            let mut tx = conn.begin().await.unwrap();
            sqlx::query("SELECT set_config('app.workspace_id', 'ws_old', true)")
                .execute(&mut *tx)
                .await
                .unwrap();
            for sql in BEFORE {
                sqlx::query(sql).bind(t0()).execute(&mut *tx).await.unwrap();
            }
            tx.commit().await.unwrap();
        }
        let store = open(&db.url, Migrations::Apply)
            .await
            .unwrap_or_else(|e| panic!("{}: {e:?}", db.backend));
        let user = UserId::from_trusted("usr_old".into());
        let mut tx = store.accounts(Some(&user), Access::Read).await.unwrap();
        let session = tx
            .session_get(&SessionId::from_trusted("ses_old".into()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(session.method, SignInMethod::Password, "{}", db.backend);
        let access = tx
            .member_access(&user, "old")
            .await
            .unwrap()
            .expect(db.backend);
        assert_eq!(
            (
                access.membership.active,
                &access.membership.workspace.auth_policy,
                access.membership.workspace.suspended_at,
                access.membership.workspace.deleted_at,
            ),
            (true, &AuthPolicy::default(), None, None),
            "{}",
            db.backend
        );
        drop(tx);
        let scope = TenantScope::for_tests(
            access.membership.workspace.id.clone(),
            Principal::User {
                user_id: user.clone(),
                session_id: session.id.clone(),
                method: session.method,
                signed_in_at: t0(),
            },
            Role::Owner,
        );
        let mut tx = store.tenant(&scope, Access::Read).await.unwrap();
        let m = tx.member_of_user(&user).await.unwrap().expect(db.backend);
        assert_eq!(
            (m.updated_at, m.created_at, m.custom_role_id, m.active),
            (t0(), t0(), None, true),
            "{}",
            db.backend
        );
    }
}

// ---- API keys (ApiKeysTx and the key lookups of SystemTx) ----

/// A live key of `ws` created by `by`: read and write scopes, an admin's grants narrowed to them.
fn api_key(ws: &WorkspaceId, name: &str, by: &User) -> ApiKey {
    let scopes = vec![Scope::Read, Scope::Write];
    ApiKey {
        id: ApiKeyId::generate(),
        workspace_id: ws.clone(),
        name: name.into(),
        prefix: "pal_Ab12Cd".into(),
        grants: Grants::resolve(Role::Admin, None, &[]).restrict(Scope::union(&scopes)),
        scopes,
        created_by: Creator::User(by.id.clone()),
        on_behalf_of: by.id.clone(),
        created_at: t0(),
        expires_at: None,
        rotated_at: None,
        revoked_at: None,
        last_used_at: None,
    }
}

/// A time `us` microseconds after `t0()`: both backends keep µs exactly.
fn t_us(us: i64) -> OffsetDateTime {
    t0() + time::Duration::microseconds(us)
}

async fn system_write(store: &dyn Store) -> Box<dyn palisade_core::store::SystemTx> {
    store
        .system(&SystemScope::new("test"), Access::Write)
        .await
        .unwrap()
}

#[tokio::test]
async fn api_keys_round_trip_every_field() {
    for (db, store) in stores().await {
        let b = db.backend;
        let a = add_user(&*store, "a@example.com").await;
        let (ws, scope) = add_workspace(&*store, &a, "alpha").await;
        // Grants with a custom role's field grants and team grants per collection: every part
        // of the JSON is exercised.
        let custom = RoleGrants {
            permissions: [Permission::RecordsRead, Permission::RecordsWrite]
                .into_iter()
                .collect(),
            fields: vec![FieldGrant {
                collection: "posts".into(),
                field: "body".into(),
                read: true,
                write: false,
            }],
        };
        let teams = [
            grant(Some("posts"), &[Permission::RecordsReadDraft]),
            grant(Some("drafts"), &[Permission::RecordsWrite]),
            grant(None, &[Permission::AuditRead]),
        ];
        let by_user = ApiKey {
            scopes: Scope::ALL.to_vec(),
            grants: Grants::resolve(Role::Member, Some(&custom), &teams),
            created_at: t_us(1),
            expires_at: Some(t_us(30 * 86_400_000_000 + 123_456)),
            ..api_key(&ws.id, "Deploy bot", &a)
        };
        let by_key = ApiKey {
            scopes: vec![Scope::ReadDraft],
            grants: by_user.grants.restrict(Scope::ReadDraft.permissions()),
            created_by: Creator::ApiKey(by_user.id.clone()),
            created_at: t_us(2),
            rotated_at: Some(t_us(3)),
            revoked_at: Some(t_us(4)),
            ..api_key(&ws.id, "Child key", &a)
        };
        let mut tx = tenant_write(&*store, &scope).await;
        tx.api_key_insert(&by_user, &[1; 32]).await.unwrap();
        tx.api_key_insert(&by_key, &[2; 32]).await.unwrap();
        tx.commit().await.unwrap();

        let mut tx = store.tenant(&scope, Access::Read).await.unwrap();
        assert_eq!(
            tx.api_key_get(&by_user.id).await.unwrap(),
            Some(by_user.clone()),
            "{b}"
        );
        assert_eq!(
            tx.api_key_get(&by_key.id).await.unwrap(),
            Some(by_key.clone()),
            "{b}: revoked keys are read too"
        );
        assert_eq!(
            tx.api_key_get(&ApiKeyId::generate()).await.unwrap(),
            None,
            "{b}"
        );
        drop(tx);

        // The secret's hash is unique across the instance; a key of another workspace is
        // refused before any SQL runs.
        let mut tx = tenant_write(&*store, &scope).await;
        assert_eq!(
            conflict_name(
                tx.api_key_insert(&api_key(&ws.id, "Same secret", &a), &[1; 32])
                    .await
            ),
            "api_keys_hash",
            "{b}"
        );
        drop(tx);
        let mut tx = tenant_write(&*store, &scope).await;
        let other = WorkspaceId::generate();
        assert!(
            tx.api_key_insert(&api_key(&other, "Foreign", &a), &[3; 32])
                .await
                .is_err(),
            "{b}"
        );
    }
}

#[tokio::test]
async fn api_keys_list_live_keys_by_id_and_rotate_or_revoke_only_live_ones() {
    for (db, store) in stores().await {
        let b = db.backend;
        let a = add_user(&*store, "a@example.com").await;
        let (ws, scope) = add_workspace(&*store, &a, "alpha").await;
        let keys: Vec<ApiKey> = (0..5)
            .map(|i| api_key(&ws.id, &format!("Key {i}"), &a))
            .collect();
        let mut tx = tenant_write(&*store, &scope).await;
        for (i, k) in keys.iter().enumerate() {
            tx.api_key_insert(k, &[10 + i as u8; 32]).await.unwrap();
        }
        let revoked = &keys[2];
        assert!(
            tx.api_key_revoke(&revoked.id, t_us(5)).await.unwrap(),
            "{b}"
        );
        assert!(
            !tx.api_key_revoke(&revoked.id, t_us(6)).await.unwrap(),
            "{b}: revoked once only"
        );
        assert!(
            !tx.api_key_revoke(&ApiKeyId::generate(), t_us(6))
                .await
                .unwrap(),
            "{b}: unknown key"
        );
        assert_eq!(
            tx.api_key_get(&revoked.id)
                .await
                .unwrap()
                .and_then(|k| k.revoked_at),
            Some(t_us(5)),
            "{b}: the first revocation's time stays"
        );
        tx.commit().await.unwrap();

        let mut live: Vec<ApiKeyId> = keys
            .iter()
            .filter(|k| k.id != revoked.id)
            .map(|k| k.id.clone())
            .collect();
        live.sort_by(|x, y| x.as_str().cmp(y.as_str()));
        let mut tx = tenant_write(&*store, &scope).await;
        let ids = |page: Vec<ApiKey>| page.into_iter().map(|k| k.id).collect::<Vec<_>>();
        assert_eq!(
            ids(tx.api_keys_list(None, 10).await.unwrap()),
            live,
            "{b}: live keys in id order"
        );
        assert_eq!(
            ids(tx.api_keys_list(None, 2).await.unwrap()),
            live[..2],
            "{b}"
        );
        assert_eq!(
            ids(tx.api_keys_list(Some(&live[1]), 2).await.unwrap()),
            live[2..4],
            "{b}: after the cursor, at most limit"
        );
        assert!(
            tx.api_keys_list(Some(&live[3]), 2)
                .await
                .unwrap()
                .is_empty(),
            "{b}"
        );

        // Rotation replaces the hash and prefix of a live key only.
        let rotated = &keys[0];
        assert!(
            tx.api_key_rotate(&rotated.id, &[99; 32], "pal_New123", t_us(7))
                .await
                .unwrap(),
            "{b}"
        );
        assert!(
            !tx.api_key_rotate(&revoked.id, &[98; 32], "pal_Nope00", t_us(7))
                .await
                .unwrap(),
            "{b}: a revoked key is not rotated"
        );
        assert!(
            !tx.api_key_rotate(&ApiKeyId::generate(), &[98; 32], "pal_Nope00", t_us(7))
                .await
                .unwrap(),
            "{b}: unknown key"
        );
        assert_eq!(
            conflict_name(
                tx.api_key_rotate(&keys[1].id, &[13; 32], "pal_Dup000", t_us(7))
                    .await
            ),
            "api_keys_hash",
            "{b}: rotating onto another key's hash"
        );
        drop(tx);
        let mut tx = tenant_write(&*store, &scope).await;
        assert!(
            tx.api_key_rotate(&rotated.id, &[99; 32], "pal_New123", t_us(7))
                .await
                .unwrap()
        );
        tx.commit().await.unwrap();

        let mut tx = store.tenant(&scope, Access::Read).await.unwrap();
        assert_eq!(
            tx.api_key_get(&rotated.id).await.unwrap(),
            Some(ApiKey {
                prefix: "pal_New123".into(),
                rotated_at: Some(t_us(7)),
                ..rotated.clone()
            }),
            "{b}"
        );
        drop(tx);
        let mut sys = system_write(&*store).await;
        assert!(
            sys.api_key_by_hash(&[10; 32]).await.unwrap().is_none(),
            "{b}: the old secret no longer finds the key"
        );
        let (found, _) = sys.api_key_by_hash(&[99; 32]).await.unwrap().expect(b);
        assert_eq!(found.id, rotated.id, "{b}");
        let (found, _) = sys.api_key_by_hash(&[12; 32]).await.unwrap().expect(b);
        assert_eq!(
            (found.id, found.revoked_at),
            (revoked.id.clone(), Some(t_us(5))),
            "{b}: revoked keys are found (the service refuses them)"
        );
    }
}

#[tokio::test]
async fn api_keys_of_another_workspace_are_invisible_and_untouchable() {
    for (db, store) in stores().await {
        let b = db.backend;
        let ua = add_user(&*store, "a@example.com").await;
        let ub = add_user(&*store, "b@example.com").await;
        let (_, sa) = add_workspace(&*store, &ua, "alpha").await;
        let (wb, sb) = add_workspace(&*store, &ub, "beta").await;
        let kb = api_key(&wb.id, "Beta key", &ub);
        let mut tx = tenant_write(&*store, &sb).await;
        tx.api_key_insert(&kb, &[5; 32]).await.unwrap();
        tx.commit().await.unwrap();

        let mut tx = tenant_write(&*store, &sa).await;
        assert_eq!(tx.api_key_get(&kb.id).await.unwrap(), None, "{b}");
        assert!(tx.api_keys_list(None, 10).await.unwrap().is_empty(), "{b}");
        assert!(
            !tx.api_key_rotate(&kb.id, &[6; 32], "pal_Stolen", t0())
                .await
                .unwrap(),
            "{b}"
        );
        assert!(!tx.api_key_revoke(&kb.id, t0()).await.unwrap(), "{b}");
        tx.commit().await.unwrap();

        let mut tx = store.tenant(&sb, Access::Read).await.unwrap();
        assert_eq!(
            tx.api_key_get(&kb.id).await.unwrap(),
            Some(kb.clone()),
            "{b}: intact"
        );
    }
}

#[tokio::test]
async fn api_key_by_hash_finds_a_key_in_any_workspace_with_its_workspace() {
    for (db, store) in stores().await {
        let b = db.backend;
        let ua = add_user(&*store, "a@example.com").await;
        let ub = add_user(&*store, "b@example.com").await;
        let (wa, sa) = add_workspace(&*store, &ua, "alpha").await;
        let (wb, sb) = add_workspace(&*store, &ub, "beta").await;
        let ka = api_key(&wa.id, "Alpha key", &ua);
        let kb = api_key(&wb.id, "Beta key", &ub);
        for (scope, key, hash) in [(&sa, &ka, [1; 32]), (&sb, &kb, [2; 32])] {
            let mut tx = tenant_write(&*store, scope).await;
            tx.api_key_insert(key, &hash).await.unwrap();
            tx.commit().await.unwrap();
        }

        let mut sys = system_write(&*store).await;
        assert_eq!(
            sys.api_key_by_hash(&[1; 32]).await.unwrap(),
            Some((ka.clone(), wa.clone())),
            "{b}"
        );
        assert_eq!(
            sys.api_key_by_hash(&[2; 32]).await.unwrap(),
            Some((kb.clone(), wb.clone())),
            "{b}"
        );
        assert_eq!(sys.api_key_by_hash(&[3; 32]).await.unwrap(), None, "{b}");
        drop(sys);

        // A deleted workspace's keys are still found, with the workspace as it is now.
        let deleted = Workspace {
            deleted_at: Some(t_us(9)),
            updated_at: t_us(9),
            ..wb.clone()
        };
        let mut tx = tenant_write(&*store, &sb).await;
        tx.workspace_update(&deleted).await.unwrap();
        tx.commit().await.unwrap();
        let mut sys = system_write(&*store).await;
        assert_eq!(
            sys.api_key_by_hash(&[2; 32]).await.unwrap(),
            Some((kb.clone(), deleted)),
            "{b}"
        );
    }
}

#[tokio::test]
async fn api_key_changes_are_read_in_order_since_a_time_and_pruned() {
    for (db, store) in stores().await {
        let b = db.backend;
        let ua = add_user(&*store, "a@example.com").await;
        let (wa, sa) = add_workspace(&*store, &ua, "alpha").await;
        let (wb, sb) = add_workspace(&*store, &ua, "beta").await;
        // Times that differ below the second: RFC 3339 text of these would not sort as time.
        for (scope, at) in [(&sa, t_us(0)), (&sb, t_us(500_000)), (&sa, t_us(1_000_000))] {
            let mut tx = tenant_write(&*store, scope).await;
            tx.api_keys_changed(at).await.unwrap();
            tx.commit().await.unwrap();
        }
        // Uncommitted changes are not recorded.
        let mut tx = tenant_write(&*store, &sb).await;
        tx.api_keys_changed(t_us(2_000_000)).await.unwrap();
        drop(tx);

        let mut sys = system_write(&*store).await;
        let all = sys.api_key_changes_since(t_us(0)).await.unwrap();
        assert_eq!(
            all.iter().map(|(_, w)| w.clone()).collect::<Vec<_>>(),
            [wa.id.clone(), wb.id.clone(), wa.id.clone()],
            "{b}: oldest first, with their workspaces"
        );
        assert!(
            all.windows(2).all(|p| p[0].0 < p[1].0),
            "{b}: seqs increase: {all:?}"
        );
        assert_eq!(
            sys.api_key_changes_since(t_us(1)).await.unwrap(),
            all[1..],
            "{b}: at or after `since`"
        );
        assert_eq!(
            sys.api_key_changes_since(t_us(500_000)).await.unwrap(),
            all[1..],
            "{b}: `since` itself included"
        );
        assert!(
            sys.api_key_changes_since(t_us(1_000_001))
                .await
                .unwrap()
                .is_empty(),
            "{b}"
        );

        assert_eq!(
            sys.api_key_changes_prune(t_us(500_000)).await.unwrap(),
            1,
            "{b}: before `before` only"
        );
        sys.commit().await.unwrap();
        let mut sys = system_write(&*store).await;
        assert_eq!(
            sys.api_key_changes_since(t_us(-1_000_000)).await.unwrap(),
            all[1..],
            "{b}"
        );
        assert_eq!(sys.api_key_changes_prune(t_us(500_000)).await.unwrap(), 0);
    }
}

#[tokio::test]
async fn api_key_usage_keeps_the_newest_time() {
    for (db, store) in stores().await {
        let b = db.backend;
        let ua = add_user(&*store, "a@example.com").await;
        let (wa, sa) = add_workspace(&*store, &ua, "alpha").await;
        let k1 = api_key(&wa.id, "One", &ua);
        let k2 = api_key(&wa.id, "Two", &ua);
        let mut tx = tenant_write(&*store, &sa).await;
        tx.api_key_insert(&k1, &[1; 32]).await.unwrap();
        tx.api_key_insert(&k2, &[2; 32]).await.unwrap();
        tx.commit().await.unwrap();

        // t2 is later than t1 by half a second: as RFC 3339 text, `…:00.5Z` sorts before `…:00Z`.
        let (t1, t2) = (t_us(0), t_us(500_000));
        let mut sys = system_write(&*store).await;
        sys.api_key_usage_record(&[(k1.id.clone(), t2)])
            .await
            .unwrap();
        sys.commit().await.unwrap();
        let mut sys = system_write(&*store).await;
        // An older flush, and one batch naming a key twice (the newest time wins).
        sys.api_key_usage_record(&[(k1.id.clone(), t1)])
            .await
            .unwrap();
        sys.api_key_usage_record(&[(k2.id.clone(), t2), (k2.id.clone(), t1)])
            .await
            .unwrap();
        sys.api_key_usage_record(&[]).await.unwrap();
        sys.commit().await.unwrap();

        let mut tx = store.tenant(&sa, Access::Read).await.unwrap();
        assert_eq!(
            tx.api_key_get(&k1.id)
                .await
                .unwrap()
                .and_then(|k| k.last_used_at),
            Some(t2),
            "{b}: an older time never replaces a newer one"
        );
        let listed: Vec<(ApiKeyId, Option<OffsetDateTime>)> = tx
            .api_keys_list(None, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|k| (k.id, k.last_used_at))
            .collect();
        let mut expected = vec![(k1.id.clone(), Some(t2)), (k2.id.clone(), Some(t2))];
        expected.sort_by(|x, y| x.0.as_str().cmp(y.0.as_str()));
        assert_eq!(listed, expected, "{b}");
        drop(tx);

        // A newer time replaces it; the key lookup shows it too.
        let t3 = t_us(60_000_000);
        let mut sys = system_write(&*store).await;
        sys.api_key_usage_record(&[(k1.id.clone(), t3)])
            .await
            .unwrap();
        sys.commit().await.unwrap();
        let mut sys = system_write(&*store).await;
        let (found, _) = sys.api_key_by_hash(&[1; 32]).await.unwrap().expect(b);
        assert_eq!(found.last_used_at, Some(t3), "{b}");

        // Many keys in one flush (more than one batch statement).
        let many: Vec<(ApiKeyId, OffsetDateTime)> = (0..1_200)
            .map(|i| (ApiKeyId::generate(), t_us(i)))
            .collect();
        sys.api_key_usage_record(&many).await.unwrap();
        sys.commit().await.unwrap();
    }
}

// ---- Collections (CollectionsTx) ----

/// A field of `kind` with no flags and no options.
fn field(name: &str, kind: FieldType) -> Field {
    Field {
        name: name.into(),
        kind,
        required: false,
        unique: false,
        pii: false,
        encrypted: false,
        options: FieldOptions::default(),
    }
}

/// A collection of `ws` with one text field, at version 1.
fn collection(ws: &WorkspaceId, name: &str) -> Collection {
    Collection {
        id: CollectionId::generate(),
        workspace_id: ws.clone(),
        name: name.into(),
        fields: vec![field("title", FieldType::Text)],
        version: 1,
        created_at: t0(),
        updated_at: t0(),
    }
}

/// One field of every type, every flag set somewhere, enum values and a relation to `target`:
/// every part of the stored JSON.
fn every_field(target: &CollectionId) -> Vec<Field> {
    FieldType::ALL
        .iter()
        .enumerate()
        .map(|(i, &kind)| {
            let mut f = field(&format!("{}_{i}", kind.as_str()), kind);
            f.required = i % 2 == 0;
            f.unique = kind.can_be_unique() && i % 3 == 0;
            f.pii = i % 3 == 1;
            f.encrypted = kind.can_be_encrypted() && i % 2 == 1;
            match kind {
                FieldType::Enum => {
                    f.options.values = Some(vec![
                        "draft".into(),
                        "published".into(),
                        "archivé \"quoted\"".into(),
                    ]);
                }
                FieldType::Relation => f.options.collection = Some(target.clone()),
                _ => {}
            }
            f
        })
        .collect()
}

fn ids(cs: &[Collection]) -> Vec<CollectionId> {
    cs.iter().map(|c| c.id.clone()).collect()
}

#[tokio::test]
async fn collections_round_trip_every_field_and_have_unique_names_per_workspace() {
    for (db, store) in stores().await {
        let b = db.backend;
        let a = add_user(&*store, "a@example.com").await;
        let ub = add_user(&*store, "b@example.com").await;
        let (ws, scope) = add_workspace(&*store, &a, "alpha").await;
        let (wb, sb) = add_workspace(&*store, &ub, "beta").await;
        let authors = collection(&ws.id, "authors");
        let posts = Collection {
            name: "Blog posts ✍".into(),
            fields: every_field(&authors.id),
            version: 7,
            created_at: t_us(1),
            updated_at: t_us(86_400_000_000 + 123_456),
            ..collection(&ws.id, "unused")
        };
        assert!(
            posts.fields.iter().any(|f| f.required)
                && posts.fields.iter().any(|f| f.unique)
                && posts.fields.iter().any(|f| f.pii)
                && posts.fields.iter().any(|f| f.encrypted),
            "every flag is exercised"
        );
        let mut tx = tenant_write(&*store, &scope).await;
        tx.collection_insert(&authors).await.unwrap();
        tx.collection_insert(&posts).await.unwrap();
        tx.commit().await.unwrap();

        let mut tx = store.tenant(&scope, Access::Read).await.unwrap();
        assert_eq!(
            tx.collection_get(&posts.id).await.unwrap(),
            Some(posts.clone()),
            "{b}"
        );
        assert_eq!(
            tx.collection_by_name("Blog posts ✍").await.unwrap(),
            Some(posts.clone()),
            "{b}"
        );
        assert_eq!(
            tx.collection_get(&authors.id).await.unwrap(),
            Some(authors.clone()),
            "{b}"
        );
        assert_eq!(
            tx.collection_get(&CollectionId::generate()).await.unwrap(),
            None,
            "{b}"
        );
        assert_eq!(
            tx.collection_by_name("blog posts ✍").await.unwrap(),
            None,
            "{b}: names are exact"
        );
        assert_eq!(tx.collection_by_name("missing").await.unwrap(), None, "{b}");
        drop(tx);

        // A failed statement ends a PostgreSQL transaction: each conflict gets its own.
        let mut tx = tenant_write(&*store, &scope).await;
        assert_eq!(
            conflict_name(tx.collection_insert(&collection(&ws.id, "authors")).await),
            "collections_name",
            "{b}"
        );
        drop(tx);
        // A collection of another workspace is refused before any SQL runs.
        let mut tx = tenant_write(&*store, &scope).await;
        assert!(
            tx.collection_insert(&collection(&wb.id, "foreign"))
                .await
                .is_err(),
            "{b}"
        );
        drop(tx);

        // Names are unique per workspace only.
        let mut tx = tenant_write(&*store, &sb).await;
        let beta_authors = collection(&wb.id, "authors");
        tx.collection_insert(&beta_authors).await.unwrap();
        tx.commit().await.unwrap();
        let mut tx = store.tenant(&sb, Access::Read).await.unwrap();
        assert_eq!(
            tx.collection_by_name("authors").await.unwrap(),
            Some(beta_authors),
            "{b}"
        );
        drop(tx);
        let mut tx = store.tenant(&scope, Access::Read).await.unwrap();
        assert_eq!(
            tx.collection_by_name("authors").await.unwrap(),
            Some(authors),
            "{b}"
        );
    }
}

#[tokio::test]
async fn collections_list_by_id_and_update_or_delete_only_existing_ones() {
    for (db, store) in stores().await {
        let b = db.backend;
        let a = add_user(&*store, "a@example.com").await;
        let (ws, scope) = add_workspace(&*store, &a, "alpha").await;
        let mut all: Vec<Collection> = (0..5)
            .map(|i| collection(&ws.id, &format!("c{i}")))
            .collect();
        let mut tx = tenant_write(&*store, &scope).await;
        for c in &all {
            tx.collection_insert(c).await.unwrap();
        }
        tx.commit().await.unwrap();
        all.sort_by(|x, y| x.id.as_str().cmp(y.id.as_str()));

        let mut tx = tenant_write(&*store, &scope).await;
        assert_eq!(tx.collections_all().await.unwrap(), all, "{b}");
        let first = tx.collections_list(None, 2).await.unwrap();
        assert_eq!(first, all[..2], "{b}");
        let second = tx.collections_list(Some(&first[1].id), 2).await.unwrap();
        assert_eq!(ids(&second), ids(&all[2..4]), "{b}");
        let last = tx.collections_list(Some(&second[1].id), 2).await.unwrap();
        assert_eq!(ids(&last), ids(&all[4..]), "{b}");
        assert!(
            tx.collections_list(Some(&all[4].id), 2)
                .await
                .unwrap()
                .is_empty(),
            "{b}"
        );

        // An update writes name, fields, version and updated_at, never created_at.
        let changed = Collection {
            name: "renamed".into(),
            fields: every_field(&all[1].id),
            version: all[0].version + 1,
            updated_at: t_us(5_000_000),
            ..all[0].clone()
        };
        assert!(
            tx.collection_update(&Collection {
                created_at: t_us(9_000_000),
                ..changed.clone()
            })
            .await
            .unwrap(),
            "{b}"
        );
        assert_eq!(
            tx.collection_get(&all[0].id).await.unwrap(),
            Some(changed.clone()),
            "{b}"
        );
        assert_eq!(
            tx.collection_by_name(&all[0].name).await.unwrap(),
            None,
            "{b}"
        );
        assert_eq!(
            tx.collection_by_name("renamed").await.unwrap(),
            Some(changed.clone()),
            "{b}"
        );
        // An unknown id matches nothing.
        let unknown = collection(&ws.id, "ghost");
        assert!(!tx.collection_update(&unknown).await.unwrap(), "{b}");
        assert!(!tx.collection_delete(&unknown.id).await.unwrap(), "{b}");
        assert_eq!(tx.collection_by_name("ghost").await.unwrap(), None, "{b}");
        tx.commit().await.unwrap();

        // Renaming onto a taken name is a conflict, and changes nothing.
        let mut tx = tenant_write(&*store, &scope).await;
        assert_eq!(
            conflict_name(
                tx.collection_update(&Collection {
                    name: all[1].name.clone(),
                    ..changed.clone()
                })
                .await
            ),
            "collections_name",
            "{b}"
        );
        drop(tx);
        let mut tx = tenant_write(&*store, &scope).await;
        assert_eq!(
            tx.collection_get(&all[0].id).await.unwrap(),
            Some(changed.clone()),
            "{b}"
        );

        // Deleting removes the row once; its name is free again.
        assert!(tx.collection_delete(&all[2].id).await.unwrap(), "{b}");
        assert!(!tx.collection_delete(&all[2].id).await.unwrap(), "{b}");
        assert_eq!(tx.collection_get(&all[2].id).await.unwrap(), None, "{b}");
        assert!(!tx.collection_update(&all[2]).await.unwrap(), "{b}: gone");
        tx.collection_insert(&collection(&ws.id, &all[2].name))
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let mut tx = store.tenant(&scope, Access::Read).await.unwrap();
        assert_eq!(tx.collections_all().await.unwrap().len(), 5, "{b}");
    }
}

#[tokio::test]
async fn collections_of_another_workspace_are_invisible_and_untouchable() {
    for (db, store) in stores().await {
        let b = db.backend;
        let ua = add_user(&*store, "a@example.com").await;
        let ub = add_user(&*store, "b@example.com").await;
        let (wa, sa) = add_workspace(&*store, &ua, "alpha").await;
        let (wb, sb) = add_workspace(&*store, &ub, "beta").await;
        let cb = Collection {
            fields: every_field(&CollectionId::generate()),
            ..collection(&wb.id, "secrets")
        };
        let mut tx = tenant_write(&*store, &sb).await;
        tx.collection_insert(&cb).await.unwrap();
        tx.commit().await.unwrap();

        let mut tx = tenant_write(&*store, &sa).await;
        assert_eq!(tx.collection_get(&cb.id).await.unwrap(), None, "{b}");
        assert_eq!(tx.collection_by_name("secrets").await.unwrap(), None, "{b}");
        assert!(
            tx.collections_list(None, 10).await.unwrap().is_empty(),
            "{b}"
        );
        assert!(tx.collections_all().await.unwrap().is_empty(), "{b}");
        // B's collection as read is refused before any SQL; re-labelled as A's it matches
        // nothing.
        assert!(tx.collection_update(&cb).await.is_err(), "{b}");
        drop(tx);
        let mut tx = tenant_write(&*store, &sa).await;
        let relabelled = Collection {
            workspace_id: wa.id.clone(),
            name: "stolen".into(),
            version: 99,
            ..cb.clone()
        };
        assert!(!tx.collection_update(&relabelled).await.unwrap(), "{b}");
        assert!(!tx.collection_delete(&cb.id).await.unwrap(), "{b}");
        // The same name is A's to take.
        tx.collection_insert(&collection(&wa.id, "secrets"))
            .await
            .unwrap();
        tx.commit().await.unwrap();

        let mut tx = store.tenant(&sb, Access::Read).await.unwrap();
        assert_eq!(
            tx.collection_get(&cb.id).await.unwrap(),
            Some(cb.clone()),
            "{b}: intact"
        );
        assert_eq!(tx.collections_all().await.unwrap(), [cb], "{b}");
    }
}

// ---- Records (RecordsTx) ----

/// A published record of `collection` in `ws` at version 1 with a title.
fn record(ws: &WorkspaceId, collection: &CollectionId, title: &str) -> Record {
    let mut data = serde_json::Map::new();
    data.insert("title".into(), serde_json::Value::String(title.into()));
    Record {
        id: RecordId::generate(),
        workspace_id: ws.clone(),
        collection_id: collection.clone(),
        status: RecordStatus::Published,
        data,
        version: 1,
        created_at: t0(),
        updated_at: t0(),
        published_at: Some(t0()),
        created_by: "usr_creator".into(),
        updated_by: "usr_creator".into(),
    }
}

fn draft(ws: &WorkspaceId, collection: &CollectionId, title: &str) -> Record {
    Record {
        status: RecordStatus::Draft,
        published_at: None,
        ..record(ws, collection, title)
    }
}

fn record_ids(rs: &[Record]) -> Vec<RecordId> {
    rs.iter().map(|r| r.id.clone()).collect()
}

/// Inserts a collection of `ws` named `name` and commits.
async fn add_collection(store: &dyn Store, scope: &TenantScope, name: &str) -> Collection {
    let c = collection(scope.workspace_id(), name);
    let mut tx = tenant_write(store, scope).await;
    tx.collection_insert(&c).await.unwrap();
    tx.commit().await.unwrap();
    c
}

#[tokio::test]
async fn records_round_trip_exactly() {
    for (db, store) in stores().await {
        let b = db.backend;
        let a = add_user(&*store, "a@example.com").await;
        let (ws, scope) = add_workspace(&*store, &a, "alpha").await;
        let posts = add_collection(&*store, &scope, "posts").await;
        let data = serde_json::json!({
            "title": "Héllo ✍ \"quoted\" \\ back\nslash",
            "日本語": "ключ 🦀",
            "count": 42,
            "negative": -7,
            "big": 18_446_744_073_709_551_615_u64,
            "min": i64::MIN,
            "half": 3.25,
            "tenth": 0.1,
            "one": 1.0,
            "tiny": 1.5e-7,
            "flag": true,
            "nothing": null,
            "nested": {"list": [1, "two", {"three": [3.5, false, null]}], "empty": {}, "none": []},
            "sealed": "djEuYWJjZGVm_-",
        });
        let serde_json::Value::Object(data) = data else {
            unreachable!()
        };
        let full = Record {
            data,
            version: 7,
            created_at: t_us(1),
            updated_at: t_us(86_400_000_000 + 123_456),
            published_at: Some(t_us(999_999)),
            created_by: "usr_someone".into(),
            updated_by: "key_something".into(),
            ..record(&ws.id, &posts.id, "unused")
        };
        let empty = Record {
            data: serde_json::Map::new(),
            ..draft(&ws.id, &posts.id, "unused")
        };
        let mut tx = tenant_write(&*store, &scope).await;
        tx.record_insert(&full).await.unwrap();
        tx.record_insert(&empty).await.unwrap();
        tx.commit().await.unwrap();

        let mut tx = store.tenant(&scope, Access::Read).await.unwrap();
        assert_eq!(
            tx.record_get(&full.id).await.unwrap(),
            Some(full.clone()),
            "{b}"
        );
        assert_eq!(
            tx.record_get(&empty.id).await.unwrap(),
            Some(empty.clone()),
            "{b}"
        );
        assert_eq!(tx.record_get(&RecordId::generate()).await.unwrap(), None);
        drop(tx);

        // A duplicate id is a conflict; a record of an unknown collection is refused (foreign
        // key); one of another workspace is refused before any SQL runs.
        let mut tx = tenant_write(&*store, &scope).await;
        assert!(
            matches!(tx.record_insert(&full).await, Err(StoreError::Conflict(_))),
            "{b}"
        );
        drop(tx);
        let mut tx = tenant_write(&*store, &scope).await;
        assert!(
            tx.record_insert(&record(&ws.id, &CollectionId::generate(), "orphan"))
                .await
                .is_err(),
            "{b}"
        );
        drop(tx);
        let mut tx = tenant_write(&*store, &scope).await;
        assert!(
            tx.record_insert(&record(&WorkspaceId::generate(), &posts.id, "foreign"))
                .await
                .is_err(),
            "{b}"
        );
        drop(tx);
    }
}

#[tokio::test]
async fn records_list_one_collection_by_id_and_drafts_only_when_asked() {
    for (db, store) in stores().await {
        let b = db.backend;
        let a = add_user(&*store, "a@example.com").await;
        let (ws, scope) = add_workspace(&*store, &a, "alpha").await;
        let posts = add_collection(&*store, &scope, "posts").await;
        let pages = add_collection(&*store, &scope, "pages").await;
        let mut all: Vec<Record> = (0..6)
            .map(|i| {
                if i % 3 == 1 {
                    draft(&ws.id, &posts.id, &format!("d{i}"))
                } else {
                    record(&ws.id, &posts.id, &format!("p{i}"))
                }
            })
            .collect();
        let other = record(&ws.id, &pages.id, "page");
        let mut tx = tenant_write(&*store, &scope).await;
        for r in &all {
            tx.record_insert(r).await.unwrap();
        }
        tx.record_insert(&other).await.unwrap();
        tx.commit().await.unwrap();
        all.sort_by(|x, y| x.id.as_str().cmp(y.id.as_str()));
        let published: Vec<Record> = all
            .iter()
            .filter(|r| r.status == RecordStatus::Published)
            .cloned()
            .collect();
        assert_eq!(published.len(), 4);

        let mut tx = store.tenant(&scope, Access::Read).await.unwrap();
        // With drafts: every record of the collection, by id, in pages.
        let first = tx.records_list(&posts.id, None, 4, true).await.unwrap();
        assert_eq!(first, all[..4], "{b}");
        let rest = tx
            .records_list(&posts.id, Some(&first[3].id), 4, true)
            .await
            .unwrap();
        assert_eq!(record_ids(&rest), record_ids(&all[4..]), "{b}");
        assert!(
            tx.records_list(&posts.id, Some(&all[5].id), 4, true)
                .await
                .unwrap()
                .is_empty(),
            "{b}"
        );
        // Without: published ones only, paged the same way.
        let first = tx.records_list(&posts.id, None, 3, false).await.unwrap();
        assert_eq!(first, published[..3], "{b}");
        let rest = tx
            .records_list(&posts.id, Some(&first[2].id), 3, false)
            .await
            .unwrap();
        assert_eq!(record_ids(&rest), record_ids(&published[3..]), "{b}");
        // A cursor need not be a published record's id.
        let draft_id = all
            .iter()
            .find(|r| r.status == RecordStatus::Draft)
            .map(|r| r.id.clone())
            .unwrap();
        let after_draft: Vec<RecordId> = published
            .iter()
            .filter(|r| r.id.as_str() > draft_id.as_str())
            .map(|r| r.id.clone())
            .collect();
        assert_eq!(
            record_ids(
                &tx.records_list(&posts.id, Some(&draft_id), 10, false)
                    .await
                    .unwrap()
            ),
            after_draft,
            "{b}"
        );
        // Other collections are separate.
        assert_eq!(
            tx.records_list(&pages.id, None, 10, true).await.unwrap(),
            [other],
            "{b}"
        );
        assert!(
            tx.records_list(&CollectionId::generate(), None, 10, true)
                .await
                .unwrap()
                .is_empty(),
            "{b}"
        );
        assert_eq!(tx.records_count(&posts.id).await.unwrap(), 6, "{b}");
        assert_eq!(tx.records_count(&pages.id).await.unwrap(), 1, "{b}");
        assert_eq!(
            tx.records_count(&CollectionId::generate()).await.unwrap(),
            0,
            "{b}"
        );
    }
}

#[tokio::test]
async fn record_updates_are_conditional_on_the_version() {
    for (db, store) in stores().await {
        let b = db.backend;
        let a = add_user(&*store, "a@example.com").await;
        let (ws, scope) = add_workspace(&*store, &a, "alpha").await;
        let posts = add_collection(&*store, &scope, "posts").await;
        let pages = add_collection(&*store, &scope, "pages").await;
        let original = draft(&ws.id, &posts.id, "first");
        let mut tx = tenant_write(&*store, &scope).await;
        tx.record_insert(&original).await.unwrap();
        tx.commit().await.unwrap();

        let mut data = original.data.clone();
        data.insert("title".into(), "second ✍".into());
        data.insert("extra".into(), serde_json::json!({"n": [1, 2.5]}));
        let changed = Record {
            status: RecordStatus::Published,
            data,
            version: 2,
            updated_at: t_us(5_000_001),
            published_at: Some(t_us(5_000_001)),
            updated_by: "key_editor".into(),
            ..original.clone()
        };
        let mut tx = tenant_write(&*store, &scope).await;
        // The collection, created_at and created_by are never written.
        assert!(
            tx.record_update(
                &Record {
                    collection_id: pages.id.clone(),
                    created_at: t_us(9),
                    created_by: "usr_forger".into(),
                    ..changed.clone()
                },
                1
            )
            .await
            .unwrap(),
            "{b}"
        );
        assert_eq!(
            tx.record_get(&original.id).await.unwrap(),
            Some(changed.clone()),
            "{b}"
        );
        // A stale version changes nothing.
        let stale = Record {
            data: serde_json::Map::new(),
            version: 3,
            status: RecordStatus::Draft,
            published_at: None,
            updated_by: "usr_late".into(),
            ..changed.clone()
        };
        assert!(!tx.record_update(&stale, 1).await.unwrap(), "{b}");
        assert!(!tx.record_update(&stale, 3).await.unwrap(), "{b}");
        assert_eq!(
            tx.record_get(&original.id).await.unwrap(),
            Some(changed.clone()),
            "{b}"
        );
        // The current version succeeds, back to a draft.
        assert!(tx.record_update(&stale, 2).await.unwrap(), "{b}");
        tx.commit().await.unwrap();
        let mut tx = store.tenant(&scope, Access::Read).await.unwrap();
        assert_eq!(
            tx.record_get(&original.id).await.unwrap(),
            Some(stale.clone()),
            "{b}"
        );
        drop(tx);

        // An unknown record matches nothing; another workspace's is refused before any SQL.
        let mut tx = tenant_write(&*store, &scope).await;
        let ghost = record(&ws.id, &posts.id, "ghost");
        assert!(!tx.record_update(&ghost, 1).await.unwrap(), "{b}");
        assert!(
            tx.record_update(
                &Record {
                    workspace_id: WorkspaceId::generate(),
                    ..stale.clone()
                },
                3
            )
            .await
            .is_err(),
            "{b}"
        );
    }
}

#[tokio::test]
async fn unique_values_are_claimed_by_one_record_until_released_or_deleted() {
    for (db, store) in stores().await {
        let b = db.backend;
        let a = add_user(&*store, "a@example.com").await;
        let (ws, scope) = add_workspace(&*store, &a, "alpha").await;
        let posts = add_collection(&*store, &scope, "posts").await;
        let pages = add_collection(&*store, &scope, "pages").await;
        let r1 = record(&ws.id, &posts.id, "one");
        let r2 = record(&ws.id, &posts.id, "two");
        let mut tx = tenant_write(&*store, &scope).await;
        tx.record_insert(&r1).await.unwrap();
        tx.record_insert(&r2).await.unwrap();
        // Free: taken. Again by the holder: still its. By another: refused.
        assert!(
            tx.record_unique_claim(&posts.id, "slug", "héllo", &r1.id)
                .await
                .unwrap(),
            "{b}"
        );
        assert!(
            tx.record_unique_claim(&posts.id, "slug", "héllo", &r1.id)
                .await
                .unwrap(),
            "{b}"
        );
        assert!(
            !tx.record_unique_claim(&posts.id, "slug", "héllo", &r2.id)
                .await
                .unwrap(),
            "{b}"
        );
        // Values are exact, and per field and per collection.
        for (collection, field, value) in [
            (&posts.id, "slug", "Héllo"),
            (&posts.id, "slug", "héllo "),
            (&posts.id, "email", "héllo"),
            (&pages.id, "slug", "héllo"),
        ] {
            assert!(
                tx.record_unique_claim(collection, field, value, &r2.id)
                    .await
                    .unwrap(),
                "{b}: {field} {value:?}"
            );
        }
        tx.commit().await.unwrap();

        // A release by a record that does not hold the value changes nothing.
        let mut tx = tenant_write(&*store, &scope).await;
        tx.record_unique_release(&posts.id, "slug", "héllo", &r2.id)
            .await
            .unwrap();
        assert!(
            !tx.record_unique_claim(&posts.id, "slug", "héllo", &r2.id)
                .await
                .unwrap(),
            "{b}"
        );
        // The holder's release frees it (a second release is a no-op).
        tx.record_unique_release(&posts.id, "slug", "héllo", &r1.id)
            .await
            .unwrap();
        tx.record_unique_release(&posts.id, "slug", "héllo", &r1.id)
            .await
            .unwrap();
        assert!(
            tx.record_unique_claim(&posts.id, "slug", "héllo", &r2.id)
                .await
                .unwrap(),
            "{b}"
        );
        assert!(
            !tx.record_unique_claim(&posts.id, "slug", "héllo", &r1.id)
                .await
                .unwrap(),
            "{b}"
        );
        tx.commit().await.unwrap();

        // Deleting a record deletes its claims: each value is free for another record.
        let r3 = record(&ws.id, &posts.id, "three");
        let mut tx = tenant_write(&*store, &scope).await;
        tx.record_insert(&r3).await.unwrap();
        assert!(tx.record_delete(&r2.id).await.unwrap(), "{b}");
        assert!(!tx.record_delete(&r2.id).await.unwrap(), "{b}: gone");
        assert_eq!(tx.record_get(&r2.id).await.unwrap(), None, "{b}");
        for (collection, field, value) in [
            (&posts.id, "slug", "héllo"),
            (&posts.id, "slug", "Héllo"),
            (&posts.id, "email", "héllo"),
            (&pages.id, "slug", "héllo"),
        ] {
            assert!(
                tx.record_unique_claim(collection, field, value, &r3.id)
                    .await
                    .unwrap(),
                "{b}: {field} {value:?}"
            );
        }
        // The other record is untouched.
        assert_eq!(tx.record_get(&r1.id).await.unwrap(), Some(r1.clone()));
        // A value as long as a text field allows (10,000 characters, 40,000 bytes, not
        // compressible), more than a PostgreSQL B-tree entry holds; one character less is
        // another value.
        let long: String = (0..10_000u32)
            .map(|i| char::from_u32(0x1_0000 + (i.wrapping_mul(2_654_435_761) % 0xF_0000)).unwrap())
            .collect();
        assert_eq!(long.len(), 40_000);
        let shorter: String = long.chars().skip(1).collect();
        assert!(
            tx.record_unique_claim(&posts.id, "body", &long, &r1.id)
                .await
                .unwrap(),
            "{b}"
        );
        assert!(
            !tx.record_unique_claim(&posts.id, "body", &long, &r3.id)
                .await
                .unwrap(),
            "{b}"
        );
        assert!(
            tx.record_unique_claim(&posts.id, "body", &shorter, &r3.id)
                .await
                .unwrap(),
            "{b}"
        );
        tx.record_unique_release(&posts.id, "body", &long, &r1.id)
            .await
            .unwrap();
        assert!(
            tx.record_unique_claim(&posts.id, "body", &long, &r3.id)
                .await
                .unwrap(),
            "{b}"
        );
        tx.commit().await.unwrap();
    }
}

#[tokio::test]
async fn deleting_a_collections_records_deletes_their_claims_and_nothing_else() {
    for (db, store) in stores().await {
        let b = db.backend;
        let a = add_user(&*store, "a@example.com").await;
        let (ws, scope) = add_workspace(&*store, &a, "alpha").await;
        let posts = add_collection(&*store, &scope, "posts").await;
        let pages = add_collection(&*store, &scope, "pages").await;
        let doomed: Vec<Record> = (0..3)
            .map(|i| {
                if i == 0 {
                    draft(&ws.id, &posts.id, "d")
                } else {
                    record(&ws.id, &posts.id, &format!("p{i}"))
                }
            })
            .collect();
        let kept = record(&ws.id, &pages.id, "kept");
        let mut tx = tenant_write(&*store, &scope).await;
        for (i, r) in doomed.iter().enumerate() {
            tx.record_insert(r).await.unwrap();
            assert!(
                tx.record_unique_claim(&posts.id, "slug", &format!("v{i}"), &r.id)
                    .await
                    .unwrap()
            );
        }
        tx.record_insert(&kept).await.unwrap();
        assert!(
            tx.record_unique_claim(&pages.id, "slug", "v0", &kept.id)
                .await
                .unwrap()
        );
        tx.commit().await.unwrap();

        let mut tx = tenant_write(&*store, &scope).await;
        assert_eq!(tx.records_count(&posts.id).await.unwrap(), 3, "{b}");
        assert_eq!(
            tx.records_delete_collection(&posts.id).await.unwrap(),
            3,
            "{b}"
        );
        assert_eq!(tx.records_count(&posts.id).await.unwrap(), 0, "{b}");
        assert_eq!(
            tx.records_delete_collection(&posts.id).await.unwrap(),
            0,
            "{b}"
        );
        for r in &doomed {
            assert_eq!(tx.record_get(&r.id).await.unwrap(), None, "{b}");
        }
        // Their claims are gone; the other collection's record and claim stay.
        let newcomer = record(&ws.id, &posts.id, "new");
        tx.record_insert(&newcomer).await.unwrap();
        for i in 0..3 {
            assert!(
                tx.record_unique_claim(&posts.id, "slug", &format!("v{i}"), &newcomer.id)
                    .await
                    .unwrap(),
                "{b}"
            );
        }
        assert!(
            !tx.record_unique_claim(&pages.id, "slug", "v0", &newcomer.id)
                .await
                .unwrap(),
            "{b}"
        );
        assert_eq!(tx.records_count(&pages.id).await.unwrap(), 1, "{b}");
        assert_eq!(tx.record_get(&kept.id).await.unwrap(), Some(kept), "{b}");
        // With its records gone, the collection itself can be deleted.
        assert_eq!(
            tx.records_delete_collection(&posts.id).await.unwrap(),
            1,
            "{b}"
        );
        assert!(tx.collection_delete(&posts.id).await.unwrap(), "{b}");
        tx.commit().await.unwrap();
    }
}

#[tokio::test]
async fn records_of_another_workspace_are_invisible_and_untouchable() {
    for (db, store) in stores().await {
        let b = db.backend;
        let ua = add_user(&*store, "a@example.com").await;
        let ub = add_user(&*store, "b@example.com").await;
        let (wa, sa) = add_workspace(&*store, &ua, "alpha").await;
        let (_wb, sb) = add_workspace(&*store, &ub, "beta").await;
        let ca = add_collection(&*store, &sa, "secrets").await;
        let ra = record(&wa.id, &ca.id, "secret");
        let rd = draft(&wa.id, &ca.id, "draft");
        let mut tx = tenant_write(&*store, &sa).await;
        tx.record_insert(&ra).await.unwrap();
        tx.record_insert(&rd).await.unwrap();
        assert!(
            tx.record_unique_claim(&ca.id, "slug", "taken", &ra.id)
                .await
                .unwrap()
        );
        tx.commit().await.unwrap();

        let mut tx = tenant_write(&*store, &sb).await;
        assert_eq!(tx.record_get(&ra.id).await.unwrap(), None, "{b}");
        assert!(
            tx.records_list(&ca.id, None, 10, true)
                .await
                .unwrap()
                .is_empty(),
            "{b}"
        );
        assert_eq!(tx.records_count(&ca.id).await.unwrap(), 0, "{b}");
        // A's record as read is refused before any SQL.
        assert!(tx.record_update(&ra, 1).await.is_err(), "{b}");
        drop(tx);
        let mut tx = tenant_write(&*store, &sb).await;
        assert!(
            tx.record_insert(&record(&wa.id, &ca.id, "planted"))
                .await
                .is_err(),
            "{b}"
        );
        drop(tx);
        let mut tx = tenant_write(&*store, &sb).await;
        // Re-labelled as B's it matches nothing.
        let relabelled = Record {
            workspace_id: sb.workspace_id().clone(),
            version: 2,
            ..ra.clone()
        };
        assert!(!tx.record_update(&relabelled, 1).await.unwrap(), "{b}");
        assert!(!tx.record_delete(&ra.id).await.unwrap(), "{b}");
        assert_eq!(
            tx.records_delete_collection(&ca.id).await.unwrap(),
            0,
            "{b}"
        );
        // Claims are per workspace: A's value is free in B, and B's release of A's claim (with
        // A's record id) touches nothing of A's.
        tx.record_unique_release(&ca.id, "slug", "taken", &ra.id)
            .await
            .unwrap();
        assert!(
            tx.record_unique_claim(&ca.id, "slug", "taken", &RecordId::generate())
                .await
                .unwrap(),
            "{b}"
        );
        tx.commit().await.unwrap();

        let mut tx = tenant_write(&*store, &sa).await;
        assert_eq!(
            tx.record_get(&ra.id).await.unwrap(),
            Some(ra.clone()),
            "{b}: intact"
        );
        assert_eq!(
            tx.records_list(&ca.id, None, 10, true).await.unwrap().len(),
            2,
            "{b}"
        );
        assert!(
            !tx.record_unique_claim(&ca.id, "slug", "taken", &rd.id)
                .await
                .unwrap(),
            "{b}: A's claim stands"
        );
        assert!(
            tx.record_unique_claim(&ca.id, "slug", "taken", &ra.id)
                .await
                .unwrap(),
            "{b}"
        );
    }
}

/// Two transactions claiming one value: the second waits for the first (PostgreSQL on the
/// unique index, SQLite for the one writer) and loses if it commits, wins if it rolls back.
#[tokio::test]
async fn concurrent_record_unique_claims_have_exactly_one_winner() {
    for (db, store) in stores().await {
        let b = db.backend;
        let a = add_user(&*store, "a@example.com").await;
        let (ws, scope) = add_workspace(&*store, &a, "alpha").await;
        let posts = add_collection(&*store, &scope, "posts").await;
        for winner_commits in [true, false] {
            let value = format!("value-{winner_commits}");
            let first = record(&ws.id, &posts.id, "first");
            let second = record(&ws.id, &posts.id, "second");
            let mut tx = tenant_write(&*store, &scope).await;
            tx.record_insert(&first).await.unwrap();
            assert!(
                tx.record_unique_claim(&posts.id, "slug", &value, &first.id)
                    .await
                    .unwrap(),
                "{b}"
            );

            let (store2, scope2, posts2, value2) = (
                store.clone(),
                scope.clone(),
                posts.id.clone(),
                value.clone(),
            );
            let second_id = second.id.clone();
            let loser = tokio::spawn(async move {
                let mut tx = tenant_write(&*store2, &scope2).await;
                let won = tx
                    .record_unique_claim(&posts2, "slug", &value2, &second_id)
                    .await
                    .unwrap();
                tx.commit().await.unwrap();
                won
            });
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            assert!(!loser.is_finished(), "{b}: the second claim waits");
            if winner_commits {
                tx.commit().await.unwrap();
            } else {
                drop(tx);
            }
            let won = tokio::time::timeout(std::time::Duration::from_secs(10), loser)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(won, !winner_commits, "{b}: winner commits {winner_commits}");
            let holder = if winner_commits { &first } else { &second };
            let other = if winner_commits { &second } else { &first };
            let mut tx = tenant_write(&*store, &scope).await;
            assert!(
                tx.record_unique_claim(&posts.id, "slug", &value, &holder.id)
                    .await
                    .unwrap(),
                "{b}"
            );
            assert!(
                !tx.record_unique_claim(&posts.id, "slug", &value, &other.id)
                    .await
                    .unwrap(),
                "{b}"
            );
        }
    }
}

/// A record write's shared lock on its collection holds a schema change's exclusive lock until
/// it commits (PostgreSQL row locks; SQLite's one writer), so the change sees every record.
#[tokio::test]
async fn a_schema_change_waits_for_record_writes_on_its_collection() {
    for (db, store) in stores().await {
        let b = db.backend;
        let a = add_user(&*store, "a@example.com").await;
        let (ws, scope) = add_workspace(&*store, &a, "alpha").await;
        let posts = add_collection(&*store, &scope, "posts").await;
        let mut writer = tenant_write(&*store, &scope).await;
        let seen = writer.collection_lock("posts", false).await.unwrap();
        assert_eq!(seen.map(|c| c.id), Some(posts.id.clone()), "{b}");
        let row = record(&ws.id, &posts.id, "first");
        writer.record_insert(&row).await.unwrap();

        let (store2, scope2, posts2) = (store.clone(), scope.clone(), posts.id.clone());
        let change = tokio::spawn(async move {
            let mut tx = tenant_write(&*store2, &scope2).await;
            let locked = tx.collection_lock("posts", true).await.unwrap();
            let count = tx.records_count(&posts2).await.unwrap();
            tx.commit().await.unwrap();
            (locked.is_some(), count)
        });
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(!change.is_finished(), "{b}: the schema change waits");
        writer.commit().await.unwrap();
        let (locked, count) = tokio::time::timeout(std::time::Duration::from_secs(10), change)
            .await
            .unwrap()
            .unwrap();
        assert!(locked, "{b}");
        assert_eq!(
            count, 1,
            "{b}: the change sees the record written before it"
        );

        let mut tx = store.tenant(&scope, Access::Read).await.unwrap();
        assert!(
            tx.collection_lock("posts", false).await.unwrap().is_some(),
            "{b}: a read transaction reads without locking"
        );
        assert!(
            tx.collection_lock("nope", true).await.unwrap().is_none(),
            "{b}"
        );
    }
}

fn data_key(owner: &str, version: i64, wrapped: &[u8]) -> palisade_core::store::StoredDataKey {
    palisade_core::store::StoredDataKey {
        id: palisade_core::ids::DataKeyId::generate(),
        owner: owner.to_owned(),
        version,
        wrapped: wrapped.to_vec(),
        created_at: t0(),
        activates_at: t0() + time::Duration::seconds(30),
        retired_at: None,
    }
}

#[tokio::test]
async fn data_key_versions_are_unique_per_owner_and_rewrap_is_compare_and_swap() {
    for (db, store) in stores().await {
        let b = db.backend;
        let scope = SystemScope::new("test");
        let mut tx = store.system(&scope, Access::Write).await.unwrap();
        let v1 = data_key("instance", 1, b"wrapped-one");
        tx.data_key_insert(&v1).await.unwrap();
        tx.commit().await.unwrap();
        // Another node's version 1 of the same owner loses (its transaction is then spent).
        let mut tx = store.system(&scope, Access::Write).await.unwrap();
        let err = tx
            .data_key_insert(&data_key("instance", 1, b"other"))
            .await
            .expect_err("duplicate version");
        assert!(
            matches!(&err, StoreError::Conflict(c) if c == "data_keys_owner_version"),
            "{b}: {err:?}"
        );
        drop(tx);
        let mut tx = store.system(&scope, Access::Write).await.unwrap();
        assert!(
            !tx.data_key_rewrap(&v1.id, b"stale", b"new").await.unwrap(),
            "{b}: a stale read changes nothing"
        );
        assert!(
            tx.data_key_rewrap(&v1.id, b"wrapped-one", b"wrapped-again")
                .await
                .unwrap(),
            "{b}"
        );
        tx.commit().await.unwrap();
        let mut tx = store.system(&scope, Access::Read).await.unwrap();
        let all = tx.data_keys_all().await.unwrap();
        assert_eq!(all.len(), 1, "{b}");
        assert_eq!(all[0].0.wrapped, b"wrapped-again", "{b}");
        assert_eq!(all[0].0.activates_at, v1.activates_at, "{b}");
        assert_eq!(all[0].1, None, "{b}: the instance has no region");
    }
}

#[tokio::test]
async fn a_keys_transaction_reseals_only_its_owners_values_and_keeps_versions() {
    for (db, store) in stores().await {
        let b = db.backend;
        let owner = add_user(&*store, &format!("keys-{b}@example.com")).await;
        let (ws_a, scope_a) = add_workspace(&*store, &owner, "keys-a").await;
        let (_, scope_b) = add_workspace(&*store, &owner, "keys-b").await;
        let col_a = add_collection(&*store, &scope_a, "notes").await;
        let col_b = add_collection(&*store, &scope_b, "notes").await;
        let rec_a = record(scope_a.workspace_id(), &col_a.id, "a");
        let rec_b = record(scope_b.workspace_id(), &col_b.id, "b");
        for (scope, rec) in [(&scope_a, &rec_a), (&scope_b, &rec_b)] {
            let mut tx = tenant_write(&*store, scope).await;
            tx.record_insert(rec).await.unwrap();
            tx.commit().await.unwrap();
        }
        let system = SystemScope::new("test");
        let mut tx = store
            .keys(&system, ws_a.id.as_str(), Access::Write)
            .await
            .unwrap();
        // The owner's data key and job.
        tx.owner_data_key_insert(&data_key(ws_a.id.as_str(), 1, b"w"))
            .await
            .unwrap();
        assert!(
            tx.owner_data_key_insert(&data_key("instance", 9, b"w"))
                .await
                .is_err(),
            "{b}: another owner's key is refused"
        );
        let job = palisade_core::store::KeyRotation {
            id: "krot_test".into(),
            owner: ws_a.id.to_string(),
            to_version: 2,
            reason: "operator".into(),
            state: "pending".into(),
            pass: 1,
            phase: "records".into(),
            cursor: String::new(),
            found: 0,
            resealed: 0,
            scanned: 0,
            created_at: t0(),
            updated_at: t0(),
            finished_at: None,
        };
        tx.key_rotation_insert(&job).await.unwrap();
        let mut data = rec_a.data.clone();
        data.insert("title".into(), serde_json::json!("resealed"));
        // Compare-and-swap on the version, which does not move.
        assert!(!tx.record_reseal(&rec_a.id, 7, &data).await.unwrap(), "{b}");
        assert!(tx.record_reseal(&rec_a.id, 1, &data).await.unwrap(), "{b}");
        // Workspace B's record is not this transaction's to change.
        assert!(
            !tx.record_reseal(&rec_b.id, 1, &data).await.unwrap(),
            "{b}: cross-workspace reseal"
        );
        let mut open = tx.key_rotation_open().await.unwrap().unwrap();
        assert_eq!(open, job, "{b}");
        open.state = "done".into();
        open.finished_at = Some(t0());
        tx.key_rotation_update(&open).await.unwrap();
        assert!(tx.key_rotation_open().await.unwrap().is_none(), "{b}");
        tx.commit().await.unwrap();

        let mut tx = store.tenant(&scope_a, Access::Read).await.unwrap();
        let a = tx.record_get(&rec_a.id).await.unwrap().unwrap();
        assert_eq!(a.data["title"], "resealed", "{b}");
        assert_eq!(a.version, 1, "{b}: a reseal is not a new version");
        drop(tx);
        let mut tx = store.tenant(&scope_b, Access::Read).await.unwrap();
        let bb = tx.record_get(&rec_b.id).await.unwrap().unwrap();
        assert_eq!(bb.data["title"], "b", "{b}");
        drop(tx);
        let mut tx = store.system(&system, Access::Read).await.unwrap();
        let jobs = tx.key_rotations(10).await.unwrap();
        assert_eq!(jobs.len(), 1, "{b}");
        assert_eq!(jobs[0].state, "done", "{b}");
        let keys = tx.data_keys_all().await.unwrap();
        assert!(
            keys.iter()
                .any(|(k, region)| k.owner == ws_a.id.as_str() && region.as_deref() == Some("eu")),
            "{b}: a workspace key carries its region: {}",
            keys.len()
        );
    }
}

#[tokio::test]
async fn an_audit_key_seed_may_be_resealed_but_nothing_else_of_it_changes() {
    for (db, store) in stores().await {
        let b = db.backend;
        let owner = add_user(&*store, &format!("seal-{b}@example.com")).await;
        let (ws, scope) = add_workspace(&*store, &owner, "seal").await;
        let kid = {
            let mut tx = store.tenant(&scope, Access::Read).await.unwrap();
            tx.audit_keys().await.unwrap()[0].clone()
        };
        let system = SystemScope::new("test");
        let mut tx = store
            .keys(&system, ws.id.as_str(), Access::Write)
            .await
            .unwrap();
        assert!(
            !tx.audit_key_reseal(&kid.kid, b"stale", b"new")
                .await
                .unwrap(),
            "{b}"
        );
        assert!(
            tx.audit_key_reseal(&kid.kid, &kid.sealed_seed, b"new-seal")
                .await
                .unwrap(),
            "{b}"
        );
        tx.commit().await.unwrap();
        let mut tx = store.tenant(&scope, Access::Read).await.unwrap();
        let after = tx.audit_keys().await.unwrap();
        assert_eq!(after[0].sealed_seed, b"new-seal", "{b}");
        assert_eq!(after[0].public_key, kid.public_key, "{b}");
    }
}

// ---- Webhooks (WebhooksTx, the dispatcher's SystemTx statements, re-sealing) ----

/// An enabled endpoint of `ws` for record and member events, with an admin's grants.
fn endpoint(ws: &WorkspaceId, url: &str, by: &User) -> Endpoint {
    Endpoint {
        id: WebhookId::generate(),
        workspace_id: ws.clone(),
        url: url.into(),
        description: "Receiver".into(),
        events: vec!["record.created".into(), "member.added".into()],
        enabled: true,
        disabled_reason: None,
        grants: Grants::resolve(Role::Admin, None, &[]),
        created_by: by.id.to_string(),
        created_at: t0(),
        updated_at: t0(),
        secret: format!("sealed:{url}").into_bytes(),
        previous_secret: None,
        previous_secret_expires_at: None,
        failing_since: None,
    }
}

async fn add_endpoint(store: &dyn Store, scope: &TenantScope, e: &Endpoint) {
    let mut tx = tenant_write(store, scope).await;
    tx.webhook_insert(e).await.unwrap();
    tx.commit().await.unwrap();
}

/// An event of `ws` written at `at`, with one pending delivery per endpoint due at `due`.
fn outbox(
    ws: &WorkspaceId,
    endpoints: &[&Endpoint],
    at: OffsetDateTime,
    due: OffsetDateTime,
) -> (OutboxEvent, Vec<Delivery>) {
    let event = OutboxEvent {
        id: WebhookEventId::generate(),
        workspace_id: ws.clone(),
        event_type: "record.created".into(),
        collection: Some("posts".into()),
        draft: false,
        payload: b"sealed-payload".to_vec(),
        created_at: at,
    };
    let deliveries = endpoints
        .iter()
        .map(|e| Delivery {
            id: DeliveryId::generate(),
            workspace_id: ws.clone(),
            webhook_id: e.id.clone(),
            event_id: event.id.clone(),
            event_type: event.event_type.clone(),
            status: DeliveryStatus::Pending,
            attempts: 0,
            schedule_step: 0,
            next_attempt_at: Some(due),
            created_at: at,
            updated_at: at,
        })
        .collect();
    (event, deliveries)
}

async fn add_event(
    store: &dyn Store,
    scope: &TenantScope,
    endpoints: &[&Endpoint],
    at: OffsetDateTime,
    due: OffsetDateTime,
) -> (OutboxEvent, Vec<Delivery>) {
    let (event, deliveries) = outbox(scope.workspace_id(), endpoints, at, due);
    let mut tx = tenant_write(store, scope).await;
    tx.webhook_event_insert(&event, &deliveries).await.unwrap();
    tx.commit().await.unwrap();
    (event, deliveries)
}

/// Claims in a transaction of its own.
async fn claim(
    store: &dyn Store,
    now: OffsetDateTime,
    lease_until: OffsetDateTime,
    token: &str,
    limit: u32,
) -> Vec<ClaimedDelivery> {
    let mut tx = system_write(store).await;
    let claimed = tx
        .webhook_deliveries_claim(now, lease_until, token, limit)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    claimed
}

async fn record_outcomes(store: &dyn Store, outcomes: &[DeliveryOutcome]) -> u64 {
    let mut tx = system_write(store).await;
    let n = tx.webhook_outcomes_record(outcomes, t_us(7)).await.unwrap();
    tx.commit().await.unwrap();
    n
}

/// The outcome of attempt `number` of a claimed delivery: a 200 when `failing_since` is
/// `None`, else a refused connection.
fn outcome(
    c: &ClaimedDelivery,
    number: i64,
    status: DeliveryStatus,
    next_attempt_at: Option<OffsetDateTime>,
    failing_since: Option<OffsetDateTime>,
) -> DeliveryOutcome {
    let ok = failing_since.is_none();
    DeliveryOutcome {
        attempt: Attempt {
            delivery_id: c.delivery.id.clone(),
            number,
            attempted_at: t_us(number),
            status_code: ok.then_some(200),
            latency_ms: 12 + number,
            response_body: if ok { "ok".into() } else { String::new() },
            error: (!ok).then(|| "connection refused".into()),
            trigger: "schedule".into(),
        },
        workspace_id: c.delivery.workspace_id.clone(),
        claim: c.claim.clone(),
        status,
        schedule_step: number,
        next_attempt_at,
        webhook_id: c.delivery.webhook_id.clone(),
        failing_since,
    }
}

fn delivery_ids(claimed: &[ClaimedDelivery]) -> Vec<DeliveryId> {
    claimed.iter().map(|c| c.delivery.id.clone()).collect()
}

fn secs(s: i64) -> OffsetDateTime {
    t0() + time::Duration::seconds(s)
}

#[tokio::test]
async fn webhooks_round_trip_every_field_and_update_or_delete_only_existing_ones() {
    for (db, store) in stores().await {
        let b = db.backend;
        let a = add_user(&*store, "a@example.com").await;
        let (ws, scope) = add_workspace(&*store, &a, "alpha").await;
        let custom = RoleGrants {
            permissions: [Permission::RecordsRead].into_iter().collect(),
            fields: vec![FieldGrant {
                collection: "posts".into(),
                field: "body".into(),
                read: true,
                write: false,
            }],
        };
        let teams = [grant(Some("posts"), &[Permission::RecordsReadDraft])];
        let full = Endpoint {
            description: "Every option set".into(),
            enabled: false,
            disabled_reason: Some("failing".into()),
            grants: Grants::resolve(Role::Member, Some(&custom), &teams),
            created_by: "key_01J0000000000000000000000".into(),
            created_at: t_us(1),
            updated_at: t_us(2),
            previous_secret: Some(b"sealed-previous".to_vec()),
            previous_secret_expires_at: Some(t_us(86_400_000_000 + 5)),
            failing_since: Some(t_us(3)),
            ..endpoint(&ws.id, "https://full.example/hook", &a)
        };
        let bare = endpoint(&ws.id, "https://bare.example/hook", &a);
        let third = endpoint(&ws.id, "https://third.example/hook", &a);
        let mut tx = tenant_write(&*store, &scope).await;
        for e in [&full, &bare, &third] {
            tx.webhook_insert(e).await.unwrap();
        }
        assert_eq!(
            tx.webhook_get(&full.id).await.unwrap(),
            Some(full.clone()),
            "{b}"
        );
        assert_eq!(
            tx.webhook_get(&bare.id).await.unwrap(),
            Some(bare.clone()),
            "{b}"
        );
        assert_eq!(
            tx.webhook_get(&WebhookId::generate()).await.unwrap(),
            None,
            "{b}"
        );
        let all = tx.webhooks_list(None, 10).await.unwrap();
        assert_eq!(
            all,
            [full.clone(), bare.clone(), third.clone()],
            "{b}: by id"
        );
        let page = tx.webhooks_list(Some(&full.id), 1).await.unwrap();
        assert_eq!(
            page,
            std::slice::from_ref(&bare),
            "{b}: after the cursor, up to the limit"
        );
        let enabled = tx.webhooks_enabled().await.unwrap();
        assert_eq!(enabled, [bare.clone(), third.clone()], "{b}: enabled only");

        // Everything but the identity, creator and creation time is written.
        let changed = Endpoint {
            url: "https://moved.example/hook".into(),
            description: "Changed".into(),
            events: vec!["api_key.created".into()],
            enabled: true,
            disabled_reason: None,
            grants: Grants::resolve(Role::Owner, None, &[]),
            created_by: "usr_someone_else".into(),
            created_at: t_us(99),
            updated_at: t_us(100),
            secret: b"sealed-new".to_vec(),
            previous_secret: None,
            previous_secret_expires_at: None,
            failing_since: None,
            ..full.clone()
        };
        assert!(tx.webhook_update(&changed).await.unwrap(), "{b}");
        let expected = Endpoint {
            created_by: full.created_by.clone(),
            created_at: full.created_at,
            ..changed.clone()
        };
        assert_eq!(
            tx.webhook_get(&full.id).await.unwrap(),
            Some(expected.clone()),
            "{b}"
        );
        let back = Endpoint {
            updated_at: t_us(101),
            ..full.clone()
        };
        assert!(
            tx.webhook_update(&back).await.unwrap(),
            "{b}: options set again"
        );
        assert_eq!(tx.webhook_get(&full.id).await.unwrap(), Some(back), "{b}");
        let unknown = endpoint(&ws.id, "https://unknown.example", &a);
        assert!(!tx.webhook_update(&unknown).await.unwrap(), "{b}");

        // A delete takes the endpoint's deliveries and their attempts, not the event.
        assert!(tx.webhook_delete(&third.id).await.unwrap(), "{b}");
        assert!(!tx.webhook_delete(&third.id).await.unwrap(), "{b}: once");
        assert_eq!(tx.webhook_get(&third.id).await.unwrap(), None, "{b}");
        tx.commit().await.unwrap();

        let (event, ds) = add_event(&*store, &scope, &[&bare], t0(), t0()).await;
        let claimed = claim(&*store, t0(), secs(30), "c1", 10).await;
        assert_eq!(delivery_ids(&claimed), [ds[0].id.clone()], "{b}");
        let o = outcome(&claimed[0], 1, DeliveryStatus::Succeeded, None, None);
        assert_eq!(record_outcomes(&*store, &[o]).await, 1, "{b}");
        let mut tx = tenant_write(&*store, &scope).await;
        assert_eq!(
            tx.webhook_attempts(&ds[0].id).await.unwrap().len(),
            1,
            "{b}"
        );
        assert!(tx.webhook_delete(&bare.id).await.unwrap(), "{b}");
        assert_eq!(
            tx.webhook_delivery_get(&ds[0].id).await.unwrap(),
            None,
            "{b}"
        );
        assert!(
            tx.webhook_attempts(&ds[0].id).await.unwrap().is_empty(),
            "{b}"
        );
        assert_eq!(
            tx.webhook_event_get(&event.id).await.unwrap(),
            Some(event.clone()),
            "{b}"
        );
        tx.commit().await.unwrap();
    }
}

#[tokio::test]
async fn webhook_events_and_deliveries_round_trip_and_list_newest_first() {
    for (db, store) in stores().await {
        let b = db.backend;
        let a = add_user(&*store, "a@example.com").await;
        let (ws, scope) = add_workspace(&*store, &a, "alpha").await;
        let e1 = endpoint(&ws.id, "https://one.example", &a);
        let e2 = endpoint(&ws.id, "https://two.example", &a);
        add_endpoint(&*store, &scope, &e1).await;
        add_endpoint(&*store, &scope, &e2).await;
        let (event, ds) = add_event(&*store, &scope, &[&e1, &e2], t_us(5), t_us(6)).await;
        let (no_collection, _) = outbox(&ws.id, &[], t_us(8), t_us(8));
        let no_collection = OutboxEvent {
            collection: None,
            event_type: "member.added".into(),
            ..no_collection
        };
        let (later, later_ds) = add_event(&*store, &scope, &[&e1], t_us(9), t_us(9)).await;
        let mut tx = tenant_write(&*store, &scope).await;
        tx.webhook_event_insert(&no_collection, &[]).await.unwrap();
        assert_eq!(
            tx.webhook_event_get(&event.id).await.unwrap(),
            Some(event.clone()),
            "{b}"
        );
        assert_eq!(
            tx.webhook_event_get(&no_collection.id).await.unwrap(),
            Some(no_collection.clone()),
            "{b}"
        );
        for d in ds.iter().chain(&later_ds) {
            assert_eq!(
                tx.webhook_delivery_get(&d.id).await.unwrap(),
                Some(d.clone()),
                "{b}"
            );
        }
        let listed = tx
            .webhook_deliveries_list(&e1.id, None, None, 10)
            .await
            .unwrap();
        assert_eq!(
            listed,
            [later_ds[0].clone(), ds[0].clone()],
            "{b}: newest first"
        );
        let page = tx
            .webhook_deliveries_list(&e1.id, None, Some(&later_ds[0].id), 10)
            .await
            .unwrap();
        assert_eq!(page, [ds[0].clone()], "{b}: before the cursor");
        let one = tx
            .webhook_deliveries_list(&e1.id, None, None, 1)
            .await
            .unwrap();
        assert_eq!(one, [later_ds[0].clone()], "{b}: up to the limit");
        let failed = tx
            .webhook_deliveries_list(&e1.id, Some(DeliveryStatus::Failed), None, 10)
            .await
            .unwrap();
        assert!(failed.is_empty(), "{b}");
        let pending = tx
            .webhook_deliveries_list(&e1.id, Some(DeliveryStatus::Pending), None, 10)
            .await
            .unwrap();
        assert_eq!(pending.len(), 2, "{b}");
        assert_eq!(
            tx.webhook_deliveries_list(&e2.id, None, None, 10)
                .await
                .unwrap(),
            [ds[1].clone()],
            "{b}"
        );
        // A delivery names its own event.
        let (other, _) = outbox(&ws.id, &[], t0(), t0());
        let err = tx
            .webhook_event_insert(&other, &[later_ds[0].clone()])
            .await;
        assert!(err.is_err(), "{b}: a delivery of another event is refused");
        drop(tx);
        let mut tx = store.tenant(&scope, Access::Read).await.unwrap();
        assert_eq!(
            tx.webhook_event_get(&later.id).await.unwrap(),
            Some(later),
            "{b}"
        );
        assert_eq!(tx.webhook_event_get(&other.id).await.unwrap(), None, "{b}");
    }
}

#[tokio::test]
async fn webhook_rows_of_another_workspace_are_invisible_and_untouchable() {
    for (db, store) in stores().await {
        let b = db.backend;
        let ua = add_user(&*store, "a@example.com").await;
        let ub = add_user(&*store, "b@example.com").await;
        let (wa, sa) = add_workspace(&*store, &ua, "alpha").await;
        let (wb, sb) = add_workspace(&*store, &ub, "beta").await;
        let eb = endpoint(&wb.id, "https://beta.example", &ub);
        add_endpoint(&*store, &sb, &eb).await;
        let (event, ds) = add_event(&*store, &sb, &[&eb], t0(), t0()).await;
        let claimed = claim(&*store, t0(), secs(30), "c1", 10).await;
        let o = outcome(&claimed[0], 1, DeliveryStatus::Failed, None, Some(t0()));
        assert_eq!(record_outcomes(&*store, &[o]).await, 1, "{b}");

        let mut tx = tenant_write(&*store, &sa).await;
        assert_eq!(tx.webhook_get(&eb.id).await.unwrap(), None, "{b}");
        assert!(tx.webhooks_list(None, 10).await.unwrap().is_empty(), "{b}");
        assert!(tx.webhooks_enabled().await.unwrap().is_empty(), "{b}");
        assert_eq!(tx.webhook_event_get(&event.id).await.unwrap(), None, "{b}");
        assert_eq!(
            tx.webhook_delivery_get(&ds[0].id).await.unwrap(),
            None,
            "{b}"
        );
        assert!(
            tx.webhook_deliveries_list(&eb.id, None, None, 10)
                .await
                .unwrap()
                .is_empty(),
            "{b}"
        );
        assert!(
            tx.webhook_attempts(&ds[0].id).await.unwrap().is_empty(),
            "{b}"
        );
        assert!(
            !tx.webhook_delivery_redeliver(&ds[0].id, t0(), 9)
                .await
                .unwrap(),
            "{b}"
        );
        let stolen = Endpoint {
            workspace_id: wa.id.clone(),
            url: "https://stolen.example".into(),
            ..eb.clone()
        };
        assert!(!tx.webhook_update(&stolen).await.unwrap(), "{b}");
        assert!(!tx.webhook_delete(&eb.id).await.unwrap(), "{b}");
        // Writes naming the other workspace are refused before any SQL.
        assert!(tx.webhook_update(&eb).await.is_err(), "{b}");
        assert!(tx.webhook_insert(&eb).await.is_err(), "{b}");
        assert!(tx.webhook_event_insert(&event, &ds).await.is_err(), "{b}");
        drop(tx);
        // A delivery of this workspace to the other's endpoint breaks the foreign key.
        let mut tx = tenant_write(&*store, &sa).await;
        let (mine, _) = outbox(&wa.id, &[], t0(), t0());
        let (_, to_theirs) = outbox(&wa.id, &[&eb], t0(), t0());
        let to_theirs: Vec<Delivery> = to_theirs
            .into_iter()
            .map(|d| Delivery {
                event_id: mine.id.clone(),
                ..d
            })
            .collect();
        assert!(
            tx.webhook_event_insert(&mine, &to_theirs).await.is_err(),
            "{b}: cross-workspace delivery"
        );
        drop(tx);

        let mut tx = store.tenant(&sb, Access::Read).await.unwrap();
        let kept = tx.webhook_get(&eb.id).await.unwrap().unwrap();
        assert_eq!(kept.url, eb.url, "{b}: intact");
        assert_eq!(kept.failing_since, Some(t0()), "{b}");
        let d = tx.webhook_delivery_get(&ds[0].id).await.unwrap().unwrap();
        assert_eq!(d.status, DeliveryStatus::Failed, "{b}");
        assert_eq!(
            tx.webhook_attempts(&ds[0].id).await.unwrap().len(),
            1,
            "{b}"
        );
    }
}

#[tokio::test]
async fn claims_take_due_deliveries_of_enabled_endpoints_until_the_lease_ends() {
    for (db, store) in stores().await {
        let b = db.backend;
        let ua = add_user(&*store, "a@example.com").await;
        let ub = add_user(&*store, "b@example.com").await;
        let (wa, sa) = add_workspace(&*store, &ua, "alpha").await;
        let (wb, sb) = add_workspace(&*store, &ub, "beta").await;
        let e1 = endpoint(&wa.id, "https://one.example", &ua);
        let e2 = endpoint(&wa.id, "https://two.example", &ua);
        let off = Endpoint {
            enabled: false,
            ..endpoint(&wa.id, "https://off.example", &ua)
        };
        let eb = endpoint(&wb.id, "https://beta.example", &ub);
        for (s, e) in [(&sa, &e1), (&sa, &e2), (&sa, &off), (&sb, &eb)] {
            add_endpoint(&*store, s, e).await;
        }
        let mut system = system_write(&*store).await;
        assert_eq!(
            system.webhook_next_due().await.unwrap(),
            None,
            "{b}: nothing pending"
        );
        drop(system);
        // Due at 0 s (both endpoints and the disabled one), at -1 s (beta), at 3600 s.
        let (event, ds) = add_event(&*store, &sa, &[&e1, &e2, &off], t0(), secs(0)).await;
        let (event_b, ds_b) = add_event(&*store, &sb, &[&eb], t0(), secs(-1)).await;
        let (_, later) = add_event(&*store, &sa, &[&e1], t0(), secs(3600)).await;
        let (_, off_early) = add_event(&*store, &sa, &[&off], t0(), secs(-60)).await;

        let mut system = system_write(&*store).await;
        assert_eq!(
            system.webhook_next_due().await.unwrap(),
            Some(secs(-1)),
            "{b}: the disabled endpoint's earlier delivery is not due"
        );
        drop(system);

        let first = claim(&*store, secs(1), secs(31), "c1", 10).await;
        let mut expected = vec![ds_b[0].id.clone()];
        let mut same_due = vec![ds[0].id.clone(), ds[1].id.clone()];
        same_due.sort_by(|x, y| x.as_str().cmp(y.as_str()));
        expected.extend(same_due);
        assert_eq!(
            delivery_ids(&first),
            expected,
            "{b}: oldest due first, any workspace"
        );
        for c in &first {
            assert_eq!(c.claim, "c1", "{b}");
            let (want_event, want_endpoint, want) = if c.delivery.id == ds_b[0].id {
                (&event_b, &eb, &ds_b[0])
            } else if c.delivery.id == ds[0].id {
                (&event, &e1, &ds[0])
            } else {
                (&event, &e2, &ds[1])
            };
            assert_eq!(&c.event, want_event, "{b}");
            assert_eq!(&c.endpoint, want_endpoint, "{b}");
            assert_eq!(&c.delivery, want, "{b}");
        }
        assert!(
            !delivery_ids(&first).contains(&ds[2].id)
                && !delivery_ids(&first).contains(&off_early[0].id),
            "{b}: a disabled endpoint's deliveries are not claimed"
        );
        assert!(
            !delivery_ids(&first).contains(&later[0].id),
            "{b}: not yet due"
        );

        // While the lease runs nobody else gets them; up to its end included.
        assert!(
            claim(&*store, secs(2), secs(32), "c2", 10).await.is_empty(),
            "{b}"
        );
        assert!(
            claim(&*store, secs(31), secs(61), "c2", 10)
                .await
                .is_empty(),
            "{b}"
        );
        // Then they are claimable again, oldest due first, up to the limit.
        let again = claim(&*store, secs(32), secs(62), "c3", 1).await;
        assert_eq!(delivery_ids(&again), [ds_b[0].id.clone()], "{b}");
        assert_eq!(again[0].claim, "c3", "{b}");
        let rest = claim(&*store, secs(32), secs(62), "c4", 10).await;
        assert_eq!(delivery_ids(&rest), expected[1..], "{b}");

        // Enabling the endpoint makes its deliveries claimable.
        let mut tx = tenant_write(&*store, &sa).await;
        tx.webhook_update(&Endpoint {
            enabled: true,
            ..off.clone()
        })
        .await
        .unwrap();
        tx.commit().await.unwrap();
        let mut system = system_write(&*store).await;
        assert_eq!(
            system.webhook_next_due().await.unwrap(),
            Some(secs(-60)),
            "{b}"
        );
        drop(system);
        let now_on = claim(&*store, secs(33), secs(63), "c5", 10).await;
        assert_eq!(
            delivery_ids(&now_on),
            [off_early[0].id.clone(), ds[2].id.clone()],
            "{b}"
        );
    }
}

/// Only the claim's holder records, once; attempts are kept by number; a failed delivery may
/// be redelivered, a pending one may not.
#[tokio::test]
async fn outcomes_are_recorded_by_the_claim_holder_once_and_redelivery_reopens_only_finished_ones()
{
    for (db, store) in stores().await {
        let b = db.backend;
        let a = add_user(&*store, "a@example.com").await;
        let (ws, scope) = add_workspace(&*store, &a, "alpha").await;
        let e = endpoint(&ws.id, "https://one.example", &a);
        add_endpoint(&*store, &scope, &e).await;
        let (_, ds) = add_event(&*store, &scope, &[&e], t0(), t0()).await;
        let id = ds[0].id.clone();
        let claimed = claim(&*store, t0(), secs(30), "holder", 10).await;
        let retry_at = secs(10);
        let first = outcome(
            &claimed[0],
            1,
            DeliveryStatus::Pending,
            Some(retry_at),
            Some(t_us(1)),
        );

        let wrong = DeliveryOutcome {
            claim: "someone-else".into(),
            ..first.clone()
        };
        assert_eq!(record_outcomes(&*store, &[wrong]).await, 0, "{b}");
        let mut tx = store.tenant(&scope, Access::Read).await.unwrap();
        assert_eq!(
            tx.webhook_delivery_get(&id).await.unwrap(),
            Some(ds[0].clone()),
            "{b}"
        );
        assert!(tx.webhook_attempts(&id).await.unwrap().is_empty(), "{b}");
        assert_eq!(
            tx.webhook_get(&e.id).await.unwrap().unwrap().failing_since,
            None,
            "{b}"
        );
        drop(tx);
        assert!(
            claim(&*store, secs(1), secs(31), "c2", 10).await.is_empty(),
            "{b}: still held"
        );

        // The same outcome twice in one batch is recorded once.
        assert_eq!(
            record_outcomes(&*store, &[first.clone(), first.clone()]).await,
            1,
            "{b}"
        );
        assert_eq!(
            record_outcomes(&*store, std::slice::from_ref(&first)).await,
            0,
            "{b}: once"
        );
        let mut tx = store.tenant(&scope, Access::Read).await.unwrap();
        let after = tx.webhook_delivery_get(&id).await.unwrap().unwrap();
        let want = Delivery {
            status: DeliveryStatus::Pending,
            attempts: 1,
            schedule_step: 1,
            next_attempt_at: Some(retry_at),
            updated_at: t_us(7),
            ..ds[0].clone()
        };
        assert_eq!(after, want, "{b}");
        drop(tx);
        // Released: due again at its next attempt, although the old lease would still run.
        assert!(
            claim(&*store, secs(9), secs(39), "c3", 10).await.is_empty(),
            "{b}"
        );
        let second = claim(&*store, retry_at, secs(40), "c4", 10).await;
        assert_eq!(delivery_ids(&second), std::slice::from_ref(&id), "{b}");

        // A pending delivery is not redelivered.
        let mut tx = tenant_write(&*store, &scope).await;
        assert!(
            !tx.webhook_delivery_redeliver(&id, secs(50), 8)
                .await
                .unwrap(),
            "{b}"
        );
        tx.commit().await.unwrap();

        // A finished delivery is due no more, whatever the outcome says.
        let last = outcome(
            &second[0],
            2,
            DeliveryStatus::Failed,
            Some(secs(99)),
            Some(t_us(1)),
        );
        assert_eq!(record_outcomes(&*store, &[last]).await, 1, "{b}");
        let mut tx = tenant_write(&*store, &scope).await;
        let failed = tx.webhook_delivery_get(&id).await.unwrap().unwrap();
        assert_eq!(failed.status, DeliveryStatus::Failed, "{b}");
        assert_eq!(failed.next_attempt_at, None, "{b}");
        assert!(
            tx.webhook_delivery_redeliver(&id, secs(50), 8)
                .await
                .unwrap(),
            "{b}"
        );
        assert!(
            !tx.webhook_delivery_redeliver(&DeliveryId::generate(), secs(50), 8)
                .await
                .unwrap(),
            "{b}: unknown"
        );
        let reopened = tx.webhook_delivery_get(&id).await.unwrap().unwrap();
        let want = Delivery {
            status: DeliveryStatus::Pending,
            attempts: 2,
            schedule_step: 8,
            next_attempt_at: Some(secs(50)),
            updated_at: secs(50),
            ..ds[0].clone()
        };
        assert_eq!(reopened, want, "{b}");
        tx.commit().await.unwrap();
        let third = claim(&*store, secs(50), secs(80), "c5", 10).await;
        assert_eq!(delivery_ids(&third), std::slice::from_ref(&id), "{b}");
        let redelivered = DeliveryOutcome {
            attempt: Attempt {
                trigger: "redeliver".into(),
                ..outcome(&third[0], 3, DeliveryStatus::Succeeded, None, None).attempt
            },
            ..outcome(&third[0], 3, DeliveryStatus::Succeeded, None, None)
        };
        assert_eq!(record_outcomes(&*store, &[redelivered]).await, 1, "{b}");
        let mut tx = tenant_write(&*store, &scope).await;
        let attempts = tx.webhook_attempts(&id).await.unwrap();
        assert_eq!(
            attempts.iter().map(|a| a.number).collect::<Vec<_>>(),
            [1, 2, 3],
            "{b}"
        );
        assert_eq!(attempts[0], first.attempt, "{b}: every field kept");
        assert_eq!(attempts[2].status_code, Some(200), "{b}");
        assert_eq!(attempts[2].error, None, "{b}");
        assert_eq!(attempts[2].trigger, "redeliver", "{b}");
        // A succeeded delivery may be redelivered too.
        assert!(
            tx.webhook_delivery_redeliver(&id, secs(90), 8)
                .await
                .unwrap(),
            "{b}"
        );
        tx.commit().await.unwrap();
    }
}

/// An endpoint's failure run starts at its first failure, is kept by later failures and ends
/// with a success, also within one batch of outcomes.
#[tokio::test]
async fn a_success_ends_an_endpoints_failure_run_and_a_failure_keeps_the_earliest_start() {
    for (db, store) in stores().await {
        let b = db.backend;
        let a = add_user(&*store, "a@example.com").await;
        let (ws, scope) = add_workspace(&*store, &a, "alpha").await;
        let e = endpoint(&ws.id, "https://one.example", &a);
        let other = endpoint(&ws.id, "https://two.example", &a);
        add_endpoint(&*store, &scope, &e).await;
        add_endpoint(&*store, &scope, &other).await;
        let failing_since = |store: Arc<dyn Store>, scope: TenantScope, id: WebhookId| async move {
            let mut tx = store.tenant(&scope, Access::Read).await.unwrap();
            tx.webhook_get(&id).await.unwrap().unwrap().failing_since
        };
        let failing_before = |store: Arc<dyn Store>, before: OffsetDateTime| async move {
            let mut tx = system_write(&*store).await;
            tx.webhooks_failing_since(before).await.unwrap()
        };
        // Each round: one delivery per outcome, claimed together, recorded in one batch.
        let mut round = 0;
        let mut run = |outcomes: Vec<Option<OffsetDateTime>>| {
            round += 1;
            let (store, scope, e) = (store.clone(), scope.clone(), e.clone());
            async move {
                let targets: Vec<&Endpoint> = outcomes.iter().map(|_| &e).collect();
                let mut claimed = Vec::new();
                for _ in &targets {
                    let due = t_us(round * 1_000 + claimed.len() as i64);
                    let (_, ds) = add_event(&*store, &scope, &[&e], t0(), due).await;
                    claimed.push(ds[0].id.clone());
                }
                let got = claim(&*store, secs(3600), secs(3630), &format!("r{round}"), 100).await;
                assert_eq!(delivery_ids(&got), claimed);
                let batch: Vec<DeliveryOutcome> = got
                    .iter()
                    .zip(&outcomes)
                    .map(|(c, since)| {
                        let status = if since.is_some() {
                            DeliveryStatus::Failed
                        } else {
                            DeliveryStatus::Succeeded
                        };
                        outcome(c, 1, status, None, *since)
                    })
                    .collect();
                assert_eq!(record_outcomes(&*store, &batch).await, batch.len() as u64);
            }
        };
        run(vec![Some(t_us(10)), Some(t_us(20))]).await;
        assert_eq!(
            failing_since(store.clone(), scope.clone(), e.id.clone()).await,
            Some(t_us(10)),
            "{b}"
        );
        assert_eq!(
            failing_since(store.clone(), scope.clone(), other.id.clone()).await,
            None,
            "{b}: only the endpoint attempted"
        );
        assert_eq!(
            failing_before(store.clone(), t_us(10)).await,
            [(ws.id.clone(), e.id.clone())],
            "{b}: failing since then or earlier"
        );
        assert!(
            failing_before(store.clone(), t_us(9)).await.is_empty(),
            "{b}"
        );
        run(vec![Some(t_us(30))]).await;
        assert_eq!(
            failing_since(store.clone(), scope.clone(), e.id.clone()).await,
            Some(t_us(10)),
            "{b}: kept"
        );
        run(vec![None]).await;
        assert_eq!(
            failing_since(store.clone(), scope.clone(), e.id.clone()).await,
            None,
            "{b}: cleared"
        );
        assert!(
            failing_before(store.clone(), t_us(1_000)).await.is_empty(),
            "{b}"
        );
        run(vec![Some(t_us(40)), None, Some(t_us(50)), Some(t_us(60))]).await;
        assert_eq!(
            failing_since(store.clone(), scope.clone(), e.id.clone()).await,
            Some(t_us(50)),
            "{b}: the run after the last success"
        );
        run(vec![Some(t_us(70)), None]).await;
        assert_eq!(
            failing_since(store.clone(), scope.clone(), e.id.clone()).await,
            None,
            "{b}"
        );
        run(vec![Some(t_us(80))]).await;
        // A disabled endpoint is not listed, however long it fails.
        let mut tx = tenant_write(&*store, &scope).await;
        let mut off = tx.webhook_get(&e.id).await.unwrap().unwrap();
        assert_eq!(off.failing_since, Some(t_us(80)), "{b}");
        off.enabled = false;
        tx.webhook_update(&off).await.unwrap();
        tx.commit().await.unwrap();
        assert!(
            failing_before(store.clone(), secs(3600)).await.is_empty(),
            "{b}"
        );
    }
}

#[tokio::test]
async fn pruning_deletes_old_events_without_pending_deliveries_with_their_history() {
    for (db, store) in stores().await {
        let b = db.backend;
        let ua = add_user(&*store, "a@example.com").await;
        let ub = add_user(&*store, "b@example.com").await;
        let (wa, sa) = add_workspace(&*store, &ua, "alpha").await;
        let (wb, sb) = add_workspace(&*store, &ub, "beta").await;
        let ea = endpoint(&wa.id, "https://a.example", &ua);
        let eb = endpoint(&wb.id, "https://b.example", &ub);
        add_endpoint(&*store, &sa, &ea).await;
        add_endpoint(&*store, &sb, &eb).await;
        let old = secs(-2 * 86_400);
        // Old and delivered (both workspaces), old and still pending, old without deliveries,
        // recent and delivered.
        let (done_a, done_a_ds) = add_event(&*store, &sa, &[&ea], old, old).await;
        let (done_b, _) = add_event(&*store, &sb, &[&eb], old, old).await;
        let claimed = claim(&*store, old, secs(30), "c1", 10).await;
        let delivered: Vec<DeliveryOutcome> = claimed
            .iter()
            .map(|c| outcome(c, 1, DeliveryStatus::Succeeded, None, None))
            .collect();
        assert_eq!(record_outcomes(&*store, &delivered).await, 2, "{b}");
        let (pending, _) = add_event(&*store, &sa, &[&ea], old, secs(3600)).await;
        let (empty, _) = add_event(&*store, &sa, &[], old, old).await;
        let (recent, recent_ds) = add_event(&*store, &sa, &[&ea], secs(-60), secs(-60)).await;
        let claimed = claim(&*store, secs(-60), secs(30), "c2", 10).await;
        assert_eq!(delivery_ids(&claimed), [recent_ds[0].id.clone()], "{b}");
        let o = outcome(
            &claimed[0],
            1,
            DeliveryStatus::Failed,
            None,
            Some(secs(-60)),
        );
        assert_eq!(record_outcomes(&*store, &[o]).await, 1, "{b}");

        let mut system = system_write(&*store).await;
        assert_eq!(
            system.webhook_events_prune(secs(-86_400)).await.unwrap(),
            3,
            "{b}"
        );
        assert_eq!(
            system.webhook_events_prune(secs(-86_400)).await.unwrap(),
            0,
            "{b}"
        );
        system.commit().await.unwrap();

        let mut tx = store.tenant(&sa, Access::Read).await.unwrap();
        assert_eq!(tx.webhook_event_get(&done_a.id).await.unwrap(), None, "{b}");
        assert_eq!(tx.webhook_event_get(&empty.id).await.unwrap(), None, "{b}");
        assert_eq!(
            tx.webhook_delivery_get(&done_a_ds[0].id).await.unwrap(),
            None,
            "{b}"
        );
        assert!(
            tx.webhook_attempts(&done_a_ds[0].id)
                .await
                .unwrap()
                .is_empty(),
            "{b}"
        );
        assert!(
            tx.webhook_event_get(&pending.id).await.unwrap().is_some(),
            "{b}: pending"
        );
        assert!(
            tx.webhook_event_get(&recent.id).await.unwrap().is_some(),
            "{b}: recent"
        );
        assert_eq!(
            tx.webhook_attempts(&recent_ds[0].id).await.unwrap().len(),
            1,
            "{b}"
        );
        assert!(
            tx.webhook_get(&ea.id).await.unwrap().is_some(),
            "{b}: endpoints stay"
        );
        drop(tx);
        let mut tx = store.tenant(&sb, Access::Read).await.unwrap();
        assert_eq!(tx.webhook_event_get(&done_b.id).await.unwrap(), None, "{b}");
    }
}

/// Two dispatchers claiming at once get disjoint sets: on PostgreSQL the second skips the rows
/// the first has locked and does not wait; SQLite's second writer waits for the first.
#[tokio::test]
async fn concurrent_claims_take_disjoint_deliveries() {
    for (db, store) in stores().await {
        let b = db.backend;
        let a = add_user(&*store, "a@example.com").await;
        let (ws, scope) = add_workspace(&*store, &a, "alpha").await;
        let e = endpoint(&ws.id, "https://one.example", &a);
        add_endpoint(&*store, &scope, &e).await;
        let mut all = Vec::new();
        for i in 0..4 {
            let (_, ds) = add_event(&*store, &scope, &[&e], t0(), t_us(i)).await;
            all.push(ds[0].id.clone());
        }
        let mut first = system_write(&*store).await;
        let mine = first
            .webhook_deliveries_claim(secs(1), secs(31), "first", 2)
            .await
            .unwrap();
        assert_eq!(delivery_ids(&mine), all[..2], "{b}");
        let store2 = store.clone();
        let second = tokio::spawn(async move {
            let mut tx = system_write(&*store2).await;
            let theirs = tx
                .webhook_deliveries_claim(secs(1), secs(31), "second", 10)
                .await
                .unwrap();
            tx.commit().await.unwrap();
            theirs
        });
        if b == "postgres" {
            let theirs = tokio::time::timeout(std::time::Duration::from_secs(10), second)
                .await
                .expect("SKIP LOCKED does not wait")
                .unwrap();
            assert_eq!(delivery_ids(&theirs), all[2..], "{b}");
            first.commit().await.unwrap();
        } else {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            assert!(!second.is_finished(), "{b}: one writer at a time");
            first.commit().await.unwrap();
            let theirs = tokio::time::timeout(std::time::Duration::from_secs(10), second)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(delivery_ids(&theirs), all[2..], "{b}");
        }
        assert!(
            claim(&*store, secs(2), secs(32), "third", 10)
                .await
                .is_empty(),
            "{b}"
        );
    }
}

#[tokio::test]
async fn a_keys_transaction_reseals_webhook_secrets_and_payloads_by_compare_and_swap() {
    for (db, store) in stores().await {
        let b = db.backend;
        let owner = add_user(&*store, "a@example.com").await;
        let (wa, sa) = add_workspace(&*store, &owner, "alpha").await;
        let (wb, sb) = add_workspace(&*store, &owner, "beta").await;
        let rotated = Endpoint {
            previous_secret: Some(b"sealed-previous".to_vec()),
            previous_secret_expires_at: Some(secs(3600)),
            ..endpoint(&wa.id, "https://rotated.example", &owner)
        };
        let plain = endpoint(&wa.id, "https://plain.example", &owner);
        let foreign = endpoint(&wb.id, "https://foreign.example", &owner);
        add_endpoint(&*store, &sa, &rotated).await;
        add_endpoint(&*store, &sa, &plain).await;
        add_endpoint(&*store, &sb, &foreign).await;
        let (ev1, _) = add_event(&*store, &sa, &[&plain], t0(), t0()).await;
        let (ev2, _) = add_event(&*store, &sa, &[], t0(), t0()).await;
        let (ev_b, _) = add_event(&*store, &sb, &[&foreign], t0(), t0()).await;

        let system = SystemScope::new("test");
        let mut tx = store
            .keys(&system, wa.id.as_str(), Access::Write)
            .await
            .unwrap();
        let mut ids = [rotated.id.clone(), plain.id.clone()];
        ids.sort_by(|x, y| x.as_str().cmp(y.as_str()));
        let secrets = tx.webhook_secrets("", 10).await.unwrap();
        assert_eq!(
            secrets.iter().map(|s| s.0.clone()).collect::<Vec<_>>(),
            ids,
            "{b}: only the owner's, by id"
        );
        let of_rotated = secrets.iter().find(|s| s.0 == rotated.id).unwrap();
        assert_eq!(of_rotated.1, rotated.secret, "{b}");
        assert_eq!(of_rotated.2, rotated.previous_secret, "{b}");
        let page = tx.webhook_secrets(ids[0].as_str(), 1).await.unwrap();
        assert_eq!(page.len(), 1, "{b}");
        assert_eq!(page[0].0, ids[1], "{b}: after the cursor");

        assert!(
            !tx.webhook_secret_reseal(&rotated.id, "secret", b"stale", b"new")
                .await
                .unwrap(),
            "{b}: a stale read changes nothing"
        );
        assert!(
            tx.webhook_secret_reseal(&rotated.id, "secret", &rotated.secret, b"resealed")
                .await
                .unwrap(),
            "{b}"
        );
        assert!(
            tx.webhook_secret_reseal(
                &rotated.id,
                "previous_secret",
                b"sealed-previous",
                b"resealed-prev"
            )
            .await
            .unwrap(),
            "{b}"
        );
        assert!(
            !tx.webhook_secret_reseal(&plain.id, "previous_secret", b"", b"x")
                .await
                .unwrap(),
            "{b}: no previous secret to reseal"
        );
        assert!(
            tx.webhook_secret_reseal(&plain.id, "url", &plain.secret, b"x")
                .await
                .is_err(),
            "{b}: not a sealed column"
        );
        assert!(
            !tx.webhook_secret_reseal(&foreign.id, "secret", &foreign.secret, b"x")
                .await
                .unwrap(),
            "{b}: another workspace's endpoint"
        );

        let mut events = [ev1.id.clone(), ev2.id.clone()];
        events.sort_by(|x, y| x.as_str().cmp(y.as_str()));
        let payloads = tx.webhook_payloads("", 10).await.unwrap();
        assert_eq!(
            payloads.iter().map(|p| p.0.clone()).collect::<Vec<_>>(),
            events,
            "{b}"
        );
        assert_eq!(payloads[0].1, b"sealed-payload", "{b}");
        assert_eq!(
            tx.webhook_payloads(events[0].as_str(), 10)
                .await
                .unwrap()
                .len(),
            1,
            "{b}"
        );
        assert!(
            !tx.webhook_payload_reseal(&ev1.id, b"stale", b"new")
                .await
                .unwrap(),
            "{b}"
        );
        assert!(
            tx.webhook_payload_reseal(&ev1.id, b"sealed-payload", b"resealed")
                .await
                .unwrap(),
            "{b}"
        );
        assert!(
            !tx.webhook_payload_reseal(&ev_b.id, b"sealed-payload", b"x")
                .await
                .unwrap(),
            "{b}: another workspace's event"
        );
        tx.commit().await.unwrap();

        let mut tx = store.tenant(&sa, Access::Read).await.unwrap();
        let after = tx.webhook_get(&rotated.id).await.unwrap().unwrap();
        assert_eq!(after.secret, b"resealed", "{b}");
        assert_eq!(
            after.previous_secret.as_deref(),
            Some(&b"resealed-prev"[..]),
            "{b}"
        );
        assert_eq!(
            after.updated_at, rotated.updated_at,
            "{b}: a reseal is no change"
        );
        assert_eq!(
            tx.webhook_event_get(&ev1.id)
                .await
                .unwrap()
                .unwrap()
                .payload,
            b"resealed",
            "{b}"
        );
        drop(tx);
        let mut tx = store.tenant(&sb, Access::Read).await.unwrap();
        assert_eq!(
            tx.webhook_get(&foreign.id).await.unwrap(),
            Some(foreign.clone()),
            "{b}"
        );
        assert_eq!(
            tx.webhook_event_get(&ev_b.id).await.unwrap(),
            Some(ev_b.clone()),
            "{b}"
        );
    }
}

/// Palisade's own work in one workspace (disabling a failing endpoint): its audit log, its
/// members and its endpoints, nothing of another workspace.
#[tokio::test]
async fn a_workspace_system_transaction_reaches_its_workspace_alone() {
    for (db, store) in stores().await {
        let b = db.backend;
        let ua = add_user(&*store, "a@example.com").await;
        let ub = add_user(&*store, "b@example.com").await;
        let (wa, sa) = add_workspace(&*store, &ua, "alpha").await;
        let (wb, sb) = add_workspace(&*store, &ub, "beta").await;
        let ea = Endpoint {
            failing_since: Some(t0()),
            ..endpoint(&wa.id, "https://a.example", &ua)
        };
        let eb = endpoint(&wb.id, "https://b.example", &ub);
        add_endpoint(&*store, &sa, &ea).await;
        add_endpoint(&*store, &sb, &eb).await;

        let system = SystemScope::new("test");
        let mut tx = store
            .workspace_system(&system, &wa.id, Access::Write)
            .await
            .unwrap();
        let owner = tx.member_of_user(&ua.id).await.unwrap();
        assert_eq!(owner.map(|m| m.role), Some(Role::Owner), "{b}");
        assert_eq!(
            tx.member_of_user(&ub.id).await.unwrap(),
            None,
            "{b}: not a member here"
        );
        assert_eq!(tx.webhook_get(&eb.id).await.unwrap(), None, "{b}");
        assert!(!tx.webhook_delete(&eb.id).await.unwrap(), "{b}");
        let disabled = Endpoint {
            enabled: false,
            disabled_reason: Some("failing".into()),
            updated_at: secs(60),
            ..tx.webhook_get(&ea.id).await.unwrap().unwrap()
        };
        assert!(tx.webhook_update(&disabled).await.unwrap(), "{b}");
        let event = AuditEvent::new(
            AuditLog::Workspace(wa.id.clone()),
            "webhook.disable",
            Actor::system(),
            Target {
                kind: "webhook".into(),
                id: ea.id.to_string(),
            },
        );
        tx.audit_append(&event.seal(&RequestMeta::default(), secs(60)).unwrap())
            .await
            .unwrap();
        tx.commit().await.unwrap();

        let mut tx = store.tenant(&sa, Access::Read).await.unwrap();
        assert_eq!(tx.webhook_get(&ea.id).await.unwrap(), Some(disabled), "{b}");
        let log = entries(&mut *tx).await;
        assert_eq!(log.len(), 2, "{b}");
        assert_eq!(log[0]["action"], "webhook.disable", "{b}");
        assert_eq!(log[0]["actor"]["type"], "system", "{b}");
        drop(tx);
        let mut tx = store.tenant(&sb, Access::Read).await.unwrap();
        assert_eq!(
            entries(&mut *tx).await.len(),
            1,
            "{b}: the other log is untouched"
        );
        assert_eq!(
            tx.webhook_get(&eb.id).await.unwrap(),
            Some(eb.clone()),
            "{b}"
        );
    }
}

#[tokio::test]
async fn an_outbox_event_written_in_a_rolled_back_transaction_leaves_nothing() {
    for (db, store) in stores().await {
        let b = db.backend;
        let a = add_user(&*store, "a@example.com").await;
        let (ws, scope) = add_workspace(&*store, &a, "alpha").await;
        let e = endpoint(&ws.id, "https://one.example", &a);
        add_endpoint(&*store, &scope, &e).await;
        let (event, ds) = outbox(&ws.id, &[&e], t_us(5), t_us(6));
        {
            let mut tx = tenant_write(&*store, &scope).await;
            tx.webhook_event_insert(&event, &ds).await.unwrap();
            // Seen inside its transaction…
            assert!(
                tx.webhook_event_get(&event.id).await.unwrap().is_some(),
                "{b}"
            );
            // …and dropped without commit: a rollback.
        }
        let mut tx = tenant_write(&*store, &scope).await;
        assert_eq!(tx.webhook_event_get(&event.id).await.unwrap(), None, "{b}");
        assert_eq!(
            tx.webhook_delivery_get(&ds[0].id).await.unwrap(),
            None,
            "{b}"
        );
        tx.commit().await.unwrap();
        assert!(
            claim(&*store, secs(60), secs(120), "c", 10)
                .await
                .is_empty(),
            "{b}: nothing to deliver"
        );
    }
}

#[tokio::test]
async fn paused_deliveries_are_never_claimed_and_resume_due_at_once() {
    for (db, store) in stores().await {
        let b = db.backend;
        let a = add_user(&*store, "a@example.com").await;
        let (ws, scope) = add_workspace(&*store, &a, "alpha").await;
        let e = endpoint(&ws.id, "https://one.example", &a);
        let other = endpoint(&ws.id, "https://two.example", &a);
        add_endpoint(&*store, &scope, &e).await;
        add_endpoint(&*store, &scope, &other).await;
        let (_, ds) = add_event(&*store, &scope, &[&e, &other], t_us(5), t_us(6)).await;
        // A claimed one stays with its holder; the unclaimed one pauses.
        let (_, held) = add_event(&*store, &scope, &[&e], t_us(7), t_us(7)).await;
        let mut tx = system_write(&*store).await;
        let got = tx
            .webhook_deliveries_claim(t_us(7), secs(100), "holder", 1)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(
            delivery_ids(&got),
            [ds[0].id.clone()],
            "{b}: oldest due first"
        );
        let mut tx = tenant_write(&*store, &scope).await;
        assert_eq!(
            tx.webhook_deliveries_pause(&e.id, secs(1)).await.unwrap(),
            1,
            "{b}"
        );
        let paused = tx.webhook_delivery_get(&held[0].id).await.unwrap().unwrap();
        assert_eq!(paused.status, DeliveryStatus::Paused, "{b}");
        assert_eq!(paused.next_attempt_at, None, "{b}");
        let holding = tx.webhook_delivery_get(&ds[0].id).await.unwrap().unwrap();
        assert_eq!(
            holding.status,
            DeliveryStatus::Pending,
            "{b}: its holder records it"
        );
        tx.commit().await.unwrap();
        // Only the other endpoint's delivery is claimable now, even long after.
        let later = claim(&*store, secs(1000), secs(1100), "c", 10).await;
        let ids = delivery_ids(&later);
        assert!(ids.contains(&ds[1].id), "{b}");
        assert!(!ids.contains(&held[0].id), "{b}: paused is never claimed");
        let mut tx = tenant_write(&*store, &scope).await;
        assert_eq!(
            tx.webhook_deliveries_resume(&e.id, secs(2000))
                .await
                .unwrap(),
            1,
            "{b}"
        );
        assert_eq!(
            tx.webhook_deliveries_resume(&e.id, secs(2000))
                .await
                .unwrap(),
            0,
            "{b}"
        );
        let resumed = tx.webhook_delivery_get(&held[0].id).await.unwrap().unwrap();
        assert_eq!(resumed.status, DeliveryStatus::Pending, "{b}");
        assert_eq!(resumed.next_attempt_at, Some(secs(2000)), "{b}");
        tx.commit().await.unwrap();
        let again = claim(&*store, secs(2000), secs(2100), "d", 10).await;
        assert!(delivery_ids(&again).contains(&held[0].id), "{b}");
    }
}

#[tokio::test]
async fn a_retry_whose_endpoint_was_disabled_in_flight_is_paused() {
    for (db, store) in stores().await {
        let b = db.backend;
        let a = add_user(&*store, "a@example.com").await;
        let (ws, scope) = add_workspace(&*store, &a, "alpha").await;
        let e = endpoint(&ws.id, "https://one.example", &a);
        add_endpoint(&*store, &scope, &e).await;
        add_event(&*store, &scope, &[&e], t_us(5), t_us(6)).await;
        let claimed = claim(&*store, t_us(6), secs(100), "holder", 10).await;
        assert_eq!(claimed.len(), 1, "{b}");
        // Disabled while the attempt runs: the claimed delivery is not paused yet.
        let mut tx = tenant_write(&*store, &scope).await;
        let disabled = Endpoint {
            enabled: false,
            ..e.clone()
        };
        assert!(tx.webhook_update(&disabled).await.unwrap(), "{b}");
        assert_eq!(
            tx.webhook_deliveries_pause(&e.id, secs(1)).await.unwrap(),
            0,
            "{b}"
        );
        tx.commit().await.unwrap();
        // The attempt fails and asks for a retry: it is paused instead.
        let retry = outcome(
            &claimed[0],
            1,
            DeliveryStatus::Pending,
            Some(secs(10)),
            Some(t_us(1)),
        );
        assert_eq!(record_outcomes(&*store, &[retry]).await, 1, "{b}");
        let mut tx = tenant_write(&*store, &scope).await;
        let d = tx
            .webhook_delivery_get(&claimed[0].delivery.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(d.status, DeliveryStatus::Paused, "{b}");
        assert_eq!(d.next_attempt_at, None, "{b}");
        assert_eq!(d.attempts, 1, "{b}");
        tx.commit().await.unwrap();
    }
}

#[tokio::test]
async fn pruning_spares_events_whose_deliveries_are_paused() {
    for (db, store) in stores().await {
        let b = db.backend;
        let a = add_user(&*store, "a@example.com").await;
        let (ws, scope) = add_workspace(&*store, &a, "alpha").await;
        let e = endpoint(&ws.id, "https://one.example", &a);
        add_endpoint(&*store, &scope, &e).await;
        let old = secs(-90 * 86_400);
        let (event, ds) = add_event(&*store, &scope, &[&e], old, old).await;
        let mut tx = tenant_write(&*store, &scope).await;
        assert_eq!(
            tx.webhook_deliveries_pause(&e.id, secs(0)).await.unwrap(),
            1,
            "{b}"
        );
        tx.commit().await.unwrap();
        let mut system = system_write(&*store).await;
        assert_eq!(
            system.webhook_events_prune(secs(-86_400)).await.unwrap(),
            0,
            "{b}: a paused delivery still goes out one day"
        );
        system.commit().await.unwrap();
        let mut tx = tenant_write(&*store, &scope).await;
        assert!(
            tx.webhook_event_get(&event.id).await.unwrap().is_some(),
            "{b}"
        );
        let d = tx.webhook_delivery_get(&ds[0].id).await.unwrap().unwrap();
        assert_eq!(d.status, DeliveryStatus::Paused, "{b}");
        tx.commit().await.unwrap();
    }
}
