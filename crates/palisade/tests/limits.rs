//! Rate limits and quotas end to end (RTL-1 … RTL-4): real servers over HTTP on SQLite and
//! PostgreSQL, restarts, and two nodes sharing one PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{ADMIN, PASSWORD, Reply, Server};
use palisade::Config;
use palisade_core::limits::{BudgetPatch, PlanLimitsPatch, Rate};
use palisade_core::store::{Access, AuditFilter, AuditQuery};
use palisade_store::testing::databases;
use reqwest::StatusCode;
use serde_json::{Value, json};

fn rate(text: &str) -> Rate {
    text.parse().unwrap()
}

/// Changes one plan's budget of one category.
/// Changes one plan's budget of one category; what `budget` leaves out stays as it was.
fn plan_budget(config: &mut Config, plan: &str, category: &str, budget: BudgetPatch) {
    let patch = config.rate_limits.plans.entry(plan.to_owned()).or_default();
    let slot = match category {
        "api" => &mut patch.api,
        "ai" => &mut patch.ai,
        other => panic!("{other}"),
    };
    let slot = slot.get_or_insert_with(BudgetPatch::default);
    slot.per_workspace = budget.per_workspace.or(slot.per_workspace);
    slot.per_key = budget.per_key.or(slot.per_key);
}

async fn workspace_id(s: &Server, token: &str, name: &str, slug: &str) -> String {
    s.workspace(token, name, slug).await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn consume(s: &Server, ws: &str, token: &str, body: Value) -> Reply {
    s.post(
        &format!("/api/v1/workspaces/{ws}/quotas/ai/consume"),
        Some(token),
        body,
    )
    .await
}

/// Asserts a 429 from `policy` with `Retry-After` and the RateLimit headers naming it.
fn assert_limited(r: &Reply, policy: &str, context: &str) -> u64 {
    r.assert_problem(429, "rate_limited", context);
    assert_eq!(r.body["policy"], policy, "{context}: {}", r.text);
    let wait: u64 = r.header("retry-after").parse().unwrap_or(0);
    assert!(
        wait >= 1,
        "{context}: Retry-After {:?}",
        r.header("retry-after")
    );
    assert_eq!(r.body["retry_after"], wait, "{context}");
    assert!(
        r.header("ratelimit-policy")
            .contains(&format!("\"{policy}\";q=")),
        "{context}: {}",
        r.header("ratelimit-policy")
    );
    assert!(
        r.header("ratelimit").contains(&format!("\"{policy}\";r=")),
        "{context}: {}",
        r.header("ratelimit")
    );
    wait
}

/// The instance log's `rate_limit.exceeded` entries for `policy`.
async fn breaches(s: &Server, log: Option<&str>, policy: &str) -> Vec<Value> {
    let store = s.store().await;
    let q = AuditQuery {
        filter: AuditFilter {
            action: Some("rate_limit.exceeded".into()),
            target_id: Some(policy.into()),
            ..AuditFilter::default()
        },
        limit: 1000,
        ..AuditQuery::default()
    };
    let entries = match log {
        None => {
            let mut tx = store.accounts(None, Access::Read).await.unwrap();
            tx.audit_query(&q).await.unwrap()
        }
        Some(ws) => {
            let mut tx = store
                .audit_log(
                    &palisade_core::tenancy::SystemScope::new("test"),
                    ws,
                    Access::Read,
                )
                .await
                .unwrap();
            tx.audit_query(&q).await.unwrap()
        }
    };
    entries
        .into_iter()
        .map(|e| serde_json::from_slice(&e.bytes).unwrap())
        .collect()
}

#[tokio::test]
async fn sign_in_beyond_the_account_limit_is_429_with_retry_after_even_after_a_restart() {
    for db in databases().await {
        let s = Server::start_with(db, |c| {
            c.rate_limits.auth.sign_in_per_account = rate("3/15m");
        })
        .await;
        let b = s.backend();
        let (_, _, _) = s.user("ada@example.com").await; // one sign-in spent

        let ok = s.sign_in("ada@example.com", PASSWORD).await;
        assert_eq!(ok.status, StatusCode::OK, "{b}: {}", ok.text);
        assert_eq!(
            ok.header("ratelimit-policy"),
            "\"sign_in_per_ip\";q=1000000;w=60, \"sign_in_per_account\";q=3;w=900",
            "{b}: a successful response names its budgets"
        );
        assert!(
            ok.header("ratelimit")
                .contains("\"sign_in_per_account\";r=1;t="),
            "{b}: {}",
            ok.header("ratelimit")
        );
        let wrong = s.sign_in("ada@example.com", "wrong password!").await;
        wrong.assert_problem(401, "invalid_credentials", b);

        // The budget is spent: right or wrong password, 429, and no Argon2 work is done.
        for password in [PASSWORD, "wrong password!"] {
            let r = s.sign_in("Ada@Example.com", password).await;
            let wait = assert_limited(&r, "sign_in_per_account", b);
            assert!(
                r.header("ratelimit")
                    .contains("\"sign_in_per_account\";r=0;t="),
                "{b}: {}",
                r.header("ratelimit")
            );
            assert!(
                (240..=900).contains(&wait),
                "{b}: one of 3 per 15 min is back in ≤ 5 min: {wait}"
            );
        }
        // Another address (known or not) has its own budget; unknown ones are limited alike,
        // so a 429 tells nothing about whether an account exists.
        let other = s.sign_in("nobody@example.com", PASSWORD).await;
        other.assert_problem(401, "invalid_credentials", b);

        let s = s.restart().await;
        let r = s.sign_in("ada@example.com", PASSWORD).await;
        assert_limited(&r, "sign_in_per_account", &format!("{b} after restart"));

        // One audit entry per key and window, however many refusals (and across the restart);
        // the address is only a commitment.
        let logged = breaches(&s, None, "sign_in_per_account").await;
        assert_eq!(logged.len(), 1, "{b}: {logged:?}");
        let entry = &logged[0];
        assert_eq!(entry["result"], "denied", "{b}");
        assert_eq!(entry["actor"]["type"], "anonymous", "{b}");
        assert_eq!(
            entry["limit"],
            json!({"policy": "sign_in_per_account", "quota": 3, "window_secs": 900}),
            "{b}"
        );
        assert!(entry["pii"]["/subject"].is_string(), "{b}: {entry}");
        assert!(
            !entry.to_string().contains("ada@"),
            "{b}: no address in clear"
        );
        s.stop().await;
    }
}

#[tokio::test]
async fn sign_up_is_limited_per_ip_and_per_email_domain_and_refresh_per_ip() {
    for db in databases().await {
        let s = Server::start_with(db, |c| {
            c.rate_limits.auth.sign_up_per_email_domain = rate("2/1h");
            c.rate_limits.auth.sign_up_per_ip = rate("4/1h");
            c.rate_limits.auth.refresh_per_ip = rate("2/1h");
        })
        .await;
        let b = s.backend();
        let signup = |email: &'static str| {
            s.post(
                "/api/v1/auth/signup",
                None,
                json!({"email": email, "password": PASSWORD, "name": "N"}),
            )
        };
        assert_eq!(signup("a@one.example").await.status, StatusCode::CREATED);
        assert_eq!(signup("b@one.example").await.status, StatusCode::CREATED);
        let r = signup("c@one.example").await;
        assert_limited(&r, "sign_up_per_email_domain", b);
        // Refused by the domain: the IP budget was not charged (all budgets or none).
        assert_eq!(signup("d@two.example").await.status, StatusCode::CREATED);
        assert_eq!(signup("e@three.example").await.status, StatusCode::CREATED);
        let r = signup("f@four.example").await;
        assert_limited(&r, "sign_up_per_ip", b);
        let (users, _) = {
            let store = s.store().await;
            let mut tx = store.accounts(None, Access::Read).await.unwrap();
            (
                tx.user_by_email("f@four.example").await.unwrap(),
                tx.user_by_email("c@one.example").await.unwrap(),
            )
        };
        assert!(users.is_none(), "{b}: a refused sign-up creates nothing");

        s.verify("a@one.example").await;
        let (_, first) = s.login("a@one.example").await;
        let r = s.refresh(&first).await;
        assert_eq!(r.status, StatusCode::OK, "{b}: {}", r.text);
        let next = r.body["refresh_token"].as_str().unwrap().to_owned();
        let r = s.refresh(&next).await;
        assert_eq!(r.status, StatusCode::OK, "{b}: {}", r.text);
        let last = r.body["refresh_token"].as_str().unwrap().to_owned();
        let r = s.refresh(&last).await;
        assert_limited(&r, "refresh_per_ip", b);
        assert_eq!(
            breaches(&s, None, "refresh_per_ip").await.len(),
            1,
            "{b}: the refresh breach is audited"
        );
        s.stop().await;
    }
}

#[tokio::test]
async fn two_nodes_on_one_postgresql_share_the_auth_budget_exactly() {
    let Some(db) = databases()
        .await
        .into_iter()
        .find(|d| d.backend == "postgres")
    else {
        return; // no PostgreSQL in this run (scripts/test.sh always provides one)
    };
    let a = Server::start_with(db, |c| {
        c.rate_limits.auth.sign_in_per_account = rate("7/15m");
    })
    .await;
    let b = a.second_node().await;
    let r = a
        .post(
            "/api/v1/auth/signup",
            None,
            json!({"email": "shared@example.com", "password": PASSWORD, "name": "S"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    a.verify("shared@example.com").await;
    // 30 attempts at once, alternating nodes, half with the wrong password.
    let mut tasks = Vec::new();
    for i in 0..30 {
        let node = if i % 2 == 0 { &a } else { &b };
        let password = if i % 4 < 2 {
            PASSWORD
        } else {
            "wrong password!"
        };
        let request = node
            .client
            .post(format!("{}/api/v1/auth/login", node.base))
            .json(&json!({"email": "shared@example.com", "password": password}));
        tasks.push(tokio::spawn(async move {
            request.send().await.unwrap().status()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    let allowed = statuses
        .iter()
        .filter(|s| **s != StatusCode::TOO_MANY_REQUESTS)
        .count();
    let on_b = statuses
        .iter()
        .enumerate()
        .filter(|(i, s)| i % 2 == 1 && **s != StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!(allowed, 7, "exactly the limit across both nodes");
    assert!(
        statuses
            .iter()
            .all(|s| [200, 401, 429].contains(&s.as_u16())),
        "no errors: {statuses:?}"
    );
    // The other node refuses from the shared state too.
    let r = b.sign_in("shared@example.com", PASSWORD).await;
    assert_limited(&r, "sign_in_per_account", "node b");
    let r = a.sign_in("shared@example.com", PASSWORD).await;
    assert_limited(&r, "sign_in_per_account", "node a");
    eprintln!("allowed on node b: {on_b} of 7");
    b.stop().await;
    a.stop().await;
}

#[tokio::test]
async fn workspace_api_budgets_follow_the_plan_isolate_workspaces_and_take_overrides() {
    for db in databases().await {
        let mut s = Server::start_with(db, |c| {
            plan_budget(
                c,
                "starter",
                "api",
                BudgetPatch {
                    per_workspace: Some(rate("5/1h")),
                    per_key: None,
                },
            );
            plan_budget(
                c,
                "pro",
                "api",
                BudgetPatch {
                    per_workspace: Some(rate("200/1s")),
                    per_key: None,
                },
            );
        })
        .await;
        let b = s.backend();
        let (_, owner, _) = s.user("owner@example.com").await;
        let (_, admin, _) = s.user(ADMIN).await;
        let a_ws = workspace_id(&s, &owner, "A", "ws-a").await;
        let b_ws = workspace_id(&s, &owner, "B", "ws-b").await;
        for n in 0..5 {
            let r = s
                .get(&format!("/api/v1/workspaces/{a_ws}"), Some(&owner))
                .await;
            assert_eq!(r.status, StatusCode::OK, "{b}: request {n}: {}", r.text);
            assert!(
                r.header("ratelimit")
                    .contains(&format!("\"api_per_workspace\";r={};t=", 4 - n)),
                "{b}: {}",
                r.header("ratelimit")
            );
        }
        let r = s
            .get(
                &format!("/api/v1/workspaces/{a_ws}/audit/events"),
                Some(&owner),
            )
            .await;
        assert_limited(&r, "api_per_workspace", b);

        // Workspace B's budget is its own.
        let r = s
            .get(&format!("/api/v1/workspaces/{b_ws}"), Some(&owner))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{b}: {}", r.text);
        assert!(
            r.header("ratelimit")
                .contains("\"api_per_workspace\";r=4;t=")
        );
        // A workspace on pro gets the pro tier.
        let c_ws = workspace_id(&s, &owner, "C", "ws-c").await;
        let r = s
            .patch(
                &format!("/api/v1/admin/workspaces/{c_ws}"),
                Some(&admin),
                json!({"plan": "pro"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{b}: {}", r.text);
        for _ in 0..20 {
            let r = s
                .get(&format!("/api/v1/workspaces/{c_ws}"), Some(&owner))
                .await;
            assert_eq!(r.status, StatusCode::OK, "{b}: {}", r.text);
            assert!(
                r.header("ratelimit-policy")
                    .contains("\"api_per_workspace\";q=200;w=1")
            );
        }

        // The operator raises A's budget in the configuration: it applies after a restart,
        // within one window of the new rate.
        let mut config = s.config.clone();
        config.rate_limits.workspaces.insert(
            a_ws.clone(),
            PlanLimitsPatch {
                api: Some(BudgetPatch {
                    per_workspace: Some(rate("100/1s")),
                    per_key: None,
                }),
                ..PlanLimitsPatch::default()
            },
        );
        s.config = config;
        let s2 = s.restart().await;
        let _ = s2
            .get(&format!("/api/v1/workspaces/{a_ws}"), Some(&owner))
            .await;
        tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
        let r = s2
            .get(&format!("/api/v1/workspaces/{a_ws}"), Some(&owner))
            .await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "{b}: override applies: {}",
            r.text
        );
        assert!(
            r.header("ratelimit-policy")
                .contains("\"api_per_workspace\";q=100;w=1")
        );
        s2.stop().await;
    }
}

#[tokio::test]
async fn api_budget_is_shared_by_nodes_within_ten_percent_without_a_database_trip_per_request() {
    for db in databases().await {
        let backend = db.backend;
        let a = Server::start_with(db, |c| {
            plan_budget(
                c,
                "starter",
                "api",
                BudgetPatch {
                    per_workspace: Some(rate("200/1h")),
                    per_key: None,
                },
            );
        })
        .await;
        // Two nodes on PostgreSQL; SQLite is one node by design.
        let b = if backend == "postgres" {
            Some(a.second_node().await)
        } else {
            None
        };
        let (_, token, _) = a.user("busy@example.com").await;
        let ws = workspace_id(&a, &token, "Busy", "busy").await;
        let path = format!("/api/v1/workspaces/{ws}");
        let mut allowed = 0;
        for i in 0..500 {
            let node = match (&b, i % 2) {
                (Some(b), 1) => b,
                _ => &a,
            };
            let r = node.get(&path, Some(&token)).await;
            match r.status.as_u16() {
                200 => allowed += 1,
                429 => {}
                other => panic!("{backend}: unexpected {other}: {}", r.text),
            }
        }
        assert!(
            (180..=220).contains(&allowed),
            "{backend}: {allowed} allowed of a 200 budget"
        );
        let trips: u64 = [Some(&a), b.as_ref()]
            .into_iter()
            .flatten()
            .map(|n| n.services().limiter().stats().lease_trips)
            .sum();
        let local: u64 = [Some(&a), b.as_ref()]
            .into_iter()
            .flatten()
            .map(|n| n.services().limiter().stats().leased_local)
            .sum();
        eprintln!("{backend}: {allowed} allowed, {trips} lease transactions, {local} from memory");
        assert!(
            trips * 5 < allowed as u64,
            "{backend}: {trips} lease transactions for {allowed} allowed requests ({local} from memory)"
        );
        if let Some(b) = b {
            b.stop().await;
        }
        a.stop().await;
    }
}

#[tokio::test]
async fn quota_consume_enforces_the_plan_budget_per_workspace_and_per_key() {
    for db in databases().await {
        let s = Server::start_with(db, |c| {
            plan_budget(
                c,
                "starter",
                "ai",
                BudgetPatch {
                    per_workspace: Some(rate("10/1d")),
                    per_key: Some(rate("4/1d")),
                },
            );
        })
        .await;
        let b = s.backend();
        let (_, owner, _) = s.user("app@example.com").await;
        let (_, outsider, _) = s.user("outsider@example.com").await;
        let ws = workspace_id(&s, &owner, "App", "app").await;

        for n in 0..4 {
            let r = consume(&s, &ws, &owner, json!({"key": "user-1"})).await;
            assert_eq!(r.status, StatusCode::OK, "{b}: {}", r.text);
            assert_eq!(r.body["category"], "ai");
            assert_eq!(r.body["cost"], 1);
            assert_eq!(r.body["remaining"], 3 - n, "{b}: {}", r.text);
            assert_eq!(r.body["budgets"][0]["policy"], "ai_per_workspace");
            assert_eq!(r.body["budgets"][0]["remaining"], 9 - n);
            assert_eq!(r.body["budgets"][1]["policy"], "ai_per_key");
            assert!(r.header("ratelimit").contains("\"ai_per_key\";r="), "{b}");
        }
        for _ in 0..2 {
            let r = consume(&s, &ws, &owner, json!({"key": "user-1"})).await;
            assert_limited(&r, "ai_per_key", b);
        }
        let r = consume(&s, &ws, &owner, json!({"key": "user-2", "cost": 3})).await;
        assert_eq!(
            r.body["remaining"], 1,
            "{b}: workspace 7 of 10 spent: {}",
            r.text
        );
        // 7 + 4 > 10: refused, and nothing is spent.
        let r = consume(&s, &ws, &owner, json!({"key": "user-3", "cost": 4})).await;
        assert_limited(&r, "ai_per_workspace", b);
        assert!(
            r.header("ratelimit")
                .ends_with("\"ai_per_workspace\";r=3;t=60480, \"ai_per_key\";r=4;t=0"),
            "{b}: the refusing budget is spent by nothing, the other is left as it was: {}",
            r.header("ratelimit")
        );
        let r = consume(&s, &ws, &owner, json!({"key": "user-3", "cost": 3})).await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "{b}: exactly the budget: {}",
            r.text
        );
        assert_eq!(r.body["budgets"][0]["remaining"], 0);
        let r = consume(&s, &ws, &owner, json!({})).await;
        assert_limited(&r, "ai_per_workspace", b);

        // Another workspace's member cannot see or spend this workspace's quota.
        let r = consume(&s, &ws, &outsider, json!({})).await;
        r.assert_problem(404, "workspace_not_found", b);
        let other = workspace_id(&s, &outsider, "Other", "other").await;
        let r = s
            .post(
                &format!("/api/v1/workspaces/{other}/quotas/ai/consume"),
                Some(&outsider),
                json!({"key": "user-1", "cost": 4}),
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "{b}: budgets are per workspace: {}",
            r.text
        );

        // Bad input names the field and spends nothing.
        let bad = [
            ("auth", json!({}), "category"),
            ("ai", json!({"cost": 0}), "/cost"),
            ("ai", json!({"cost": 11}), "/cost"),
            ("ai", json!({"key": ""}), "/key"),
            ("ai", json!({"cost": "1"}), "/cost"),
            ("ai", json!({"tokens": 1}), "/tokens"),
        ];
        for (category, body, field) in bad {
            let r = s
                .post(
                    &format!("/api/v1/workspaces/{other}/quotas/{category}/consume"),
                    Some(&outsider),
                    body.clone(),
                )
                .await;
            r.assert_problem(422, "validation_failed", &format!("{b}: {body}"));
            let named: Vec<&str> = r.body["errors"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|e| e["pointer"].as_str().or(e["parameter"].as_str()))
                .collect();
            assert_eq!(named, [field], "{b}: {body}: {}", r.text);
        }
        let r = s
            .post(
                &format!("/api/v1/workspaces/{other}/quotas/ai/consume"),
                Some(&outsider),
                json!({"cost": 6}),
            )
            .await;
        assert_eq!(
            r.body["remaining"], 0,
            "{b}: 4 + 6 = 10, the invalid calls spent nothing"
        );

        // Breaches are audited in the workspace's log once per budget and window, with the
        // application's key only as a commitment.
        let per_key = breaches(&s, Some(&ws), "ai_per_key").await;
        assert_eq!(per_key.len(), 1, "{b}: {per_key:?}");
        assert_eq!(per_key[0]["actor"]["type"], "user");
        assert!(per_key[0]["pii"]["/subject"].is_string());
        assert!(!per_key[0].to_string().contains("user-1"));
        assert_eq!(
            breaches(&s, Some(&ws), "ai_per_workspace").await.len(),
            1,
            "{b}"
        );
        assert!(
            breaches(&s, Some(&other), "ai_per_key").await.is_empty(),
            "{b}"
        );
        s.stop().await;
    }
}

#[tokio::test]
async fn a_burst_on_a_fresh_budget_does_not_starve_the_connection_pool() {
    // Regression: requests held their membership transaction while waiting for the one that
    // leases, which then waited for a pooled connection (PostgreSQL pool: 32).
    for db in databases().await {
        let s = Server::start(db).await;
        let b = s.backend();
        let (_, token, _) = s.user("burst@example.com").await;
        let ws = workspace_id(&s, &token, "Burst", "burst").await;
        let mut tasks = Vec::new();
        for _ in 0..96 {
            let request = s
                .client
                .get(format!("{}/api/v1/workspaces/{ws}", s.base))
                .bearer_auth(&token)
                .timeout(std::time::Duration::from_secs(10));
            tasks.push(tokio::spawn(async move {
                request
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0)
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), 200, "{b}");
        }
        s.stop().await;
    }
}
