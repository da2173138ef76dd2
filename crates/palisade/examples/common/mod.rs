//! What the in-process benchmarks share: a configuration whose budgets no offered load reaches,
//! the real server started on 127.0.0.1 with its worker, a signed-in account with a workspace
//! `bench`, and a JSON request helper.

#![allow(dead_code)]

use palisade::Config;
use secrecy::SecretString;
use serde_json::{Value, json};

pub const PASSWORD: &str = "correct horse battery staple";
pub const MASTER_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// Sends a request that must succeed; its JSON body.
pub async fn send(req: reqwest::RequestBuilder) -> Value {
    let r = req.send().await.unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "setup failed: {status} {v}");
    v
}

/// A POST that must succeed, with an optional bearer token.
pub async fn post(
    client: &reqwest::Client,
    url: String,
    token: Option<&str>,
    body: Value,
) -> Value {
    let mut req = client.post(url).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    send(req).await
}

/// The server on `url` (a `sqlite:`/`postgres:` URL) with a fresh data directory, its workspace
/// budgets and the account budget far above the offered load: the limiter is measured, never
/// refusing. Addresses need no verification.
pub fn config(url: &str) -> Config {
    let data = std::env::temp_dir().join(format!("palisade-bench-{}", std::process::id()));
    std::fs::create_dir_all(&data).unwrap();
    let mut config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: data,
        database_url: Some(SecretString::from(url.to_owned())),
        master_key: Some(SecretString::from(MASTER_KEY.to_owned())),
        ..Config::default()
    };
    config.accounts.require_verified_email = false;
    let roomy: palisade_core::limits::Rate = "100000000/1s".parse().unwrap();
    config.rate_limits.auth.api_per_account = roomy;
    for plan in ["starter", "pro", "business"] {
        config.rate_limits.plans.insert(
            plan.to_owned(),
            palisade_core::limits::PlanLimitsPatch {
                api: Some(palisade_core::limits::BudgetPatch {
                    per_workspace: Some(roomy),
                    per_key: Some(roomy),
                }),
                ..Default::default()
            },
        );
    }
    config
}

/// The running server, with the bench account's access token and workspace id.
pub struct Bench {
    pub base: String,
    pub services: palisade_core::Services,
    pub client: reqwest::Client,
    pub jwt: String,
    pub workspace: String,
    data: std::path::PathBuf,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Bench {
    /// Starts the server (worker included) and signs up the bench account with workspace
    /// `bench`.
    pub async fn start(config: Config) -> Bench {
        let data = config.data_dir.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready, built) = tokio::sync::oneshot::channel();
        let server = tokio::spawn(palisade::run_reporting(
            config,
            listener,
            async move {
                let _ = stopped.await;
            },
            ready,
        ));
        let services = built.await.unwrap().services;
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let email = format!("bench-{}@bench.example", std::process::id());
        post(
            &client,
            format!("{base}/api/v1/auth/signup"),
            None,
            json!({"email": email, "password": PASSWORD, "name": "Bench"}),
        )
        .await;
        let tokens = post(
            &client,
            format!("{base}/api/v1/auth/login"),
            None,
            json!({"email": email, "password": PASSWORD}),
        )
        .await;
        let jwt = tokens["access_token"].as_str().unwrap().to_owned();
        let workspace = post(
            &client,
            format!("{base}/api/v1/workspaces"),
            Some(&jwt),
            json!({"name": "Bench", "slug": "bench"}),
        )
        .await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        Bench {
            base,
            services,
            client,
            jwt,
            workspace,
            data,
            stop,
            server,
        }
    }

    /// A workspace API key with `scopes`; its secret.
    pub async fn api_key(&self, name: &str, scopes: &[&str]) -> String {
        post(
            &self.client,
            format!("{}/api/v1/workspaces/bench/api-keys", self.base),
            Some(&self.jwt),
            json!({"name": name, "scopes": scopes}),
        )
        .await["key"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub fn backend(url: &str) -> &'static str {
        if url.starts_with("sqlite") {
            "SQLite"
        } else {
            "PostgreSQL"
        }
    }

    /// Stops the server and removes its data directory.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.server.await;
        let _ = std::fs::remove_dir_all(&self.data);
    }
}
