//! Account security end to end (IDN-1 … IDN-5, IDN-10): verification, lockout, reset codes,
//! magic links and sessions, over real HTTP, with a real SMTP exchange where mail matters, on
//! SQLite and PostgreSQL. Time moves through the server's clock; no test sleeps for it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::smtp::{Received, SmtpSink};
use common::{PASSWORD, Reply, Server, link_token, mail_code};
use palisade::config::SmtpConfig;
use palisade_core::store::{Access, AuditQuery};
use palisade_store::testing::databases;
use palisade_worker::mail::SmtpSecurity;
use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde_json::{Value, json};

const NEW_PASSWORD: &str = "a brand new passphrase 42";

/// One server per backend, each sending through its own SMTP sink on 127.0.0.1.
async fn smtp_servers() -> Vec<(Server, SmtpSink)> {
    let mut out = Vec::new();
    for db in databases().await {
        let sink = SmtpSink::start().await;
        let port = sink.port();
        let server = Server::start_with(db, |c| {
            c.email.smtp = Some(SmtpConfig {
                host: "127.0.0.1".into(),
                port: Some(port),
                security: SmtpSecurity::None,
                username: Some("palisade".into()),
                password: Some(SecretString::from("sink-password".to_owned())),
                timeout_secs: 5,
            });
        })
        .await;
        out.push((server, sink));
    }
    out
}

/// The `n`-th message (1-based) the sink received for `to` whose subject contains `subject`.
async fn nth_smtp(sink: &SmtpSink, to: &str, subject: &str, n: usize) -> Received {
    let to = to.to_owned();
    let subject = subject.to_owned();
    let wanted = move |m: &Received| {
        m.to.iter().any(|t| t == &to) && m.subject().is_some_and(|s| s.contains(&subject))
    };
    sink.wait_for(
        |_| {
            let seen = sink.messages().iter().filter(|m| wanted(m)).count();
            seen >= n
        },
        Duration::from_secs(15),
    )
    .await;
    sink.messages()
        .into_iter()
        .filter(|m| wanted(m))
        .nth(n - 1)
        .unwrap()
}

/// Signs up, verifies through the mail the sink received, signs in: (user id, access, refresh).
async fn smtp_user(s: &Server, sink: &SmtpSink, email: &str) -> (String, String, String) {
    let r = s.sign_up(email).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let mail = nth_smtp(sink, email, "Confirm your email", 1).await;
    let token = link_token(&mail.text_body());
    let v = s
        .post("/api/v1/auth/verify-email", None, json!({"token": token}))
        .await;
    assert_eq!(v.status, StatusCode::NO_CONTENT, "{}", v.text);
    let (access, refresh) = s.login(email).await;
    (r.body["id"].as_str().unwrap().to_owned(), access, refresh)
}

/// The instance log's actions naming `id`, oldest first, with the raw entries.
async fn instance_log(s: &Server, id: &str) -> Vec<(String, String)> {
    let store = s.store().await;
    let mut tx = store.accounts(None, Access::Read).await.unwrap();
    let q = AuditQuery {
        subject: Some(id.to_owned()),
        limit: 1000,
        ..AuditQuery::default()
    };
    let mut out: Vec<(String, String)> = tx
        .audit_query(&q)
        .await
        .unwrap()
        .into_iter()
        .map(|e| {
            let raw = String::from_utf8(e.bytes).unwrap();
            let v: Value = serde_json::from_str(&raw).unwrap();
            (v["action"].as_str().unwrap().to_owned(), raw)
        })
        .collect();
    out.reverse();
    out
}

/// A problem body without its per-request `instance`, for comparing answers.
fn without_instance(r: &Reply) -> Value {
    let mut body = r.body.clone();
    body.as_object_mut().unwrap().remove("instance");
    body
}

#[tokio::test]
async fn sign_up_sends_a_verification_mail_over_smtp_and_its_link_verifies() {
    for (s, sink) in smtp_servers().await {
        let b = s.backend();
        let r = s.sign_up("Ada@Example.com").await;
        assert_eq!(r.status, StatusCode::CREATED, "{b}: {}", r.text);
        let user_id = r.body["id"].as_str().unwrap().to_owned();
        s.sign_in("ada@example.com", PASSWORD)
            .await
            .assert_problem(403, "email_not_verified", b);

        let mail = nth_smtp(&sink, "ada@example.com", "Confirm your email", 1).await;
        assert_eq!(
            mail.auth,
            Some(("palisade".into(), "sink-password".into())),
            "{b}: the relay's credentials were used"
        );
        assert_eq!(mail.from, "no-reply@localhost", "{b}");
        let text = mail.text_body();
        let html = mail.html_body();
        let link = format!("{}/auth/verify-email#token=", s.base);
        assert!(text.contains(&link), "{b}: {text}");
        let token = link_token(&text);
        assert_eq!(token.len(), 43, "{b}: 32 random bytes");
        assert!(html.contains(&token) && html.contains("<a href="), "{b}");

        // The page the link opens: served by the binary, nothing third-party, script allowed
        // only by hash; fetching it consumes nothing.
        let page = s.get("/auth/verify-email", None).await;
        assert_eq!(page.status, StatusCode::OK, "{b}");
        let csp = page.header("content-security-policy");
        assert!(
            csp.contains("script-src 'sha256-") && !csp.contains("unsafe-inline"),
            "{b}: {csp}"
        );
        assert!(
            !page.text.contains("src=\"http") && !page.text.contains("href=\"http"),
            "{b}: no remote asset"
        );

        let r = s
            .post("/api/v1/auth/verify-email", None, json!({"token": token}))
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{b}: {}", r.text);
        s.post("/api/v1/auth/verify-email", None, json!({"token": token}))
            .await
            .assert_problem(400, "invalid_token", b);
        let r = s.sign_in("ada@example.com", PASSWORD).await;
        assert_eq!(r.status, StatusCode::OK, "{b}: {}", r.text);
        let me = s.get("/api/v1/me", r.body["access_token"].as_str()).await;
        assert_eq!(me.body["email_verified"], true, "{b}");

        let actions: Vec<String> = instance_log(&s, &user_id)
            .await
            .into_iter()
            .map(|(a, raw)| {
                assert!(
                    !raw.contains("ada@example.com"),
                    "{b}: email in clear: {raw}"
                );
                a
            })
            .collect();
        assert_eq!(
            actions,
            [
                "user.sign_up",
                "auth.sign_in_failed",
                "auth.email_verified",
                "auth.sign_in"
            ],
            "{b}"
        );
        s.stop().await;
    }
}

#[tokio::test]
async fn a_reset_code_dies_after_five_wrong_guesses_and_a_new_one_resets_and_ends_sessions() {
    for (s, sink) in smtp_servers().await {
        let b = s.backend();
        let email = "grace@example.com";
        let (user_id, access, refresh) = smtp_user(&s, &sink, email).await;
        let (_, refresh2) = s.login(email).await;

        let r = s
            .post("/api/v1/auth/password-reset", None, json!({"email": email}))
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{b}: {}", r.text);
        let mail = nth_smtp(&sink, email, "password reset code", 1).await;
        let code = mail_code(&mail.text_body());
        assert!(mail.html_body().contains(&code), "{b}");
        let wrong = if code == "000000" { "000001" } else { "000000" };
        let confirm =
            |code: &str| json!({"email": email, "code": code, "new_password": NEW_PASSWORD});
        let mut bodies = Vec::new();
        for _ in 0..5 {
            let r = s
                .post("/api/v1/auth/password-reset/confirm", None, confirm(wrong))
                .await;
            r.assert_problem(400, "invalid_reset_code", b);
            bodies.push(without_instance(&r));
        }
        // Spent: even the right code fails now, with the same answer.
        let r = s
            .post("/api/v1/auth/password-reset/confirm", None, confirm(&code))
            .await;
        r.assert_problem(400, "invalid_reset_code", b);
        assert_eq!(without_instance(&r), bodies[0], "{b}");
        let r = s.sign_in(email, PASSWORD).await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "{b}: the old password still works"
        );

        s.post("/api/v1/auth/password-reset", None, json!({"email": email}))
            .await;
        let mail = nth_smtp(&sink, email, "password reset code", 2).await;
        let code = mail_code(&mail.text_body());
        let r = s
            .post("/api/v1/auth/password-reset/confirm", None, confirm(&code))
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{b}: {}", r.text);
        s.post("/api/v1/auth/password-reset/confirm", None, confirm(&code))
            .await
            .assert_problem(400, "invalid_reset_code", b);

        // Every session ended: refresh tokens and access tokens fail at once.
        for old in [&refresh, &refresh2] {
            s.post("/api/v1/auth/refresh", None, json!({"refresh_token": old}))
                .await
                .assert_problem(401, "invalid_refresh_token", b);
        }
        s.get("/api/v1/me", Some(&access))
            .await
            .assert_problem(401, "unauthenticated", b);
        s.sign_in(email, PASSWORD)
            .await
            .assert_problem(401, "invalid_credentials", b);
        assert_eq!(s.sign_in(email, NEW_PASSWORD).await.status, StatusCode::OK);
        let notice = nth_smtp(&sink, email, "password was changed", 1).await;
        assert!(notice.text_body().contains("reset"), "{b}");

        let log = instance_log(&s, &user_id).await;
        let actions: Vec<&str> = log.iter().map(|(a, _)| a.as_str()).collect();
        let count = |a: &str| actions.iter().filter(|x| **x == a).count();
        assert_eq!(
            count("auth.password_reset_requested"),
            2,
            "{b}: {actions:?}"
        );
        assert_eq!(count("auth.password_reset_failed"), 7, "{b}: {actions:?}");
        assert_eq!(count("auth.password_reset"), 1, "{b}: {actions:?}");
        for (_, raw) in &log {
            assert!(!raw.contains(email) && !raw.contains(&code), "{b}: {raw}");
        }
        s.stop().await;
    }
}

#[tokio::test]
async fn a_reset_code_is_refused_after_its_lifetime() {
    for s in common::servers().await {
        let b = s.backend();
        let email = "late@example.com";
        s.user(email).await;
        s.post("/api/v1/auth/password-reset", None, json!({"email": email}))
            .await;
        let code = mail_code(&s.mail(email, "password_reset_code").await);
        s.advance(time::Duration::minutes(15) + time::Duration::seconds(1));
        let body = json!({"email": email, "code": code, "new_password": NEW_PASSWORD});
        s.post("/api/v1/auth/password-reset/confirm", None, body)
            .await
            .assert_problem(400, "invalid_reset_code", b);

        // A code used inside its lifetime works.
        s.post("/api/v1/auth/password-reset", None, json!({"email": email}))
            .await;
        let code = mail_code(&s.nth_mail(email, "password_reset_code", 2).await);
        s.advance(time::Duration::minutes(14));
        let body = json!({"email": email, "code": code, "new_password": NEW_PASSWORD});
        let r = s
            .post("/api/v1/auth/password-reset/confirm", None, body)
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{b}: {}", r.text);
        s.stop().await;
    }
}

#[tokio::test]
async fn reset_requests_answer_the_same_for_unknown_addresses_and_are_capped_per_account() {
    for db in databases().await {
        let s = Server::start_with(db, |c| {
            c.rate_limits.auth.password_reset_per_account = "3/1h".parse().unwrap();
            c.rate_limits.auth.password_reset_per_ip = "5/1h".parse().unwrap();
        })
        .await;
        let b = s.backend();
        let email = "capped@example.com";
        s.user(email).await;
        for _ in 0..4 {
            let r = s
                .post("/api/v1/auth/password-reset", None, json!({"email": email}))
                .await;
            assert_eq!(r.status, StatusCode::ACCEPTED, "{b}: {}", r.text);
        }
        let r = s
            .post(
                "/api/v1/auth/password-reset",
                None,
                json!({"email": "nobody@example.com"}),
            )
            .await;
        assert_eq!(
            (r.status, r.text.as_str()),
            (StatusCode::ACCEPTED, ""),
            "{b}"
        );
        // The IP's budget (5) is now spent: that is the caller's own doing, so it is said.
        let r = s
            .post("/api/v1/auth/password-reset", None, json!({"email": email}))
            .await;
        r.assert_problem(429, "rate_limited", b);
        assert_eq!(r.body["policy"], "password_reset_per_ip", "{b}");

        s.nth_mail(email, "password_reset_code", 3).await;
        // Give a 4th message every chance to be written before counting.
        s.services().outbox().drain(Duration::from_secs(5)).await;
        let codes = s
            .outbox()
            .iter()
            .filter(|(name, _)| name.contains("-password_reset_code-"))
            .count();
        assert_eq!(
            codes, 3,
            "{b}: three codes per account per hour, none for nobody@"
        );
        s.stop().await;
    }
}

#[tokio::test]
async fn five_failures_lock_the_account_with_the_same_answer_and_locks_double() {
    for (s, sink) in smtp_servers().await {
        let b = s.backend();
        let email = "locked@example.com";
        let (user_id, _, _) = smtp_user(&s, &sink, email).await;
        let wrong = s.sign_in(email, "not the password").await;
        wrong.assert_problem(401, "invalid_credentials", b);
        for _ in 0..4 {
            s.sign_in(email, "not the password").await;
        }
        // Locked: the right password, a wrong one and an unknown address look the same.
        let right = s.sign_in(email, PASSWORD).await;
        let unknown = s.sign_in("nobody@example.com", PASSWORD).await;
        for r in [&right, &unknown] {
            r.assert_problem(401, "invalid_credentials", b);
            assert_eq!(without_instance(r), without_instance(&wrong), "{b}");
            assert_eq!(
                r.header("www-authenticate"),
                wrong.header("www-authenticate")
            );
        }
        let mail = nth_smtp(&sink, email, "was locked", 1).await;
        assert!(mail.text_body().contains("15 minutes"), "{b}");

        s.advance(time::Duration::minutes(15) + time::Duration::seconds(1));
        // The lock is over; five more failures with no success between lock for twice as long.
        for _ in 0..5 {
            s.sign_in(email, "not the password").await;
        }
        s.advance(time::Duration::minutes(16));
        s.sign_in(email, PASSWORD)
            .await
            .assert_problem(401, "invalid_credentials", b);
        let second = nth_smtp(&sink, email, "was locked", 2).await;
        assert!(second.text_body().contains("30 minutes"), "{b}");
        s.advance(time::Duration::minutes(15));
        assert_eq!(
            s.sign_in(email, PASSWORD).await.status,
            StatusCode::OK,
            "{b}"
        );

        let log = instance_log(&s, &user_id).await;
        let locks: Vec<Value> = log
            .iter()
            .filter(|(a, _)| a == "auth.account_locked")
            .map(|(_, raw)| serde_json::from_str::<Value>(raw).unwrap()["lock"]["seconds"].clone())
            .collect();
        assert_eq!(locks, [json!(900), json!(1800)], "{b}");
        let reasons: Vec<String> = log
            .iter()
            .filter(|(a, _)| a == "auth.sign_in_failed")
            .map(|(_, raw)| {
                serde_json::from_str::<Value>(raw).unwrap()["reason"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(
            reasons.iter().filter(|r| *r == "locked").count(),
            2,
            "{b}: {reasons:?}"
        );
        assert_eq!(
            reasons.iter().filter(|r| *r == "wrong_password").count(),
            10,
            "{b}"
        );
        s.stop().await;
    }
}

/// Right and wrong passwords for one account at once: every answer is 200 or 401 (never a
/// deadlock's 500), and each one left exactly its audit entry.
#[tokio::test]
async fn concurrent_right_and_wrong_sign_ins_never_fail_and_each_is_audited() {
    for db in databases().await {
        let s = Server::start(db).await;
        let b = s.backend();
        let email = "busy@example.com";
        let (user_id, _, _) = s.user(email).await;
        let mut tasks = Vec::new();
        for i in 0..24 {
            let password = if i % 2 == 0 {
                PASSWORD
            } else {
                "wrong password!"
            };
            let request = s
                .client
                .post(format!("{}/api/v1/auth/login", s.base))
                .json(&json!({"email": email, "password": password}));
            tasks.push(tokio::spawn(async move {
                request.send().await.unwrap().status().as_u16()
            }));
        }
        let mut statuses = Vec::new();
        for t in tasks {
            statuses.push(t.await.unwrap());
        }
        assert!(
            statuses.iter().all(|s| [200, 401].contains(s)),
            "{b}: {statuses:?}"
        );
        let ok = statuses.iter().filter(|s| **s == 200).count();
        assert!(ok >= 1, "{b}: a right password before any lock signs in");
        let log = instance_log(&s, &user_id).await;
        let count = |action: &str| log.iter().filter(|(a, _)| a == action).count();
        // One sign-in from `user()` above, then one per 200.
        assert_eq!(count("auth.sign_in"), ok + 1, "{b}");
        assert_eq!(count("auth.sign_in_failed"), 24 - ok, "{b}");
        s.stop().await;
    }
}

#[tokio::test]
async fn a_magic_link_survives_a_get_and_works_once_by_post() {
    for (s, sink) in smtp_servers().await {
        let b = s.backend();
        let email = "magic@example.com";
        let r = s.sign_up(email).await;
        let user_id = r.body["id"].as_str().unwrap().to_owned();
        for address in [email, "nobody@example.com"] {
            let r = s
                .post("/api/v1/auth/magic-link", None, json!({"email": address}))
                .await;
            assert_eq!(
                (r.status, r.text.as_str()),
                (StatusCode::ACCEPTED, ""),
                "{b}"
            );
        }
        let mail = nth_smtp(&sink, email, "sign-in link", 1).await;
        let text = mail.text_body();
        assert!(
            text.contains(&format!("{}/auth/magic#token=", s.base)),
            "{b}"
        );
        let token = link_token(&text);

        // A link scanner fetches the page (the fragment never reaches the server).
        let page = s.get(&format!("/auth/magic?token={token}"), None).await;
        assert_eq!(page.status, StatusCode::OK, "{b}");
        assert!(page.header("content-type").starts_with("text/html"), "{b}");
        assert!(page.text.contains("magic-link/consume"), "{b}");

        let r = s
            .post(
                "/api/v1/auth/magic-link/consume",
                None,
                json!({"token": token}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{b}: {}", r.text);
        let me = s.get("/api/v1/me", r.body["access_token"].as_str()).await;
        assert_eq!(
            (me.body["id"].as_str(), me.body["email_verified"].as_bool()),
            (Some(user_id.as_str()), Some(true)),
            "{b}: the link proved the address"
        );
        s.post(
            "/api/v1/auth/magic-link/consume",
            None,
            json!({"token": token}),
        )
        .await
        .assert_problem(400, "invalid_token", b);

        // Expired after 15 minutes.
        s.post("/api/v1/auth/magic-link", None, json!({"email": email}))
            .await;
        let token = link_token(&nth_smtp(&sink, email, "sign-in link", 2).await.text_body());
        s.advance(time::Duration::minutes(15));
        s.post(
            "/api/v1/auth/magic-link/consume",
            None,
            json!({"token": token}),
        )
        .await
        .assert_problem(400, "invalid_token", b);
        assert_eq!(
            sink.messages()
                .iter()
                .filter(|m| m.to.iter().any(|t| t == "nobody@example.com"))
                .count(),
            0,
            "{b}: nothing is sent to an address without an account"
        );
        s.stop().await;
    }
}

#[tokio::test]
async fn sessions_are_listed_and_revoked_and_a_password_change_ends_the_others() {
    for (s, sink) in smtp_servers().await {
        let b = s.backend();
        let email = "sess@example.com";
        let (_, access, _) = smtp_user(&s, &sink, email).await;
        let (access2, refresh2) = s.login(email).await;
        let (_, refresh3) = s.login(email).await;
        let (_, other_access, _) = smtp_user(&s, &sink, "someone-else@example.com").await;

        let r = s.get("/api/v1/me/sessions", Some(&access)).await;
        assert_eq!(r.status, StatusCode::OK, "{b}: {}", r.text);
        let sessions = r.body["data"].as_array().unwrap().clone();
        assert_eq!(sessions.len(), 3, "{b}");
        assert_eq!(
            sessions.iter().filter(|x| x["current"] == true).count(),
            1,
            "{b}"
        );
        assert_eq!(sessions[0]["ip"], "127.0.0.0/24", "{b}: only the network");
        assert_eq!(sessions[0]["user_agent"], "palisade-tests/1", "{b}");
        let page = s.get("/api/v1/me/sessions?limit=2", Some(&access)).await;
        let cursor = page.body["next_cursor"].as_str().unwrap().to_owned();
        let rest = s
            .get(
                &format!("/api/v1/me/sessions?limit=2&cursor={cursor}"),
                Some(&access),
            )
            .await;
        assert_eq!(rest.body["data"].as_array().unwrap().len(), 1, "{b}");

        // Another user cannot see or revoke them.
        let newest = sessions[0]["id"].as_str().unwrap().to_owned();
        s.call(
            Method::DELETE,
            &format!("/api/v1/me/sessions/{newest}"),
            Some(&other_access),
            None,
        )
        .await
        .assert_problem(404, "session_not_found", b);
        let theirs = s.get("/api/v1/me/sessions", Some(&other_access)).await;
        assert_eq!(theirs.body["data"].as_array().unwrap().len(), 1, "{b}");

        // Revoking the second session kills its refresh and access tokens at once.
        let second = sessions
            .iter()
            .find(|x| x["current"] == false && x["id"] != newest.as_str())
            .map(|x| x["id"].as_str().unwrap().to_owned())
            .unwrap();
        let r = s
            .call(
                Method::DELETE,
                &format!("/api/v1/me/sessions/{second}"),
                Some(&access),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{b}: {}", r.text);
        s.call(
            Method::DELETE,
            &format!("/api/v1/me/sessions/{second}"),
            Some(&access),
            None,
        )
        .await
        .assert_problem(404, "session_not_found", b);
        s.get("/api/v1/me", Some(&access2))
            .await
            .assert_problem(401, "unauthenticated", b);
        s.post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": refresh2}),
        )
        .await
        .assert_problem(401, "invalid_refresh_token", b);

        // A wrong current password names the field and changes nothing.
        let r = s
            .post(
                "/api/v1/me/password",
                Some(&access),
                json!({"current_password": "not it at all", "new_password": NEW_PASSWORD}),
            )
            .await;
        r.assert_problem(422, "validation_failed", b);
        assert_eq!(r.pointers(), ["/current_password"], "{b}");
        let r = s
            .post(
                "/api/v1/me/password",
                Some(&access),
                json!({"current_password": PASSWORD, "new_password": NEW_PASSWORD}),
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{b}: {}", r.text);
        s.post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": refresh3}),
        )
        .await
        .assert_problem(401, "invalid_refresh_token", b);
        assert_eq!(
            s.get("/api/v1/me", Some(&access)).await.status,
            StatusCode::OK,
            "{b}: this session lives on"
        );
        assert_eq!(s.sign_in(email, NEW_PASSWORD).await.status, StatusCode::OK);
        let notice = nth_smtp(&sink, email, "password was changed", 1).await;
        assert!(notice.text_body().contains("signed-in session"), "{b}");

        // "Sign out everywhere else".
        assert_eq!(s.sign_in(email, NEW_PASSWORD).await.status, StatusCode::OK);
        let r = s
            .call(Method::DELETE, "/api/v1/me/sessions", Some(&access), None)
            .await;
        assert_eq!(
            (r.status, r.body["revoked"].as_u64()),
            (StatusCode::OK, Some(2)),
            "{b}: {}",
            r.text
        );
        let left = s.get("/api/v1/me/sessions", Some(&access)).await;
        assert_eq!(left.body["data"].as_array().unwrap().len(), 1, "{b}");
        s.stop().await;
    }
}

#[tokio::test]
async fn sign_up_modes_and_resending_verification() {
    for db in databases().await {
        let s = Server::start_with(db, |c| {
            c.accounts.signup_mode = palisade_core::accounts::policy::SignupMode::Closed;
        })
        .await;
        let b = s.backend();
        s.sign_up("new@example.com")
            .await
            .assert_problem(403, "signup_closed", b);
        // Instance administrators can always create their account.
        assert_eq!(
            s.sign_up(common::ADMIN).await.status,
            StatusCode::CREATED,
            "{b}"
        );
        s.stop().await;
    }
    for db in databases().await {
        let s = Server::start_with(db, |c| {
            c.accounts.signup_mode = palisade_core::accounts::policy::SignupMode::InviteOnly;
        })
        .await;
        s.sign_up("new@example.com")
            .await
            .assert_problem(403, "invitation_required", s.backend());
        s.stop().await;
    }
    for s in common::servers().await {
        let b = s.backend();
        s.sign_up("slow@example.com").await;
        s.user("done@example.com").await;
        for address in ["slow@example.com", "done@example.com", "nobody@example.com"] {
            let r = s
                .post(
                    "/api/v1/auth/verify-email/resend",
                    None,
                    json!({"email": address}),
                )
                .await;
            assert_eq!(r.status, StatusCode::ACCEPTED, "{b}: {}", r.text);
        }
        let second = s.nth_mail("slow@example.com", "verify_email", 2).await;
        let r = s
            .post(
                "/api/v1/auth/verify-email",
                None,
                json!({"token": link_token(&second)}),
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{b}");
        s.services().outbox().drain(Duration::from_secs(5)).await;
        let to_done = s
            .outbox()
            .iter()
            .filter(|(_, raw)| raw.contains("done@example.com"))
            .count();
        assert_eq!(to_done, 1, "{b}: a verified address gets no second link");

        // Bad input names the field and changes nothing.
        let r = s
            .post(
                "/api/v1/auth/password-reset/confirm",
                None,
                json!({"email": "slow@example.com", "code": "12ab", "new_password": "short"}),
            )
            .await;
        r.assert_problem(422, "validation_failed", b);
        assert_eq!(r.pointers(), ["/code", "/new_password"], "{b}");
        let r = s
            .post("/api/v1/auth/magic-link/consume", None, json!({}))
            .await;
        assert_eq!(r.pointers(), ["/token"], "{b}");
        let r = s
            .post(
                "/api/v1/auth/magic-link",
                None,
                json!({"email": "not an address"}),
            )
            .await;
        assert_eq!(r.pointers(), ["/email"], "{b}");
        s.stop().await;
    }
}
