//! End-to-end HTTP tests: the real server on 127.0.0.1:0, on SQLite and on PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{ADMIN, PASSWORD, Server, servers};
use palisade_core::store::{Access, AuditQuery, StoredEntry};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// An entry as stored, decoded; `raw` is its exact bytes (openings are not part of it).
#[derive(Debug)]
struct Ev {
    action: String,
    actor_type: String,
    actor_id: String,
    diff: Value,
    pii: Value,
    request_id: Option<String>,
    raw: String,
}

fn ev(e: StoredEntry) -> Ev {
    let v: Value = serde_json::from_slice(&e.bytes).unwrap();
    Ev {
        action: v["action"].as_str().unwrap().to_owned(),
        actor_type: v["actor"]["type"].as_str().unwrap().to_owned(),
        actor_id: v["actor"]["id"].as_str().unwrap().to_owned(),
        diff: v["diff"].clone(),
        pii: v["pii"].clone(),
        request_id: v["request_id"].as_str().map(str::to_owned),
        raw: String::from_utf8(e.bytes).unwrap(),
    }
}

/// The workspace's log, newest first.
async fn workspace_audit(server: &Server, ws_id: &str) -> Vec<Ev> {
    server
        .workspace_log(ws_id)
        .await
        .into_iter()
        .map(ev)
        .collect()
}

/// The instance log's entries naming `id` as actor or target, newest first.
async fn instance_audit(server: &Server, id: &str) -> Vec<Ev> {
    let store = server.store().await;
    let mut tx = store.accounts(None, Access::Read).await.unwrap();
    let q = AuditQuery {
        subject: Some(id.to_owned()),
        limit: 1000,
        ..AuditQuery::default()
    };
    tx.audit_query(&q)
        .await
        .unwrap()
        .into_iter()
        .map(ev)
        .collect()
}

fn actions(events: &[Ev]) -> Vec<&str> {
    events.iter().rev().map(|e| e.action.as_str()).collect()
}

#[tokio::test]
async fn new_user_signs_up_creates_a_workspace_refreshes_and_logs_out() {
    for s in servers().await {
        let b = s.backend();
        let r = s
            .post(
                "/api/v1/auth/signup",
                None,
                json!({"email": "Ada@Example.com", "password": PASSWORD, "name": "Ada"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{b}: {}", r.text);
        assert_eq!(r.body["email"], "ada@example.com");
        assert!(r.body["id"].as_str().unwrap().starts_with("usr_"));
        assert!(
            r.body.get("password").is_none() && !r.text.contains("argon2"),
            "{b}: no secret in the response"
        );
        assert_eq!(r.body["email_verified"], false, "{b}");

        // The right password on an unverified address: told so, nothing issued.
        let login = json!({"email": "ada@example.com", "password": PASSWORD});
        let r = s.post("/api/v1/auth/login", None, login.clone()).await;
        r.assert_problem(403, "email_not_verified", b);
        assert!(r.body.get("access_token").is_none(), "{b}");
        s.verify("ada@example.com").await;

        let r = s.post("/api/v1/auth/login", None, login).await;
        assert_eq!(r.status, StatusCode::OK, "{b}: {}", r.text);
        assert_eq!(
            (r.body["token_type"].as_str(), r.body["expires_in"].as_i64()),
            (Some("Bearer"), Some(900))
        );
        let access = r.body["access_token"].as_str().unwrap().to_owned();
        let refresh = r.body["refresh_token"].as_str().unwrap().to_owned();

        let me = s.get("/api/v1/me", Some(&access)).await;
        assert_eq!(
            (me.status, me.body["email"].as_str()),
            (StatusCode::OK, Some("ada@example.com")),
            "{b}"
        );

        let ws = s
            .post(
                "/api/v1/workspaces",
                Some(&access),
                json!({"name": "Acme Corp"}),
            )
            .await;
        assert_eq!(ws.status, StatusCode::CREATED, "{b}: {}", ws.text);
        let id = ws.body["id"].as_str().unwrap().to_owned();
        assert_eq!(ws.header("location"), format!("/api/v1/workspaces/{id}"));
        assert_eq!(
            (
                ws.body["slug"].as_str(),
                ws.body["role"].as_str(),
                ws.body["timezone"].as_str(),
                ws.body["currency"].as_str(),
                ws.body["plan"].as_str()
            ),
            (
                Some("acme-corp"),
                Some("owner"),
                Some("Europe/Brussels"),
                Some("EUR"),
                Some("starter")
            ),
            "{b}"
        );
        for key in [id.as_str(), "acme-corp"] {
            let got = s
                .get(&format!("/api/v1/workspaces/{key}"), Some(&access))
                .await;
            assert_eq!(
                (got.status, got.body["id"].as_str()),
                (StatusCode::OK, Some(id.as_str())),
                "{b}: by {key}"
            );
        }
        let list = s.get("/api/v1/workspaces", Some(&access)).await;
        assert_eq!(
            list.body["data"].as_array().map(Vec::len),
            Some(1),
            "{b}: {}",
            list.text
        );
        assert_eq!(list.body["next_cursor"], Value::Null);

        let r = s
            .post(
                "/api/v1/auth/refresh",
                None,
                json!({"refresh_token": refresh}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{b}: {}", r.text);
        let access2 = r.body["access_token"].as_str().unwrap().to_owned();
        let refresh2 = r.body["refresh_token"].as_str().unwrap().to_owned();
        assert_ne!(refresh2, refresh, "{b}: refresh rotates");
        assert_eq!(
            s.get("/api/v1/me", Some(&access2)).await.status,
            StatusCode::OK
        );

        let out = s
            .call(Method::POST, "/api/v1/auth/logout", Some(&access2), None)
            .await;
        assert_eq!(out.status, StatusCode::NO_CONTENT, "{b}: {}", out.text);
        s.post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": refresh2}),
        )
        .await
        .assert_problem(401, "invalid_refresh_token", b);
        // Sign-out kills the session's access tokens at once, not after they expire.
        let after = s.get("/api/v1/me", Some(&access2)).await;
        after.assert_problem(401, "unauthenticated", b);
        assert!(
            after.header("www-authenticate").starts_with("Bearer"),
            "{b}"
        );
        s.stop().await;
    }
}

#[tokio::test]
async fn non_member_gets_404_for_another_users_workspace_by_id_and_by_slug() {
    for s in servers().await {
        let b = s.backend();
        let (_, alice, _) = s.user("alice@example.com").await;
        let (_, mallory, _) = s.user("mallory@example.com").await;
        let ws = s.workspace(&alice, "Alice Inc", "alice-inc").await;
        let id = ws["id"].as_str().unwrap();
        for key in [id, "alice-inc"] {
            let path = format!("/api/v1/workspaces/{key}");
            s.get(&path, Some(&mallory))
                .await
                .assert_problem(404, "workspace_not_found", b);
            s.patch(&path, Some(&mallory), json!({"name": "pwned"}))
                .await
                .assert_problem(404, "workspace_not_found", b);
        }
        // Indistinguishable from a workspace that does not exist.
        let missing = s.get("/api/v1/workspaces/no-such-ws", Some(&mallory)).await;
        missing.assert_problem(404, "workspace_not_found", b);
        let list = s.get("/api/v1/workspaces", Some(&mallory)).await;
        assert_eq!(list.body["data"], json!([]), "{b}: {}", list.text);
        let unchanged = s
            .get(&format!("/api/v1/workspaces/{id}"), Some(&alice))
            .await;
        assert_eq!(unchanged.body["name"], "Alice Inc", "{b}");
        s.stop().await;
    }
}

#[tokio::test]
async fn unknown_email_and_wrong_password_get_the_same_answer() {
    for s in servers().await {
        let b = s.backend();
        s.user("known@example.com").await;
        let wrong = s
            .post(
                "/api/v1/auth/login",
                None,
                json!({"email": "known@example.com", "password": "wrong password!"}),
            )
            .await;
        let unknown = s
            .post(
                "/api/v1/auth/login",
                None,
                json!({"email": "nobody@example.com", "password": "wrong password!"}),
            )
            .await;
        wrong.assert_problem(401, "invalid_credentials", b);
        unknown.assert_problem(401, "invalid_credentials", b);
        let strip = |v: &Value| {
            let mut v = v.clone();
            v.as_object_mut().unwrap().remove("instance");
            v
        };
        assert_eq!(strip(&wrong.body), strip(&unknown.body), "{b}");
        s.stop().await;
    }
}

#[tokio::test]
async fn reused_refresh_token_revokes_the_whole_family() {
    for s in servers().await {
        let b = s.backend();
        let (_, _, first) = s.user("reuse@example.com").await;
        let r = s
            .post(
                "/api/v1/auth/refresh",
                None,
                json!({"refresh_token": first}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{b}");
        let second = r.body["refresh_token"].as_str().unwrap().to_owned();
        let access = r.body["access_token"].as_str().unwrap().to_owned();
        // A thief replays the first token: the family dies, including the legitimate newer one.
        s.post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": first}),
        )
        .await
        .assert_problem(401, "invalid_refresh_token", b);
        s.post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": second}),
        )
        .await
        .assert_problem(401, "invalid_refresh_token", b);
        s.get("/api/v1/me", Some(&access))
            .await
            .assert_problem(401, "unauthenticated", b);
        // Another session of the same user is untouched.
        let (other, _) = s.login("reuse@example.com").await;
        assert_eq!(
            s.get("/api/v1/me", Some(&other)).await.status,
            StatusCode::OK,
            "{b}"
        );
        s.stop().await;
    }
}

#[tokio::test]
async fn concurrent_refreshes_with_one_token_never_both_succeed() {
    for s in servers().await {
        let b = s.backend();
        let (_, _, token) = s.user("race@example.com").await;
        let body = json!({"refresh_token": token});
        let (x, y) = tokio::join!(
            s.post("/api/v1/auth/refresh", None, body.clone()),
            s.post("/api/v1/auth/refresh", None, body.clone())
        );
        let ok = [&x, &y]
            .iter()
            .filter(|r| r.status == StatusCode::OK)
            .count();
        assert!(ok <= 1, "{b}: both refreshes succeeded");
        // Whichever lost detected reuse and revoked the family.
        if let Some(winner) = [&x, &y].into_iter().find(|r| r.status == StatusCode::OK) {
            let next = winner.body["refresh_token"].as_str().unwrap();
            s.post("/api/v1/auth/refresh", None, json!({"refresh_token": next}))
                .await
                .assert_problem(401, "invalid_refresh_token", b);
        }
        s.stop().await;
    }
}

#[tokio::test]
async fn bad_input_gets_problem_json_naming_the_field_and_writes_nothing() {
    for s in servers().await {
        let b = s.backend();
        let (user_id, token, _) = s.user("careful@example.com").await;
        let ws = s.workspace(&token, "Careful", "careful").await;
        let ws_id = ws["id"].as_str().unwrap().to_owned();
        let audit_before = workspace_audit(&s, &ws_id).await.len();
        let instance_before = instance_audit(&s, &user_id).await.len();
        let url = |p: &str| format!("{}{p}", s.base);
        let json_req = |m: Method, p: &str, body: &str| {
            s.client
                .request(m, url(p))
                .bearer_auth(&token)
                .header("content-type", "application/json")
                .body(body.to_owned())
        };

        s.raw(json_req(
            Method::POST,
            "/api/v1/auth/signup",
            "{\"email\": ",
        ))
        .await
        .assert_problem(400, "malformed_json", b);
        s.raw(json_req(Method::POST, "/api/v1/workspaces", ""))
            .await
            .assert_problem(400, "malformed_json", b);
        s.raw(json_req(Method::POST, "/api/v1/workspaces", "[1,2]"))
            .await
            .assert_problem(422, "validation_failed", b);
        let missing = s
            .raw(json_req(
                Method::POST,
                "/api/v1/auth/signup",
                r#"{"email":"x@example.com","name":"X"}"#,
            ))
            .await;
        missing.assert_problem(422, "validation_failed", b);
        assert_eq!(missing.pointers(), ["/password"], "{b}");
        let typed = s
            .raw(json_req(
                Method::POST,
                "/api/v1/workspaces",
                r#"{"name": 42}"#,
            ))
            .await;
        typed.assert_problem(422, "validation_failed", b);
        assert_eq!(typed.pointers(), ["/name"], "{b}");
        let unknown = s
            .raw(json_req(
                Method::POST,
                "/api/v1/workspaces",
                r#"{"name": "x", "owner": "me"}"#,
            ))
            .await;
        assert_eq!(unknown.pointers(), ["/owner"], "{b}");
        let rules = s
            .post(
                "/api/v1/auth/signup",
                None,
                json!({"email": "not-an-email", "password": "short", "name": ""}),
            )
            .await;
        rules.assert_problem(422, "validation_failed", b);
        assert_eq!(rules.pointers(), ["/email", "/name", "/password"], "{b}");
        let patch = s.patch("/api/v1/workspaces/careful", Some(&token), json!({"name": null, "slug": "Bad Slug", "currency": "EURO", "branding": {"logo_url": "http://insecure"}})).await;
        patch.assert_problem(422, "validation_failed", b);
        assert_eq!(
            patch.pointers(),
            ["/name", "/slug", "/currency", "/branding/logo_url"],
            "{b}"
        );
        let plain = s
            .raw(
                s.client
                    .post(url("/api/v1/workspaces"))
                    .bearer_auth(&token)
                    .header("content-type", "text/plain")
                    .body("{\"name\":\"x\"}"),
            )
            .await;
        plain.assert_problem(415, "unsupported_media_type", b);
        let huge = format!("{{\"name\": \"{}\"}}", "x".repeat(10 * 1024 * 1024));
        s.raw(json_req(Method::POST, "/api/v1/workspaces", &huge))
            .await
            .assert_problem(413, "payload_too_large", b);
        s.get("/api/v1/no-such-route", Some(&token))
            .await
            .assert_problem(404, "not_found", b);
        let wrong_method = s
            .call(Method::DELETE, "/api/v1/workspaces", Some(&token), None)
            .await;
        wrong_method.assert_problem(405, "method_not_allowed", b);
        assert_eq!(wrong_method.header("allow"), "POST,GET,HEAD", "{b}");
        let bad_limit = s
            .get("/api/v1/workspaces?limit=500&colour=red", Some(&token))
            .await;
        bad_limit.assert_problem(422, "validation_failed", b);
        let params: Vec<_> = bad_limit.body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["parameter"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(params, ["limit", "colour"], "{b}");

        // Nothing was written: same workspaces, same name, no new users, no new audit entries.
        let list = s.get("/api/v1/workspaces", Some(&token)).await;
        assert_eq!(list.body["data"].as_array().map(Vec::len), Some(1), "{b}");
        assert_eq!(list.body["data"][0]["name"], "Careful", "{b}");
        s.post(
            "/api/v1/auth/login",
            None,
            json!({"email": "x@example.com", "password": PASSWORD}),
        )
        .await
        .assert_problem(401, "invalid_credentials", b);
        assert_eq!(workspace_audit(&s, &ws_id).await.len(), audit_before, "{b}");
        assert_eq!(
            instance_audit(&s, &user_id).await.len(),
            instance_before,
            "{b}"
        );
        s.stop().await;
    }
}

#[tokio::test]
async fn every_mutation_writes_its_audit_entry_without_personal_data_in_clear() {
    for s in servers().await {
        let b = s.backend();
        let (user_id, _, refresh) = s.user("audited@example.com").await;
        s.post(
            "/api/v1/auth/login",
            None,
            json!({"email": "audited@example.com", "password": "not the password"}),
        )
        .await;
        let r = s
            .post(
                "/api/v1/auth/refresh",
                None,
                json!({"refresh_token": refresh}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{b}: {}", r.text);
        s.post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": refresh}),
        )
        .await;
        let (token2, _) = s.login("audited@example.com").await;
        s.call(Method::POST, "/api/v1/auth/logout", Some(&token2), None)
            .await;
        let events = instance_audit(&s, &user_id).await;
        assert_eq!(
            actions(&events),
            [
                "user.sign_up",
                "auth.email_verified",
                "auth.sign_in",
                "auth.sign_in_failed",
                "auth.token_refresh",
                "auth.refresh_token_reused",
                "auth.sign_in",
                "auth.sign_out"
            ],
            "{b}"
        );
        for e in &events {
            let dump = &e.raw;
            assert!(
                !dump.contains("audited@example.com") && !dump.contains("127.0.0.1"),
                "{b}: personal data in clear: {dump}"
            );
            assert!(
                e.pii.get("/ip").and_then(Value::as_str).is_some(),
                "{b}: IP is committed: {dump}"
            );
            assert!(
                e.request_id
                    .as_deref()
                    .is_some_and(|r| r.starts_with("req_")),
                "{b}"
            );
        }

        let (admin_id, admin, _) = s.user(ADMIN).await;
        let owner = s.login("audited@example.com").await.0;
        let ws = s.workspace(&owner, "Audited", "audited").await;
        let id = ws["id"].as_str().unwrap().to_owned();
        let r = s
            .patch(
                "/api/v1/workspaces/audited",
                Some(&owner),
                json!({"name": "Audited Ltd", "branding": {"primary_color": "#112233"}}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{b}: {}", r.text);
        let r = s
            .patch(
                &format!("/api/v1/admin/workspaces/{id}"),
                Some(&admin),
                json!({"plan": "business", "modules": ["sso", "advanced_rbac"]}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{b}: {}", r.text);
        let events = workspace_audit(&s, &id).await;
        assert_eq!(
            actions(&events),
            [
                "workspace.create",
                "member.create",
                "workspace.update",
                "workspace.admin_update"
            ],
            "{b}"
        );
        let update = &events[1];
        assert_eq!(
            update.diff["/name"],
            json!(["Audited", "Audited Ltd"]),
            "{b}"
        );
        assert_eq!(
            update.diff["/branding"][1]["primary_color"], "#112233",
            "{b}"
        );
        assert!(
            update.diff.get("/slug").is_none(),
            "{b}: only changed fields"
        );
        let admin_update = &events[0];
        assert_eq!(
            (
                admin_update.actor_type.as_str(),
                admin_update.actor_id.as_str()
            ),
            ("user", admin_id.as_str())
        );
        assert_eq!(
            admin_update.diff["/plan"],
            json!(["starter", "business"]),
            "{b}"
        );
        assert_eq!(
            admin_update.diff["/modules"],
            json!([[], ["advanced_rbac", "sso"]]),
            "{b}"
        );
        // A PATCH that changes nothing writes nothing.
        s.patch(
            "/api/v1/workspaces/audited",
            Some(&owner),
            json!({"name": "Audited Ltd"}),
        )
        .await;
        assert_eq!(workspace_audit(&s, &id).await.len(), 4, "{b}");
        s.stop().await;
    }
}

#[tokio::test]
async fn workspace_update_applies_merge_patch_and_slug_conflicts_are_409() {
    for s in servers().await {
        let b = s.backend();
        let (_, token, _) = s.user("owner@example.com").await;
        s.workspace(&token, "First", "first").await;
        s.workspace(&token, "Second", "second").await;
        let r = s.patch("/api/v1/workspaces/first", Some(&token), json!({"timezone": "America/New_York", "currency": "USD", "branding": {"display_name": "First!", "logo_url": "https://cdn.example.com/logo.png"}})).await;
        assert_eq!(r.status, StatusCode::OK, "{b}: {}", r.text);
        assert_eq!(
            (r.body["timezone"].as_str(), r.body["currency"].as_str()),
            (Some("America/New_York"), Some("USD"))
        );
        let r = s
            .patch(
                "/api/v1/workspaces/first",
                Some(&token),
                json!({"branding": {"logo_url": null}}),
            )
            .await;
        assert_eq!(
            r.body["branding"],
            json!({"display_name": "First!", "logo_url": null, "primary_color": null, "accent_color": null}),
            "{b}"
        );
        s.patch(
            "/api/v1/workspaces/first",
            Some(&token),
            json!({"slug": "second"}),
        )
        .await
        .assert_problem(409, "slug_taken", b);
        s.post(
            "/api/v1/workspaces",
            Some(&token),
            json!({"name": "Third", "slug": "second"}),
        )
        .await
        .assert_problem(409, "slug_taken", b);
        // A derived slug that is taken gets a suffix instead of failing.
        let dup = s
            .post("/api/v1/workspaces", Some(&token), json!({"name": "First"}))
            .await;
        assert_eq!(dup.status, StatusCode::CREATED, "{b}: {}", dup.text);
        assert!(
            dup.body["slug"].as_str().unwrap().starts_with("first-"),
            "{b}: {}",
            dup.text
        );
        let renamed = s
            .patch(
                "/api/v1/workspaces/first",
                Some(&token),
                json!({"slug": "first-renamed"}),
            )
            .await;
        assert_eq!(renamed.status, StatusCode::OK, "{b}");
        assert_eq!(
            s.get("/api/v1/workspaces/first-renamed", Some(&token))
                .await
                .status,
            StatusCode::OK,
            "{b}"
        );
        s.get("/api/v1/workspaces/first", Some(&token))
            .await
            .assert_problem(404, "workspace_not_found", b);
        s.stop().await;
    }
}

#[tokio::test]
async fn workspace_list_pages_with_a_cursor() {
    for s in servers().await {
        let b = s.backend();
        let (_, token, _) = s.user("pager@example.com").await;
        let mut ids = Vec::new();
        for i in 0..5 {
            ids.push(
                s.workspace(&token, &format!("Page {i}"), &format!("page-{i}"))
                    .await["id"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        }
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/api/v1/workspaces?limit=2&cursor={c}"),
                None => "/api/v1/workspaces?limit=2".to_owned(),
            };
            let page = s.get(&path, Some(&token)).await;
            assert_eq!(page.status, StatusCode::OK, "{b}: {}", page.text);
            let data = page.body["data"].as_array().unwrap();
            assert!(data.len() <= 2);
            seen.extend(data.iter().map(|w| w["id"].as_str().unwrap().to_owned()));
            match page.body["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        assert_eq!(seen, ids, "{b}: every workspace once, in creation order");
        s.stop().await;
    }
}

#[tokio::test]
async fn only_instance_admins_change_plan_region_and_modules() {
    for s in servers().await {
        let b = s.backend();
        let (_, owner, _) = s.user("boss@example.com").await;
        let (_, admin, _) = s.user(ADMIN).await;
        let ws = s.workspace(&owner, "Tenant", "tenant").await;
        let path = "/api/v1/admin/workspaces/tenant";
        s.patch(path, Some(&owner), json!({"plan": "business"}))
            .await
            .assert_problem(403, "instance_admin_required", b);
        // Members cannot smuggle plan changes through the member endpoint.
        let smuggle = s
            .patch(
                "/api/v1/workspaces/tenant",
                Some(&owner),
                json!({"plan": "business"}),
            )
            .await;
        assert_eq!(smuggle.pointers(), ["/plan"], "{b}");
        let bad = s
            .patch(
                path,
                Some(&admin),
                json!({"plan": "platinum", "region": "mars", "modules": ["sso", "teleport"]}),
            )
            .await;
        bad.assert_problem(422, "validation_failed", b);
        assert_eq!(bad.pointers(), ["/plan", "/region", "/modules/1"], "{b}");
        let ok = s
            .patch(
                path,
                Some(&admin),
                json!({"plan": "pro", "modules": ["dora_pack"]}),
            )
            .await;
        assert_eq!(ok.status, StatusCode::OK, "{b}: {}", ok.text);
        let got = s
            .get(
                &format!("/api/v1/workspaces/{}", ws["id"].as_str().unwrap()),
                Some(&owner),
            )
            .await;
        assert_eq!(
            (got.body["plan"].as_str(), got.body["modules"].clone()),
            (Some("pro"), json!(["dora_pack"])),
            "{b}"
        );
        s.patch(
            "/api/v1/admin/workspaces/nope",
            Some(&admin),
            json!({"plan": "pro"}),
        )
        .await
        .assert_problem(404, "workspace_not_found", b);
        s.stop().await;
    }
}

#[tokio::test]
async fn responses_carry_request_id_and_security_headers() {
    for s in servers().await {
        let b = s.backend();
        for path in [
            "/healthz",
            "/readyz",
            "/api/v1/me",
            "/nowhere",
            "/.well-known/jwks.json",
        ] {
            let r = s.get(path, None).await;
            assert!(r.header("x-request-id").starts_with("req_"), "{b} {path}");
            assert_eq!(r.header("x-content-type-options"), "nosniff", "{b} {path}");
            assert_eq!(r.header("referrer-policy"), "no-referrer", "{b} {path}");
            assert!(
                r.header("content-security-policy")
                    .contains("frame-ancestors 'none'"),
                "{b} {path}"
            );
            assert_eq!(
                r.header("strict-transport-security"),
                "",
                "{b} {path}: no HSTS over plain http"
            );
        }
        let echoed = s
            .raw(
                s.client
                    .get(format!("{}/healthz", s.base))
                    .header("x-request-id", "client-trace-42"),
            )
            .await;
        assert_eq!(echoed.header("x-request-id"), "client-trace-42");
        let problem = s
            .raw(
                s.client
                    .get(format!("{}/api/v1/me", s.base))
                    .header("x-request-id", "client-trace-43"),
            )
            .await;
        assert_eq!(problem.body["instance"], "client-trace-43", "{b}");
        assert_eq!(s.get("/readyz", None).await.body["status"], "ok", "{b}");
        let sec = s.get("/.well-known/security.txt", None).await;
        assert!(
            sec.text.contains("Contact: mailto:") && sec.text.contains("Expires: "),
            "{b}: {}",
            sec.text
        );
        s.stop().await;
    }
}

#[tokio::test]
async fn hsts_is_sent_when_the_public_url_is_https() {
    let db = palisade_store::testing::sqlite();
    let s = Server::start_with(db, |c| {
        c.public_url = Some("https://palisade.example.com/".parse().unwrap())
    })
    .await;
    let r = s.get("/healthz", None).await;
    assert_eq!(
        r.header("strict-transport-security"),
        "max-age=63072000; includeSubDomains"
    );
    s.stop().await;
}

#[tokio::test]
async fn access_token_verifies_with_pyjwt_against_the_jwks() {
    let python = match std::env::var("PALISADE_TEST_PYTHON") {
        Ok(p) => p,
        Err(_) if std::env::var("PALISADE_REQUIRE_POSTGRES").as_deref() == Ok("1") => {
            panic!("PALISADE_TEST_PYTHON is set by scripts/test.sh")
        }
        Err(_) => return,
    };
    for s in servers().await {
        let (user_id, token, _) = s.user("jwt@example.com").await;
        let jwks = s.get("/.well-known/jwks.json", None).await;
        let key = &jwks.body["keys"][0];
        assert_eq!(
            (
                key["kty"].as_str(),
                key["crv"].as_str(),
                key["alg"].as_str()
            ),
            (Some("OKP"), Some("Ed25519"), Some("EdDSA"))
        );
        assert!(key.get("d").is_none(), "no private part in the JWKS");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/verify_jwt.py");
        // Off the runtime thread: the server answers PyJWT's JWKS fetch meanwhile.
        let args = [
            script.to_owned(),
            format!("{}/.well-known/jwks.json", s.base),
            token.clone(),
            s.base.clone(),
        ];
        let python = python.clone();
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new(python).args(args).output()
        })
        .await
        .unwrap()
        .unwrap();
        assert!(
            out.status.success(),
            "{}: PyJWT refused the token: {}",
            s.backend(),
            String::from_utf8_lossy(&out.stderr)
        );
        let claims: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(claims["sub"], user_id.as_str());
        assert_eq!(claims["aud"], "palisade");
        assert_eq!(
            claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
            900
        );
        s.stop().await;
    }
}

#[tokio::test]
async fn docs_and_schema_are_served_from_the_binary_with_no_external_asset() {
    let s = Server::start(palisade_store::testing::sqlite()).await;
    let schema = s.get("/api/schema/", None).await;
    assert_eq!(schema.status, StatusCode::OK);
    assert_eq!(schema.body["openapi"], "3.1.0");
    assert!(schema.body["paths"]["/api/v1/workspaces/{workspace}"]["patch"].is_object());

    let swagger = s.get("/api/docs/", None).await;
    assert_eq!(swagger.status, StatusCode::OK);
    let mut assets = vec![];
    for attr in ["src=\"", "href=\""] {
        for piece in swagger.text.split(attr).skip(1) {
            assets.push(piece.split('"').next().unwrap().to_owned());
        }
    }
    assert!(!assets.is_empty());
    for asset in &assets {
        assert!(
            !asset.contains("//"),
            "swagger references an external asset: {asset}"
        );
        let r = s
            .get(
                &format!("/api/docs/{}", asset.trim_start_matches("./")),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{asset}");
    }
    let init = s.get("/api/docs/swagger-initializer.js", None).await;
    assert!(init.text.contains("/api/schema/"), "{}", init.text);

    let redoc = s.get("/api/redoc/", None).await;
    assert_eq!(redoc.status, StatusCode::OK);
    assert!(
        redoc
            .text
            .contains("<script type=\"module\" src=\"/api/redoc/redoc.standalone.js\">")
            && redoc.text.contains("disable-telemetry=\"true\"")
    );
    assert!(
        !redoc.text.contains("https://"),
        "ReDoc page loads nothing from elsewhere"
    );
    let js = s
        .raw(
            s.client
                .get(format!("{}/api/redoc/redoc.standalone.js", s.base)),
        )
        .await;
    assert_eq!(js.status, StatusCode::OK);
    assert!(js.text.len() > 1_000_000);
    // ReDoc 3's standalone bundle is an ES module (it ends in `export{…}` and uses
    // `import.meta`): loaded as a classic script it fails to parse and the page stays blank.
    assert!(
        js.text
            .trim_end()
            .ends_with("export{RedocStandalone,hydrate,init};"),
        "bundle shape changed: recheck the script tag"
    );
    // The docs CSP only allows this origin for scripts, connections and images.
    let csp = redoc.header("content-security-policy");
    assert!(
        csp.contains("script-src 'self'")
            && csp.contains("connect-src 'self'")
            && !csp.contains("http"),
        "{csp}"
    );
    s.stop().await;
}

#[tokio::test]
async fn tls_serves_with_the_configured_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf_params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, leaf.pem()).unwrap();
    std::fs::write(&key, leaf_key.serialize_pem()).unwrap();

    let s = Server::start_with(palisade_store::testing::sqlite(), |c| {
        c.tls_cert = Some(cert.clone());
        c.tls_key = Some(key.clone());
    })
    .await;
    let port = s.base.rsplit(':').next().unwrap().to_owned();
    let client = reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only([reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap()])
        .resolve("localhost", format!("127.0.0.1:{port}").parse().unwrap())
        .build()
        .unwrap();
    let r = client
        .get(format!("https://localhost:{port}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()["strict-transport-security"],
        "max-age=63072000; includeSubDomains"
    );
    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = s
        .client
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await;
    assert!(plain.is_err() || plain.unwrap().status() != StatusCode::OK);
    s.stop().await;
}

#[tokio::test]
async fn signing_key_is_stored_only_sealed_and_a_missing_master_key_is_named() {
    use palisade_core::crypto::envelope::{Keyring, SymmetricKey};
    use palisade_core::keys::{MasterKeys, Vault};
    use palisade_core::store::Access;
    use palisade_core::tenancy::SystemScope;

    for s in servers().await {
        let b = s.backend();
        let jwks = s.get("/.well-known/jwks.json", None).await;
        let kid = jwks.body["keys"][0]["kid"].as_str().unwrap().to_owned();
        let store = s.store().await;
        let master = SymmetricKey::master_from_base64(common::TEST_MASTER_KEY).unwrap();
        let master_id = master.id().to_owned();
        let now = time::OffsetDateTime::now_utc();
        let masters = MasterKeys::new(Keyring::new(master, vec![]), Default::default());
        let vault = Vault::load(&*store, masters, now).await.unwrap();
        let key = palisade_core::keys::load_access_token_key(&*store, &vault, now)
            .await
            .unwrap();
        assert_eq!(key.kid(), kid, "{b}: the server signs with the stored key");
        let mut tx = store
            .system(&SystemScope::new("test"), Access::Read)
            .await
            .unwrap();
        let stored = tx
            .signing_keys(palisade_core::keys::ACCESS_TOKEN_PURPOSE)
            .await
            .unwrap();
        assert_eq!(stored.len(), 1, "{b}");
        let seed = key.seed();
        assert!(
            !stored[0]
                .sealed_seed
                .windows(32)
                .any(|w| w == seed.as_slice()),
            "{b}: seed in clear"
        );
        drop(tx);

        let other =
            SymmetricKey::master_from_base64("//////////////////////////////////////////8=")
                .unwrap();
        let masters = MasterKeys::new(Keyring::new(other, vec![]), Default::default());
        let err = Vault::load(&*store, masters, time::OffsetDateTime::now_utc())
            .await
            .expect_err("wrong master key");
        assert!(
            err.to_string().contains(&master_id),
            "{b}: names the missing key: {err}"
        );
        s.stop().await;
    }
}
