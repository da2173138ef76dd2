//! Load generator for `scripts/bench-limits.sh`: floods sign-ins from one IP (127.0.0.1) at a
//! fixed offered rate while other tenants' members read their workspaces, and reports the
//! flood's outcome and the readers' latency.
//!
//! Usage: auth_flood <base-url> [seconds] [offered sign-ins per second] [readers]

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery staple";

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

/// A member with a workspace of their own: (access token, workspace id).
async fn reader(client: &reqwest::Client, base: &str, n: usize) -> (String, String) {
    let email = format!("reader{n}-{}@bench.example", std::process::id());
    post(
        client,
        format!("{base}/api/v1/auth/signup"),
        None,
        json!({"email": email, "password": PASSWORD, "name": "Reader"}),
    )
    .await;
    let tokens = post(
        client,
        format!("{base}/api/v1/auth/login"),
        None,
        json!({"email": email, "password": PASSWORD}),
    )
    .await;
    let token = tokens["access_token"].as_str().unwrap().to_owned();
    let ws = post(
        client,
        format!("{base}/api/v1/workspaces"),
        Some(&token),
        json!({"name": format!("Reader {n}")}),
    )
    .await;
    (token, ws["id"].as_str().unwrap().to_owned())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let base = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "http://127.0.0.1:8080".into());
    let secs: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(30);
    let rate: u64 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(2_500);
    let readers: usize = args.get(4).and_then(|a| a.parse().ok()).unwrap_or(4);
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(512)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();

    let mut members = Vec::new();
    for n in 0..readers {
        members.push(reader(&client, &base, n).await);
    }

    let deadline = Instant::now() + Duration::from_secs(secs);
    let statuses: Arc<std::sync::Mutex<BTreeMap<u16, u64>>> = Arc::default();
    let sent = Arc::new(AtomicU64::new(0));

    // The flood: open loop, `rate` sign-ins per second for `secs`, each a fresh address.
    let flood = {
        let client = client.clone();
        let base = base.clone();
        let statuses = Arc::clone(&statuses);
        let sent = Arc::clone(&sent);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let per_tick = rate / 100;
            let mut tasks = tokio::task::JoinSet::new();
            let mut n: u64 = 0;
            while Instant::now() < deadline {
                tick.tick().await;
                for _ in 0..per_tick {
                    n += 1;
                    let req = client
                        .post(format!("{base}/api/v1/auth/login"))
                        .json(&json!({"email": format!("flood{n}@attacker.example"), "password": "not the password"}));
                    let statuses = Arc::clone(&statuses);
                    sent.fetch_add(1, Ordering::Relaxed);
                    tasks.spawn(async move {
                        let code = match req.send().await {
                            Ok(r) => r.status().as_u16(),
                            Err(_) => 0,
                        };
                        *statuses.lock().unwrap().entry(code).or_default() += 1;
                    });
                }
                while tasks.try_join_next().is_some() {}
            }
            while tasks.join_next().await.is_some() {}
        })
    };

    // The readers: each reads their own workspace 12 times a second (within the starter
    // plan's per-principal budget), closed loop, timing every request.
    let mut reads = Vec::new();
    for (token, ws) in members {
        let client = client.clone();
        let url = format!("{base}/api/v1/workspaces/{ws}");
        reads.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = BTreeMap::<u16, u64>::new();
            let mut tick = tokio::time::interval(Duration::from_millis(83));
            while Instant::now() < deadline {
                tick.tick().await;
                let started = Instant::now();
                let code = match client.get(&url).bearer_auth(&token).send().await {
                    Ok(r) => {
                        let code = r.status().as_u16();
                        let _ = r.bytes().await;
                        code
                    }
                    Err(_) => 0,
                };
                latencies.push(started.elapsed());
                if code != 200 {
                    *errors.entry(code).or_default() += 1;
                }
            }
            (latencies, errors)
        }));
    }

    let started = Instant::now();
    let mut latencies = Vec::new();
    let mut errors = BTreeMap::<u16, u64>::new();
    for r in reads {
        let (l, e) = r.await.unwrap();
        latencies.extend(l);
        for (k, v) in e {
            *errors.entry(k).or_default() += v;
        }
    }
    flood.await.unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let sent = sent.load(Ordering::Relaxed);
    let ms = |d: Duration| d.as_secs_f64() * 1_000.0;
    println!(
        "flood: {sent} sign-ins offered in {elapsed:.1} s = {:.0}/s; statuses {:?}",
        sent as f64 / elapsed,
        statuses.lock().unwrap()
    );
    println!(
        "reads: {} by {readers} other tenants; p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; non-200: {errors:?}",
        latencies.len(),
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.99)),
        ms(latencies.last().copied().unwrap_or_default()),
    );
}
