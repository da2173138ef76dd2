//! API key verification cost, for `scripts/bench-api-keys.sh` (KEY-1, issue 7): the server
//! time a request spends turning `Authorization: Bearer pal_…` into a workspace scope, against
//! the same request's work with no authentication at all.
//!
//! Starts the real server in-process on 127.0.0.1 (the worker included, so the key cache's lease
//! is renewed as in production), sets up a user, a workspace and keys over HTTP, then times the
//! services the HTTP layer calls:
//! - `no auth`: the workspace read with a ready-made scope (what the handler does);
//! - `api key`: the key check (`api_key_scope`: shape, checksum, SHA-256, cache, rate budgets)
//!   and then the same read;
//! - `jwt`: the access-token path (signature, session row, membership) and the same read;
//! - the key check alone, warm (cache) and cold (a key's first use: one database lookup).
//!
//! Usage: api_key_bench <database-url> [iterations]

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use std::time::{Duration, Instant};

use palisade::Config;
use palisade_core::principal::RequestMeta;
use secrecy::SecretString;
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery staple";
const MASTER_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

async fn post(client: &reqwest::Client, url: String, token: Option<&str>, body: Value) -> Value {
    let mut req = client.post(url).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "setup failed: {status} {v}");
    v
}

struct Stats {
    mean: f64,
    p50: f64,
    p99: f64,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let total: f64 = samples.iter().copied().map(us).sum();
    Stats {
        mean: total / samples.len() as f64,
        p50: us(samples[samples.len() / 2]),
        p99: us(samples[samples.len() * 99 / 100]),
    }
}

fn report(name: &str, s: &Stats) {
    println!(
        "{name:<44} mean {:>8.1} µs   p50 {:>8.1} µs   p99 {:>8.1} µs",
        s.mean, s.p50, s.p99
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = args
        .get(1)
        .expect("usage: api_key_bench <database-url> [iterations]");
    let n: usize = args.get(2).map_or(20_000, |v| v.parse().unwrap());
    let data = std::env::temp_dir().join(format!("palisade-key-bench-{}", std::process::id()));
    std::fs::create_dir_all(&data).unwrap();

    let mut config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: data.clone(),
        database_url: Some(SecretString::from(url.clone())),
        master_key: Some(SecretString::from(MASTER_KEY.to_owned())),
        ..Config::default()
    };
    config.accounts.require_verified_email = false;
    // Budgets far above the offered load: the limiter is measured, never refusing.
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
    post(
        &client,
        format!("{base}/api/v1/workspaces"),
        Some(&jwt),
        json!({"name": "Bench", "slug": "bench"}),
    )
    .await;
    let create_key = |name: String| {
        let client = client.clone();
        let base = base.clone();
        let jwt = jwt.clone();
        async move {
            let key = post(
                &client,
                format!("{base}/api/v1/workspaces/bench/api-keys"),
                Some(&jwt),
                json!({"name": name, "scopes": ["read", "write"]}),
            )
            .await;
            key["key"].as_str().unwrap().to_owned()
        }
    };
    let key = create_key("bench".into()).await;
    // The cache serves only under a lease the worker's sync renews every 100 ms.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let meta = RequestMeta::default();
    let scope = services.api_key_scope(&key, "bench", &meta).await.unwrap();
    for _ in 0..1_000 {
        let s = services.api_key_scope(&key, "bench", &meta).await.unwrap();
        services.get_workspace(&s).await.unwrap();
    }

    let backend = if url.starts_with("sqlite") {
        "SQLite"
    } else {
        "PostgreSQL"
    };
    println!("backend {backend}, {n} sequential iterations each");
    let mut no_auth = Vec::with_capacity(n);
    let mut with_key = Vec::with_capacity(n);
    let mut check_only = Vec::with_capacity(n);
    let mut with_jwt = Vec::with_capacity(n);
    let lookups_before = services.api_key_lookups();
    // Interleaved, so drift (WAL growth, autovacuum) hits every variant alike.
    for _ in 0..n {
        let t = Instant::now();
        services.get_workspace(&scope).await.unwrap();
        no_auth.push(t.elapsed());

        let t = Instant::now();
        let s = services.api_key_scope(&key, "bench", &meta).await.unwrap();
        let checked = t.elapsed();
        services.get_workspace(&s).await.unwrap();
        with_key.push(t.elapsed());
        check_only.push(checked);

        let t = Instant::now();
        let principal = services.authenticate(&jwt).await.unwrap();
        let s = services
            .tenant_scope(&principal, "bench", &meta)
            .await
            .unwrap();
        services.get_workspace(&s).await.unwrap();
        with_jwt.push(t.elapsed());
    }
    let lookups = services.api_key_lookups() - lookups_before;
    let (a, b, c, j) = (
        stats(no_auth),
        stats(with_key),
        stats(check_only),
        stats(with_jwt),
    );
    report("GET workspace, no auth (scope given)", &a);
    report("GET workspace, API key", &b);
    report("GET workspace, JWT + session + membership", &j);
    report("API key check alone (warm)", &c);
    println!(
        "API key adds (mean, with key − no auth): {:.1} µs; database lookups during the run: {lookups}",
        b.mean - a.mean
    );

    // Cold: each key's first use reads the database once.
    let mut cold_keys = Vec::new();
    for i in 0..200 {
        cold_keys.push(create_key(format!("cold {i}")).await);
    }
    let mut cold = Vec::with_capacity(cold_keys.len());
    for k in &cold_keys {
        let t = Instant::now();
        services.api_key_scope(k, "bench", &meta).await.unwrap();
        cold.push(t.elapsed());
    }
    report("API key check, first use (database lookup)", &stats(cold));

    // Malformed keys are refused before any database work.
    let bad = format!("{}x", &key[..key.len() - 1]);
    let t = Instant::now();
    for _ in 0..n {
        assert!(services.api_key_scope(&bad, "bench", &meta).await.is_err());
    }
    println!(
        "{:<44} mean {:>8.2} µs",
        "bad checksum, refused",
        t.elapsed().as_secs_f64() * 1e6 / n as f64
    );

    let _ = stop.send(());
    let _ = server.await;
    let _ = std::fs::remove_dir_all(&data);
}
