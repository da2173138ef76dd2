//! Test harness: the real server, started in-process on `127.0.0.1:0` against a fresh database
//! of each backend, spoken to over real HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]
pub mod smtp;

pub mod audit;
pub mod records;
pub mod webhooks;

use std::sync::Arc;

use palisade::Config;
use palisade_core::clock::AdjustableClock;
use palisade_core::limits::{AuthLimits, BudgetPatch, LimitsConfig, PlanLimitsPatch, Rate};
use palisade_core::store::Store;
use palisade_store::testing::{TestDb, databases};
use palisade_store::{Migrations, open};
use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde_json::{Value, json};

pub const ADMIN: &str = "admin@example.com";
pub const PASSWORD: &str = "correct horse battery staple";
pub const TEST_MASTER_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

pub struct Server {
    pub base: String,
    pub db: TestDb,
    pub config: Config,
    /// The running server's services (its limiter, for counters).
    pub state: Option<palisade_api::AppState>,
    pub client: reqwest::Client,
    /// The server's clock: real time, moved ahead with [`Server::advance`].
    pub clock: Arc<AdjustableClock>,
    data: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// Budgets no test reaches by accident (every test client is 127.0.0.1); rate-limit tests set
/// their own.
pub fn roomy_limits() -> LimitsConfig {
    let roomy: Rate = "1000000/1m".parse().unwrap();
    let budget = BudgetPatch {
        per_workspace: Some(roomy),
        per_key: Some(roomy),
    };
    let plan = PlanLimitsPatch {
        api: Some(budget),
        upload: Some(budget),
        webhook_ingest: Some(budget),
        ai: Some(budget),
    };
    LimitsConfig {
        auth: AuthLimits {
            sign_in_per_ip: roomy,
            sign_in_per_account: roomy,
            sign_up_per_ip: roomy,
            sign_up_per_email_domain: roomy,
            refresh_per_ip: roomy,
            api_per_account: roomy,
            password_reset_per_account: roomy,
            password_reset_per_ip: roomy,
            magic_link_per_account: roomy,
            magic_link_per_ip: roomy,
            verify_email_per_account: roomy,
            verify_email_per_ip: roomy,
            redeem_per_ip: roomy,
            api_key_failures_per_ip: roomy,
        },
        plans: ["starter", "pro", "business"]
            .into_iter()
            .map(|p| (p.to_owned(), plan.clone()))
            .collect(),
        workspaces: Default::default(),
    }
}

pub fn config_for(db: &TestDb, data: &std::path::Path) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: data.to_path_buf(),
        database_url: Some(SecretString::from(db.url.clone())),
        master_key: Some(SecretString::from(TEST_MASTER_KEY.to_owned())),
        admins: vec![ADMIN.to_owned()],
        rate_limits: roomy_limits(),
        ..Config::default()
    }
}

impl Server {
    pub async fn start(db: TestDb) -> Server {
        Self::start_with(db, |_| {}).await
    }

    pub async fn start_with(db: TestDb, tweak: impl FnOnce(&mut Config)) -> Server {
        let data = tempfile::tempdir().unwrap();
        let mut config = config_for(&db, data.path());
        tweak(&mut config);
        Self::start_config(db, config, data).await
    }

    async fn start_config(db: TestDb, mut config: Config, data: tempfile::TempDir) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        if config.public_url.is_none() {
            config.public_url = Some(format!("http://{addr}/").parse().unwrap());
        }
        let scheme = if config.tls() { "https" } else { "http" };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready, built) = tokio::sync::oneshot::channel();
        let clock = Arc::new(AdjustableClock::new());
        let task = tokio::spawn(palisade::run_with_clock(
            config.clone(),
            listener,
            async move {
                let _ = stopped.await;
            },
            ready,
            clock.clone(),
        ));
        let state = built.await.ok();
        let client = reqwest::Client::builder()
            .no_proxy()
            .user_agent("palisade-tests/1")
            .build()
            .unwrap();
        Server {
            base: format!("{scheme}://{addr}"),
            db,
            config,
            state,
            client,
            clock,
            data,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops this server and starts a new one on the same database and configuration (a
    /// restart: nothing survives but what the database holds).
    pub async fn restart(mut self) -> Server {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
        let shared = self.db.shared();
        let db = std::mem::replace(&mut self.db, shared);
        let config = self.config.clone();
        let data = tempfile::tempdir().unwrap();
        Self::start_config(db, config, data).await
    }

    /// [`restart`](Self::restart) with the configuration changed by `tweak` (master keys, say).
    pub async fn restart_with(mut self, tweak: impl FnOnce(&mut Config)) -> Server {
        tweak(&mut self.config);
        self.restart().await
    }

    /// Another node on the same database, with the same configuration.
    pub async fn second_node(&self) -> Server {
        Self::start_config(
            self.db.shared(),
            self.config.clone(),
            tempfile::tempdir().unwrap(),
        )
        .await
    }

    /// The server's services (panics if it did not start).
    pub fn services(&self) -> &palisade_core::Services {
        &self.state.as_ref().expect("server started").services
    }

    pub fn backend(&self) -> &'static str {
        self.db.backend
    }

    /// Sends a request; returns status, headers and the JSON body (Null when empty).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        Reply::from(req.send().await.unwrap()).await
    }

    pub async fn raw(&self, req: reqwest::RequestBuilder) -> Reply {
        Reply::from(req.send().await.unwrap()).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.call(Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        self.call(Method::POST, path, token, Some(body)).await
    }

    pub async fn patch(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        self.call(Method::PATCH, path, token, Some(body)).await
    }

    /// Moves the server's clock ahead (tests never sleep to wait for time).
    pub fn advance(&self, by: time::Duration) {
        self.clock.advance(by);
    }

    /// The outbox (no SMTP configured): `.eml` files, oldest first.
    pub fn outbox(&self) -> Vec<(String, String)> {
        let dir = self.data.path().join("outbox");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort();
        files
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "eml"))
            .map(|p| {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read_to_string(&p).unwrap())
            })
            .collect()
    }

    /// Waits for the `n`-th (1-based) message of `kind` to `to` in the outbox; returns its
    /// plain-text body.
    pub async fn nth_mail(&self, to: &str, kind: &str, n: usize) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        loop {
            let found: Vec<String> = self
                .outbox()
                .into_iter()
                .filter(|(name, raw)| {
                    name.contains(&format!("-{kind}-"))
                        && smtp::header(raw, "To").is_some_and(|t| t.contains(to))
                })
                .map(|(_, raw)| smtp::text_body(&raw))
                .collect();
            if found.len() >= n {
                return found[n - 1].clone();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{}: no {kind} mail #{n} to {to} in the outbox",
                self.backend()
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// Waits for the first message of `kind` to `to`.
    pub async fn mail(&self, to: &str, kind: &str) -> String {
        self.nth_mail(to, kind, 1).await
    }

    /// Confirms `email` with the link of its (first) verification mail.
    pub async fn verify(&self, email: &str) {
        let text = self.mail(email, "verify_email").await;
        let r = self
            .post(
                "/api/v1/auth/verify-email",
                None,
                json!({"token": link_token(&text)}),
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::NO_CONTENT,
            "{}: verify {}",
            self.backend(),
            r.text
        );
    }

    /// `POST /auth/signup` with [`PASSWORD`].
    pub async fn sign_up(&self, email: &str) -> Reply {
        self.post(
            "/api/v1/auth/signup",
            None,
            json!({"email": email, "password": PASSWORD, "name": "Test User"}),
        )
        .await
    }

    /// `POST /auth/login`, whatever the answer.
    pub async fn sign_in(&self, email: &str, password: &str) -> Reply {
        self.post(
            "/api/v1/auth/login",
            None,
            json!({"email": email, "password": password}),
        )
        .await
    }

    /// `POST /auth/refresh`, whatever the answer.
    pub async fn refresh(&self, refresh_token: &str) -> Reply {
        self.post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": refresh_token}),
        )
        .await
    }

    /// Signs up, verifies the address from the outbox and signs in; returns (user id, access
    /// token, refresh token).
    pub async fn user(&self, email: &str) -> (String, String, String) {
        let r = self.sign_up(email).await;
        assert_eq!(
            r.status,
            StatusCode::CREATED,
            "{}: signup {}",
            self.backend(),
            r.body
        );
        let id = r.body["id"].as_str().unwrap().to_owned();
        self.verify(email).await;
        let (access, refresh) = self.login(email).await;
        (id, access, refresh)
    }

    /// Signs in with [`PASSWORD`], which must succeed; returns (access, refresh).
    pub async fn login(&self, email: &str) -> (String, String) {
        let r = self.sign_in(email, PASSWORD).await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "{}: login {}",
            self.backend(),
            r.body
        );
        (
            r.body["access_token"].as_str().unwrap().to_owned(),
            r.body["refresh_token"].as_str().unwrap().to_owned(),
        )
    }

    pub async fn workspace(&self, token: &str, name: &str, slug: &str) -> Value {
        let r = self
            .post(
                "/api/v1/workspaces",
                Some(token),
                json!({"name": name, "slug": slug}),
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::CREATED,
            "{}: create workspace {}",
            self.backend(),
            r.body
        );
        r.body
    }

    /// A second handle on the same database, to inspect what the server wrote.
    /// The workspace's audit log as stored (up to 1,000 entries), newest first, read through
    /// the store with a test scope.
    pub async fn workspace_log(&self, ws_id: &str) -> Vec<palisade_core::store::StoredEntry> {
        let mut tx = self.tenant_read(ws_id).await;
        let query = palisade_core::store::AuditQuery {
            limit: 1000,
            ..Default::default()
        };
        tx.audit_query(&query).await.unwrap()
    }

    /// A read transaction on the workspace's data, through a second handle on the database
    /// and a test scope (an owner's), to inspect what the server wrote.
    pub async fn tenant_read(&self, ws_id: &str) -> Box<dyn palisade_core::store::TenantTx> {
        use palisade_core::ids::{SessionId, UserId, WorkspaceId};
        use palisade_core::principal::{Principal, SignInMethod};
        let store = self.store().await;
        let principal = Principal::User {
            user_id: UserId::generate(),
            session_id: SessionId::generate(),
            method: SignInMethod::Password,
            signed_in_at: time::OffsetDateTime::now_utc(),
        };
        let scope = palisade_core::tenancy::TenantScope::for_tests(
            WorkspaceId::parse(ws_id).unwrap(),
            principal,
            palisade_core::acl::Role::Owner,
        );
        store
            .tenant(&scope, palisade_core::store::Access::Read)
            .await
            .unwrap()
    }

    pub async fn store(&self) -> Arc<dyn Store> {
        open(&self.db.url, Migrations::Skip).await.unwrap()
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }

    /// How many messages of `kind` to `to` the outbox holds right now (no waiting): read it
    /// before an action, then wait for [`Server::nth_mail`] `count + 1`.
    pub fn mail_count(&self, to: &str, kind: &str) -> usize {
        self.outbox()
            .into_iter()
            .filter(|(name, raw)| {
                name.contains(&format!("-{kind}-"))
                    && smtp::header(raw, "To").is_some_and(|t| t.contains(to))
            })
            .count()
    }
}

/// The token of an emailed link (`…#token=<token>`).
pub fn link_token(text: &str) -> String {
    let start = text.find("#token=").expect("a link with a token") + "#token=".len();
    text[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

/// The 6-digit code of a reset mail (the indented line).
pub fn mail_code(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .find(|l| l.len() == 6 && l.bytes().all(|b| b.is_ascii_digit()))
        .expect("a 6-digit code")
        .to_owned()
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Reply {
    async fn from(r: reqwest::Response) -> Reply {
        let status = r.status();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
            text,
        }
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// Asserts a problem+json with this status and code.
    pub fn assert_problem(&self, status: u16, code: &str, context: &str) {
        assert_eq!(self.status.as_u16(), status, "{context}: {}", self.text);
        assert_eq!(
            self.header("content-type"),
            "application/problem+json",
            "{context}"
        );
        assert_eq!(self.body["code"], code, "{context}: {}", self.text);
        assert_eq!(self.body["status"], status, "{context}");
        assert_eq!(
            self.body["instance"].as_str(),
            Some(self.header("x-request-id")),
            "{context}: instance is the request id"
        );
    }

    pub fn pointers(&self) -> Vec<String> {
        self.body["errors"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e["pointer"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// One server per available backend, each on a fresh database.
pub async fn servers() -> Vec<Server> {
    let mut out = Vec::new();
    for db in databases().await {
        out.push(Server::start(db).await);
    }
    out
}

// ---- Helpers shared by the HTTP test files ----

pub fn ws_path(ws: &str, rest: &str) -> String {
    format!("/api/v1/workspaces/{ws}{rest}")
}

pub fn id(v: &Value) -> String {
    v["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {v}"))
        .to_owned()
}

pub fn assert_status(r: &Reply, status: u16, context: &str) {
    assert_eq!(r.status.as_u16(), status, "{context}: {}", r.text);
}

/// Invites `email` to `ws` as `role` and has `user` accept; returns the member id.
pub async fn join(
    s: &Server,
    inviter: &str,
    ws: &str,
    email: &str,
    user: &str,
    role: &str,
) -> String {
    let b = s.backend();
    let before = s.mail_count(email, "invitation");
    let r = s
        .post(
            &ws_path(ws, "/invitations"),
            Some(inviter),
            json!({"email": email, "role": role}),
        )
        .await;
    assert_status(&r, 201, &format!("{b}: invite {email}"));
    let text = s.nth_mail(email, "invitation", before + 1).await;
    let r = s
        .post(
            "/api/v1/invitations/accept",
            Some(user),
            json!({"token": link_token(&text)}),
        )
        .await;
    assert_status(&r, 200, &format!("{b}: {email} accepts"));
    assert_eq!(r.body["member"]["role"], role, "{b}: {}", r.text);
    id(&r.body["member"])
}

/// Turns modules on as the instance admin (`admin` is the config admin's token).
pub async fn enable_modules(s: &Server, admin: &str, ws: &str, modules: &[&str]) {
    let r = s
        .patch(
            &format!("/api/v1/admin/workspaces/{ws}"),
            Some(admin),
            json!({ "modules": modules }),
        )
        .await;
    assert_status(&r, 200, &format!("{}: enable {modules:?}", s.backend()));
}

/// Creates a custom role (`role`: the `POST …/roles` body) as `owner` and gives it to member
/// `member_id`; returns the role's id.
pub async fn give_custom_role(
    s: &Server,
    owner: &str,
    ws: &str,
    member_id: &str,
    role: Value,
) -> String {
    let b = s.backend();
    let r = s.post(&ws_path(ws, "/roles"), Some(owner), role).await;
    assert_status(&r, 201, &format!("{b}: custom role"));
    let role_id = id(&r.body);
    let r = s
        .patch(
            &ws_path(ws, &format!("/members/{member_id}")),
            Some(owner),
            json!({"custom_role": role_id}),
        )
        .await;
    assert_status(&r, 200, &format!("{b}: assign the custom role"));
    role_id
}

pub fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Everything the database holds, as bytes: SQLite's file with its `-wal` and `-shm`;
/// PostgreSQL's `pg_dump` (as a superuser when the run has one, so row security hides nothing).
pub async fn database_image(s: &Server) -> Vec<u8> {
    match s.backend() {
        "sqlite" => {
            let path = s.db.url.strip_prefix("sqlite:").unwrap();
            let path = path.split('?').next().unwrap().to_owned();
            let mut image = std::fs::read(&path).expect("the SQLite file");
            for suffix in ["-wal", "-shm"] {
                if let Ok(bytes) = std::fs::read(format!("{path}{suffix}")) {
                    image.extend(bytes);
                }
            }
            image
        }
        "postgres" => {
            let db = url::Url::parse(&s.db.url).unwrap();
            let url = match std::env::var("PALISADE_TEST_PG_SUPERUSER_URL") {
                Ok(su) if !su.is_empty() => {
                    let mut su = url::Url::parse(&su).unwrap();
                    su.set_path(db.path());
                    su
                }
                _ => db,
            };
            let bindir = match std::env::var("PALISADE_TEST_PG_BINDIR") {
                Ok(dir) if !dir.is_empty() => dir,
                _ => {
                    let out = std::process::Command::new("pg_config")
                        .arg("--bindir")
                        .output()
                        .expect("pg_config");
                    String::from_utf8(out.stdout).unwrap().trim().to_owned()
                }
            };
            let out = tokio::task::spawn_blocking(move || {
                std::process::Command::new(format!("{bindir}/pg_dump"))
                    .arg("--no-owner")
                    .arg("--dbname")
                    .arg(url.as_str())
                    .output()
                    .expect("run pg_dump")
            })
            .await
            .unwrap();
            assert!(
                out.status.success(),
                "pg_dump: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            out.stdout
        }
        other => panic!("unknown backend {other}"),
    }
}

/// The `palisade` binary with none of this process's `PALISADE_*` variables (only what a test
/// sets reaches it).
pub fn palisade() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_palisade"));
    for (key, _) in std::env::vars() {
        if key.starts_with("PALISADE_") {
            cmd.env_remove(key);
        }
    }
    cmd
}
