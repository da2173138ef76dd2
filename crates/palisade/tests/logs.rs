//! No secret reaches a log line at any level: the real binary runs with `PALISADE_LOG=trace`,
//! sending real mail to an SMTP sink, through every account flow; then its whole output is
//! searched for every password, token and code that crossed it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::smtp::{Received, SmtpSink};
use common::webhooks::Receiver;
use common::{TEST_MASTER_KEY, link_token, mail_code};
use palisade_store::testing::databases;
use serde_json::{Value, json};

const PASSWORD: &str = "first-secret-passphrase-9731";
const RESET_PASSWORD: &str = "second-secret-passphrase-5519";
const CHANGED_PASSWORD: &str = "third-secret-passphrase-2208";
const WRONG_PASSWORD: &str = "wrong-secret-passphrase-4460";

struct Binary {
    child: std::process::Child,
    base: String,
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start(db_url: &str, dir: &std::path::Path, smtp_port: u16) -> Binary {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.join("palisade.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\ndatabase_url = \"{db_url}\"\n\
             [email.smtp]\nhost = \"127.0.0.1\"\nport = {smtp_port}\nsecurity = \"none\"\nusername = \"palisade\"\n\
             [webhooks]\nallow_cidrs = [\"127.0.0.1/32\"]\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
    let log = dir.join("palisade.log");
    let out = std::fs::File::create(&log).unwrap();
    let mut child = common::palisade()
        .args(["serve", "--config"])
        .arg(&config)
        .env("PALISADE_LOG", "trace")
        .env("PALISADE_MASTER_KEY", TEST_MASTER_KEY)
        .env("PALISADE_SMTP_PASSWORD", "smtp-relay-secret-8812")
        .stdout(Stdio::from(out.try_clone().unwrap()))
        .stderr(Stdio::from(out))
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    for _ in 0..300 {
        if client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Binary { child, base };
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!(
        "the server did not start: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}

async fn post(base: &str, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut req = client.post(format!("{base}{path}")).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn mail(sink: &SmtpSink, subject: &str, n: usize) -> Received {
    let wanted = |m: &Received| m.subject().is_some_and(|s| s.contains(subject));
    sink.wait_for(
        |_| sink.messages().iter().filter(|m| wanted(m)).count() >= n,
        Duration::from_secs(15),
    )
    .await;
    sink.messages()
        .into_iter()
        .filter(wanted)
        .nth(n - 1)
        .unwrap()
}

#[tokio::test]
async fn no_password_token_or_code_appears_in_any_log_line() {
    for db in databases().await {
        let sink = SmtpSink::start().await;
        let dir = tempfile::tempdir().unwrap();
        let server = start(&db.url, dir.path(), sink.port()).await;
        let base = server.base.as_str();
        let email = "logged@example.com";
        let mut secrets: Vec<String> = vec![
            PASSWORD.into(),
            RESET_PASSWORD.into(),
            CHANGED_PASSWORD.into(),
            WRONG_PASSWORD.into(),
            "smtp-relay-secret-8812".into(),
            TEST_MASTER_KEY.into(),
        ];

        let (status, _) = post(
            base,
            "/api/v1/auth/signup",
            None,
            json!({"email": email, "password": PASSWORD, "name": "Logged"}),
        )
        .await;
        assert_eq!(status, 201, "{}", db.backend);
        let verify = link_token(&mail(&sink, "Confirm your email", 1).await.text_body());
        secrets.push(verify.clone());
        assert_eq!(
            post(
                base,
                "/api/v1/auth/verify-email",
                None,
                json!({"token": verify})
            )
            .await
            .0,
            204
        );
        let login = |password: &'static str| {
            post(
                base,
                "/api/v1/auth/login",
                None,
                json!({"email": email, "password": password}),
            )
        };
        assert_eq!(login(WRONG_PASSWORD).await.0, 401);
        let (status, tokens) = login(PASSWORD).await;
        assert_eq!(status, 200, "{}", db.backend);
        let (status, refreshed) = post(
            base,
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": tokens["refresh_token"]}),
        )
        .await;
        assert_eq!(status, 200);
        for t in [&tokens, &refreshed] {
            secrets.push(t["access_token"].as_str().unwrap().into());
            secrets.push(t["refresh_token"].as_str().unwrap().into());
        }

        post(
            base,
            "/api/v1/auth/password-reset",
            None,
            json!({"email": email}),
        )
        .await;
        let code = mail_code(&mail(&sink, "password reset code", 1).await.text_body());
        secrets.push(code.clone());
        let (status, _) = post(
            base,
            "/api/v1/auth/password-reset/confirm",
            None,
            json!({"email": email, "code": code, "new_password": RESET_PASSWORD}),
        )
        .await;
        assert_eq!(status, 204, "{}", db.backend);

        post(
            base,
            "/api/v1/auth/magic-link",
            None,
            json!({"email": email}),
        )
        .await;
        let magic = link_token(&mail(&sink, "sign-in link", 1).await.text_body());
        secrets.push(magic.clone());
        let (status, signed_in) = post(
            base,
            "/api/v1/auth/magic-link/consume",
            None,
            json!({"token": magic}),
        )
        .await;
        assert_eq!(status, 200, "{}", db.backend);
        let access = signed_in["access_token"].as_str().unwrap().to_owned();
        secrets.push(access.clone());
        let (status, _) = post(
            base,
            "/api/v1/me/password",
            Some(&access),
            json!({"current_password": RESET_PASSWORD, "new_password": CHANGED_PASSWORD}),
        )
        .await;
        assert_eq!(status, 204, "{}", db.backend);
        mail(&sink, "password was changed", 2).await;

        // A webhook endpoint (its secret) delivering a record with an encrypted value.
        let (status, ws) = post(
            base,
            "/api/v1/workspaces",
            Some(&access),
            json!({"name": "Logged"}),
        )
        .await;
        assert_eq!(status, 201, "{}", db.backend);
        let ws = ws["id"].as_str().unwrap().to_owned();
        let (status, _) = post(
            base,
            &format!("/api/v1/workspaces/{ws}/collections"),
            Some(&access),
            json!({"name": "notes", "fields": [{"name": "body", "type": "text", "encrypted": true}]}),
        )
        .await;
        assert_eq!(status, 201, "{}", db.backend);
        let receiver = Receiver::start(&[]);
        let (status, hook) = post(
            base,
            &format!("/api/v1/workspaces/{ws}/webhooks"),
            Some(&access),
            json!({"url": receiver.url(), "events": ["record.created"]}),
        )
        .await;
        assert_eq!(status, 201, "{}", db.backend);
        let webhook_secret = hook["secret"].as_str().unwrap().to_owned();
        receiver.trust(&webhook_secret);
        secrets.push(webhook_secret.clone());
        secrets.push(webhook_secret["whsec_".len()..].to_owned());
        let sealed_value = "encrypted-canary-value-31337";
        secrets.push(sealed_value.into());
        let (status, _) = post(
            base,
            &format!("/api/v1/workspaces/{ws}/collections/notes/records"),
            Some(&access),
            json!({"body": sealed_value}),
        )
        .await;
        assert_eq!(status, 201, "{}", db.backend);
        let got = receiver
            .wait(Duration::from_secs(30), |l| !l.is_empty())
            .await;
        common::webhooks::assert_all_verified(&got, db.backend);
        assert_eq!(
            got[0]["body"]["data"]["body"], sealed_value,
            "{}",
            db.backend
        );

        drop(server);
        let log = std::fs::read_to_string(dir.path().join("palisade.log")).unwrap();
        assert!(
            log.contains("TRACE") && log.contains("email sent"),
            "{}: the log ran at trace level",
            db.backend
        );
        // Six digits also occur by chance inside longer numbers, timestamps' fractions and
        // request durations; anywhere else they would be the code.
        let bytes = log.as_bytes();
        for (at, _) in log.match_indices(code.as_str()) {
            let before = &log[..at];
            let after = bytes.get(at + code.len()).copied();
            let chance = before.ends_with(|c: char| c.is_ascii_digit() || c == '.')
                || before.ends_with("micros=")
                || after.is_some_and(|c| c.is_ascii_digit());
            assert!(chance, "{}: the reset code is in the log", db.backend);
        }
        secrets.retain(|s| s != &code);
        for secret in &secrets {
            assert!(
                !log.contains(secret.as_str()),
                "{}: a secret ({} characters) is in the log",
                db.backend,
                secret.len()
            );
        }
        assert!(
            !log.contains(email),
            "{}: an address is in the log",
            db.backend
        );
    }
}
